"""The API servers' clock: which zone the `time` strings are written in, measured.

The vendor's servers write a reading's `time` ("2020-07-28 13:32:43", no zone)
in their own zone -- UTC+8 on the platform the ATESS cloud was built on, also
for a plant whose own zone is 0 (docs/api.md). Nobody can be expected to know
that zone, so it is measured: a reading polled now is usually minutes old, so
`time` minus the poll time is the servers' offset minus a few minutes.

Each device votes with its newest reading: the quarter hour at or just above
that difference (a reading is never younger than zero; SKEW_SECONDS of clock
skew allowed), provided the reading looks fresh (at most FRESH_SECONDS past
that quarter hour) and the offset is a zone's (within +-14 h). A device that is
hours or days behind gives no vote or a minority one; a device repeating the
same `time` keeps its earlier vote (it has no new evidence) for up to
VOTE_TTL_SECONDS, so devices long offline cannot outvote live ones. The offset most
devices agree on wins when it has a majority of the votes; one device alone
decides when it is the only one voting (the log says so). Without a majority
the last decision stays (or UTC before any) and a warning says so, once.

An explicit zone (`atess.timezone`, `devices[].timezone`) overrides the
measurement; the measurement still runs and a warning says, once, when it
contradicts the configured zone.

A reading is never placed in the future: up to FUTURE_TOLERANCE_SECONDS ahead
of the poll it is placed at the poll time (clock skew); further ahead its time
is unknown, and the caller must not count it as fresh.
"""

from __future__ import annotations

import calendar
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Callable, Mapping

from atess_exporter.outside.zones import MAX_OFFSET_HOURS, offset_text, zone_name

log = logging.getLogger(__name__)

TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S")
QUARTER_SECONDS = 900
SKEW_SECONDS = 120             # our clock may lag the servers' by this much
FRESH_SECONDS = 600            # a reading older than this past its quarter hour does not vote
MAX_OFFSET_SECONDS = int(MAX_OFFSET_HOURS * 3600)
FUTURE_TOLERANCE_SECONDS = 300.0
VOTE_TTL_SECONDS = 86400.0     # a vote not renewed by a new reading for a day is dropped (monotonic)
_SWEEP_SECONDS = 600.0
EARLIEST = 946684800.0         # 2000-01-01: older "readings" are placeholders
_LATEST_WALL = 4102444800.0    # 2100-01-01


def parse_wall(value: object) -> float | None:
    """A vendor 'YYYY-MM-DD HH:MM:SS' as seconds on its own wall clock (read as if
    UTC), or None when it is missing or malformed."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    text = value.strip()
    for fmt in TIME_FORMATS:
        try:
            wall = float(calendar.timegm(datetime.strptime(text, fmt).timetuple()))
        except (ValueError, OverflowError):
            continue
        return wall if EARLIEST - 86400 <= wall <= _LATEST_WALL else None
    return None


def row_wall(row: Mapping) -> float | None:
    """A history row's time: `time` as documented, `recordTime` as the older spelling."""
    wall = parse_wall(row.get("time"))
    return wall if wall is not None else parse_wall(row.get("recordTime"))


def in_zone(wall: float, zone: tzinfo) -> float:
    """Unix time of a wall-clock reading written in `zone` (DST-aware for IANA zones)."""
    naive = datetime.fromtimestamp(wall, timezone.utc).replace(tzinfo=None)
    return naive.replace(tzinfo=zone).timestamp()


def vote_of(wall: float, now: float) -> int | None:
    """The servers' offset (seconds) a reading written at `wall` and polled at `now`
    suggests, or None when the reading is too old or too far off to say."""
    diff = wall - now
    offset = math.ceil((diff - SKEW_SECONDS) / QUARTER_SECONDS) * QUARTER_SECONDS
    if abs(offset) > MAX_OFFSET_SECONDS or offset - diff > FRESH_SECONDS:
        return None
    return int(offset)


@dataclass(frozen=True)
class Placed:
    at: float | None            # Unix time of the reading; None when unknown
    ahead: float = 0.0          # seconds ahead of the poll it claimed, when refused as future


@dataclass(frozen=True)
class Decision:
    offset: int | None          # seconds east of UTC the servers write in; None: not decided
    agreeing: int = 0           # devices whose newest reading supports it
    voting: int = 0             # devices with a vote at all


class ServerClock:
    """Thread-safe: the poller's workers observe and place concurrently."""

    def __init__(self, zone: tzinfo | None = None, remembered: int | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.zone = zone                      # explicit override; None: measured
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._votes: dict[str, int] = {}
        self._cast: dict[str, float] = {}     # sn -> monotonic time of its vote
        self._swept = monotonic()
        self._walls: dict[str, float] = {}
        self._counts: Counter[int] = Counter()
        self.decision = Decision(remembered)  # a remembered offset serves until the first decision
        self._measured = False
        self._warned: set[str] = set()

    # -- evidence -------------------------------------------------------------

    def observe(self, sn: str, wall: float, now: float) -> None:
        """One device's newest reading. A repeated `time` is no new evidence."""
        with self._lock:
            if self._walls.get(sn) == wall:
                return
            self._walls[sn] = wall
            self._set_vote(sn, vote_of(wall, now))
            self._cast[sn] = self.monotonic()

    def forget(self, sn: str) -> None:
        with self._lock:
            self._walls.pop(sn, None)
            self._cast.pop(sn, None)
            self._set_vote(sn, None)

    def _set_vote(self, sn: str, vote: int | None) -> None:
        old = self._votes.pop(sn, None)
        if old is not None:
            self._counts[old] -= 1
            if not self._counts[old]:
                del self._counts[old]
        if vote is not None:
            self._votes[sn] = vote
            self._counts[vote] += 1

    @property
    def voting(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def decide(self) -> bool:
        """Weigh the votes; True when the offset in use changed. Logs a first
        decision and every change once, and a split vote once per episode."""
        with self._lock:
            self._sweep()
            voting = sum(self._counts.values())
            if not voting:
                return False
            [(top, agreeing)] = self._counts.most_common(1)   # voting > 0: there is one
            if agreeing * 2 <= voting:
                if "split" not in self._warned:
                    self._warned.add("split")
                    kept = self.decision.offset
                    log.warning("devices disagree on the API servers' clock; keeping the offset in use",
                                extra={"fields": {"offset_in_use": offset_text(kept or 0), "voting": voting,
                                                  "largest_group": agreeing, "suggested": offset_text(top),
                                                  "fix": "set atess.timezone if this persists"}})
                return False
            self._warned.discard("split")
            previous, first = self.decision, not self._measured
            self._measured = True
            self.decision = Decision(top, agreeing, voting)
            if self.zone is not None:
                self._check_override(top, agreeing, voting)
                return False
            if previous.offset == top and not first:
                return False
            fields = {"offset_seconds": top, "zone": offset_text(top), "devices": agreeing, "voting": voting}
            if first:
                message = ("API servers' clock found from one device only; it rests on that device"
                           if agreeing == 1 else "API servers' clock found")
                log.info(message, extra={"fields": fields})
            else:
                log.warning("API servers' clock changed", extra={"fields": {**fields,
                                                                           "was": offset_text(previous.offset or 0)}})
            return previous.offset != top

    def _sweep(self) -> None:
        """Drop the votes no new reading renewed within VOTE_TTL_SECONDS (every few minutes)."""
        now = self.monotonic()
        if now - self._swept < _SWEEP_SECONDS:
            return
        self._swept = now
        for sn in [sn for sn, at in self._cast.items() if now - at > VOTE_TTL_SECONDS]:
            del self._cast[sn]
            self._set_vote(sn, None)

    def _check_override(self, top: int, agreeing: int, voting: int) -> None:
        zone = self.zone
        if zone is None:
            return
        configured = datetime.now(zone).utcoffset()
        seconds = configured.total_seconds() if configured is not None else 0
        if abs(seconds - top) >= QUARTER_SECONDS and "override" not in self._warned:
            self._warned.add("override")
            log.warning("the API's reading times suggest another zone than atess.timezone; using the configured one",
                        extra={"fields": {"configured": zone_name(zone), "suggested": offset_text(top),
                                          "devices": agreeing, "voting": voting}})

    # -- placing readings -----------------------------------------------------

    def offset_seconds(self) -> float:
        """The offset applied to readings without a zone of their own."""
        if self.zone is not None:
            offset = datetime.now(self.zone).utcoffset()
            return offset.total_seconds() if offset is not None else 0.0
        return float(self.decision.offset or 0)

    def place(self, wall: float | None, now: float, zone: tzinfo | None = None) -> Placed:
        """Unix time of a reading (`zone`: the device's own override), never in the future."""
        if wall is None:
            return Placed(None)
        zone = zone or self.zone
        at = in_zone(wall, zone) if zone is not None else wall - (self.decision.offset or 0)
        if at < EARLIEST:
            return Placed(None)
        if at > now + FUTURE_TOLERANCE_SECONDS:
            return Placed(None, ahead=at - now)
        return Placed(min(at, now))

    def warn_ahead(self, sn: str, ahead: float) -> None:
        """Once per process: a reading claimed a time ahead of the poll."""
        with self._lock:
            if "ahead" in self._warned:
                return
            self._warned.add("ahead")
        log.warning("a reading's time is ahead of the poll; its time is treated as unknown (not fresh)",
                    extra={"fields": {"sn": sn, "ahead_seconds": round(ahead), "offset_in_use": offset_text(self.offset_seconds()),
                                      "fix": "check atess.timezone (auto measures it) and devices[].timezone"}})
