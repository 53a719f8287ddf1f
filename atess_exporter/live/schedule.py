"""When each job runs: a heap of (due, kind, sn) entries and a pool of workers.

The rate limit is per device: a device is never called again sooner than
`interval_seconds` after its previous call started, however slow or failed
the calls are and however often /metrics is scraped (scrapes read the store
only). Start-up polls every device at once (as fast as the workers allow);
after that each device keeps a phase of its own so that the calls spread
evenly over the interval instead of bursting. Kinds: "latest" (each
interval), "settings" (settings.refresh_seconds), "discovery" (one entry, sn "", when
live/listing.py says).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from atess_exporter.account.discovery import Topology
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.live import listing
from atess_exporter.live.capacity import Capacity
from atess_exporter.live.store import AccountStore, PollStats
from atess_exporter.outside.logs import tag_thread

log = logging.getLogger(__name__)

STATS_SECONDS = 2.0       # how often the schedule's own metrics are published to the store


class Jobs(Protocol):
    """What the scheduler runs (the poller)."""

    discovered: threading.Event

    @property
    def devices(self) -> dict[str, DeviceConfig]: ...

    @property
    def topology(self) -> Topology | None: ...

    def refresh_topology(self) -> bool: ...
    def auth_pause(self) -> float | None: ...
    def poll_device(self, device: DeviceConfig) -> object: ...
    def poll_settings(self, device: DeviceConfig) -> None: ...
    def rate_limit_factor(self, sn: str) -> int: ...
    def polled(self) -> None: ...


def spread_phases(sns: list[str], interval: float) -> dict[str, float]:
    """Evenly spaced offsets in [0, interval) for the given devices."""
    n = len(sns)
    return {sn: interval * i / n for i, sn in enumerate(sorted(sns))}


class Scheduler:
    def __init__(self, config: Config, jobs: Jobs, stop: threading.Event, store: AccountStore | None = None):
        self.config = config
        self.jobs = jobs
        self.stop_event = stop
        self.store = store
        poll = config.poll
        self.capacity = Capacity(poll.concurrency, poll.max_concurrency, poll.interval_seconds)
        self.period = poll.interval_seconds + poll.margin_seconds   # each device's call grid
        self._round: set[str] = set()           # devices not yet polled in the current sweep
        self._round_first: float | None = None  # when the current sweep's first poll ended
        self._ahead: set[str] = set()           # polled again before the sweep ended
        self._ahead_first: float | None = None
        self.sweep_seconds: float | None = None  # the last complete sweep: every device polled once
        self._stats_at = 0.0
        self._started_wall = time.time()
        self._last_call: dict[str, float] = {}   # sn -> Unix time its last latest-data call ended
        self._resume: dict[str, float] = {}      # sn -> monotonic time of its first call after a restart
        self._cond = threading.Condition()
        self._heap: list[tuple[float, str, str]] = []
        self._queued: set[tuple[str, str]] = set()  # (kind, sn) in the heap: one entry each, ever
        self._thread: threading.Thread | None = None
        self._discovery_failures = 0     # failed listings in a row
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
        # threads up to the ceiling (+1 for discovery); the capacity gate decides how many poll at once
        tag = self.config.account_label()
        self._pool = ThreadPoolExecutor(max_workers=self.capacity.ceiling + 1, thread_name_prefix="poll",
                                        initializer=tag_thread, initargs=(tag,))
        self._started_wall = time.time()
        self._thread = threading.Thread(target=self._run, args=(tag,), name="scheduler", daemon=True)
        with self._cond:
            if self.config.discovery.enabled:
                heapq.heappush(self._heap, (max(start, self.discovery_due), "discovery", ""))
        self.replan(list(self.jobs.devices))
        self._thread.start()

    def replan(self, new_sns: list[str]) -> None:
        """Phases for the current device set; new devices are due now (their start-up poll)."""
        sns = list(self.jobs.devices)
        self.phases = spread_phases(sns, self.period)
        self.capacity.fleet(len(sns))
        now = time.monotonic()
        with self._cond:
            self._round = {sn for sn in self._round if sn in self.jobs.devices} | set(new_sns)
        kinds = ("latest", "settings") if self.config.settings.enabled else ("latest",)
        for sn in sorted(new_sns):
            for kind in kinds:  # settings: read at once, then hourly
                first = max(now, self._resume.pop(sn, now)) if kind == "latest" else now
                self._push(first, kind, sn)

    def stop(self) -> None:
        """Wake the scheduler so it ends; jobs not started yet are dropped."""
        with self._cond:
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout=5)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, tag: str = "") -> None:
        tag_thread(tag)
        pool = self._pool
        if pool is None:   # start() makes the pool before the thread
            return
        while not self.stop_event.is_set():
            self._publish_if_due()
            with self._cond:
                if not self._heap:
                    self._cond.wait(timeout=STATS_SECONDS)
                    continue
                due, kind, sn = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(timeout=min(wait, STATS_SECONDS))
                    continue
                heapq.heappop(self._heap)
            # discovery runs beside the polls; a poll waits for a slot of the capacity
            if kind != "discovery" and not self.capacity.acquire(self.stop_event):
                return
            try:
                pool.submit(self._job, kind, sn, due)
            except RuntimeError:  # the pool is shutting down
                return

    def _job(self, kind: str, sn: str, due: float) -> None:
        started, wall = time.monotonic(), time.time()
        if self.stop_event.is_set():
            return
        if kind == "discovery":
            listed = False
            try:
                listed = self.jobs.refresh_topology()
            except Exception:  # a bug must not end discovery
                log.exception("discovery crashed")
            finally:
                self.jobs.discovered.set()
            topology = self.jobs.topology
            pages = topology.plant_list_calls if topology is not None else 1
            again = listing.next_listing(self.config, wall, pages) - wall   # the shards take turns (live/listing.py)
            if topology is not None and not topology.complete:
                again = min(again, listing.CONTINUE_SECONDS)  # an unfinished walk continues soon
            self._discovery_failures = 0 if listed else self._discovery_failures + 1
            if not listed:
                again = min(again, self._retry_discovery_in())
            log.info("next discovery", extra={"fields": {"in_seconds": round(again), "shard": "/".join(
                map(str, self.config.shard))}})
            self._push(started + again, kind, sn, again=True)
            return
        device = self.jobs.devices.get(sn)
        if device is None:  # removed since it was scheduled: its schedule ends here
            with self._cond:
                self._queued.discard((kind, sn))
                self._round.discard(sn)
            self.capacity.release()
            return
        took = None
        if kind == "latest":  # the call's start, until its end is known: a call cut short by a stop counts
            self._last_call[sn] = time.time()
        try:
            if kind == "settings":
                self.jobs.poll_settings(device)
            else:
                self.jobs.poll_device(device)
            took = time.monotonic() - started
        except Exception:  # a bug must not end the device's schedule
            log.exception("poll crashed", extra={"fields": {"sn": sn, "kind": kind}})
        finally:
            self.capacity.release(took)
            if kind == "settings":
                self._push(started + self.config.settings.refresh_seconds, kind, sn, again=True)
            else:
                self._swept(sn)
                self._reschedule(sn, due, started, time.monotonic())

    def _retry_discovery_in(self) -> float:
        """A failed listing is tried again soon, not a refresh later: at start-up nothing would be
        polled until then. Refused credentials: when their pause ends (a rotated token file is
        read again then); any other failure: 5 minutes, doubling with each failure in a row."""
        pause = self.jobs.auth_pause()
        if pause is not None:
            return max(pause, 1.0)
        return listing.CONTINUE_SECONDS * 2 ** min(self._discovery_failures - 1, 10)

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

    def next_due(self, sn: str, due: float, started: float, ended: float | None = None) -> float:
        """Keep the device's phase on a grid of interval + margin, and never start a call
        sooner than interval + margin after the previous one ended (several intervals after
        rate-limit answers): the server sees a call somewhere between its start and its
        end, so spacing from the end keeps network jitter out of the API's interval."""
        interval = self.config.poll.interval_seconds
        phase = self.phases.get(sn, 0.0)
        slot = self.origin + phase
        periods = max(1, int((due - slot) // self.period) + 1)
        planned = slot + periods * self.period
        after = started if ended is None else ended
        return max(planned, after + interval * self.jobs.rate_limit_factor(sn) + self.config.poll.margin_seconds)

    def resume(self, waits: dict[str, float]) -> None:
        """Devices called shortly before a restart: their first call waits out the interval."""
        now = time.monotonic()
        self._resume = {sn: now + left for sn, left in waits.items()}

    def calls_of(self, sns) -> dict[str, float]:
        """When each of these devices' last call ended (Unix time), for the state file."""
        calls = dict(self._last_call)
        return {sn: calls[sn] for sn in sns if sn in calls}

    def _reschedule(self, sn: str, due: float, started: float, ended: float) -> None:
        self._last_call[sn] = time.time()
        lag = ended - started
        if lag > self.config.poll.interval_seconds:
            log.warning("poll slower than the interval", extra={"fields": {"sn": sn, "seconds": round(lag, 1)}})
        self._push(self.next_due(sn, due, started, ended), "latest", sn, again=True)
        self.jobs.polled()

    # -- keeping up ------------------------------------------------------------

    def _swept(self, sn: str) -> None:
        """Sweep k holds each device's k-th poll; its duration runs from the first of those
        polls to the last (about one interval when polling keeps up, more when it does not)."""
        now = time.monotonic()
        with self._cond:
            if sn in self._round:
                self._round.discard(sn)
                if self._round_first is None:
                    self._round_first = now
            else:  # polled again before the sweep ended: it belongs to the next one
                self._ahead.add(sn)
                if self._ahead_first is None:
                    self._ahead_first = now
            if self._round:
                return
            self.sweep_seconds = now - (self._round_first or now)
            self._round = set(self.jobs.devices) - self._ahead
            self._round_first, self._ahead, self._ahead_first = self._ahead_first, set(), None

    def overdue(self, now: float | None = None) -> int:
        """Devices whose poll is more than one interval late (waiting for a worker)."""
        now = time.monotonic() if now is None else now
        late = now - self.config.poll.interval_seconds
        with self._cond:
            return sum(1 for due, kind, _ in self._heap if kind == "latest" and due < late)

    def stats(self) -> PollStats:
        oldest, pending = self.store.poll_ages(self._started_wall) if self.store is not None else (None, 0)
        return PollStats(oldest_reading_age_seconds=None if oldest is None else max(time.time() - oldest, 0.0),
                         pending=pending,
                         concurrency=self.capacity.limit, in_flight=self.capacity.active,
                         latency_seconds=self.capacity.latency, sweep_seconds=self.sweep_seconds,
                         sweep_running_seconds=time.monotonic() - (self._round_first or time.monotonic()),
                         overdue=self.overdue(), behind=self.capacity.behind)

    def publish(self) -> None:
        if self.store is not None:
            self.store.poll_stats = self.stats()
        self._stats_at = time.monotonic()

    def _publish_if_due(self) -> None:
        if time.monotonic() - self._stats_at >= STATS_SECONDS:
            self.publish()
