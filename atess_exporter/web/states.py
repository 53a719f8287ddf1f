"""Each device's state on the status pages, and the reason for it in words.

One state per device, the most urgent that applies (the order of STATES):
  down     its last poll failed ("HTTP 500 from /api/v1/hps/data-last")
  lost     the cloud marks it lost (payload or device list `lost: true`)
  offline  its datalogger is offline (the account's datalogger list)
  stale    its latest reading is older than poll.stale_after_seconds
  pending  not polled yet (start-up, or just found by discovery)
  up       polled, and its reading is fresh
The freshness rule is /metrics' own (live/freshness.py), so the page and
atess_device_online never disagree about a reading's age.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atess_exporter.account.discovery import Topology
from atess_exporter.config import PollConfig
from atess_exporter.live.freshness import Window, data_age, is_online, last_seen
from atess_exporter.live.store import DeviceSnapshot

STATES = ("down", "lost", "offline", "stale", "pending", "up")
PROBLEMS = frozenset(STATES[:4])
_PATH_FIRST = re.compile(r"^(/[^\s:]*): (.+)$", re.S)
_CLIENT_ADVICE = "; check atess.token"   # what api/client.py appends to a refusal, for the log


@dataclass(frozen=True)
class Verdict:
    state: str
    reason: str


def age_words(seconds: float) -> str:
    if seconds == float("inf"):
        return "never"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def split_error(error: str) -> tuple[str, str]:
    """The client's "PATH: problem" as (path, problem); ("", error) for other texts."""
    match = _PATH_FIRST.match(error)
    path, problem = (match.group(1), match.group(2)) if match else ("", error)
    return path, problem.split(_CLIENT_ADVICE, 1)[0]   # the page gives its own advice


def error_words(error: str) -> str:
    """The client's "PATH: problem" as "problem from PATH" (what failed first, then where)."""
    path, problem = split_error(error)
    return f"{problem} from {path}" if path else problem


def offline_datalogs(topology: Topology | None) -> frozenset[str]:
    if topology is None:
        return frozenset()
    return frozenset(d.sn for d in topology.datalogs if d.online is False)


def verdict(dev: DeviceSnapshot, now: float, poll: PollConfig, offline: frozenset[str]) -> Verdict:
    """`dev`'s state and why; error texts are returned raw (the page escapes and scrubs them)."""
    age = data_age(dev, now)
    reading = "no reading yet" if last_seen(dev) is None else f"reading {age_words(age)} old"
    if dev.last_attempt is None:
        return Verdict("pending", "not polled yet")
    if not dev.up:
        return Verdict("down", error_words(dev.error or "the last poll failed"))
    if dev.lost:
        return Verdict("lost", f"the cloud marks it lost; {reading}")
    datalog = dev.info.get("datalog_sn", "")
    if datalog in offline:
        return Verdict("offline", f"its datalogger {datalog} is offline; {reading}")
    if not is_online(dev, now, Window(), poll.stale_after_seconds):
        return Verdict("stale", f"{reading} (stale after {age_words(poll.stale_after_seconds)})")
    return Verdict("up", reading)
