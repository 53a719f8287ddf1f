"""Where each reading sits in time: the servers' clock (readings/clock.py) applied to the fleet's polls.

The clock decides once every device of the fleet has had its first poll (the
first poll of the fleet decides, not its first device), or as soon as
EARLY_VOTES devices have voted (a large fleet's first round takes minutes), and
again after every later poll. When the offset changes, every measured reading in the store is
placed anew. The offset in use is published to the store, where
atess_api_clock_offset_seconds reads it, and kept in the state file, where it
serves after a restart until the first decision.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Iterable

from atess_exporter.config import Config, DeviceConfig
from atess_exporter.live.store import AccountStore, DeviceSnapshot
from atess_exporter.readings.clock import MAX_OFFSET_SECONDS, QUARTER_SECONDS, ServerClock, parse_wall

log = logging.getLogger(__name__)

EARLY_VOTES = 10


def remembered_offset(saved: Any, state_file: str | None) -> int | None:
    """The offset a previous run decided, checked as hostile input (one warning when unusable)."""
    if saved is None:
        return None
    offset = saved.get("offset_seconds") if isinstance(saved, dict) else None
    if isinstance(offset, int) and not isinstance(offset, bool) and abs(offset) <= MAX_OFFSET_SECONDS \
            and offset % QUARTER_SECONDS == 0:
        return offset
    log.warning("saved API clock offset unusable; measuring anew", extra={"fields": {"path": state_file}})
    return None


class ReadingTimes:
    def __init__(self, config: Config, store: AccountStore, devices: Iterable[str], remembered: int | None = None):
        self.config = config
        self.store = store
        self.clock = ServerClock(config.api_zone(), remembered)
        self._walls: dict[str, tuple[float, float]] = {}  # sn -> (`time` as written, poll time): measured devices
        self._unpolled: set[str] = set(devices)           # no poll attempted yet: the clock waits for them
        self._lock = threading.RLock()                    # placing a reading vs. placing all anew
        self._publish()

    def store_reading(self, device: DeviceConfig, snapshot: DeviceSnapshot, time_value: object, polled: float,
                      write: Callable[[DeviceSnapshot], DeviceSnapshot]) -> DeviceSnapshot:
        """Place a fresh poll's reading (its vendor `time`) and store it with `write`,
        so that no decision can slip between the two."""
        wall, zone = parse_wall(time_value), self.config.device_zone(device)
        with self._lock:
            if zone is None and wall is not None:
                self.clock.observe(device.sn, wall, polled)
                self._walls[device.sn] = (wall, polled)
            else:
                self._walls.pop(device.sn, None)
            self.attempted(device.sn)
            return write(self._placed(snapshot, wall, polled, zone))

    def attempted(self, sn: str) -> None:
        """A device's poll is over (a failed first poll counts too). Once every device has
        had one, the clock decides; when the offset changes, every reading is placed anew."""
        with self._lock:
            self._unpolled.discard(sn)
            if self._unpolled and self.clock.voting < EARLY_VOTES:
                return
            changed = self.clock.decide()
            self._publish()
            if not changed:
                return
            for other, (wall, polled) in list(self._walls.items()):
                self.store.update(other, partial(self._placed_if_stored, wall=wall, polled=polled))

    def waiting_for(self, sn: str) -> bool:
        return sn in self._unpolled

    def adopt(self, added: Iterable[str], removed: Iterable[str]) -> None:
        with self._lock:
            self._unpolled.update(added)
            for sn in removed:
                self._unpolled.discard(sn)
                self._walls.pop(sn, None)
                self.clock.forget(sn)

    def saved(self) -> dict:
        """The state file's section: the measured offset, when there is one."""
        offset = self.clock.decision.offset
        return {"clock": {"offset_seconds": offset}} if self.clock.zone is None and offset is not None else {}

    def _placed_if_stored(self, current: DeviceSnapshot | None, wall: float | None,
                          polled: float) -> DeviceSnapshot | None:
        return None if current is None else self._placed(current, wall, polled)

    def _placed(self, snapshot: DeviceSnapshot, wall: float | None, polled: float, zone=None) -> DeviceSnapshot:
        placed = self.clock.place(wall, polled, zone)
        # Before the first decision a measured reading may look ahead only because the
        # offset is not known yet: no warning then (the decision places it anew).
        if placed.ahead and (zone is not None or self.clock.zone is not None or not self._unpolled):
            self.clock.warn_ahead(snapshot.sn, placed.ahead)
        return replace(snapshot, data_time=placed.at, time_refused=bool(placed.ahead))

    def _publish(self) -> None:
        in_use = self.clock.offset_seconds()
        decision = self.clock.decision
        self.store.api_clock = (in_use, decision.agreeing if decision.offset == in_use else 0)
