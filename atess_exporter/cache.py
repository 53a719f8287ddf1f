"""The latest state of every device, shared by the poller and the scrapes.

A DeviceSnapshot is immutable and replaced whole, so a scrape sees each
device's samples from exactly one poll, never half of two.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

# metric name -> ((label values after sn/model, value), ...)
Samples = dict[str, tuple[tuple[tuple[str, ...], float], ...]]


@dataclass(frozen=True)
class DeviceSnapshot:
    sn: str
    device_type: str
    model: str
    up: bool = False
    last_attempt: float | None = None
    last_success: float | None = None
    data_time: float | None = None
    samples: Samples = field(default_factory=dict)
    error: str | None = None
    info: dict[str, str] = field(default_factory=dict)  # plant_id, plant_name, datalog_sn, firmware
    glitches: int = 0          # lifetime totals seen going backwards, since start
    unusable_fields: int = 0   # catalogued fields of the last payload that carried no number
    implausible_fields: int = 0  # catalogued fields of the last payload outside their physical range
    lost: bool | None = None   # the payload's own `lost` flag (the cloud lost contact), when sent
    changed_at: float | None = None  # when the samples last changed (freshness without a usable `time`)

    def failed(self, at: float, error: str) -> "DeviceSnapshot":
        """The same device after a failed poll: readings kept, marked down."""
        return replace(self, up=False, last_attempt=at, error=error)


class Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, DeviceSnapshot] = {}
        self.version = 0

    def put(self, snapshot: DeviceSnapshot) -> None:
        with self._lock:
            self._devices[snapshot.sn] = snapshot
            self.version += 1

    def update(self, sn: str, change: Callable[[DeviceSnapshot | None], DeviceSnapshot | None]) -> DeviceSnapshot | None:
        """Replace a device's snapshot with change(current), atomically: two writers
        (a poll and a discovery refresh) never lose each other's update. A change
        that returns None leaves the cache alone."""
        with self._lock:
            snapshot = change(self._devices.get(sn))
            if snapshot is not None:
                self._devices[sn] = snapshot
                self.version += 1
            return snapshot

    def get(self, sn: str) -> DeviceSnapshot | None:
        with self._lock:
            return self._devices.get(sn)

    def retain(self, sns: Iterable[str]) -> None:
        """Forget devices no longer configured, so their series go away."""
        keep = set(sns)
        with self._lock:
            for sn in [s for s in self._devices if s not in keep]:
                del self._devices[sn]
                self.version += 1

    def snapshot(self) -> list[DeviceSnapshot]:
        """A consistent view of all devices, sorted by SN for stable output."""
        with self._lock:
            devices = list(self._devices.values())
        return sorted(devices, key=lambda d: d.sn)
