"""When each device was last called, kept across restarts (the state file's "calls" section).

A restarted replica that called every device at once would call each within the
API's interval of its previous call, and every call would be refused. So each
device's last call (the Unix time it ended) is saved beside the counter state,
and on start-up a device's first call waits until interval + margin after it.

The section is read like every input (live/state.py's section(): a mapping of
SN -> finite number, SNs by the config's rule, a bad entry dropped with one
warning). Times are checked against the
present: one in the future (a wall clock that moved back, a file from another
machine) counts as "just now", so the device waits one whole interval rather than
being called too soon; one older than the interval needs no wait and is dropped.
The waits become deadlines on the monotonic clock at once, so a wall-clock jump
after start-up moves nothing.
"""

from __future__ import annotations

import math
from typing import Any

from atess_exporter.live.state import section
from atess_exporter.outside.text import valid_sn

SECTION = "calls"


def dump(calls: dict[str, float]) -> dict[str, float]:
    return {sn: round(at, 3) for sn, at in calls.items()}


def _entry(sn: str, at: Any) -> float:
    if not valid_sn(sn) or isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise ValueError("not an SN and a time")
    return float(at)


def load(state: dict[str, Any], now: float, wait: float, path: str | None = None) -> dict[str, float]:
    """{sn: seconds still to wait before its first call} from the state file's section."""
    waits: dict[str, float] = {}
    for sn, at in section(state, SECTION, _entry, path).items():
        left = wait - (now - min(at, now))    # a time in the future counts as now
        if left > 0:
            waits[sn] = min(left, wait)
    return waits
