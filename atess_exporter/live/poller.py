"""The live side's coordinator: the fleet's devices polled on their schedule into the store.

Each job has its module: the schedule (live/schedule.py), one device's poll
(live/devicepoll.py), the counter guards and their saved state
(live/counters.py), adopting what discovery finds (live/fleet.py) and the
auth gate (live/authgate.py). The poller wires them and is what the entry
points drive (start/stop, or run_once for --once); the store (live/store.py)
is what every reader reads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable

from atess_exporter.account.discovery import Topology, select_devices
from atess_exporter.api.client import AtessClient
from atess_exporter.catalog import Catalog
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.live import lastcalls, listing
from atess_exporter.live.authgate import AuthGate
from atess_exporter.live.capacity import each_sized
from atess_exporter.live.counters import CounterState
from atess_exporter.live.devicepoll import DevicePoll
from atess_exporter.live.fleet import Fleet
from atess_exporter.live.readingtimes import ReadingTimes, remembered_offset
from atess_exporter.live.schedule import Scheduler
from atess_exporter.live.store import Cache, DeviceSnapshot
from atess_exporter.outside.logs import tag_thread
from atess_exporter.readings.counterguard import CounterGuard

log = logging.getLogger(__name__)


class Poller:
    def __init__(self, config: Config, client: AtessClient, cache: Cache, catalog: Catalog,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None):
        self.config = config
        self.client = client
        self.cache = cache.account(config.account_name)   # this account's part of the store
        self.catalog = catalog
        self.clock = clock
        self._stop = threading.Event()
        self.discovered = threading.Event()  # set once the first discovery has run (or failed)
        self.auth = AuthGate(config.poll.auth_backoff_seconds or config.poll.interval_seconds, self.cache)
        self.counters = CounterState(config.poll.counter_reset_confirm_polls, config.state_file,
                                     config.state_file_max_bytes)
        self.fleet = Fleet(config, catalog, self.cache)
        self.times = ReadingTimes(config, self.cache, self.fleet.devices,
                                  remembered_offset(self.counters.loaded.get("clock"), config.state_file))
        self.counters.sections += [self.fleet.saved, self.times.saved]
        self.device_poll = DevicePoll(config, catalog, self.cache, self.auth, self.counters,
                                      lambda sn: sn in self.fleet.devices, self._stop, rng or random.Random(), self.times,
                                      retyped=self.fleet.retype)
        self.scheduler = Scheduler(config, self, self._stop, self.cache)
        # each device's last call survives a restart beside the counters (live/lastcalls.py)
        wait = config.poll.interval_seconds + config.poll.margin_seconds
        self.scheduler.resume(lastcalls.load(self.counters.loaded, time.time(), wait, config.state_file))
        self.counters.sections.append(
            lambda: {lastcalls.SECTION: lastcalls.dump(self.scheduler.calls_of(self.devices))})
        self._discovery_due = 0.0   # monotonic
        self.plant_pages = listing.PlantPages(config)
        if config.discovery.enabled:
            self._restore_topology()

    def _restore_topology(self) -> None:
        """A restart before this replica's next listing lists nothing: the saved topology serves."""
        listing.warn_over_budget(self.config)
        if "topology" not in self.counters.loaded:
            return
        wait = self.fleet.restore(self.counters.loaded["topology"], self.clock())
        if wait is None:
            return
        self._discovery_due = self.scheduler.discovery_due = time.monotonic() + wait
        self._measured(self.topology)
        self.apply_devices(select_devices(self.config, self.topology))
        self.discovered.set()

    @property
    def server_clock(self):
        return self.times.clock

    @property
    def devices(self) -> dict[str, DeviceConfig]:
        return self.fleet.devices

    @property
    def guards(self) -> dict[str, CounterGuard]:
        return self.counters.guards

    @property
    def topology(self) -> Topology | None:
        return self.cache.topology

    # -- the jobs ----------------------------------------------------------

    def poll_device(self, device: DeviceConfig) -> DeviceSnapshot:
        return self.device_poll.latest(self.client, device, self.clock)

    def poll_settings(self, device: DeviceConfig) -> None:
        self.device_poll.settings(self.client, device, self.clock)

    def rate_limit_factor(self, sn: str) -> int:
        return self.device_poll.rate_limit_factor(sn)

    def refresh_topology(self) -> bool:
        """List the account and adopt its devices; on failure keep the devices we have."""
        topology = self.fleet.read_account(self.client, self.auth, self.clock())
        if topology is None:
            return False
        added, removed = self.apply_devices(select_devices(self.config, topology))
        log.info("discovery", extra={"fields": {"plants": len(topology.plants), "devices": len(self.devices),
                                                "added": len(added), "removed": len(removed),
                                                "complete": topology.complete}})
        self.save_state()  # kept at once: a crash loop lists nothing again
        self._measured(topology)
        return True

    def _measured(self, topology: Topology | None) -> None:
        """A whole walk's plant-list pages set the listing period (live/listing.py); a part's do not."""
        if topology is not None and topology.complete:
            self.plant_pages.measured(topology.plant_list_calls, len(topology.plants))

    def auth_pause(self) -> float | None:
        return self.auth.pause()

    def apply_devices(self, wanted: dict[str, DeviceConfig]) -> tuple[list[str], list[str]]:
        """Adopt a new device set: new devices get a snapshot (and a poll soon), gone ones
        lose their series."""
        added, removed = self.fleet.adopt(wanted)
        self.times.adopt(added, removed)
        for sn in removed:
            self.counters.forget(sn)
            self.device_poll.forget(sn)
        if self.scheduler.running:
            self.scheduler.replan(added)
        return added, removed

    def polled(self) -> None:
        """After each scheduled poll: the counter state is saved now and then."""
        self.counters.save_if_due()

    def save_state(self) -> None:
        self.counters.save()

    # -- once (--once, tests) ----------------------------------------------

    def poll_all_once(self) -> list[DeviceSnapshot]:
        """Every device once, as many at once as the live schedule would (live/capacity.py)."""
        snapshots = each_sized(self.scheduler.capacity, self.poll_device, list(self.devices.values()), self._stop,
                               self.config.account_label())
        self.save_state()
        return snapshots

    def run_once(self) -> list[DeviceSnapshot]:
        """Everything a scheduled run does, once: discovery, latest data, settings."""
        tag_thread(self.config.account_label())
        if self.config.discovery.enabled and time.monotonic() >= self._discovery_due:
            self.refresh_topology()
        snapshots = self.poll_all_once()
        if self.config.settings.enabled:
            each_sized(self.scheduler.capacity, self.poll_settings, list(self.devices.values()), self._stop,
                       self.config.account_label())
        return snapshots

    # -- in the background ---------------------------------------------------

    def start(self) -> None:
        self.scheduler.start()

    def next_due(self, sn: str, due: float, started: float, ended: float | None = None) -> float:
        return self.scheduler.next_due(sn, due, started, ended)

    def stop(self) -> None:
        self._stop.set()
        close = getattr(self.client, "close", None)
        if close is not None:  # ends the API calls in flight, so exit does not wait for a slow API
            close()
        self.scheduler.stop()
        if self.scheduler.running:
            self.save_state()
