"""Each device's counter guard, applied to its readings and kept across restarts.

The guard (readings/counterguard.py) decides what a lifetime total may do;
this module holds one guard per device, applies it to a poll's samples and
saves the guards' last good values to the state file (live/state.py) at most
every STATE_SAVE_SECONDS and on stop.
"""

from __future__ import annotations

import logging
import threading
import time

from atess_exporter.catalog import Catalog
from atess_exporter.catalog.models import rated_power_watts
from atess_exporter.catalog.models import valid_sn
from atess_exporter.live.state import MAX_STATE_BYTES, load_state, save_state, section
from atess_exporter.readings.counterguard import CounterGuard
from atess_exporter.readings.payload import Samples

log = logging.getLogger(__name__)

STATE_SAVE_SECONDS = 60.0


class CounterState:
    def __init__(self, catalog: Catalog, confirm_polls: int, state_file: str | None,
                 max_bytes: int = MAX_STATE_BYTES):
        self.catalog = catalog
        self.confirm_polls = confirm_polls
        self.state_file = state_file
        self.guards: dict[str, CounterGuard] = {}
        self._lock = threading.Lock()
        self._saved = time.monotonic()
        now = time.time()
        rows_dropped = 0

        def entry(sn: str, rows: object) -> CounterGuard:
            nonlocal rows_dropped
            if not valid_sn(sn):
                raise ValueError("not a serial number")
            guard = CounterGuard(confirm_polls)
            rows_dropped += guard.load(rows, now)
            return guard

        # Discovered devices are not known yet: keep every valid one.
        self.guards.update(section(load_state(state_file, max_bytes), "counters", entry, state_file))
        if rows_dropped:
            log.warning("state file counter rows damaged, dropped (those counters start fresh)",
                        extra={"fields": {"path": state_file, "dropped": rows_dropped}})

    def guard_for(self, sn: str, model: str) -> CounterGuard:
        guard = self.guards.setdefault(sn, CounterGuard(self.confirm_polls))
        guard.rated_watts = rated_power_watts(model)  # the model may be known only since discovery
        return guard

    def forget(self, sn: str) -> None:
        self.guards.pop(sn, None)

    def apply(self, guard: CounterGuard, samples: Samples, now: float) -> Samples:
        """Counters as the guard believes them: impossible readings held back, "no
        reading" (0, missing) keeps the last good value."""
        counters = {name for name in samples if self.catalog.describe_metric(name).type == "counter"}
        live = guard.live(value for name in counters for _, value in samples[name])
        grouped: dict[str, list] = {}
        for name, rows in samples.items():
            if name not in counters:
                grouped[name] = list(rows)
                continue
            kept = grouped.setdefault(name, [])
            for labels, value in rows:
                exposed = guard.check((name, labels), value, at=now, live=live)
                if exposed is not None:
                    kept.append((labels, exposed))
        present = {(name, labels) for name, rows in samples.items() for labels, _ in rows}
        for (name, labels), value in guard.held(present):
            m = self.catalog.metrics.get(name)  # a state file from an older catalog may name others
            if m is not None and m.type == "counter" and len(labels) == len(m.labels):
                grouped.setdefault(name, []).append((labels, value))
        return {name: tuple(rows) for name, rows in grouped.items() if rows}

    def save(self) -> None:
        with self._lock:
            counters = {sn: guard.dump() for sn, guard in list(self.guards.items())}
            save_state(self.state_file, {"counters": counters})
            self._saved = time.monotonic()

    def save_if_due(self) -> None:
        if time.monotonic() - self._saved > STATE_SAVE_SECONDS:
            self.save()
