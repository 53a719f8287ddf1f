"""When each job runs: a heap of (due, kind, sn) entries and a pool of workers.

The rate limit is per device: a device is never called again sooner than
`interval_seconds` after its previous call started, however slow or failed
the calls are and however often /metrics is scraped (scrapes read the store
only). Start-up polls every device at once (as fast as the workers allow);
after that each device keeps a phase of its own so that the calls spread
evenly over the interval instead of bursting. Kinds: "latest" (each
interval), "settings" (settings.refresh_seconds), "discovery" (one entry, sn "").
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from atess_exporter.config import Config, DeviceConfig

log = logging.getLogger(__name__)


class Jobs(Protocol):
    """What the scheduler runs (the poller)."""

    discovered: threading.Event

    @property
    def devices(self) -> dict[str, DeviceConfig]: ...

    def refresh_topology(self) -> bool: ...
    def poll_device(self, device: DeviceConfig) -> object: ...
    def poll_settings(self, device: DeviceConfig) -> None: ...
    def rate_limit_factor(self, sn: str) -> int: ...
    def polled(self) -> None: ...


def spread_phases(sns: list[str], interval: float) -> dict[str, float]:
    """Evenly spaced offsets in [0, interval) for the given devices."""
    n = len(sns)
    return {sn: interval * i / n for i, sn in enumerate(sorted(sns))}


class Scheduler:
    def __init__(self, config: Config, jobs: Jobs, stop: threading.Event):
        self.config = config
        self.jobs = jobs
        self.stop_event = stop
        self._cond = threading.Condition()
        self._heap: list[tuple[float, str, str]] = []
        self._queued: set[tuple[str, str]] = set()  # (kind, sn) in the heap: one entry each, ever
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.phases: dict[str, float] = {}
        self.origin = time.monotonic()
        self.discovery_due = 0.0   # monotonic: a saved topology defers the first discovery

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        start = time.monotonic()
        self.origin = start
        self._pool = ThreadPoolExecutor(max_workers=self.config.poll.concurrency, thread_name_prefix="poll")
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        with self._cond:
            if self.config.discovery.enabled:
                heapq.heappush(self._heap, (max(start, self.discovery_due), "discovery", ""))
        self.replan(list(self.jobs.devices))
        self._thread.start()

    def replan(self, new_sns: list[str]) -> None:
        """Phases for the current device set; new devices are due now (their start-up poll)."""
        sns = list(self.jobs.devices)
        self.phases = spread_phases(sns, self.config.poll.interval_seconds)
        now = time.monotonic()
        kinds = ("latest", "settings") if self.config.settings.enabled else ("latest",)
        for sn in sorted(new_sns):
            for kind in kinds:  # settings: read at once, then hourly
                self._push(now, kind, sn)

    def stop(self) -> None:
        """Wake the scheduler so it ends; jobs not started yet are dropped."""
        with self._cond:
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout=5)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        pool = self._pool
        if pool is None:   # start() makes the pool before the thread
            return
        while not self.stop_event.is_set():
            with self._cond:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, kind, sn = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(timeout=wait)
                    continue
                heapq.heappop(self._heap)
            try:
                pool.submit(self._job, kind, sn, due)
            except RuntimeError:  # the pool is shutting down
                return

    def _job(self, kind: str, sn: str, due: float) -> None:
        started = time.monotonic()
        if self.stop_event.is_set():
            return
        if kind == "discovery":
            try:
                self.jobs.refresh_topology()
            except Exception:  # a bug must not end discovery
                log.exception("discovery crashed")
            finally:
                self.jobs.discovered.set()
            self._push(started + self.config.discovery.refresh_seconds, kind, sn, again=True)
            return
        device = self.jobs.devices.get(sn)
        if device is None:  # removed since it was scheduled: its schedule ends here
            with self._cond:
                self._queued.discard((kind, sn))
            return
        try:
            if kind == "settings":
                self.jobs.poll_settings(device)
            else:
                self.jobs.poll_device(device)
        except Exception:  # a bug must not end the device's schedule
            log.exception("poll crashed", extra={"fields": {"sn": sn, "kind": kind}})
        finally:
            if kind == "settings":
                self._push(started + self.config.settings.refresh_seconds, kind, sn, again=True)
            else:
                self._reschedule(sn, due, started)

    def _push(self, due: float, kind: str, sn: str, again: bool = False) -> None:
        """Queue a job. A device re-added by discovery while its old entry is still
        queued keeps that one entry, so it is never polled twice per interval."""
        if self.stop_event.is_set():
            return
        with self._cond:
            if (kind, sn) in self._queued and not again:
                return
            self._queued.add((kind, sn))
            heapq.heappush(self._heap, (due, kind, sn))
            self._cond.notify()

    def next_due(self, sn: str, due: float, started: float) -> float:
        """Keep the device's phase, but never call it within one interval
        (several after rate-limit answers)."""
        interval = self.config.poll.interval_seconds
        phase = self.phases.get(sn, 0.0)
        slot = self.origin + phase
        periods = max(1, int((due - slot) // interval) + 1)
        planned = slot + periods * interval
        return max(planned, started + interval * self.jobs.rate_limit_factor(sn))

    def _reschedule(self, sn: str, due: float, started: float) -> None:
        lag = time.monotonic() - started
        if lag > self.config.poll.interval_seconds:
            log.warning("poll slower than the interval", extra={"fields": {"sn": sn, "seconds": round(lag, 1)}})
        self._push(self.next_due(sn, due, started), "latest", sn, again=True)
        self.jobs.polled()
