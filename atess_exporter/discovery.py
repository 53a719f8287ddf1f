"""The account's topology: plants, their dataloggers and their devices.

Read from the paginated list endpoints (plant list; per plant the datalogger
list and each device family's list) on every discovery refresh, never per
poll. The list rows carry the devices' base info (model, datalogger,
firmware), so no per-device info call is needed. Row field names are
assumed (the vendor documents only the HPS latest data); each is looked up
under a few spellings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator

from .client import AtessClient, MalformedResponseError
from .config import Config, DeviceConfig
from .sharding import in_shard

log = logging.getLogger(__name__)

MAX_PAGES = 1000  # a server that never returns a short page must not loop forever


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


def pick(row: dict, *names: str, default: Any = "") -> Any:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return value
    return default


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def pages(client: AtessClient, path: str, params: dict[str, Any], page_size: int) -> Iterator[dict]:
    """Every row of a paginated list: `data.datas` (or a bare list), until a short page."""
    for page in range(1, MAX_PAGES + 1):
        data = client.get(path, {**params, "pageNo": page, "pageSize": page_size})
        rows = data.get("datas", data.get("records", data.get("list"))) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise MalformedResponseError(f"{path}: list answer without data.datas rows")
        yield from (r for r in rows if isinstance(r, dict))
        total = _float(data.get("total")) if isinstance(data, dict) else None
        if len(rows) < page_size or (total is not None and page * page_size >= total):
            return
    log.warning("list endpoint never ended; stopped", extra={"fields": {"path": path, "pages": MAX_PAGES}})


def discover(client: AtessClient, config: Config, families: list[str]) -> Topology:
    """Read the account's plants, dataloggers and devices. Raises AtessError when a list fails,
    so a half-read account never removes devices."""
    size = config.discovery.page_size
    plants, datalogs, devices = [], [], []
    firmware, datalog_of = {}, {}
    for row in pages(client, config.endpoint("plant", "list"), {}, size):
        plant_id = str(pick(row, "plantId", "id"))
        if not plant_id:
            continue
        plant = Plant(plant_id=plant_id, name=str(pick(row, "plantName", "name")),
                      capacity_kw=_float(pick(row, "capacity", "installedCapacity", default=None)),
                      country=str(pick(row, "country")), city=str(pick(row, "city")),
                      timezone=str(pick(row, "timezone", "timeZone")))
        plants.append(plant)
        for drow in pages(client, config.endpoint("datalog", "list"), {"plantId": plant_id}, size):
            sn = str(pick(drow, "datalogSn", "sn"))
            if sn:
                status = pick(drow, "status", "online", default=None)
                datalogs.append(Datalog(sn=sn, plant_id=plant_id, model=str(pick(drow, "model", "datalogType")),
                                        online=None if status is None else str(status) in ("1", "true", "True", "online")))
        for family in families:
            for drow in pages(client, config.endpoint(family, "list"), {"plantId": plant_id}, size):
                sn = str(pick(drow, "deviceSn", "sn"))
                if not sn:
                    continue
                devices.append(DeviceConfig(sn=sn, type=family, model=str(pick(drow, "deviceModel", "model")),
                                            plant_id=plant_id, plant_name=plant.name))
                firmware[sn] = str(pick(drow, "firmwareVersion", "version", "softVersion"))
                datalog_of[sn] = str(pick(drow, "datalogSn"))
    return Topology(tuple(plants), tuple(datalogs), tuple(devices), firmware, datalog_of)


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
