"""The devices being polled: the configured list, or what discovery finds on the account.

Adopting a new device set gives new devices a snapshot at once (their series
appear with atess_device_up 0 until their first poll) and removes the gone
ones' series from the store. Discovery's topology is published to the store,
where the collectors read it.

The plant list is spent as if capped (10 calls a day on the platform, a call a
page): the last topology, with the pages its plant list took, is kept in the
state file and reused after a restart until this replica's next listing is due
(live/listing.py).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import replace
from typing import Callable

from atess_exporter.account.discovery import (Discovery, SavedTopologyError, Topology, Walk, merged,
                                              select_devices, topology_from_dict, topology_to_dict)
from atess_exporter.account.savedwalk import walk_from_dict, walk_to_dict
from atess_exporter.api.client import AtessClient, AtessError, AuthError
from atess_exporter.catalog import Catalog
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.live import listing
from atess_exporter.live.authgate import AuthGate
from atess_exporter.live.store import AccountStore, DeviceSnapshot, Trouble

log = logging.getLogger(__name__)


class Fleet:
    def __init__(self, config: Config, catalog: Catalog, store: AccountStore):
        self.config = config
        self.catalog = catalog
        self.store = store
        self._lock = threading.Lock()
        self.saved_at: float | None = None   # wall time of the discovery the store's topology came from
        self._discovery: Discovery | None = None   # one walk, continued across refreshes
        self._resume: Walk | None = None           # an unfinished walk the last run saved, for the first refresh
        self._unfinished: dict | None = None       # the unfinished walk as saved (set after each refresh)
        self.devices: dict[str, DeviceConfig] = {}
        self.answered_as: dict[str, str] = {}   # sn -> the type its latest data answered as (devicepoll)
        self._elsewhere: dict[str, str] = {}    # sn -> the account that holds it (not polled here)
        # the configured devices, as any adoption: one another account already holds stays there
        self.adopt(select_devices(config, None))

    def read_account(self, client: AtessClient, auth: AuthGate, now: float) -> Topology | None:
        """List the account (or continue an unfinished walk) and publish its topology; None (and
        the topology kept) on failure. An unfinished walk's topology keeps what the last one had."""
        if self._discovery is None:
            self._discovery = Discovery(client, self.config, self._families(), self._resume)
            self._resume = None
        try:
            topology = merged(self._discovery.refresh(), self.store.topology)
        except AtessError as exc:
            self._unfinished = self._walk_state()
            if isinstance(exc, AuthError):
                auth.refused(client, str(exc))
            else:
                failing = self.store.discovery_failed
                self.store.discovery_failed = Trouble(failing.since if failing else now, str(exc))
            log.warning("discovery failed; keeping the known devices",
                        extra={"fields": {"outcome": exc.outcome, "error": str(exc)}})
            return None
        auth.succeeded()
        self._unfinished = self._walk_state()
        if self.store.count_dropped("discovery.max_devices", topology.dropped):
            log.warning("the account lists more devices, plants or dataloggers than discovery.max_devices; "
                        "the rest are not polled (atess_exporter_input_dropped_total); raise discovery.max_devices "
                        "if the account is really this large",
                        extra={"fields": {"dropped": topology.dropped, "max_devices": self.config.discovery.max_devices}})
        self.store.topology, self.saved_at = topology, now
        self.store.discovery_failed = None
        return topology

    def _families(self) -> list[str]:
        return list(self.config.discovery.families or self.catalog.families)

    def _walk_state(self) -> dict | None:
        carry = self._discovery.carry if self._discovery is not None else None
        return None if carry is None else walk_to_dict(carry, self._families())

    def retype(self, sn: str, family: str) -> None:
        """Poll `sn` as `family` from now on, also after discovery refreshes."""
        with self._lock:
            self.answered_as[sn] = family
            if sn in self.devices:
                self.devices = {**self.devices, sn: replace(self.devices[sn], type=family)}

    def restore(self, saved: object, now: float) -> float | None:
        """Publish the topology a previous run saved until this replica's next listing
        (live/listing.py); its age judged against `now` (a time saved in the future is
        not trusted). An unfinished walk's topology is published too, and the walk
        continued within CONTINUE_SECONDS of its last refresh (from the plant list when
        the walk saved with it is unusable). Returns the seconds until the next
        discovery, or None (discover now, nothing published). A wrong shape is dropped
        with one warning."""
        try:
            if not isinstance(saved, dict):
                raise SavedTopologyError("not an object")
            at = saved.get("saved_at")
            if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
                raise SavedTopologyError("no saved_at time")
            complete = saved.get("complete", True)
            if not isinstance(complete, bool):
                raise SavedTopologyError("complete is not true or false")
            topology = topology_from_dict(saved.get("topology"), self.catalog.families)
        except SavedTopologyError as exc:
            log.warning("saved topology unusable; discovering anew", extra={"fields": {"error": str(exc)}})
            return None
        age = now - at
        if complete:
            due = listing.next_listing(self.config, at, topology.plant_list_calls)
            usable = 0 <= age and now < due
        else:   # an unfinished walk continues soon after its last refresh (now, if that has passed)
            due = max(at + listing.CONTINUE_SECONDS, now)
            usable = 0 <= age < listing.period(self.config, topology.plant_list_calls)
        if not usable:
            log.info("saved topology too old or from the future; discovering anew",
                     extra={"fields": {"age_seconds": round(age)}})
            return None
        if not complete:
            topology = replace(topology, complete=False, unread_lists=self._resume_walk(saved.get("walk")))
        self.store.topology, self.saved_at = topology, float(at)
        log.info("reusing the saved topology", extra={"fields": {
            "plants": len(topology.plants), "devices": len(topology.devices), "age_seconds": round(age),
            "complete": complete, "next_discovery_in_seconds": round(due - now)}})
        return due - now

    def _resume_walk(self, saved: object) -> int:
        """Take up the unfinished walk a previous run saved; the number of its lists left."""
        if saved is None:   # the walk was lost (refused credentials): the next refresh walks anew
            return 0
        try:
            self._resume = walk_from_dict(saved, self._families(), self.config.discovery.max_devices,
                                          self.catalog.families)
        except SavedTopologyError as exc:
            log.warning("saved discovery walk unusable; the next refresh walks the account anew (the saved "
                        "devices are kept until it ends)", extra={"fields": {"error": str(exc)}})
            return 0
        self._unfinished = walk_to_dict(self._resume, self._families())
        return len(self._resume.todo)

    def saved(self) -> dict:
        """The state file's section: the topology and when it was read; for a walk that has not
        reached the end, also the walk (account/savedwalk.py), so the next run continues it."""
        topology = self.store.topology
        if topology is None or self.saved_at is None:
            return {}
        kept: dict = {"saved_at": self.saved_at, "topology": topology_to_dict(topology)}
        if not topology.complete:
            kept.update(complete=False, walk=self._unfinished)
        return {"topology": kept}

    def adopt(self, wanted: dict[str, DeviceConfig]) -> tuple[list[str], list[str]]:
        """Make `wanted` the device set: (added, removed) SNs. A device another account
        already holds stays that account's: polling it twice would break the API's limit."""
        elsewhere = self.store.claim(wanted)
        if elsewhere:
            wanted = {sn: d for sn, d in wanted.items() if sn not in elsewhere}
            if elsewhere != self._elsewhere:
                log.warning("devices listed by this account are already polled under another account; "
                            "they stay there", extra={"fields": {
                                "devices": len(elsewhere), "sn": ",".join(sorted(elsewhere)[:5]),
                                "other_account": ",".join(sorted(set(elsewhere.values())))}})
        self._elsewhere = elsewhere
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
        if self.config.account_label():
            info["account"] = self.config.account_label()
        topology = self.store.topology
        if topology is not None:
            for key, value in (("firmware", topology.firmware.get(device.sn)),
                               ("datalog_sn", topology.datalog_of.get(device.sn))):
                if value:
                    info[key] = value
        return info
