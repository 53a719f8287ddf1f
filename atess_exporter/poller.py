"""Polls each device's latest data on its own schedule into the cache.

The rate limit is per device: a device is never called again sooner than
`interval_seconds` after its previous call started, however slow or failed
the calls are and however often /metrics is scraped (scrapes read the cache
only). Start-up polls every device at once (as fast as the workers allow);
after that each device keeps a phase of its own so that the calls spread
evenly over the interval instead of bursting.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .cache import Cache, DeviceSnapshot
from .catalog import Catalog
from .client import AtessClient, AtessError
from .config import Config, DeviceConfig
from .readings import parse_time, payload_samples

log = logging.getLogger(__name__)


def spread_phases(sns: list[str], interval: float) -> dict[str, float]:
    """Evenly spaced offsets in [0, interval) for the given devices."""
    n = len(sns)
    return {sn: interval * i / n for i, sn in enumerate(sorted(sns))}


class Poller:
    def __init__(self, config: Config, client: AtessClient, cache: Cache, catalog: Catalog,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.client = client
        self.cache = cache
        self.catalog = catalog
        self.clock = clock
        self.devices: dict[str, DeviceConfig] = {d.sn: d for d in config.devices}
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._heap: list[tuple[float, str]] = []
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        for device in config.devices:
            self.cache.put(DeviceSnapshot(sn=device.sn, device_type=device.type, model=device.model or "unknown",
                                          info=device.info()))

    def poll_device(self, device: DeviceConfig) -> DeviceSnapshot:
        """One latest-data call for one device; the cache gets the result either way."""
        now = self.clock()
        previous = self.cache.get(device.sn) or DeviceSnapshot(device.sn, device.type, device.model or "unknown")
        path = self.config.endpoint(device.type, "latest")
        try:
            payload = self.client.latest(path, device.sn)
        except AtessError as exc:
            log.warning("poll failed", extra={"fields": {"sn": device.sn, "outcome": exc.outcome, "error": str(exc)}})
            snapshot = previous.failed(now, str(exc))
        else:
            snapshot = DeviceSnapshot(
                sn=device.sn,
                device_type=device.type,
                model=device.model or previous.model,
                up=True,
                last_attempt=now,
                last_success=now,
                data_time=parse_time(payload.get("time"), self.config.device_timezone(device)),
                samples=payload_samples(self.catalog.families[device.type], payload),
                info=previous.info,
            )
            log.debug("polled", extra={"fields": {"sn": device.sn, "series": sum(map(len, snapshot.samples.values()))}})
        self.cache.put(snapshot)
        return snapshot

    def poll_all_once(self) -> list[DeviceSnapshot]:
        with ThreadPoolExecutor(max_workers=self.config.poll.concurrency, thread_name_prefix="poll") as pool:
            return list(pool.map(self.poll_device, self.devices.values()))

    # -- the background schedule -------------------------------------------

    def start(self) -> None:
        interval = self.config.poll.interval_seconds
        start = time.monotonic()
        self._phases = spread_phases(list(self.devices), interval)
        self._pool = ThreadPoolExecutor(max_workers=self.config.poll.concurrency, thread_name_prefix="poll")
        with self._cond:
            for sn in sorted(self.devices):
                heapq.heappush(self._heap, (start, sn))
        self._origin = start
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout=5)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, sn = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(timeout=wait)
                    continue
                heapq.heappop(self._heap)
            self._pool.submit(self._timed_poll, sn, due)

    def _timed_poll(self, sn: str, due: float) -> None:
        started = time.monotonic()
        device = self.devices.get(sn)
        if device is None or self._stop.is_set():
            return
        try:
            self.poll_device(device)
        except Exception:  # a bug must not end the device's schedule
            log.exception("poll crashed", extra={"fields": {"sn": sn}})
        finally:
            self._reschedule(sn, due, started)

    def next_due(self, sn: str, due: float, started: float) -> float:
        """Keep the device's phase, but never call it within one interval."""
        interval = self.config.poll.interval_seconds
        phase = self._phases.get(sn, 0.0)
        slot = self._origin + phase
        periods = max(1, int((due - slot) // interval) + 1)
        planned = slot + periods * interval
        return max(planned, started + interval)

    def _reschedule(self, sn: str, due: float, started: float) -> None:
        if self._stop.is_set():
            return
        nxt = self.next_due(sn, due, started)
        lag = time.monotonic() - started
        if lag > self.config.poll.interval_seconds:
            log.warning("poll slower than the interval", extra={"fields": {"sn": sn, "seconds": round(lag, 1)}})
        with self._cond:
            heapq.heappush(self._heap, (nxt, sn))
            self._cond.notify()
