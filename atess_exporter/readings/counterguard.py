"""Keeps lifetime counters believable across the cloud's glitches.

The ATESS cloud, like other vendor clouds, briefly reports a lifetime total as
0 (or some lower value) while a device is offline, and now and then a value no
device could reach. Exposed as is, those spike every `increase()` and `rate()`
over it. So a reading is believed only when it is physically possible:

- 0, negative, NaN or infinite is "no reading": never exposed, never a reset
  (the last good value stays exposed; before the first good reading, nothing).
  One exception: a 0 read while other lifetime totals of the same reading are
  positive is a true zero (a generator never run, a zero-export site), and is
  exposed as long as the counter has no positive value — an offline device
  reads 0 everywhere at once;
- a rise larger than the device could produce since the value last changed
  (energy: rated power x elapsed time x margin; time counters: elapsed x
  margin) is held back and counted as a glitch — however often it repeats;
- a lower reading is held back and counted as a glitch, unless it is the
  `confirm_polls`-th of consecutive lower readings that never fall and grow by
  plausible steps: then it is a replaced meter or a reset device, and the new
  base.

Used by the live poller and by the history backfill alike: one guard, one rule,
applied to a reading by `guard_samples` and saved by `state`/`restore` in both.
"No reading" is the same whether the field says 0 or is missing: the last good
value stays (live: exposed at the poll; backfill: written at the row's time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable

from atess_exporter.catalog import Catalog
from atess_exporter.readings.payload import Samples

ENERGY_SUFFIX = "_joules_total"
TIME_SUFFIX = "_seconds_total"
# Headroom over the nameplate: PV oversizing, a grid bypass, short overloads.
ENERGY_MARGIN = 3.0
TIME_MARGIN = 2.0
# Lifetime totals move in steps of their resolution (0.1 kWh, 0.1 h) and the
# cloud may publish them late: every elapsed time gets this allowance.
SLACK_SECONDS = 900.0


@dataclass
class _Track:
    value: float
    pending: int = 0             # consecutive readings below `value`
    pending_last: float = 0.0    # the latest of those readings
    since: float | None = None   # when `value` was first seen (None: unknown)
    pending_at: float | None = None


def usable(value: float) -> bool:
    """A lifetime total that can be a reading at all."""
    return math.isfinite(value) and value > 0


@dataclass
class CounterGuard:
    confirm_polls: int = 3
    rated_watts: float | None = None   # the device's nameplate power; None: unknown
    glitches: int = 0
    damaged: int = 0                   # rows of a restored state that were damaged and dropped
    _tracks: dict[Hashable, _Track] = field(default_factory=dict)

    def max_rate(self, key: Hashable) -> float | None:
        """The fastest the counter of `key` can grow, per second; None: no bound known."""
        name = key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else str(key)
        if name.endswith(ENERGY_SUFFIX):
            return self.rated_watts * ENERGY_MARGIN if self.rated_watts else None
        if name.endswith(TIME_SUFFIX):
            return TIME_MARGIN
        return None

    def _possible(self, key: Hashable, rise: float, start: float | None, at: float | None) -> bool:
        rate = self.max_rate(key)
        if rate is None or start is None or at is None:
            return True
        return rise <= rate * (max(at - start, 0.0) + SLACK_SECONDS)

    def check(self, key: Hashable, value: float, at: float | None = None, live: bool = False) -> float | None:
        """The value to expose for `key` given a new reading taken at time `at`
        (Unix seconds; None skips the rise check), or None to expose nothing.
        `live`: other totals of the same reading are positive (see live())."""
        track = self._tracks.get(key)
        if track is not None and at is not None:
            # A time after `at` was read with a clock ahead (or the clock stepped back):
            # the elapsed time is unknown, so it counts from now rather than never.
            if track.since is not None and track.since > at:
                track.since = at
            if track.pending_at is not None and track.pending_at > at:
                track.pending_at = at
        if value == 0 and live and (track is None or track.value == 0):
            if track is None:
                self._tracks[key] = _Track(0.0, since=at)
            return 0.0
        if not usable(value):
            if track is None or track.value == 0:
                return None if track is None else 0.0
            self.glitches += 1
            return track.value
        if track is None:
            self._tracks[key] = _Track(value, since=at)
            return value
        if value >= track.value:
            track.pending = 0
            if value == track.value:
                return value
            if not self._possible(key, value - track.value, track.since, at):
                self.glitches += 1   # more than the device can produce: held back
                return track.value
            track.value, track.since = value, at
            return value
        # A lower reading: a glitch unless it keeps coming back, consistently.
        consistent = (track.pending and value >= track.pending_last
                      and self._possible(key, value - track.pending_last, track.pending_at, at))
        track.pending = track.pending + 1 if consistent else 1
        track.pending_last, track.pending_at = value, at
        if track.pending >= self.confirm_polls:
            track.value, track.pending, track.since = value, 0, at
            return value
        self.glitches += 1
        return track.value

    @staticmethod
    def live(values: Iterable[float]) -> bool:
        """Whether a reading's lifetime totals show a reporting device (one is positive)."""
        return any(usable(v) for v in values)

    def last(self, key: Hashable) -> float | None:
        track = self._tracks.get(key)
        return track.value if track else None

    def held(self, present: Iterable[Hashable]) -> list[tuple[Any, float]]:
        """The counters that have a good value but no reading this time (the
        field was missing): their last good value stays exposed."""
        seen = set(present)
        return [(k, t.value) for k, t in self._tracks.items() if k not in seen]

    # -- persistence: the last good values survive a restart -----------------

    def state(self) -> dict[str, Any]:
        """All of the guard, JSON-ready, so that a restored guard judges the next
        reading exactly as this one would have."""
        return {"glitches": self.glitches, "tracks": self.dump()}

    @classmethod
    def restore(cls, state: Any, confirm_polls: int, now: float | None = None) -> "CounterGuard":
        """A guard from `state()`'s output; also from a bare track list (the live
        state file before glitches were kept) and from nothing (a fresh guard).
        Damaged rows are dropped and counted in `damaged`; times after `now` are
        not believed (see load)."""
        guard = cls(confirm_polls=confirm_polls)
        if isinstance(state, dict):
            try:
                guard.glitches = max(_count(state.get("glitches", 0)), 0)
            except (TypeError, ValueError, OverflowError):
                guard.damaged += 1
            state = state.get("tracks")
        if isinstance(state, list):
            guard.damaged += guard.load(state, now)
        elif state is not None:
            guard.damaged += 1
        return guard

    def dump(self) -> list[list]:
        """JSON-ready state: [[key parts...], value, pending, pending_last, since, pending_at]
        per counter, so a restored guard behaves exactly as the saved one would have.
        Files written before `since` existed (four columns) still load."""
        return [[list(_flatten(k)), t.value, t.pending, t.pending_last, t.since, t.pending_at]
                for k, t in self._tracks.items()]

    def load(self, rows: Any, now: float | None = None) -> int:
        """Restore dump()'s rows; returns how many were damaged and dropped. A time
        later than `now` (+ SLACK_SECONDS) was saved with a clock ahead: unknown."""
        if not isinstance(rows, (list, tuple)):
            raise TypeError("counter rows: expected a list")
        dropped = 0
        for row in rows:
            try:
                key, track = _row(row, now)
            except (TypeError, ValueError, OverflowError):
                dropped += 1    # that counter starts fresh
                continue
            if usable(track.value):  # not 0: an old file may hold a 0 taken as a reset before these rules
                self._tracks[key] = track
        return dropped


def _row(row: Any, now: float | None) -> tuple[tuple, _Track]:
    """One dump() row, validated: [[name, [label values...]], value, pending, pending_last, since, pending_at]."""
    if not isinstance(row, list) or not 2 <= len(row) <= 6:
        raise ValueError("not a counter row")
    parts, value, *rest = row
    if (not isinstance(parts, list) or len(parts) != 2 or not isinstance(parts[0], str)
            or not isinstance(parts[1], list) or not all(isinstance(v, str) for v in parts[1])):
        raise ValueError("not a (metric, labels) key")
    count, last = (_count(rest[0]), _number(rest[1])) if len(rest) >= 2 else (0, 0.0)
    since = _time(rest[2], now) if len(rest) >= 3 else None
    pending_at = _time(rest[3], now) if len(rest) >= 4 else None
    return (parts[0], tuple(parts[1])), _Track(_number(value), count, last, since, pending_at)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("not a number")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 31:
        raise ValueError("not a count")
    return value


def _time(value: object, now: float | None = None) -> float | None:
    if value is None:
        return None
    number = _number(value)
    if now is not None and number > now + SLACK_SECONDS:
        return None
    return number


def _flatten(key: Hashable) -> tuple:
    if isinstance(key, tuple):
        return tuple(list(_flatten(k)) if isinstance(k, tuple) else k for k in key)
    return (key,)


def _unflatten(parts: list) -> tuple:
    return tuple(tuple(p) if isinstance(p, list) else p for p in parts)


def guard_samples(guard: CounterGuard, catalog: Catalog, samples: Samples, at: float) -> Samples:
    """A reading's samples with its lifetime counters as the guard believes them:
    impossible readings held back, "no reading" (0, or the field missing) keeps the
    last good value. Gauges pass unchanged."""
    counters = {name for name in samples if catalog.describe_metric(name).type == "counter"}
    live = guard.live(value for name in counters for _, value in samples[name])
    grouped: dict[str, list] = {}
    for name, rows in samples.items():
        if name not in counters:
            grouped[name] = list(rows)
            continue
        kept = grouped.setdefault(name, [])
        for labels, value in rows:
            exposed = guard.check((name, labels), value, at=at, live=live)
            if exposed is not None:
                kept.append((labels, exposed))
    present = {(name, labels) for name, rows in samples.items() for labels, _ in rows}
    for (name, labels), value in guard.held(present):
        m = catalog.metrics.get(name)  # a state file from an older catalog may name others
        if m is not None and m.type == "counter" and len(labels) == len(m.labels):
            grouped.setdefault(name, []).append((labels, value))
    return {name: tuple(rows) for name, rows in grouped.items() if rows}
