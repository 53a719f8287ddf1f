"""The account's topology: plants, their dataloggers and the devices on each.

Walks plants -> dataloggers (per plant) -> devices (per datalogger and device
family) on every discovery refresh, never per poll. Device lists are keyed by
the datalogger SN (`dataLogSn`) and answer a bare JSON array, as the vendor
documents for the BCU list; the plant and datalogger lists are undocumented,
so both shapes are accepted everywhere: a bare array, or a page object
`{datas, total, pageNo, pageSize, offset}`.

A list never floods the API: paging stops on `total`, on a short page, on a
page identical to the previous one, and at `discovery.max_pages` pages; one
refresh makes at most `discovery.max_calls` calls. Every value taken from a
row is checked here, where it enters: SNs follow the config's rules, label
texts are cut to a sane length, a non-finite capacity is no capacity.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

from atess_exporter.api.client import AtessClient, MalformedResponseError, NoDataError
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.catalog.endpoints import LIST_KEY
from atess_exporter.catalog.models import label_text, valid_sn
from atess_exporter.config.shard import in_shard

log = logging.getLogger(__name__)

MAX_PAGES = 50       # per list, for callers without a config (discovery.max_pages otherwise)


@dataclass(frozen=True)
class Plant:
    plant_id: str
    name: str = ""
    capacity_kw: float | None = None
    country: str = ""
    city: str = ""
    timezone: str = ""


@dataclass(frozen=True)
class Datalog:
    sn: str
    plant_id: str
    model: str = ""
    online: bool | None = None


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


def pick(row: dict, *names: str, default: Any = "") -> Any:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return value
    return default


def _bounded(value: Any) -> float | None:
    """A finite number in [0, 1e7] (a plant's kW, a list's total), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and 0 <= number <= 1e7 else None


class ListBudget:
    """Calls one refresh may still make: a misbehaving list cannot flood the API."""

    def __init__(self, max_calls: int):
        self.left = max_calls

    def take(self, path: str) -> None:
        if self.left <= 0:
            raise MalformedResponseError(f"{path}: discovery stopped after its call budget; "
                                         "raise discovery.max_calls if the account is really this large")
        self.left -= 1


def rows_of(path: str, data: Any) -> tuple[list, float | None]:
    """(rows, total) from a bare array or a page object."""
    if isinstance(data, list):
        return data, None
    if isinstance(data, dict):
        rows = data.get("datas", data.get("records", data.get("list")))
        if isinstance(rows, list):
            total = _bounded(data.get("total"))
            return rows, total
    raise MalformedResponseError(f"{path}: list answer is neither an array nor a page object with datas")


def pages(client: AtessClient, path: str, params: dict[str, Any], page_size: int,
          budget: ListBudget | None = None, max_pages: int = MAX_PAGES) -> Iterator[dict]:
    """Every row of a list, over as many pages as it honestly has."""
    previous: list | None = None
    seen = 0
    for page in range(1, max_pages + 1):
        if budget is not None:
            budget.take(path)
        try:
            data = client.get(path, {**params, "pageNo": page, "pageSize": page_size})
        except NoDataError:
            return  # success code, no rows: an empty list
        rows, total = rows_of(path, data)
        if rows == previous:
            return  # the server ignores pageNo: the same page again
        previous = rows
        yield from (r for r in rows if isinstance(r, dict))
        seen += len(rows)
        if isinstance(data, list) or len(rows) < page_size or (total is not None and seen >= total):
            return  # a bare array is the whole list
    log.warning("list endpoint never ended; stopped", extra={"fields": {"path": path, "pages": max_pages}})


def discover(client: AtessClient, config: Config, families: list[str]) -> Topology:
    """Read the account's plants, dataloggers and devices. Raises AtessError when a list fails,
    so a half-read account never removes devices."""
    size = config.discovery.page_size
    max_pages = config.discovery.max_pages
    budget = ListBudget(config.discovery.max_calls)

    def listing(kind: str, params: dict[str, Any]) -> Iterator[dict]:
        return pages(client, config.endpoint(kind, "list"), params, size, budget, max_pages)

    plants, datalogs, devices = [], [], []
    firmware, datalog_of, lost = {}, {}, {}
    skipped = dropped = 0
    cap = config.discovery.max_devices
    seen_devices: set[str] = set()
    seen_plants: set[str] = set()
    for row in listing("plant", {}):
        plant_id = label_text(pick(row, "plantId", "id"))
        if not plant_id or plant_id in seen_plants:
            continue
        if len(plants) >= cap:
            dropped += 1
            continue
        seen_plants.add(plant_id)
        plant = Plant(plant_id=plant_id, name=label_text(pick(row, "plantName", "name")),
                      capacity_kw=_bounded(pick(row, "capacity", "installedCapacity", default=None)),
                      country=label_text(pick(row, "country")), city=label_text(pick(row, "city")),
                      timezone=label_text(pick(row, "timezone", "timeZone")))
        plants.append(plant)
        for drow in listing("datalog", {LIST_KEY["datalog"]: plant_id}):
            dl_sn = str(pick(drow, "dataLogSn", "datalogSn", "sn"))
            if not valid_sn(dl_sn):
                skipped += 1
                continue
            if len(datalogs) >= cap:
                dropped += 1
                continue
            status = pick(drow, "status", "online", default=None)
            datalogs.append(Datalog(sn=dl_sn, plant_id=plant_id, model=label_text(pick(drow, "model", "datalogType")),
                                    online=None if status is None else str(status).lower() in ("1", "true", "online")))
            for family in families:
                for rowd in listing(family, {LIST_KEY[family]: dl_sn}):
                    sn = pick(rowd, "deviceSn", "sn")
                    if not valid_sn(sn):
                        skipped += 1
                        continue
                    if sn in seen_devices:
                        continue
                    if len(devices) >= cap:
                        dropped += 1
                        continue
                    seen_devices.add(sn)
                    devices.append(DeviceConfig(sn=sn, type=family,
                                                model=label_text(pick(rowd, "deviceModel", "model", "deviceType")),
                                                plant_id=plant_id, plant_name=plant.name))
                    firmware[sn] = label_text(pick(rowd, "firmwareVersion", "version", "softVersion"))
                    datalog_of[sn] = dl_sn
                    if isinstance(rowd.get("lost"), bool):
                        lost[sn] = rowd["lost"]
    if skipped:
        log.warning("discovery skipped list rows without a usable serial number",
                    extra={"fields": {"rows": skipped}})
    return Topology(tuple(plants), tuple(datalogs), tuple(devices), firmware, datalog_of, lost, skipped, dropped)


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
