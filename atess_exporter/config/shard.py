"""Splitting one fleet over COUNT exporter replicas: which replica polls which SN.

Rendezvous (highest random weight) hashing: every shard scores every SN with a
stable hash of ``"{sn}:{shard}"`` and the SN goes to the highest score. The
result depends on the SN and COUNT only -- not on the order or the rest of the
device list, not on the process (no ``hash()``: Python salts it per process) --
so every replica, given the same config, agrees without talking to the others.
Growing COUNT from n to n+1 moves only the SNs the new shard now wins, about
1/(n+1) of them, and they all move to the new shard.

The index is 0-based so a Kubernetes StatefulSet's pod ordinal can be used as
it is (``atess-exporter-2`` -> ``--shard 2/COUNT``). ``auto/COUNT`` takes the
index from that ordinal itself: the trailing ``-N`` of the pod name, which
Kubernetes puts in ``HOSTNAME`` (else the host's name), so every pod of the
StatefulSet runs the same configuration (``ATESS_SHARD=auto/3``).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket

MAX_SHARDS = 1024


def ordinal(hostname: str | None = None) -> tuple[str, int | None]:
    """(the name looked at, its StatefulSet ordinal: the trailing -N) of this pod."""
    name = hostname if hostname is not None else (os.environ.get("HOSTNAME") or socket.gethostname())
    found = re.fullmatch(r".*-([0-9]{1,4})", name.strip()[:253])
    return name, int(found.group(1)) if found else None


def parse_shard(text: str, hostname: str | None = None) -> tuple[int, int]:
    """'INDEX/COUNT' (0-based index) or 'auto/COUNT' (index from the pod's ordinal) ->
    (index, count); a one-line ValueError otherwise."""
    raw = text.strip() if isinstance(text, str) else text
    if not isinstance(raw, str) or raw.count("/") != 1:
        raise ValueError(f"--shard {text!r}: expected INDEX/COUNT with a 0-based index, e.g. 0/3, or auto/COUNT")
    index_s, count_s = (part.strip() for part in raw.split("/"))
    if index_s == "auto":
        name, number = ordinal(hostname)
        if number is None:
            raise ValueError(f"--shard {text!r}: the host name {name[:64]!r} does not end in -ORDINAL "
                             "(a StatefulSet pod such as atess-exporter-2); give INDEX/COUNT instead")
        index_s = str(number)
    if not re.fullmatch(r"[0-9]+", index_s) or not re.fullmatch(r"[0-9]+", count_s):
        raise ValueError(f"--shard {text!r}: INDEX and COUNT must be non-negative whole numbers, e.g. 0/3")
    index, count = int(index_s), int(count_s)
    if count < 1:
        raise ValueError(f"--shard {text!r}: COUNT must be at least 1")
    if count > MAX_SHARDS:
        raise ValueError(f"--shard {text!r}: COUNT {count} is above the maximum {MAX_SHARDS}")
    if index >= count:
        raise ValueError(f"--shard {text!r}: INDEX is 0-based and must be below COUNT ({count}); use 0..{count - 1}"
                         + (f" (auto: the pod's ordinal is {index}; are the StatefulSet's replicas above COUNT?)"
                            if raw.startswith("auto") else ""))
    return index, count


def _score(sn: str, shard: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{sn}:{shard}".encode("utf-8"), digest_size=8).digest(), "big")


def shard_of(sn: str, count: int) -> int:
    """The shard (0..count-1) that polls ``sn``."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    if count == 1:
        return 0
    # Ties (a 64-bit collision) go to the lower index, deterministically.
    return max(range(count), key=lambda i: (_score(sn, i), -i))


def in_shard(sn: str, index: int, count: int) -> bool:
    """True when the replica ``index`` of ``count`` polls ``sn``."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return shard_of(sn, count) == index
