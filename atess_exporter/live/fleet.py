"""The devices being polled: the configured list, or what discovery finds on the account.

Adopting a new device set gives new devices a snapshot at once (their series
appear with atess_device_up 0 until their first poll) and removes the gone
ones' series from the store. Discovery's topology is published to the store,
where the collectors read it.

The plant list is spent as if capped (10 calls a day on the platform): the last
topology is kept in the state file and reused after a restart until this
replica's next listing is due (live/listing.py).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import replace
from typing import Callable

from atess_exporter.account.discovery import (Discovery, SavedTopologyError, Topology, merged, select_devices,
                                              topology_from_dict, topology_to_dict)
from atess_exporter.api.client import AtessClient, AtessError, AuthError
from atess_exporter.catalog import Catalog
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.live import listing
from atess_exporter.live.authgate import AuthGate
from atess_exporter.live.store import Cache, DeviceSnapshot, Trouble

log = logging.getLogger(__name__)


class Fleet:
    def __init__(self, config: Config, catalog: Catalog, store: Cache):
        self.config = config
        self.catalog = catalog
        self.store = store
        self._lock = threading.Lock()
        self.saved_at: float | None = None   # wall time of the discovery the store's topology came from
        self._discovery: Discovery | None = None   # one walk, continued across refreshes
        self.devices: dict[str, DeviceConfig] = select_devices(config, None)
        self.answered_as: dict[str, str] = {}   # sn -> the type its latest data answered as (devicepoll)
        for device in self.devices.values():
            store.put(DeviceSnapshot(sn=device.sn, device_type=device.type, model=device.model or "unknown",
                                     info=device.info()))

    def read_account(self, client: AtessClient, auth: AuthGate, now: float) -> Topology | None:
        """List the account (or continue an unfinished walk) and publish its topology; None (and
        the topology kept) on failure. An unfinished walk's topology keeps what the last one had."""
        if self._discovery is None:
            families = list(self.config.discovery.families or self.catalog.families)
            self._discovery = Discovery(client, self.config, families)
        try:
            topology = merged(self._discovery.refresh(), self.store.topology)
        except AtessError as exc:
            if isinstance(exc, AuthError):
                auth.refused(client, str(exc))
            else:
                failing = self.store.discovery_failed
                self.store.discovery_failed = Trouble(failing.since if failing else now, str(exc))
            log.warning("discovery failed; keeping the known devices",
                        extra={"fields": {"outcome": exc.outcome, "error": str(exc)}})
            return None
        auth.succeeded()
        if self.store.count_dropped("discovery.max_devices", topology.dropped):
            log.warning("the account lists more devices, plants or dataloggers than discovery.max_devices; "
                        "the rest are not polled (atess_exporter_input_dropped_total); raise discovery.max_devices "
                        "if the account is really this large",
                        extra={"fields": {"dropped": topology.dropped, "max_devices": self.config.discovery.max_devices}})
        self.store.topology, self.saved_at = topology, now
        self.store.discovery_failed = None
        return topology

    def retype(self, sn: str, family: str) -> None:
        """Poll `sn` as `family` from now on, also after discovery refreshes."""
        with self._lock:
            self.answered_as[sn] = family
            if sn in self.devices:
                self.devices = {**self.devices, sn: replace(self.devices[sn], type=family)}

    def restore(self, saved: object, now: float) -> float | None:
        """Publish the topology a previous run saved until this replica's next listing
        (live/listing.py); its age judged against `now` (a time saved in the future is
        not trusted). Returns the seconds until the next discovery, or None
        (discover now). A wrong shape is dropped with one warning."""
        try:
            if not isinstance(saved, dict):
                raise SavedTopologyError("not an object")
            at = saved.get("saved_at")
            if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
                raise SavedTopologyError("no saved_at time")
            topology = topology_from_dict(saved.get("topology"), self.catalog.families)
        except SavedTopologyError as exc:
            log.warning("saved topology unusable; discovering anew", extra={"fields": {"error": str(exc)}})
            return None
        age, due = now - at, listing.next_listing(self.config, at)
        if age < 0 or now >= due:
            log.info("saved topology too old or from the future; discovering anew",
                     extra={"fields": {"age_seconds": round(age)}})
            return None
        self.store.topology, self.saved_at = topology, float(at)
        log.info("reusing the saved topology", extra={"fields": {
            "plants": len(topology.plants), "devices": len(topology.devices), "age_seconds": round(age),
            "next_discovery_in_seconds": round(due - now)}})
        return due - now

    def saved(self) -> dict:
        """The state file's section: the topology and when it was read (only a walk that reached
        the end: an unfinished one is continued by this run, or walked anew by the next)."""
        topology = self.store.topology
        if topology is None or self.saved_at is None or not topology.complete:
            return {}
        return {"topology": {"saved_at": self.saved_at, "topology": topology_to_dict(topology)}}

    def adopt(self, wanted: dict[str, DeviceConfig]) -> tuple[list[str], list[str]]:
        """Make `wanted` the device set: (added, removed) SNs."""
        with self._lock:
            wanted = {sn: replace(d, type=self.answered_as[sn]) if sn in self.answered_as else d
                      for sn, d in wanted.items()}
            added = [sn for sn in wanted if sn not in self.devices]
            removed = [sn for sn in self.devices if sn not in wanted]
            self.devices = dict(wanted)
        self.store.retain(wanted)
        for sn, device in wanted.items():
            self.store.update(sn, self._with_info(device))
        return added, removed

    def _with_info(self, device: DeviceConfig) -> Callable[[DeviceSnapshot | None], DeviceSnapshot | None]:
        """A store change giving the device its current info; None (no change) when it
        already has it, so /metrics need not re-render an unchanged device."""
        info = self.device_info(device)

        def change(prev: DeviceSnapshot | None) -> DeviceSnapshot | None:
            if prev is None:
                return DeviceSnapshot(sn=device.sn, device_type=device.type, model=device.model or "unknown", info=info)
            return None if prev.info == info else replace(prev, info=info)

        return change

    def device_info(self, device: DeviceConfig) -> dict[str, str]:
        info = device.info()
        topology = self.store.topology
        if topology is not None:
            for key, value in (("firmware", topology.firmware.get(device.sn)),
                               ("datalog_sn", topology.datalog_of.get(device.sn))):
                if value:
                    info[key] = value
        return info
