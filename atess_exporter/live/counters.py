"""Each device's counter guard, kept across restarts.

The guard (readings/counterguard.py) decides what a lifetime total may do and
how it is saved; this module holds one guard per device and saves them all to
the state file (live/state.py) at most every STATE_SAVE_SECONDS and on stop,
together with the sections others keep there (`sections`: the topology, the
measured clock), in one atomic write.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from atess_exporter.live.state import MAX_STATE_BYTES, load_state, save_state, section
from atess_exporter.outside.text import valid_sn
from atess_exporter.readings.counterguard import CounterGuard

log = logging.getLogger(__name__)

STATE_SAVE_SECONDS = 60.0


class CounterState:
    def __init__(self, confirm_polls: int, state_file: str | None, max_bytes: int = MAX_STATE_BYTES):
        self.confirm_polls = confirm_polls
        self.state_file = state_file
        self.guards: dict[str, CounterGuard] = {}
        self._lock = threading.Lock()
        self._saved = time.monotonic()
        now = time.time()
        rows_dropped = 0

        def entry(sn: str, state: object) -> CounterGuard:
            nonlocal rows_dropped
            if not valid_sn(sn) or not isinstance(state, (dict, list)):
                raise ValueError("not a device's counter state")
            if isinstance(state, dict) and not isinstance(state.get("tracks", []), list):
                raise ValueError("tracks: not a list")
            guard = CounterGuard.restore(state, confirm_polls, now)
            rows_dropped += guard.damaged
            return guard

        # Discovered devices are not known yet: keep every valid one.
        self.sections: list[Callable[[], dict[str, Any]]] = []   # other parts' state, saved alongside
        self.loaded = load_state(state_file, max_bytes)          # the whole file as read, for those parts
        self.guards.update(section(self.loaded, "counters", entry, state_file))
        if rows_dropped:
            log.warning("state file counter rows damaged, dropped (those counters start fresh)",
                        extra={"fields": {"path": state_file, "dropped": rows_dropped}})

    def guard_for(self, sn: str, rated_watts: float | None) -> CounterGuard:
        guard = self.guards.setdefault(sn, CounterGuard(self.confirm_polls))
        guard.rated_watts = rated_watts  # the reading's: payload, device list or model (known only since discovery)
        return guard

    def forget(self, sn: str) -> None:
        self.guards.pop(sn, None)

    def save(self) -> None:
        with self._lock:
            data: dict[str, Any] = {"counters": {sn: guard.state() for sn, guard in list(self.guards.items())}}
            for section in self.sections:
                data.update(section())
            save_state(self.state_file, data)
            self._saved = time.monotonic()

    def save_if_due(self) -> None:
        if time.monotonic() - self._saved > STATE_SAVE_SECONDS:
            self.save()
