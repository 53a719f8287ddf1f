"""Each device's counter guard, applied to its readings and kept across restarts.

The guard (readings/counterguard.py) decides what a lifetime total may do;
this module holds one guard per device, applies it to a poll's samples and
saves the guards' last good values to the state file (live/state.py) at most
every STATE_SAVE_SECONDS and on stop.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from atess_exporter.catalog import Catalog
from atess_exporter.catalog.models import rated_power_watts
from atess_exporter.live.state import load_state, save_state
from atess_exporter.readings.counterguard import CounterGuard
from atess_exporter.readings.payload import Samples

STATE_SAVE_SECONDS = 60.0


class CounterState:
    def __init__(self, catalog: Catalog, confirm_polls: int, state_file: str | None):
        self.catalog = catalog
        self.confirm_polls = confirm_polls
        self.state_file = state_file
        self.guards: dict[str, CounterGuard] = {}
        self._lock = threading.Lock()
        self._saved = time.monotonic()
        self.sections: Callable[[], dict[str, Any]] = dict   # other sections saved with the counters
        counters = load_state(state_file).get("counters", {})
        for sn, rows in counters.items():  # discovered devices are not known yet: keep all
            guard = self.guards[sn] = CounterGuard(confirm_polls)
            guard.load(rows)

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
            save_state(self.state_file, {**self.sections(), "counters": counters})
            self._saved = time.monotonic()

    def save_if_due(self) -> None:
        if time.monotonic() - self._saved > STATE_SAVE_SECONDS:
            self.save()
