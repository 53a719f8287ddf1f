"""The account's topology: plants, their dataloggers and the devices on each.

Walks plants -> dataloggers (per plant) -> devices (per datalogger and device
family) on every discovery refresh, never per poll. Device lists are keyed by
the datalogger SN (`dataLogSn`) and answer a bare JSON array, as the vendor
documents for the BCU list; the plant and datalogger lists are undocumented,
so both shapes are accepted everywhere: a bare array, or a page object
`{datas, total, pageNo, pageSize, offset}`.

A list ends on `total`, on an empty page, on a page identical to the previous
one, or (without a total) on a page shorter than the server's page size. A
page shorter than asked while `total` says more is the server capping the
size: the walk goes on at the server's size. A list without a trustworthy end
stops at `discovery.max_pages` pages; `discovery.max_calls` (0: whatever the
account's lists need) caps one refresh. A list stopped by either cap, or
failed, is not lost: the devices found so far are adopted (none removed) and
the next refresh continues the walk where it stopped.

Lists are read `discovery.concurrency` at a time (the pages of one list in
order), each list endpoint paced to `discovery.calls_per_second`. Every value
taken from a row is checked here, where it enters: SNs follow the config's
rules, label texts are cut to a sane length, a non-finite capacity is no capacity.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from atess_exporter.api.client import AtessClient, AtessError, AuthError, MalformedResponseError, NoDataError
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
    complete: bool = True                                    # every list read to its end
    unread_lists: int = 0                                    # lists left for the next refresh


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
                   lost=old.lost | new.lost)


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


class Budget:
    """Calls one refresh may still make (shared by the walk's threads); None: no cap."""

    def __init__(self, max_calls: int | None):
        self.left = max_calls
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.left is None:
                return True
            if self.left <= 0:
                return False
            self.left -= 1
            return True


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


def _said_size(data: Any, asked: int) -> int | None:
    """The server's own `pageSize` when it is smaller than the one asked."""
    said = data.get("pageSize") if isinstance(data, dict) else None
    if isinstance(said, int) and not isinstance(said, bool) and 0 < said < asked:
        return said
    return None


@dataclass
class Cursor:
    """Where one list's reading stands: the next page, at which size, and why it stopped."""

    page: int = 1
    size: int = 0                 # the page size to ask; 0: the configured one
    seen: int = 0
    pages_read: int = 0           # in this refresh
    total: float | None = None    # what the list's last page said
    previous: list | None = None
    done: bool = False
    capped: str = ""              # the setting that stopped it ("discovery.max_pages", ...)


def _page_limit(cursor: Cursor, max_pages: int) -> int:
    """Pages one refresh reads of a list: max_pages, or as many as its `total` promises
    (up to 100 x max_pages, so a lying total cannot turn one list into a flood)."""
    if cursor.total is None or cursor.done:
        return max_pages
    promised = cursor.pages_read + math.ceil(max(cursor.total - cursor.seen, 0) / cursor.size)
    return min(max(max_pages, promised), 100 * max_pages)


def read_pages(client: AtessClient, path: str, params: dict[str, Any], cursor: Cursor, page_size: int,
               max_pages: int = MAX_PAGES, budget: Budget | None = None,
               pacer: EndpointPacer | None = None) -> Iterator[dict]:
    """The list's rows from the cursor on, as many pages as the list honestly has, at most
    `max_pages` in this call (or as the budget allows). Raises AtessError with the cursor on
    the failed page, so a later call retries that page."""
    cursor.size = cursor.size or page_size
    cursor.pages_read = 0
    while not cursor.done:
        if cursor.pages_read >= _page_limit(cursor, max_pages):
            cursor.capped = "discovery.max_pages"
            return
        if budget is not None and not budget.take():
            cursor.capped = "discovery.max_calls"
            return
        if pacer is not None:
            pacer.wait()
        try:
            data = client.get(path, {**params, "pageNo": cursor.page, "pageSize": cursor.size})
        except NoDataError:
            cursor.done = True  # success code, no rows: an empty list
            return
        cursor.pages_read += 1
        rows, total = rows_of(path, data)
        cursor.total = total
        if not rows or rows == cursor.previous:
            cursor.done = True  # the end, or a server that ignores pageNo: the same page again
            return
        cursor.previous = rows
        said = _said_size(data, cursor.size)
        cursor.seen += len(rows)
        cursor.page += 1
        yield from (r for r in rows if isinstance(r, dict))
        if isinstance(data, list):
            cursor.done = True  # a bare array is the whole list
            continue
        if total is not None:
            cursor.done = cursor.seen >= total
            short = not cursor.done and len(rows) < cursor.size
            served = said or len(rows)
        else:  # no total: a short page ends the list, unless the server says its size is that short
            short = said is not None and len(rows) == said
            cursor.done = not short and len(rows) < cursor.size
            served = said or 0
        if short:
            # the server caps the page size: page at its size from here
            # (page N at size s starts at row (N-1)*s)
            cursor.page, cursor.size = cursor.seen // served + 1, served


def pages(client: AtessClient, path: str, params: dict[str, Any], page_size: int,
          budget: Budget | None = None, max_pages: int = MAX_PAGES) -> Iterator[dict]:
    """Every row of a list, over as many pages as it honestly has (at most `max_pages`)."""
    yield from read_pages(client, path, params, Cursor(), page_size, max_pages, budget)


@dataclass
class _List:
    """One list of the walk: which, for what, and how far it has been read."""

    kind: str                       # "plant", "datalog" or a device family
    params: dict[str, Any]
    plant: Plant | None = None
    datalog: str = ""
    cursor: Cursor = field(default_factory=Cursor)


RANK = {"plant": 2, "datalog": 1}   # device lists first: a datalogger's devices before more dataloggers


class _Walk:
    """Everything one walk of the account has found, and the lists it has still to read."""

    def __init__(self) -> None:
        self.plants: dict[str, Plant] = {}
        self.datalogs: dict[str, Datalog] = {}
        self.devices: dict[str, DeviceConfig] = {}
        self.firmware: dict[str, str] = {}
        self.datalog_of: dict[str, str] = {}
        self.lost: dict[str, bool] = {}
        self.skipped = 0
        self.todo: list[_List] = [_List("plant", {})]

    def take(self, job: _List, rows: list[dict], families: list[str]) -> None:
        """Adopt the rows one list answered; new plants and dataloggers become lists to read."""
        for row in rows:
            if job.kind == "plant":
                self._plant(row, families)
            elif job.kind == "datalog":
                self._datalog(row, job.plant, families)
            else:
                self._device(row, job.kind, job.plant, job.datalog)

    def _plant(self, row: dict, families: list[str]) -> None:
        plant_id = label_text(pick(row, "plantId", "id"))
        if not plant_id or plant_id in self.plants:
            return
        plant = self.plants[plant_id] = Plant(
            plant_id=plant_id, name=label_text(pick(row, "plantName", "name")),
            capacity_kw=_bounded(pick(row, "capacity", "installedCapacity", default=None)),
            country=label_text(pick(row, "country")), city=label_text(pick(row, "city")),
            timezone=label_text(pick(row, "timezone", "timeZone")))
        self.todo.append(_List("datalog", {LIST_KEY["datalog"]: plant_id}, plant))

    def _datalog(self, row: dict, plant: Plant, families: list[str]) -> None:
        dl_sn = str(pick(row, "dataLogSn", "datalogSn", "sn"))
        if not valid_sn(dl_sn):
            self.skipped += 1
            return
        if dl_sn in self.datalogs:
            return
        status = pick(row, "status", "online", default=None)
        self.datalogs[dl_sn] = Datalog(sn=dl_sn, plant_id=plant.plant_id, model=label_text(pick(row, "model", "datalogType")),
                                       online=None if status is None else str(status).lower() in ("1", "true", "online"))
        self.todo.extend(_List(family, {LIST_KEY[family]: dl_sn}, plant, dl_sn) for family in families)

    def _device(self, row: dict, family: str, plant: Plant, dl_sn: str) -> None:
        sn = pick(row, "deviceSn", "sn")
        if not valid_sn(sn):
            self.skipped += 1
            return
        if sn in self.devices:
            return
        self.devices[sn] = DeviceConfig(sn=sn, type=family, model=label_text(pick(row, "deviceModel", "model", "deviceType")),
                                        plant_id=plant.plant_id, plant_name=plant.name)
        self.firmware[sn] = label_text(pick(row, "firmwareVersion", "version", "softVersion"))
        self.datalog_of[sn] = dl_sn
        if isinstance(row.get("lost"), bool):
            self.lost[sn] = row["lost"]

    def topology(self, unread: list[_List]) -> Topology:
        devices = tuple(sorted(self.devices.values(), key=lambda d: d.sn))
        return Topology(tuple(self.plants.values()), tuple(self.datalogs.values()), devices,
                        dict(self.firmware), dict(self.datalog_of), dict(self.lost), self.skipped,
                        complete=not unread, unread_lists=len(unread))


class Discovery:
    """One account's discovery, refresh after refresh. A refresh that could not read every
    list keeps what it found and the lists left; the next refresh reads those first."""

    def __init__(self, client: AtessClient, config: Config, families: list[str]):
        self.client, self.config, self.families = client, config, families
        rate = config.discovery.calls_per_second
        self._pacers = {kind: EndpointPacer(rate) for kind in ("plant", "datalog", *families)}
        self._carry: _Walk | None = None
        self._warned: set[str] = set()

    def refresh(self) -> Topology:
        """Walk the account (or continue the last walk). Raises AtessError when the credentials
        are refused, or when no list could be read at all."""
        settings = self.config.discovery
        walk = self._carry or _Walk()
        self._carry = None
        budget = Budget(settings.max_calls or None)
        unread: list[_List] = []
        errors: list[AtessError] = []
        progressed = False

        def read(job: _List) -> list[dict]:
            path = self.config.endpoint(job.kind, "list")
            return list(read_pages(self.client, path, job.params, job.cursor, settings.page_size,
                                   settings.max_pages, budget, self._pacers[job.kind]))

        with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="discovery") as pool:
            running: dict[Future, _List] = {}
            try:
                while walk.todo or running:
                    while walk.todo and len(running) < settings.concurrency:
                        walk.todo.sort(key=lambda j: RANK.get(j.kind, 0), reverse=True)
                        job = walk.todo.pop()
                        running[pool.submit(read, job)] = job
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        job = running.pop(future)
                        try:
                            rows = future.result()
                        except AuthError:
                            raise
                        except AtessError as exc:
                            errors.append(exc)
                            unread.append(job)
                            continue
                        progressed = progressed or bool(rows) or job.cursor.done
                        walk.take(job, rows, self.families)
                        if not job.cursor.done:
                            unread.append(job)
            except AuthError:
                for future in running:
                    future.cancel()
                raise
        if errors and not progressed:
            raise errors[0]
        if unread:
            walk.todo = unread
            self._carry = walk
            self._report(unread, errors)
        if walk.skipped:
            log.warning("discovery skipped list rows without a usable serial number",
                        extra={"fields": {"rows": walk.skipped}})
        return walk.topology(unread)

    def _report(self, unread: list[_List], errors: list[AtessError]) -> None:
        """One warning per cause (not per refresh): which setting stopped the walk."""
        capped = sorted({job.cursor.capped for job in unread if job.cursor.capped})
        for setting in capped:
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
    """Read the account's plants, dataloggers and devices in one refresh."""
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
