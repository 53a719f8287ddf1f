"""How many polls run at once: enough to fit every device into the interval, no more.

Each poll's duration (retries included) feeds a smoothed latency; the number of
polls in flight is sized to devices x latency / (interval x TARGET), between
poll.concurrency (the floor, and the start before anything is measured) and
poll.max_concurrency. More workers never mean more calls: the schedule still
calls each device at most once per interval; they only let a slow API get
through the fleet in time. When even the ceiling cannot, one warning says how
many devices fall behind and what to change (it warns again only after the
fleet has kept up in between). `each_sized` runs a job over a list the same
way, once (--once).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from atess_exporter.outside.logs import tag_thread

log = logging.getLogger(__name__)

TARGET = 0.8          # a sweep may take 80 % of the interval: room for retries and slow moments
ALPHA = 0.2           # weight of the newest poll in the smoothed latency
WARN_AFTER = 20       # polls measured before the warning is trusted

T = TypeVar("T")
R = TypeVar("R")


class Capacity:
    def __init__(self, floor: int, ceiling: int, interval: float):
        self.floor, self.ceiling, self.interval = floor, max(floor, ceiling), interval
        self.limit = floor
        self.active = 0
        self.latency: float | None = None
        self.devices = 0
        self.behind = 0           # devices the ceiling cannot fit into one interval
        self._measured = 0
        self._warned = False
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for a free slot; False when stopping."""
        with self._cond:
            while self.active >= self.limit:
                if stop.is_set():
                    return False
                self._cond.wait(timeout=1.0)
            self.active += 1
            return not stop.is_set()

    def release(self, seconds: float | None = None) -> None:
        """A poll ended after `seconds` (None: nothing to learn from it)."""
        with self._cond:
            self.active -= 1
            if seconds is not None and seconds >= 0:
                self.latency = seconds if self.latency is None else ALPHA * seconds + (1 - ALPHA) * self.latency
                self._measured += 1
            self._resize()
            self._cond.notify_all()

    def fleet(self, devices: int) -> None:
        with self._cond:
            self.devices = devices
            self._resize()
            self._cond.notify_all()

    def needed(self) -> int:
        """Polls in flight that fit the fleet into TARGET of the interval at the measured latency."""
        if self.latency is None or not self.devices:
            return self.floor
        return math.ceil(self.devices * self.latency / (self.interval * TARGET))

    def _resize(self) -> None:
        self.limit = min(max(self.needed(), self.floor), self.ceiling)
        if self.latency is None or self._measured < WARN_AFTER:
            return
        fits = int(self.ceiling * self.interval / max(self.latency, 1e-6))
        self.behind = max(self.devices - fits, 0)
        if self.behind and not self._warned:
            self._warned = True
            log.warning("polling cannot keep up: some devices will not be polled every interval", extra={"fields": {
                "devices": self.devices, "devices_behind": self.behind, "latency_seconds": round(self.latency, 3),
                "interval_seconds": self.interval, "max_concurrency": self.ceiling,
                "needed_concurrency": math.ceil(self.devices * self.latency / self.interval),
                "fix": "raise poll.max_concurrency, or split the fleet into shards (docs/scale.md)"}})
        elif not self.behind:
            self._warned = False


def each_sized(capacity: Capacity, job: Callable[[T], R], items: list[T], stop: threading.Event,
               account: str = "") -> list[R]:
    """`job` over every item, as many at once as `capacity` sizes for that many (its floor,
    grown as the jobs' durations come in, up to its ceiling); the results in order. Stops
    starting jobs when `stop` is set. `account` tags the workers' log lines."""
    capacity.fleet(len(items))

    def timed(item: T) -> R:
        started, took = time.monotonic(), None
        try:
            result = job(item)
            took = time.monotonic() - started
            return result
        finally:
            capacity.release(took)

    futures = []
    with ThreadPoolExecutor(max_workers=capacity.ceiling, thread_name_prefix="poll",
                            initializer=tag_thread, initargs=(account,)) as pool:
        for item in items:
            if not capacity.acquire(stop):
                break
            futures.append(pool.submit(timed, item))
    return [future.result() for future in futures]
