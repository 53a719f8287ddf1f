"""Keeps lifetime counters monotonic across the cloud's glitches.

The ATESS cloud, like other vendor clouds, briefly reports a lifetime total as
0 (or some lower value) while a device is offline. Exposed as is, that spikes
every `increase()` and `rate()` over it. A reading below the last accepted one
is therefore held back (the last good value is exposed instead) and counted as
a glitch. Only when the lower readings persist for `confirm_polls` polls in a
row — a replaced meter or a reset device — are they accepted as the new base.

Used by the live poller and by the history backfill alike: one guard, one rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable


@dataclass
class _Track:
    value: float
    pending: int = 0           # consecutive readings below `value`
    pending_last: float = 0.0  # the latest of those readings


@dataclass
class CounterGuard:
    confirm_polls: int = 3
    glitches: int = 0
    _tracks: dict[Hashable, _Track] = field(default_factory=dict)

    def check(self, key: Hashable, value: float) -> float:
        """The value to expose for `key` given a new reading."""
        track = self._tracks.get(key)
        if track is None:
            self._tracks[key] = _Track(value)
            return value
        if value >= track.value:
            track.value, track.pending = value, 0
            return value
        # A lower reading: a glitch unless it keeps coming back, consistently.
        if track.pending and value < track.pending_last:
            track.pending = 0
        track.pending += 1
        track.pending_last = value
        if track.pending >= self.confirm_polls:
            track.value, track.pending = value, 0
            return value
        self.glitches += 1
        return track.value

    def last(self, key: Hashable) -> float | None:
        track = self._tracks.get(key)
        return track.value if track else None

    # -- persistence: the last good values survive a restart -----------------

    def dump(self) -> list[list]:
        """JSON-ready state: [[key parts...], value, pending, pending_last] per counter,
        so a restored guard behaves exactly as the saved one would have."""
        return [[list(_flatten(k)), t.value, t.pending, t.pending_last] for k, t in self._tracks.items()]

    def load(self, rows: list) -> None:
        for parts, value, *pending in rows:
            count, last = (int(pending[0]), float(pending[1])) if len(pending) == 2 else (0, 0.0)
            self._tracks[_unflatten(parts)] = _Track(float(value), count, last)


def _flatten(key: Hashable) -> tuple:
    if isinstance(key, tuple):
        return tuple(list(_flatten(k)) if isinstance(k, tuple) else k for k in key)
    return (key,)


def _unflatten(parts: list) -> tuple:
    return tuple(tuple(p) if isinstance(p, list) else p for p in parts)
