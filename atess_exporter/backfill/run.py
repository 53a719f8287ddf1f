"""The backfill run: every device's windows in order, devices in parallel, each
finished window saved before the next so a run can stop anywhere and resume."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Callable

from atess_exporter.catalog import Catalog
from atess_exporter.api.client import AtessClient, AtessError
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.catalog.models import rated_power_watts
from atess_exporter.readings.counterguard import CounterGuard
from atess_exporter.backfill.fetch import ROWS_PER_DAY, HistoryFetcher, calls_for_rows, windows
from atess_exporter.backfill.merge import merge_parts
from atess_exporter.backfill.pacing import Clock, Pacer, Progress, Sleep, Stopped
from atess_exporter.backfill.render import render_window
from atess_exporter.backfill.workdir import STATE_VERSION, WorkDir

log = logging.getLogger("atess_exporter.backfill")  # the package's name: log lines read as before the split

WindowHook = Callable[[str, date, date], Any]


@dataclass
class Failure:
    sn: str
    start: date
    end: date
    error: str
    skipped_windows: int = 0


@dataclass
class Result:
    devices: int = 0
    days: int = 0
    rows: int = 0
    samples: int = 0
    glitches: int = 0
    failures: list[Failure] = field(default_factory=list)
    interrupted: bool = False


class Backfill:
    def __init__(self, config: Config, devices: list[DeviceConfig], *, start: date, end: date,
                 output: Path, window_days: int, page_size: int, call_interval: float, concurrency: int,
                 retries: int, retry_backoff: float, client: AtessClient, catalog: Catalog,
                 clock: Clock, sleep: Sleep | None, progress: Progress | None = None,
                 after_window: WindowHook | None = None, zone: tzinfo = timezone.utc):
        self.config, self.devices = config, devices
        self.zone = zone                     # the API servers' zone (backfill/calibrate.py)
        self.start, self.end, self.output = start, end, output
        self.window_days, self.page_size = window_days, page_size
        self.call_interval, self.concurrency = call_interval, concurrency
        self.catalog, self.clock = catalog, clock
        self.stop = threading.Event()
        self.sleep: Sleep = sleep if sleep is not None else self.stop.wait
        self.after_window = after_window
        self.work = WorkDir(output)
        self.confirm_polls = config.poll.counter_reset_confirm_polls
        self.progress = progress
        self.result = Result(devices=len(devices))
        self._lock = threading.Lock()
        self.fetcher = HistoryFetcher(client, config.history_date_format, page_size=page_size,
                                      retries=retries, retry_backoff=retry_backoff)

    # ---- planning
    def total_days(self) -> int:
        return len(self.devices) * ((self.end - self.start).days + 1)

    def done_so_far(self) -> tuple[int, int]:
        """(device-days, rows) already finished in the work directory."""
        days = rows = 0
        for device in self.devices:
            state = self.work.load_state(device.sn)
            if state:
                days += (date.fromisoformat(state["next"]) - self.start).days
                rows += int(state.get("rows", 0))
        return days, rows

    def estimated_calls(self) -> int:
        per_device = sum(calls_for_rows(((b - a).days + 1) * ROWS_PER_DAY, self.page_size)
                         for a, b in windows(self.start, self.end, self.window_days))
        return per_device

    # ---- running
    def run(self) -> Result:
        self.work.open(self.start, self.end)
        pool = ThreadPoolExecutor(max_workers=max(1, self.concurrency), thread_name_prefix="backfill")
        try:
            futures = [pool.submit(self._device_worker, device) for device in self.devices]
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            self.stop.set()
            self.result.interrupted = True
            pool.shutdown(wait=True, cancel_futures=True)
            return self.result
        pool.shutdown(wait=True)
        self.result.samples = merge_parts(self.work, (d.sn for d in self.devices), self.catalog, self.output)
        if not self.result.failures:
            self.work.remove()
        return self.result

    def _device_worker(self, device: DeviceConfig) -> None:
        try:
            self._run_device(device)
        except Stopped:
            return
        except Exception as exc:  # a bug must not take the other devices down
            log.exception("backfill crashed for a device", extra={"fields": {"sn": device.sn}})
            self._fail(Failure(device.sn, self.start, self.end, f"internal error: {exc!r}"))

    def _fail(self, failure: Failure) -> None:
        with self._lock:
            self.result.failures.append(failure)
        log.warning("device skipped: history window failed", extra={"fields": {
            "sn": failure.sn, "window": f"{failure.start}..{failure.end}", "error": failure.error,
            "windows_not_attempted": failure.skipped_windows}})
        if self.progress:
            self.progress.advance(device_done=True, failed=True)

    def _run_device(self, device: DeviceConfig) -> None:
        sn = device.sn
        state = self.work.load_state(sn) or {
            "version": STATE_VERSION, "sn": sn, "next": self.start.isoformat(), "parts": [], "rows": 0, "guard": None}
        guard = CounterGuard.restore(state.get("guard"), self.confirm_polls)
        guard.rated_watts = rated_power_watts(device.model)
        try:
            path = self.config.endpoint(device.type, "history")
        except KeyError:
            path = ""
        todo = list(windows(date.fromisoformat(state["next"]), self.end, self.window_days))
        if todo and not path:
            self._fail(Failure(sn, todo[0][0], todo[-1][1],
                               f"no history endpoint for device type {device.type}; set endpoints.{device.type}.history",
                               len(todo) - 1))
            return
        family = self.catalog.families[device.type]
        tz = self.config.device_zone(device) or self.zone
        pacer = Pacer(self.call_interval, self.clock, self.sleep, self.stop)
        for i, (first, last) in enumerate(todo):
            try:
                rows = self.fetcher.fetch(pacer, path, sn, first, last)
            except AtessError as exc:
                self._fail(Failure(sn, first, last, str(exc), len(todo) - i - 1))
                return
            glitches = guard.glitches
            text, nrows = render_window(self.catalog, device, family, tz, guard, rows, first, last)
            name = f"{first.isoformat()}_{last.isoformat()}.om"
            self.work.write_part(sn, name, text)
            state.update(next=(last + timedelta(days=1)).isoformat(), parts=state["parts"] + [name],
                         rows=int(state.get("rows", 0)) + nrows, guard=guard.state())
            self.work.save_state(sn, state)  # the window counts as done from here on
            with self._lock:
                self.result.rows += nrows
                self.result.glitches += guard.glitches - glitches
                self.result.days += (last - first).days + 1
            if self.progress:
                self.progress.advance(days=(last - first).days + 1, rows=nrows)
            if self.after_window:
                self.after_window(sn, first, last)
        if self.progress:
            self.progress.advance(device_done=True)
