"""The account's topology: plants, their dataloggers and the devices on each.

Walks plants -> dataloggers (per plant) -> devices (per datalogger and device
family) on every discovery refresh, never per poll. Device lists are keyed by
the datalogger SN (`dataLogSn`) and answer a bare JSON array, as the vendor
documents for the BCU list; the plant and datalogger lists are undocumented,
so both shapes are accepted everywhere: a bare array, or a page object
`{datas, total, pageNo, pageSize, offset}`.

A list never floods the API: the paged-list reader (api/paging.py) ends it on
its rules, and fails it past `discovery.max_pages` pages; one refresh makes at
most `discovery.max_calls` calls. A list that fails fails the refresh, so a
half-read account never removes devices. Every value taken from a
row is checked here, where it enters: SNs follow the config's rules, label
texts are cut to a sane length, a non-finite capacity is no capacity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from atess_exporter.api.client import AtessClient
from atess_exporter.api.paging import CallBudget, bounded_number, pages
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.catalog.endpoints import LIST_KEY
from atess_exporter.outside.text import label_text, valid_sn
from atess_exporter.config.shard import in_shard
from atess_exporter.outside.zones import parse_zone, zone_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plant:
    plant_id: str
    name: str = ""
    capacity_kw: float | None = None
    timezone: str = ""


@dataclass(frozen=True)
class Datalog:
    """A datalogger (the devices' gateway to the cloud) as its plant's list gives it."""

    sn: str
    plant_id: str
    online: bool | None = None   # None: the list does not say
    model: str = ""


@dataclass(frozen=True)
class Topology:
    plants: tuple[Plant, ...] = ()
    datalogs: tuple[Datalog, ...] = ()
    devices: tuple[DeviceConfig, ...] = ()
    firmware: dict[str, str] = field(default_factory=dict)   # sn -> firmware version
    datalog_of: dict[str, str] = field(default_factory=dict)  # sn -> datalogger SN
    lost: dict[str, bool] = field(default_factory=dict)      # sn -> the list's `lost` flag
    skipped: int = 0                                         # rows refused (bad SN, no SN)
    dropped: int = 0                                         # rows over discovery.max_devices, not adopted
    rated_watts: dict[str, float] = field(default_factory=dict)  # sn -> the list's normalPower/nominalPower (W)


def plant_zone(row: dict) -> str:
    """The plant's zone as one spelling ("UTC+08:00" or an IANA name), whichever of the
    platform's forms the row uses (8, "GMT+8", timezoneText...); "" when none parses.
    It is the plant's local day (its ...Today counters); it is not the zone the
    servers write `time` in (readings/clock.py measures that)."""
    for name in ("timezone", "timeZone", "timezoneText", "atsTimezoneStr"):
        zone = parse_zone(row.get(name))
        if zone is not None:
            return zone_name(zone)
    return ""


def pick(row: dict, *names: str, default: Any = "") -> Any:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return value
    return default


SKIPPED = None   # what the walk yields for a row without a usable serial number


def _plant_kw(row: dict) -> float | None:
    """A plant's capacity: `capacity` (kW) as the ATESS lists are assumed to send it, else the
    platform's `nominalPower` (W)."""
    kw = bounded_number(pick(row, "capacity", "installedCapacity", default=None))
    if kw is None:
        watts = bounded_number(pick(row, "nominalPower", default=None))
        kw = watts / 1000.0 if watts else None
    return kw


@dataclass(frozen=True)
class Listed:
    """One find of the account walk: a plant, a datalogger on it, or a device on that datalogger."""

    plant: Plant
    datalog: Datalog | None = None
    device: DeviceConfig | None = None
    row: dict = field(default_factory=dict)   # the device's list row (firmware, lost)


Listing = Callable[[str, dict[str, Any]], Iterable[dict]]


def walk(listing: Listing, families: list[str], *, wanted: Callable[[str], bool] = lambda family: True,
         max_plants: int | None = None, max_datalogs: int | None = None) -> Iterator[Listed | None]:
    """The account's plants -> dataloggers -> devices, as `listing(kind, params)` reads
    each list: the one walk discovery and the probe take. A plant listed twice is
    walked once, a device listed twice found once; `wanted(family)` skips a family's
    lists; max_plants/max_datalogs bound the walk (the probe's)."""
    plant_ids: set[str] = set()
    datalogs = 0
    seen_devices: set[str] = set()
    for row in listing("plant", {}):
        plant_id = label_text(pick(row, "plantId", "id"))
        if not plant_id or plant_id in plant_ids:
            continue
        if max_plants is not None and len(plant_ids) >= max_plants:
            break
        plant_ids.add(plant_id)
        # Only what identifies the plant: its rows also carry coordinates, owner accounts,
        # addresses and contacts (PLATFORM.md 9), which are never read.
        plant = Plant(plant_id=plant_id, name=label_text(pick(row, "plantName", "name")),
                      capacity_kw=_plant_kw(row), timezone=plant_zone(row))
        yield Listed(plant)
        for drow in listing("datalog", {LIST_KEY["datalog"]: plant_id}):
            dl_sn = str(pick(drow, "dataLogSn", "datalogSn", "sn"))
            if not valid_sn(dl_sn):
                yield SKIPPED
                continue
            if max_datalogs is not None and datalogs >= max_datalogs:
                continue
            datalogs += 1
            status = pick(drow, "status", "online", default=None)
            datalog = Datalog(sn=dl_sn, plant_id=plant_id, model=label_text(pick(drow, "model", "datalogType")),
                              online=None if status is None else str(status).lower() in ("1", "true", "online"))
            yield Listed(plant, datalog)
            for family in families:
                if not wanted(family):
                    continue
                for rowd in listing(family, {LIST_KEY[family]: dl_sn}):
                    sn = pick(rowd, "deviceSn", "sn")
                    if not valid_sn(sn):
                        yield SKIPPED
                        continue
                    if sn in seen_devices:
                        continue
                    seen_devices.add(sn)
                    device = DeviceConfig(sn=sn, type=family,
                                          model=label_text(pick(rowd, "deviceModel", "model", "deviceType")),
                                          plant_id=plant_id, plant_name=plant.name)
                    yield Listed(plant, datalog, device, rowd)


def discover(client: AtessClient, config: Config, families: list[str]) -> Topology:
    """Read the account's plants, dataloggers and devices. Raises AtessError when a list fails,
    so a half-read account never removes devices."""
    budget = CallBudget(config.discovery.max_calls, "discovery stopped after its call budget; "
                                                    "raise discovery.max_calls if the account is really this large")

    def listing(kind: str, params: dict[str, Any]) -> Iterator[dict]:
        rows = pages(client, config.endpoint(kind, "list"), params, config.discovery.page_size, budget,
                     config.discovery.max_pages, cap_hint="; raise discovery.max_pages if the account is really this large")
        return (row for row in rows if isinstance(row, dict))

    plants, datalogs, devices = [], [], []
    firmware, datalog_of, lost, rated = {}, {}, {}, {}
    skipped = dropped = 0
    cap = config.discovery.max_devices      # each of plants, dataloggers and devices: memory bounded
    for found in walk(listing, families):
        if found is SKIPPED:
            skipped += 1
        elif found.device is not None and found.datalog is not None:
            if len(devices) >= cap:
                dropped += 1
                continue
            sn = found.device.sn
            devices.append(found.device)
            firmware[sn] = label_text(pick(found.row, "firmwareVersion", "version", "softVersion"))
            datalog_of[sn] = found.datalog.sn
            if isinstance(found.row.get("lost"), bool):
                lost[sn] = found.row["lost"]
            watts = bounded_number(pick(found.row, "normalPower", "nominalPower", default=None))
            if watts:
                rated[sn] = watts
        elif found.datalog is not None:
            if len(datalogs) >= cap:
                dropped += 1
                continue
            datalogs.append(found.datalog)
        elif len(plants) >= cap:
            dropped += 1
        else:
            plants.append(found.plant)
    if skipped:
        log.warning("discovery skipped list rows without a usable serial number",
                    extra={"fields": {"rows": skipped}})
    return Topology(tuple(plants), tuple(datalogs), tuple(devices), firmware, datalog_of, lost, skipped,
                    dropped=dropped, rated_watts=rated)


def select_devices(config: Config, topology: Topology | None) -> dict[str, DeviceConfig]:
    """Configured devices merged with discovered ones (configured entries win), then narrowed
    by include/exclude and to this replica's shard."""
    merged: dict[str, DeviceConfig] = {}
    for device in (topology.devices if topology else ()):
        merged[device.sn] = device
    for device in config.devices:
        found = merged.get(device.sn)
        if found and not (device.plant_id or device.plant_name):
            # explicit entry wins, but keeps the plant the account knows
            device = DeviceConfig(sn=device.sn, type=device.type, model=device.model or found.model,
                                  timezone=device.timezone, plant_id=found.plant_id, plant_name=found.plant_name)
        merged[device.sn] = device
    wanted, (index, count) = config.discovery, config.shard
    return {sn: d for sn, d in sorted(merged.items())
            if wanted.wants(sn, d.plant_id, d.plant_name) and in_shard(sn, index, count)}


# -- the topology kept across restarts (beside the counter state) ------------------

def topology_to_dict(topology: Topology) -> dict:
    """Plain data for the state file: what polling and the labels need, nothing the
    lists' rows carry besides (no personal data, PLATFORM.md 9)."""
    return {
        "plants": [{"plant_id": p.plant_id, "name": p.name, "capacity_kw": p.capacity_kw, "timezone": p.timezone}
                   for p in topology.plants],
        "datalogs": [{"sn": d.sn, "plant_id": d.plant_id, "model": d.model, "online": d.online} for d in topology.datalogs],
        "devices": [{"sn": d.sn, "type": d.type, "model": d.model, "plant_id": d.plant_id, "plant_name": d.plant_name}
                    for d in topology.devices],
        "firmware": dict(topology.firmware), "datalog_of": dict(topology.datalog_of), "lost": dict(topology.lost),
        "rated_watts": dict(topology.rated_watts),
    }


class SavedTopologyError(ValueError):
    pass


def _rows(data: dict, key: str, limit: int) -> list[dict]:
    rows = data.get(key, [])
    if not isinstance(rows, list) or len(rows) > limit or not all(isinstance(r, dict) for r in rows):
        raise SavedTopologyError(f"{key} is not a list of objects")
    return rows


def _text(row: dict, key: str) -> str:
    value = row.get(key, "")
    if not isinstance(value, str):
        raise SavedTopologyError(f"{key} is not text")
    return label_text(value)


def _sn_map(data: dict, key: str, kind: type, limit: int) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict) or len(value) > limit:
        raise SavedTopologyError(f"{key} is not an object")
    out = {}
    for sn, item in value.items():
        if kind is float:  # a rating: a finite, bounded number
            item = bounded_number(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else None
            if item is None:
                raise SavedTopologyError(f"{key} has a bad entry")
        elif not isinstance(item, kind):
            raise SavedTopologyError(f"{key} has a bad entry")
        if not valid_sn(sn):
            raise SavedTopologyError(f"{key} has a bad entry")
        out[sn] = label_text(item) if kind is str else item
    return out


def topology_from_dict(data: Any, families: Any, limit: int = 100_000) -> Topology:
    """A topology read back from the state file, checked as hostile input: raises
    SavedTopologyError on any wrong shape (the caller drops it and discovers anew)."""
    if not isinstance(data, dict):
        raise SavedTopologyError("not an object")
    plants = []
    for row in _rows(data, "plants", limit):
        capacity = row.get("capacity_kw")
        if capacity is not None and bounded_number(capacity) is None:
            raise SavedTopologyError("capacity_kw is not a number")
        plant_id = _text(row, "plant_id")
        if not plant_id:
            raise SavedTopologyError("a plant without id")
        plants.append(Plant(plant_id=plant_id, name=_text(row, "name"),
                            capacity_kw=bounded_number(capacity) if capacity is not None else None,
                            timezone=_text(row, "timezone")))
    datalogs = []
    for row in _rows(data, "datalogs", limit):
        online = row.get("online")
        if not valid_sn(row.get("sn")) or not (online is None or isinstance(online, bool)):
            raise SavedTopologyError("a datalogger with a bad SN or flag")
        datalogs.append(Datalog(sn=row["sn"], plant_id=_text(row, "plant_id"), model=_text(row, "model"), online=online))
    devices = []
    for row in _rows(data, "devices", limit):
        if not valid_sn(row.get("sn")) or row.get("type") not in families:
            raise SavedTopologyError("a device with a bad SN or an unknown type")
        devices.append(DeviceConfig(sn=row["sn"], type=row["type"], model=_text(row, "model"),
                                    plant_id=_text(row, "plant_id"), plant_name=_text(row, "plant_name")))
    return Topology(plants=tuple(plants), datalogs=tuple(datalogs), devices=tuple(devices),
                    firmware=_sn_map(data, "firmware", str, limit), datalog_of=_sn_map(data, "datalog_of", str, limit),
                    lost=_sn_map(data, "lost", bool, limit), rated_watts=_sn_map(data, "rated_watts", float, limit))
