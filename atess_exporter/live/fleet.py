"""The devices being polled: the configured list, or what discovery finds on the account.

Adopting a new device set gives new devices a snapshot at once (their series
appear with atess_device_up 0 until their first poll) and removes the gone
ones' series from the store. Discovery's topology is published to the store,
where the collectors read it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Callable

from atess_exporter.account.discovery import Topology, discover, select_devices
from atess_exporter.api.client import AtessClient, AtessError, AuthError
from atess_exporter.catalog import Catalog
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.live.authgate import AuthGate
from atess_exporter.live.store import Cache, DeviceSnapshot

log = logging.getLogger(__name__)


class Fleet:
    def __init__(self, config: Config, catalog: Catalog, store: Cache):
        self.config = config
        self.catalog = catalog
        self.store = store
        self._lock = threading.Lock()
        self.devices: dict[str, DeviceConfig] = select_devices(config, None)
        for device in self.devices.values():
            store.put(DeviceSnapshot(sn=device.sn, device_type=device.type, model=device.model or "unknown",
                                     info=device.info()))

    def read_account(self, client: AtessClient, auth: AuthGate) -> Topology | None:
        """List the account and publish its topology; None (and the topology kept) on failure."""
        families = list(self.config.discovery.families or self.catalog.families)
        try:
            topology = discover(client, self.config, families)
        except AtessError as exc:
            if isinstance(exc, AuthError):
                auth.refused(client)
            log.warning("discovery failed; keeping the known devices",
                        extra={"fields": {"outcome": exc.outcome, "error": str(exc)}})
            return None
        auth.succeeded()
        if self.store.count_dropped("discovery.max_devices", topology.dropped):
            log.warning("the account lists more devices, plants or dataloggers than discovery.max_devices; "
                        "the rest are not polled (atess_exporter_input_dropped_total); raise discovery.max_devices "
                        "if the account is really this large",
                        extra={"fields": {"dropped": topology.dropped, "max_devices": self.config.discovery.max_devices}})
        self.store.topology = topology
        return topology

    def adopt(self, wanted: dict[str, DeviceConfig]) -> tuple[list[str], list[str]]:
        """Make `wanted` the device set: (added, removed) SNs."""
        with self._lock:
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
