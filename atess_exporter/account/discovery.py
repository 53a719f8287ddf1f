"""The account's topology: plants, their dataloggers and the devices on each.

Walks plants -> dataloggers (per plant) -> devices (per datalogger and device
family) on every discovery refresh, never per poll. Device lists are keyed by
the datalogger SN (`dataLogSn`) and answer a bare JSON array, as the vendor
documents for the BCU list; the plant and datalogger lists are undocumented,
so both shapes are accepted everywhere: a bare array, or a page object
`{datas, total, pageNo, pageSize, offset}`.

A list never floods the API: the paged-list reader (api/paging.py) ends it on
its rules (a short page while `total` says more is followed at the server's
page size), and stops it after `discovery.max_pages` pages or as many as its
total promises; `discovery.max_calls` (0: whatever the account's lists need)
caps one refresh. A list stopped by a cap, or failed, is not lost: the devices
found so far are adopted (a half-read account removes none) and the next
refresh continues the walk where it stopped (after a restart too: the walk is
saved beside the topology, account/savedwalk.py). A list whose page failed
keeps the pages read before it.

The walk counts the pages of the plant list it read (`plant_list_calls`, kept
with the topology): each is one of the platform's 10 plant-list calls a day,
and live/listing.py spaces the listings by them.

Discovery reads `discovery.concurrency` lists at a time (the pages of one list
in order), each list endpoint paced to `discovery.calls_per_second`; the probe
walks the same rows one list after another (`walk`). Every value taken from a
row is checked here, where it enters: SNs follow the config's rules, label
texts are cut to a sane length, a non-finite capacity is no capacity.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator

from atess_exporter.api.client import AtessClient, AtessError, AuthError
from atess_exporter.api.paging import CallBudget, Cursor, bounded_number, read_pages
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.catalog.endpoints import LIST_KEY
from atess_exporter.outside.logs import tag_thread, thread_tag
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
    rated_watts: dict[str, float] = field(default_factory=dict)  # sn -> the list's normalPower/nominalPower (W)
    complete: bool = True                                    # every list read to its end
    dropped: int = 0                                         # rows over discovery.max_devices, not adopted
    unread_lists: int = 0                                    # lists left for the next refresh
    plant_list_calls: int = 0                                # pages of the plant list the walk read (0: unknown)


def merged(new: Topology, old: Topology | None) -> Topology:
    """An unfinished walk's topology over the last one: nothing the account had is dropped
    until a walk reads the account to its end."""
    if new.complete or old is None:
        return new
    plants = {p.plant_id: p for p in old.plants} | {p.plant_id: p for p in new.plants}
    datalogs = {d.sn: d for d in old.datalogs} | {d.sn: d for d in new.datalogs}
    devices = {d.sn: d for d in old.devices} | {d.sn: d for d in new.devices}
    return replace(new, plants=tuple(plants.values()), datalogs=tuple(datalogs.values()),
                   devices=tuple(sorted(devices.values(), key=lambda d: d.sn)),
                   firmware=old.firmware | new.firmware, datalog_of=old.datalog_of | new.datalog_of,
                   lost=old.lost | new.lost, rated_watts=old.rated_watts | new.rated_watts)


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


def plant_of(row: dict) -> Plant | None:
    """A plant row: only what identifies the plant. Its rows also carry coordinates, owner
    accounts, addresses and contacts (PLATFORM.md 9), which are never read."""
    plant_id = label_text(pick(row, "plantId", "id"))
    if not plant_id:
        return None
    return Plant(plant_id=plant_id, name=label_text(pick(row, "plantName", "name")),
                 capacity_kw=_plant_kw(row), timezone=plant_zone(row))


def datalog_of_row(row: dict, plant_id: str) -> Datalog | None:
    """A datalogger row of a plant's list; None without a usable SN."""
    dl_sn = str(pick(row, "dataLogSn", "datalogSn", "sn"))
    if not valid_sn(dl_sn):
        return None
    status = pick(row, "status", "online", default=None)
    return Datalog(sn=dl_sn, plant_id=plant_id, model=label_text(pick(row, "model", "datalogType")),
                   online=None if status is None else str(status).lower() in ("1", "true", "online"))


def device_of(row: dict, family: str, plant: Plant) -> DeviceConfig | None:
    """A device row of a datalogger's family list; None without a usable SN."""
    sn = pick(row, "deviceSn", "sn")
    if not valid_sn(sn):
        return None
    return DeviceConfig(sn=sn, type=family, model=label_text(pick(row, "deviceModel", "model", "deviceType")),
                        plant_id=plant.plant_id, plant_name=plant.name)


def walk(listing: Listing, families: list[str], *, wanted: Callable[[str], bool] = lambda family: True,
         max_plants: int | None = None, max_datalogs: int | None = None) -> Iterator[Listed | None]:
    """The account's plants -> dataloggers -> devices, as `listing(kind, params)` reads
    each list, one after another: the probe's walk. A plant listed twice is walked once,
    a device listed twice found once; `wanted(family)` skips a family's lists;
    max_plants/max_datalogs bound the walk."""
    plant_ids: set[str] = set()
    datalogs = 0
    seen_devices: set[str] = set()
    for row in listing("plant", {}):
        plant = plant_of(row)
        if plant is None or plant.plant_id in plant_ids:
            continue
        if max_plants is not None and len(plant_ids) >= max_plants:
            break
        plant_ids.add(plant.plant_id)
        yield Listed(plant)
        for drow in listing("datalog", {LIST_KEY["datalog"]: plant.plant_id}):
            datalog = datalog_of_row(drow, plant.plant_id)
            if datalog is None:
                yield SKIPPED
                continue
            if max_datalogs is not None and datalogs >= max_datalogs:
                continue
            datalogs += 1
            yield Listed(plant, datalog)
            for family in families:
                if not wanted(family):
                    continue
                for rowd in listing(family, {LIST_KEY[family]: datalog.sn}):
                    device = device_of(rowd, family, plant)
                    if device is None:
                        yield SKIPPED
                        continue
                    if device.sn in seen_devices:
                        continue
                    seen_devices.add(device.sn)
                    yield Listed(plant, datalog, device, rowd)


class EndpointPacer:
    """Spaces the calls to one list endpoint at least 1/rate apart, whichever thread makes them."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = time.sleep):
        self.gap = 1.0 / per_second if per_second > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.gap:
            return
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.gap
        if slot > now:
            self.sleep(slot - now)


@dataclass
class ListJob:
    """One list of the walk: which, for what, and how far it has been read."""

    kind: str                       # "plant", "datalog" or a device family
    params: dict[str, Any]
    plant: Plant | None = None
    datalog: Datalog | None = None
    cursor: Cursor = field(default_factory=Cursor)


MAX_PLANT_LIST_CALLS = 10_000   # a count past this is kept at it (a state file's is refused)
RANK = {"plant": 2, "datalog": 1}   # device lists first: a datalogger's devices before more dataloggers
CAPS = {"pages": "discovery.max_pages", "calls": "discovery.max_calls"}


class Walk:
    """Everything one walk of the account has found, and the lists it has still to read."""

    def __init__(self, cap: int) -> None:
        self.cap = cap                  # discovery.max_devices: plants, dataloggers and devices each
        self.dropped = 0
        self.plants: dict[str, Plant] = {}
        self.datalogs: dict[str, Datalog] = {}
        self.devices: dict[str, DeviceConfig] = {}
        self.firmware: dict[str, str] = {}
        self.datalog_of: dict[str, str] = {}
        self.lost: dict[str, bool] = {}
        self.rated: dict[str, float] = {}
        self.skipped = 0
        self.plant_calls = 0            # pages of the plant list read (answered calls), over refreshes
        self.todo: list[ListJob] = [ListJob("plant", {})]

    @classmethod
    def resumed(cls, found: Topology, cap: int) -> "Walk":
        """A walk that has found `found` so far (its lists left to be set in `todo`)."""
        walk = cls(cap)
        walk.plants = {p.plant_id: p for p in found.plants}
        walk.datalogs = {d.sn: d for d in found.datalogs}
        walk.devices = {d.sn: d for d in found.devices}
        walk.firmware, walk.datalog_of = dict(found.firmware), dict(found.datalog_of)
        walk.lost, walk.rated = dict(found.lost), dict(found.rated_watts)
        walk.plant_calls = found.plant_list_calls
        walk.todo = []
        return walk

    def take(self, job: ListJob, rows: list, families: list[str]) -> None:
        """Adopt the rows one list answered; new plants and dataloggers become lists to read."""
        plant, datalog = job.plant, job.datalog
        for row in rows:
            if not isinstance(row, dict):
                continue
            if plant is None:   # the plant list
                found = plant_of(row)
                if found is not None and found.plant_id not in self.plants:
                    if not self._admits(self.plants):
                        continue
                    self.plants[found.plant_id] = found
                    self.todo.append(ListJob("datalog", {LIST_KEY["datalog"]: found.plant_id}, found))
            elif datalog is None:   # a plant's datalogger list
                logger = datalog_of_row(row, plant.plant_id)
                if logger is None:
                    self.skipped += 1
                elif logger.sn not in self.datalogs:
                    if not self._admits(self.datalogs):
                        continue
                    self.datalogs[logger.sn] = logger
                    self.todo.extend(ListJob(f, {LIST_KEY[f]: logger.sn}, plant, logger) for f in families)
            else:   # a datalogger's device list of one family
                device = device_of(row, job.kind, plant)
                if device is None:
                    self.skipped += 1
                elif device.sn not in self.devices:
                    if not self._admits(self.devices):
                        continue
                    self._device(device, datalog, row)

    def _admits(self, table: dict) -> bool:
        """Whether one more find fits `table` under the cap; a find over it is counted as dropped."""
        if len(table) >= self.cap:
            self.dropped += 1
            return False
        return True

    def _device(self, device: DeviceConfig, datalog: Datalog, row: dict) -> None:
        sn = device.sn
        self.devices[sn] = device
        self.firmware[sn] = label_text(pick(row, "firmwareVersion", "version", "softVersion"))
        self.datalog_of[sn] = datalog.sn
        if isinstance(row.get("lost"), bool):
            self.lost[sn] = row["lost"]
        watts = bounded_number(pick(row, "normalPower", "nominalPower", default=None))
        if watts:
            self.rated[sn] = watts

    def topology(self, unread: list[ListJob]) -> Topology:
        devices = tuple(sorted(self.devices.values(), key=lambda d: d.sn))
        return Topology(tuple(self.plants.values()), tuple(self.datalogs.values()), devices,
                        dict(self.firmware), dict(self.datalog_of), dict(self.lost), self.skipped, dict(self.rated),
                        complete=not unread, unread_lists=len(unread), dropped=self.dropped,
                        plant_list_calls=min(self.plant_calls, MAX_PLANT_LIST_CALLS))


class Discovery:
    """One account's discovery, refresh after refresh. A refresh that could not read every
    list keeps what it found and the lists left; the next refresh reads those first (also
    after a restart: `resume`, a walk the last run saved, account/savedwalk.py)."""

    def __init__(self, client: AtessClient, config: Config, families: list[str], resume: Walk | None = None):
        self.client, self.config, self.families = client, config, families
        rate = config.discovery.calls_per_second
        self._pacers = {kind: EndpointPacer(rate) for kind in ("plant", "datalog", *families)}
        self._carry: Walk | None = resume
        self._warned: set[str] = set()

    @property
    def carry(self) -> Walk | None:
        """The unfinished walk the next refresh continues (None: it walks anew). Read it
        between refreshes: a refresh changes it."""
        return self._carry

    def refresh(self) -> Topology:
        """Walk the account (or continue the last walk). Raises AtessError when the credentials
        are refused, or when no list could be read at all."""
        settings = self.config.discovery
        walk_ = self._carry or Walk(settings.max_devices)
        self._carry = None
        budget = CallBudget(settings.max_calls or None, "discovery stopped after its call budget")
        unread: list[ListJob] = []
        errors: list[AtessError] = []
        progressed = False

        def read(job: ListJob) -> tuple[list, AtessError | None]:
            """The rows read, and the error that stopped the list: the pages before a failed one
            are kept (the cursor is past them)."""
            rows: list = []
            try:
                rows.extend(read_pages(self.client, self.config.endpoint(job.kind, "list"), job.params, job.cursor,
                                       settings.page_size, settings.max_pages, budget, self._pacers[job.kind].wait))
            except AuthError:
                raise
            except AtessError as exc:
                return rows, exc
            return rows, None

        with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="discovery",
                                initializer=tag_thread, initargs=(thread_tag(),)) as pool:
            running: dict[Future, ListJob] = {}
            try:
                while walk_.todo or running:
                    while walk_.todo and len(running) < settings.concurrency:
                        walk_.todo.sort(key=lambda j: RANK.get(j.kind, 0), reverse=True)
                        job = walk_.todo.pop()
                        running[pool.submit(read, job)] = job
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        job = running.pop(future)
                        rows, error = future.result()
                        if error is not None:
                            errors.append(error)
                        progressed = progressed or bool(rows) or job.cursor.done
                        if job.kind == "plant":   # each page a call of the platform's daily 10 (live/listing.py)
                            walk_.plant_calls += job.cursor.pages_read
                        walk_.take(job, rows, self.families)
                        if not job.cursor.done:
                            unread.append(job)
            except AuthError:
                for future in running:
                    future.cancel()
                raise
        if unread:
            walk_.todo = unread
            self._carry = walk_   # kept also when nothing could be read: the next refresh retries these lists
        if errors and not progressed:
            raise errors[0]
        if unread:
            self._report(unread, errors)
        if walk_.skipped:
            log.warning("discovery skipped list rows without a usable serial number",
                        extra={"fields": {"rows": walk_.skipped}})
        return walk_.topology(unread)

    def _report(self, unread: list[ListJob], errors: list[AtessError]) -> None:
        """One warning per cap that stopped a walk (not one per refresh), naming its setting."""
        for setting in sorted({CAPS[job.cursor.capped] for job in unread if job.cursor.capped}):
            if setting in self._warned:
                continue
            self._warned.add(setting)
            log.warning("discovery stopped before the end of the account; adopting the devices found so far, "
                        "the next refresh continues", extra={"fields": {
                            "unread_lists": len(unread), "setting": setting,
                            "fix": f"raise {setting} if the account is really this large"}})
        if errors:
            log.warning("discovery could not read some lists; adopting the devices found so far, the next "
                        "refresh retries them", extra={"fields": {"unread_lists": len(unread),
                                                                  "outcome": errors[0].outcome, "error": str(errors[0])}})


def discover(client: AtessClient, config: Config, families: list[str]) -> Topology:
    """Read the account's plants, dataloggers and devices in one refresh (`complete` says
    whether every list was read to its end)."""
    return Discovery(client, config, families).refresh()


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
        "rated_watts": dict(topology.rated_watts), "plant_list_calls": topology.plant_list_calls,
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
    calls = data.get("plant_list_calls", 0)   # absent: a file from before it was measured
    if isinstance(calls, bool) or not isinstance(calls, int) or not 0 <= calls <= MAX_PLANT_LIST_CALLS:
        raise SavedTopologyError(f"plant_list_calls is not a whole number in 0..{MAX_PLANT_LIST_CALLS}")
    return Topology(plants=tuple(plants), datalogs=tuple(datalogs), devices=tuple(devices),
                    firmware=_sn_map(data, "firmware", str, limit), datalog_of=_sn_map(data, "datalog_of", str, limit),
                    lost=_sn_map(data, "lost", bool, limit), rated_watts=_sn_map(data, "rated_watts", float, limit),
                    plant_list_calls=calls)
