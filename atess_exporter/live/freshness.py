"""When a device's reading counts as fresh: the rules /metrics and the landing page share.

A reading's age is measured from the payload's own time; without a usable one,
from the last time the payload changed. ``Window`` records the span of clock
time over which those answers hold, so the fast renderer can reuse a device's
output until the clock leaves it.
"""

from __future__ import annotations

import math

from atess_exporter.live.store import DeviceSnapshot


class Window:
    """The span of clock time over which a device's output stays what it is.

    Every rule of a per-device collector that looks at the clock asks through
    ``within``, which answers and narrows the window to where that answer
    holds; the fast renderer (exposition/render.py) reuses a device's output
    while the clock stays inside it (lo < now <= hi), and asks again outside.
    """

    __slots__ = ("lo", "hi")

    def __init__(self) -> None:
        self.lo = -math.inf
        self.hi = math.inf

    def within(self, now: float, seen: float | None, limit: float) -> bool:
        """True while a moment ``seen`` is at most ``limit`` seconds before ``now``
        (never when there is no ``seen``)."""
        if seen is None:
            return False
        edge = seen + limit
        if now <= edge:
            self.hi = min(self.hi, edge)
            return True
        self.lo = max(self.lo, edge)
        return False


def last_seen(dev: DeviceSnapshot) -> float | None:
    """When the device's latest reading was taken: the payload's own time is the
    evidence; without a usable one, the last time the payload changed stands in
    for it (a cloud repeating a frozen payload is not a fresh reading). A reading
    whose time lay in the future has no known time at all."""
    if dev.time_refused:
        return None
    return dev.data_time if dev.data_time is not None else dev.changed_at


def data_age(dev: DeviceSnapshot, now: float) -> float:
    """Seconds since the device's latest reading; infinite when never read."""
    seen = last_seen(dev)
    return math.inf if seen is None else max(0.0, now - seen)


def is_online(dev: DeviceSnapshot, now: float, window: Window, stale_after: float) -> bool:
    """The cloud's `lost` flag wins; else a reading at most stale_after old. With no
    usable time, the `lost` flag alone decides when it was sent."""
    if dev.lost or dev.time_refused:
        return False
    if dev.data_time is None and dev.lost is not None:
        return True
    return window.within(now, last_seen(dev), stale_after)
