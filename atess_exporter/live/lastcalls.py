"""When each device was last called, kept across restarts (the state file's "calls" section).

A restarted replica that called every device at once would call each within the
API's interval of its previous call, and every call would be refused. So each
device's last call (the Unix time it ended) is saved beside the counter state,
and on start-up a device's first call waits until interval + margin after it.

The section is read like every input: a mapping of SN -> finite number, at most
MAX_DEVICES entries, SNs by the config's rule. Times are checked against the
present: one in the future (a wall clock that moved back, a file from another
machine) counts as "just now", so the device waits one whole interval rather than
being called too soon; one older than the interval needs no wait and is dropped.
The waits become deadlines on the monotonic clock at once, so a wall-clock jump
after start-up moves nothing.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from atess_exporter.outside.text import valid_sn

log = logging.getLogger(__name__)

SECTION = "calls"
MAX_DEVICES = 1_000_000


def dump(calls: dict[str, float]) -> dict[str, float]:
    return {sn: round(at, 3) for sn, at in calls.items()}


def load(raw: Any, now: float, wait: float) -> dict[str, float]:
    """{sn: seconds still to wait before its first call} from the saved section."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_DEVICES:
        log.warning("state file: the last-call section is not a mapping of SN to time; every device is called at once",
                    extra={"fields": {"section": SECTION}})
        return {}
    waits: dict[str, float] = {}
    refused = 0
    for sn, at in raw.items():
        if not isinstance(sn, str) or not valid_sn(sn) or isinstance(at, bool) or not isinstance(at, (int, float)) \
                or not math.isfinite(at):
            refused += 1
            continue
        left = wait - (now - min(at, now))    # a time in the future counts as now
        if left > 0:
            waits[sn] = min(left, wait)
    if refused:
        log.warning("state file: last-call entries without a valid SN or time were ignored",
                    extra={"fields": {"section": SECTION, "entries": refused}})
    return waits
