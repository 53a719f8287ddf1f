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
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

from atess_exporter.live.store import Cache, DeviceSnapshot, Samples
from atess_exporter.catalog import Catalog
from atess_exporter.api.client import AtessClient, AtessError, AuthError, HttpError, RateLimitError, TransportError
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.readings.counterguard import CounterGuard
from atess_exporter.catalog.models import rated_power_watts
from atess_exporter.account.discovery import Discovery, Topology, merged, select_devices
from atess_exporter.readings.settings import Settings, split_settings
from atess_exporter.readings.payload import Reading, looks_like_watts, parse_time, read_payload
from atess_exporter.live.state import load_state, save_state

log = logging.getLogger(__name__)


STATE_SAVE_SECONDS = 60.0
CONTINUE_SECONDS = 300.0  # an unfinished discovery continues this soon (the API's 5-minute limit per list)


class AuthGate:
    """One refused credential pauses every device's polls, so it cannot hammer the API.

    The pause starts at `base` seconds and doubles with each refusal, up to an
    hour; the first poll after the pause is the probe.
    """

    MAX_PAUSE = 3600.0

    def __init__(self, base: float):
        self.base = base
        self.ok: bool | None = None   # None until the API has answered once
        self._failures = 0
        self._until = 0.0
        self._lock = threading.Lock()

    def blocked(self, now: float) -> bool:
        with self._lock:
            return now < self._until

    def failed(self, now: float) -> float:
        with self._lock:
            self.ok = False
            if now < self._until:  # another call of the same episode: no extra doubling
                return self._until - now
            pause = min(self.base * 2 ** self._failures, max(self.MAX_PAUSE, self.base))
            self._failures += 1
            self._until = now + pause
            return pause

    def succeeded(self) -> None:
        with self._lock:
            self.ok, self._failures, self._until = True, 0, 0.0


def spread_phases(sns: list[str], interval: float) -> dict[str, float]:
    """Evenly spaced offsets in [0, interval) for the given devices."""
    n = len(sns)
    return {sn: interval * i / n for i, sn in enumerate(sorted(sns))}


class Poller:
    def __init__(self, config: Config, client: AtessClient, cache: Cache, catalog: Catalog,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None):
        self.config = config
        self.client = client
        self.cache = cache
        self.catalog = catalog
        self.clock = clock
        self.rng = rng or random.Random()
        self.topology: Topology | None = None
        self._discovery: Discovery | None = None
        self.settings: dict[str, Settings] = {}
        self._devices_lock = threading.Lock()
        self.devices: dict[str, DeviceConfig] = select_devices(config, None)
        self.auth = AuthGate(config.poll.auth_backoff_seconds or config.poll.interval_seconds)
        self.guards: dict[str, CounterGuard] = {}
        self._rate_limited: dict[str, int] = {}  # consecutive rate-limit answers per device
        self._watts_warned: set[str] = set()
        self._stop = threading.Event()
        self.discovered = threading.Event()  # set once the first discovery has run (or failed)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, str, str]] = []
        self._queued: set[tuple[str, str]] = set()  # (kind, sn) in the heap: one entry each, ever
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._state_lock = threading.Lock()
        self._state_saved = time.monotonic()
        self._phases: dict[str, float] = {}
        self._origin = time.monotonic()
        self._restore_state()
        for device in self.devices.values():
            self.cache.put(DeviceSnapshot(sn=device.sn, device_type=device.type, model=device.model or "unknown",
                                          info=device.info()))

    # -- one poll ------------------------------------------------------------

    def poll_device(self, device: DeviceConfig) -> DeviceSnapshot:
        """One latest-data poll for one device; the cache gets the result either way."""
        now = self.clock()
        previous = self.cache.get(device.sn) or DeviceSnapshot(device.sn, device.type, device.model or "unknown")
        if self.auth.blocked(now):
            return self._write(device.sn, lambda current: (current or previous).failed(
                now, "not polled: the API refused the credentials; backing off"))
        path = self.config.endpoint(device.type, "latest")
        try:
            payload = self._fetch(path, device.sn)
        except AtessError as exc:
            self._failed(device.sn, exc, now)
            error = str(exc)
            return self._write(device.sn, lambda current: (current or previous).failed(now, error))
        else:
            self.auth.succeeded()
            self._rate_limited.pop(device.sn, None)
            model = device.model or previous.model
            reading = read_payload(self.catalog.families[device.type], payload, model)
            self._report(device, model, reading)
            guard = self._guard_for(device.sn, model)
            glitches_before = guard.glitches
            samples = self._guard_counters(guard, reading.samples)
            snapshot = DeviceSnapshot(
                sn=device.sn,
                device_type=device.type,
                model=model,
                up=True,
                last_attempt=now,
                last_success=now,
                data_time=parse_time(payload.get("time"), self.config.device_timezone(device), now),
                samples=samples,
                glitches=previous.glitches + guard.glitches - glitches_before,
                unusable_fields=reading.unusable,
                implausible_fields=len(reading.implausible),
                lost=reading.lost if reading.lost is not None else self._listed_lost(device.sn),
                changed_at=previous.changed_at if previous.samples == samples and previous.changed_at else now,
            )
            if guard.glitches > glitches_before:
                log.info("lifetime total went backwards; kept the last good value",
                         extra={"fields": {"sn": device.sn, "glitches": guard.glitches - glitches_before}})
            log.debug("polled", extra={"fields": {"sn": device.sn, "series": sum(map(len, snapshot.samples.values()))}})
        # info may have changed (discovery) while we polled: take the current one
        return self._write(device.sn, lambda current: replace(snapshot, info=current.info) if current else snapshot)

    def _report(self, device: DeviceConfig, model: str, reading: Reading) -> None:
        """One debug line per withheld value; one warning per device when its powers look like W."""
        for bad in reading.implausible:
            log.debug("implausible value withheld", extra={"fields": {
                "sn": device.sn, "field": bad.field, "value": bad.value, "allowed": bad.allowed}})
        if looks_like_watts(reading) and device.sn not in self._watts_warned:
            self._watts_warned.add(device.sn)
            fields = ", ".join(f"{f}: {{unit: W}}" for f in reading.kilo_suspects[:4])
            log.warning("most power fields look 1000x too large for the model: the cloud seems to send W, not kW",
                        extra={"fields": {"sn": device.sn, "model": model, "fields": ",".join(reading.kilo_suspects),
                                          "fix": f"catalog_overrides: {{{device.type}: {{fields: {{{fields}}}}}}}"}})

    def _listed_lost(self, sn: str) -> bool | None:
        """The device list's own `lost` flag (documented on the BCU list), for payloads without one."""
        topology = self.topology
        return None if topology is None else topology.lost.get(sn)

    def _write(self, sn: str, change) -> DeviceSnapshot:
        """Store a poll's result unless discovery removed the device meanwhile."""
        stored = self.cache.update(sn, lambda current: change(current) if sn in self.devices else None)
        return stored if stored is not None else change(None)

    def _fetch(self, path: str, sn: str) -> dict:
        """The latest data, retrying what a retry can fix: no answer, or a 5xx."""
        retries = self.config.poll.retries
        for attempt in range(retries + 1):
            try:
                return self.client.latest(path, sn)
            except (TransportError, HttpError) as exc:
                retryable = isinstance(exc, TransportError) or exc.status >= 500
                if attempt == retries or not retryable:
                    raise
                base = self.config.poll.retry_backoff_seconds * 2 ** attempt
                delay = base / 2 + self.rng.uniform(0, base / 2)
                log.info("retrying", extra={"fields": {"sn": sn, "outcome": exc.outcome, "attempt": attempt + 1,
                                                       "in_seconds": round(delay, 2)}})
                if self._stop.wait(delay):
                    raise
        raise AssertionError("unreachable")

    def _failed(self, sn: str, exc: AtessError, now: float) -> None:
        fields = {"sn": sn, "outcome": exc.outcome, "error": str(exc)}
        if isinstance(exc, AuthError):
            pause = self.auth.failed(now)
            log.error("API refused the credentials; pausing all polls",
                      extra={"fields": {**fields, "pause_seconds": round(pause)}})
            return
        if isinstance(exc, RateLimitError):
            self._rate_limited[sn] = self._rate_limited.get(sn, 0) + 1
            fields["next_poll_in_intervals"] = self.rate_limit_factor(sn)
        log.warning("poll failed", extra={"fields": fields})

    def rate_limit_factor(self, sn: str) -> int:
        """Intervals to wait before the next call: doubles per rate-limit answer, up to 8."""
        return 2 ** min(self._rate_limited.get(sn, 0), 3)

    def _guard_for(self, sn: str, model: str) -> CounterGuard:
        guard = self.guards.setdefault(sn, CounterGuard(self.config.poll.counter_reset_confirm_polls))
        guard.rated_watts = rated_power_watts(model)  # the model may be known only since discovery
        return guard

    def _guard_counters(self, guard: CounterGuard, samples: Samples) -> Samples:
        """Counters as the guard believes them: impossible readings held back, "no
        reading" (0, missing) keeps the last good value."""
        now = self.clock()
        counters = {name for name in samples if self.catalog.describe_metric(name).type == "counter"}
        live = guard.live(value for name in counters for _, value in samples[name])
        grouped: dict[str, list] = {}
        for name, rows in samples.items():
            if name not in counters:
                grouped[name] = list(rows)
                continue
            kept = grouped.setdefault(name, [])
            for labels, value in rows:
                exposed = guard.check((name, labels), value, at=now, live=live)
                if exposed is not None:
                    kept.append((labels, exposed))
        present = {(name, labels) for name, rows in samples.items() for labels, _ in rows}
        for (name, labels), value in guard.held(present):
            m = self.catalog.metrics.get(name)  # a state file from an older catalog may name others
            if m is not None and m.type == "counter" and len(labels) == len(m.labels):
                grouped.setdefault(name, []).append((labels, value))
        return {name: tuple(rows) for name, rows in grouped.items() if rows}

    def poll_all_once(self) -> list[DeviceSnapshot]:
        with ThreadPoolExecutor(max_workers=self.config.poll.concurrency, thread_name_prefix="poll") as pool:
            snapshots = list(pool.map(self.poll_device, self.devices.values()))
        self.save_state()
        return snapshots

    def run_once(self) -> list[DeviceSnapshot]:
        """Everything a scheduled run does, once: discovery, latest data, settings."""
        if self.config.discovery.enabled:
            self.refresh_topology()
        snapshots = self.poll_all_once()
        if self.config.settings.enabled:
            with ThreadPoolExecutor(max_workers=self.config.poll.concurrency, thread_name_prefix="poll") as pool:
                list(pool.map(self.poll_settings, list(self.devices.values())))
        return snapshots

    # -- state across restarts ------------------------------------------------

    def _restore_state(self) -> None:
        counters = load_state(self.config.state_file).get("counters", {})
        confirm = self.config.poll.counter_reset_confirm_polls
        for sn, rows in counters.items():  # discovered devices are not known yet: keep all
            guard = self.guards[sn] = CounterGuard(confirm)
            guard.load(rows)

    def save_state(self) -> None:
        with self._state_lock:
            counters = {sn: guard.dump() for sn, guard in list(self.guards.items())}
            save_state(self.config.state_file, {"counters": counters})
            self._state_saved = time.monotonic()

    # -- the account: discovery and settings --------------------------------

    def refresh_topology(self) -> bool:
        """List the account and adopt its devices; on failure keep the devices we have."""
        if self._discovery is None:
            families = list(self.config.discovery.families or self.catalog.families)
            self._discovery = Discovery(self.client, self.config, families)
        try:
            topology = merged(self._discovery.refresh(), self.topology)
        except AtessError as exc:
            if isinstance(exc, AuthError):
                self.auth.failed(self.clock())
            log.warning("discovery failed; keeping the known devices",
                        extra={"fields": {"outcome": exc.outcome, "error": str(exc)}})
            return False
        self.auth.succeeded()
        self.topology = topology
        added, removed = self.apply_devices(select_devices(self.config, topology))
        log.info("discovery", extra={"fields": {"plants": len(topology.plants), "devices": len(self.devices),
                                                "added": len(added), "removed": len(removed),
                                                "complete": topology.complete}})
        return True

    def apply_devices(self, wanted: dict[str, DeviceConfig]) -> tuple[list[str], list[str]]:
        """Adopt a new device set: new devices get a snapshot (and a poll soon), gone ones
        lose their series."""
        with self._devices_lock:
            added = [sn for sn in wanted if sn not in self.devices]
            removed = [sn for sn in self.devices if sn not in wanted]
            self.devices = dict(wanted)
        self.cache.retain(wanted)
        for sn in removed:
            self.guards.pop(sn, None)
            self.settings.pop(sn, None)
            self._rate_limited.pop(sn, None)
        for sn, device in wanted.items():
            self.cache.update(sn, self._with_info(device))
        if self._thread is not None:
            self._replan(added)
        return added, removed

    def _with_info(self, device: DeviceConfig):
        """A cache change giving the device its current info; None (no change) when it
        already has it, so /metrics need not re-render an unchanged device."""
        info = self.device_info(device)

        def change(prev: DeviceSnapshot | None) -> DeviceSnapshot | None:
            if prev is None:
                return DeviceSnapshot(sn=device.sn, device_type=device.type, model=device.model or "unknown", info=info)
            return None if prev.info == info else replace(prev, info=info)

        return change

    def device_info(self, device: DeviceConfig) -> dict[str, str]:
        info = device.info()
        if self.topology is not None:
            for key, value in (("firmware", self.topology.firmware.get(device.sn)),
                               ("datalog_sn", self.topology.datalog_of.get(device.sn))):
                if value:
                    info[key] = value
        return info

    def poll_settings(self, device: DeviceConfig) -> None:
        """Read-only: GET the device's settings. Nothing here ever writes to the API."""
        if self.auth.blocked(self.clock()):
            return
        try:
            data = self.client.get(self.config.endpoint(device.type, "settings"), {"deviceSn": device.sn}, expect=dict)
        except AtessError as exc:
            if isinstance(exc, AuthError):
                self.auth.failed(self.clock())
            log.warning("settings read failed", extra={"fields": {"sn": device.sn, "outcome": exc.outcome, "error": str(exc)}})
            return
        self.settings[device.sn] = split_settings(data)

    # -- the background schedule -------------------------------------------
    # Heap entries: (due, kind, sn); kinds "latest", "settings", "discovery".

    def start(self) -> None:
        start = time.monotonic()
        self._origin = start
        self._pool = ThreadPoolExecutor(max_workers=self.config.poll.concurrency, thread_name_prefix="poll")
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        with self._cond:
            if self.config.discovery.enabled:
                heapq.heappush(self._heap, (start, "discovery", ""))
        self._replan(list(self.devices))
        self._thread.start()

    def _replan(self, new_sns: list[str]) -> None:
        """Phases for the current device set; new devices are due now (their start-up poll)."""
        sns = list(self.devices)
        self._phases = spread_phases(sns, self.config.poll.interval_seconds)
        now = time.monotonic()
        kinds = ("latest", "settings") if self.config.settings.enabled else ("latest",)
        for sn in sorted(new_sns):
            for kind in kinds:  # settings: read at once, then hourly
                self._push(now, kind, sn)

    def stop(self) -> None:
        self._stop.set()
        close = getattr(self.client, "close", None)
        if close is not None:  # ends the API calls in flight, so exit does not wait for a slow API
            close()
        with self._cond:
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout=5)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._thread:
            self.save_state()

    def _run(self) -> None:
        while not self._stop.is_set():
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
                self._pool.submit(self._job, kind, sn, due)
            except RuntimeError:  # the pool is shutting down
                return

    def _job(self, kind: str, sn: str, due: float) -> None:
        started = time.monotonic()
        if self._stop.is_set():
            return
        if kind == "discovery":
            try:
                self.refresh_topology()
            except Exception:  # a bug must not end discovery
                log.exception("discovery crashed")
            finally:
                self.discovered.set()
            again = self.config.discovery.refresh_seconds
            if self.topology is not None and not self.topology.complete:
                again = min(again, CONTINUE_SECONDS)
            self._push(started + again, kind, sn, again=True)
            return
        device = self.devices.get(sn)
        if device is None:  # removed since it was scheduled: its schedule ends here
            with self._cond:
                self._queued.discard((kind, sn))
            return
        try:
            if kind == "settings":
                self.poll_settings(device)
            else:
                self.poll_device(device)
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
        if self._stop.is_set():
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
        phase = self._phases.get(sn, 0.0)
        slot = self._origin + phase
        periods = max(1, int((due - slot) // interval) + 1)
        planned = slot + periods * interval
        return max(planned, started + interval * self.rate_limit_factor(sn))

    def _reschedule(self, sn: str, due: float, started: float) -> None:
        lag = time.monotonic() - started
        if lag > self.config.poll.interval_seconds:
            log.warning("poll slower than the interval", extra={"fields": {"sn": sn, "seconds": round(lag, 1)}})
        self._push(self.next_due(sn, due, started), "latest", sn, again=True)
        if time.monotonic() - self._state_saved > STATE_SAVE_SECONDS:
            self.save_state()
