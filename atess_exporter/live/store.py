"""The read side: everything the poller learnt, and all that /metrics and the landing page read.

It holds each device's latest snapshot, the account's topology as discovery
last read it, each device's settings, and whether the API accepts the
credentials. The poller writes here; the collectors and the landing page read
here and never look at the poller.

A DeviceSnapshot is immutable and replaced whole, so a scrape sees each
device's samples from exactly one poll, never half of two.

A snapshot keeps its samples packed (PackedSamples): the names and label
values, the same for every device of a kind, are stored once and shared; each
device holds only its numbers (8 bytes each, instead of ~170 bytes per sample
as nested tuples). It reads like the dict it was made from.
"""

from __future__ import annotations

import threading
from array import array
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

from atess_exporter.account.discovery import Topology
from atess_exporter.config.model import DEFAULT_ACCOUNT
from atess_exporter.readings.devicesettings import DeviceSettings

_SHAPES_MAX = 4096


class _Layout:
    """Names and label values of a set of samples, shared by every device that has them."""

    __slots__ = ("index",)

    def __init__(self, key: tuple):
        self.index: dict[str, tuple[int, tuple[tuple[str, ...], ...]]] = {}
        at = 0
        for name, labels in key:
            self.index[name] = (at, labels)
            at += len(labels)


_layouts: dict[tuple, _Layout] = {}
_layouts_lock = threading.Lock()


def _layout(key: tuple) -> _Layout:
    with _layouts_lock:
        got = _layouts.get(key)
        if got is None:
            if len(_layouts) >= _SHAPES_MAX:     # hostile payloads with ever new fields: start over
                _layouts.clear()
            got = _layouts[key] = _Layout(key)
        return got


class PackedSamples(Mapping):
    """metric name -> ((label values, value), ...), as Samples, with the numbers in one array."""

    __slots__ = ("_layout", "_values")

    _layout: _Layout
    _values: array

    def __init__(self, samples: Mapping[str, Iterable[tuple[tuple[str, ...], float]]] | None = None):
        if samples is None:
            samples = {}
        if isinstance(samples, PackedSamples):
            self._layout, self._values = samples._layout, samples._values
            return
        items = [(name, tuple(rows)) for name, rows in dict(samples).items()]
        self._layout = _layout(tuple((name, tuple(labels for labels, _ in rows)) for name, rows in items))
        self._values = array("d", [value for _, rows in items for _, value in rows])

    def __getitem__(self, name: str) -> tuple[tuple[tuple[str, ...], float], ...]:
        at, labels = self._layout.index[name]
        return tuple(zip(labels, self._values[at:at + len(labels)]))

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout.index)

    def __len__(self) -> int:
        return len(self._layout.index)

    def __repr__(self) -> str:
        return f"PackedSamples({dict(self)!r})"


@dataclass(frozen=True)
class DeviceSnapshot:
    sn: str
    device_type: str
    model: str
    up: bool = False
    last_attempt: float | None = None
    last_success: float | None = None
    data_time: float | None = None
    samples: Mapping[str, tuple[tuple[tuple[str, ...], float], ...]] = field(default_factory=dict)
    error: str | None = None
    info: dict[str, str] = field(default_factory=dict)  # plant_id, plant_name, datalog_sn, firmware
    glitches: int = 0          # lifetime totals seen going backwards, since start
    unusable_fields: int = 0   # catalogued fields of the last payload that carried no number
    implausible_fields: int = 0  # catalogued fields of the last payload outside their physical range
    lost: bool | None = None   # the payload's own `lost` flag (the cloud lost contact), when sent
    changed_at: float | None = None  # when the samples last changed (freshness without a usable `time`)
    withheld: tuple[str, ...] = ()   # the last payload's implausible values, as "field=value outside range"
    time_refused: bool = False  # `time` lay in the future: unknown, and never counted as fresh

    def __post_init__(self) -> None:
        if not isinstance(self.samples, PackedSamples):
            object.__setattr__(self, "samples", PackedSamples(self.samples))

    def failed(self, at: float, error: str) -> "DeviceSnapshot":
        """The same device after a failed poll: readings kept, marked down."""
        return replace(self, up=False, last_attempt=at, error=error)


@dataclass(frozen=True)
class Trouble:
    """Something that stops every device: since when (wall clock) and the API's own words."""
    since: float
    message: str


@dataclass(frozen=True)
class PollStats:
    """Whether polling keeps up, as the schedule last measured it."""

    concurrency: int = 0                      # polls allowed in flight now
    in_flight: int = 0
    latency_seconds: float | None = None      # smoothed duration of one poll
    sweep_seconds: float | None = None        # the last complete sweep (every device polled once)
    sweep_running_seconds: float = 0.0        # the current sweep so far
    overdue: int = 0                          # devices more than one interval late
    behind: int = 0                           # devices the ceiling cannot fit into one interval
    oldest_reading_age_seconds: float | None = None   # the device longest without a good poll
    pending: int = 0                          # devices not polled yet since start-up (not down)


class AccountStore:
    """One account's part of the store: what its poller learnt about the account (topology,
    credentials, discovery, polling, the servers' clock, input dropped), and its devices.

    The live room writes through this view only, so an account's poller reads, replaces
    and forgets its own devices and never another account's: a device SN belongs to the
    account that adopted it first (Cache.claim), and a second account listing it is told
    so instead of polling it twice.
    """

    def __init__(self, cache: "Cache", name: str):
        self.cache = cache
        self.name = name
        self.topology: Topology | None = None   # None until discovery has read the account
        self.auth_ok: bool | None = None        # None until the API has answered once
        self.auth_refused: Trouble | None = None      # while the API refuses the credentials
        self.discovery_failed: Trouble | None = None  # while listing the account fails (not for credentials)
        self.dropped: dict[str, int] = {}       # setting that capped it -> items dropped (API input over a limit)
        self.poll_stats: PollStats | None = None  # None until the schedule runs
        self.api_clock: tuple[float, int] | None = None  # (offset of the servers' clock in use, devices agreeing)

    def count_dropped(self, setting: str, count: int) -> bool:
        """Items of API input dropped at the cap `setting`; True the first time for that
        setting (the caller warns once, naming it)."""
        if count <= 0:
            return False
        with self.cache._lock:
            first = setting not in self.dropped
            self.dropped[setting] = self.dropped.get(setting, 0) + count
            return first

    def claim(self, sns: Iterable[str]) -> dict[str, str]:
        """Take the SNs no other account holds; returns those another account holds (sn -> its name)."""
        return self.cache._claim(self.name, sns)

    def put(self, snapshot: DeviceSnapshot) -> None:
        self.update(snapshot.sn, lambda _: snapshot)

    def update(self, sn: str, change: Callable[[DeviceSnapshot | None], DeviceSnapshot | None]) -> DeviceSnapshot | None:
        """Replace a device's snapshot with change(current), atomically: two writers
        (a poll and a discovery refresh) never lose each other's update. A change
        that returns None, or a device another account holds, leaves the store alone."""
        return self.cache._update(self.name, sn, change)

    def get(self, sn: str) -> DeviceSnapshot | None:
        return self.cache._get(self.name, sn)

    def retain(self, sns: Iterable[str]) -> None:
        """Forget this account's devices not in `sns`, so their series (readings and settings) go away."""
        self.cache._retain(self.name, sns)

    def put_device_settings(self, sn: str, settings: DeviceSettings) -> None:
        """Keep a device's settings; a read that ends after the device was removed is dropped."""
        self.cache._put_settings(self.name, sn, settings)

    def snapshot(self) -> list[DeviceSnapshot]:
        """This account's devices, sorted by SN."""
        return sorted(self.cache._devices_of(self.name), key=lambda d: d.sn)

    def poll_ages(self, since: float) -> tuple[float | None, int]:
        """(the earliest last good poll over this account's devices, `since` for one never
        polled well; the devices not yet polled at all)."""
        devices = self.cache._devices_of(self.name)   # every 2 s per account: no sort of the whole table
        oldest = min((since if d.last_success is None else d.last_success for d in devices), default=None)
        return oldest, sum(1 for d in devices if d.last_attempt is None)


class Cache:
    """The store: every account's devices, one table, and each account's own state
    (accounts()). Device snapshots are versioned (changed_since) for the fast
    renderer; topology, settings and the auth state are replaced whole, so a
    reader takes one reference and sees one consistent value."""

    CHANGE_LOG = 8192     # changes remembered for changed_since

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, DeviceSnapshot] = {}
        self._settings: dict[str, DeviceSettings] = {}
        self._owners: dict[str, str] = {}       # sn -> the account that holds it
        self._accounts: dict[str, AccountStore] = {}
        self.version = 0
        self._log: deque[tuple[int, str | None]] = deque(maxlen=self.CHANGE_LOG)

    def account(self, name: str = DEFAULT_ACCOUNT) -> AccountStore:
        """The named account's part of the store (made on first use)."""
        with self._lock:
            got = self._accounts.get(name)
            if got is None:
                got = self._accounts[name] = AccountStore(self, name)
            return got

    def accounts(self) -> list[AccountStore]:
        """Every account's part, in the order they were made (the config's)."""
        with self._lock:
            return list(self._accounts.values())

    def owner(self, sn: str) -> str | None:
        return self._owners.get(sn)

    def _changed(self, sn: str | None) -> None:
        self.version += 1
        self._log.append((self.version, sn))

    def changed_since(self, version: int) -> set[str] | None:
        """The SNs whose snapshot was replaced after ``version``; None when that is
        not known (too long ago, or devices were removed)."""
        with self._lock:
            if version == self.version:
                return set()
            if not self._log or self._log[0][0] > version + 1:
                return None
            out: set[str] = set()
            for v, sn in reversed(self._log):
                if v <= version:
                    break
                if sn is None:
                    return None
                out.add(sn)
            return out

    def _claim(self, account: str, sns: Iterable[str]) -> dict[str, str]:
        with self._lock:
            taken = {}
            for sn in sns:
                holder = self._owners.setdefault(sn, account)
                if holder != account:
                    taken[sn] = holder
            return taken

    def _update(self, account: str, sn: str,
                change: Callable[[DeviceSnapshot | None], DeviceSnapshot | None]) -> DeviceSnapshot | None:
        with self._lock:
            if self._owners.setdefault(sn, account) != account:
                return None
            snapshot = change(self._devices.get(sn))
            if snapshot is not None:
                self._devices[sn] = snapshot
                self._changed(sn)
            return snapshot

    def _get(self, account: str, sn: str) -> DeviceSnapshot | None:
        with self._lock:
            return self._devices.get(sn) if self._owners.get(sn) == account else None

    def _retain(self, account: str, sns: Iterable[str]) -> None:
        keep = set(sns)
        with self._lock:
            for sn in [s for s, holder in self._owners.items() if holder == account and s not in keep]:
                del self._owners[sn]
                self._settings.pop(sn, None)
                if self._devices.pop(sn, None) is not None:
                    self._changed(None)

    def _devices_of(self, account: str) -> list[DeviceSnapshot]:
        with self._lock:
            return [d for sn, d in self._devices.items() if self._owners.get(sn) == account]

    def _put_settings(self, account: str, sn: str, settings: DeviceSettings) -> None:
        with self._lock:
            if sn in self._devices and self._owners.get(sn) == account:
                self._settings[sn] = settings

    def get(self, sn: str) -> DeviceSnapshot | None:
        with self._lock:
            return self._devices.get(sn)

    def device_settings(self) -> dict[str, DeviceSettings]:
        """Each device's settings as last read (a copy)."""
        with self._lock:
            return dict(self._settings)

    def snapshot(self) -> list[DeviceSnapshot]:
        """A consistent view of all devices, sorted by SN for stable output."""
        with self._lock:
            devices = list(self._devices.values())
        return sorted(devices, key=lambda d: d.sn)
