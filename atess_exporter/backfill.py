"""History backfill: the ATESS history endpoint into one OpenMetrics file.

    atess-exporter backfill --config.file config.yaml --from 2024-05-01 --to 2024-05-31
    promtool tsdb create-blocks-from openmetrics history.om ./blocks

The rows of the history endpoint (one per 5-minute slot) go through the same
catalog (`readings.payload_samples`) and the same lifetime-counter guard
(`counterguard.CounterGuard`) as the live exporter, so the file holds exactly
the live exporter's metric names, labels and scaling, each sample stamped with
the row's own `time` (fallback `recordTime`, the older spelling) read in the device's time zone.

Dates: `--from` and `--to` are plant-local days and BOTH INCLUSIVE, like the
API's startDate/endDate. `--to` defaults to yesterday (in `atess.timezone`).

Rate limit: the API allows one call per device per endpoint every 5 minutes
(docs/api.md), and every page of history is a call. Calls to one device are
therefore spaced by `--call-interval` (default `poll.interval_seconds`, 300 s),
measured from the end of the previous call; different devices proceed in
parallel (`--concurrency`, default `poll.concurrency`). One day of 5-minute rows
is 288 rows, i.e. 3 pages of 100: about 15 minutes per device-day at 300 s.

Resume: the work directory `<output>.parts/` keeps one part file per finished
(device, window), written atomically, and per device a state file (next day to
fetch, the finished parts, the counter guard's full state) replaced atomically
after the part. A run that is interrupted (Ctrl-C, crash, failed windows)
continues where it stopped when run again with the same --from/--to and
--output: finished windows are not fetched again and the guard resumes exactly
where it was, so the result equals an uninterrupted run. When a device's window
keeps failing, that device stops there (its later windows would be guarded out
of time order) and the others go on; the output is written with what was
fetched, the work directory is kept and the exit code is 1: run again to retry.
On full success the work directory is removed.

Exit codes: 0 done; 1 configuration error or some windows failed; 2 usage
error; 130 interrupted (resume by running the same command again).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO
from zoneinfo import ZoneInfo

from prometheus_client.utils import floatToGoString

from .catalog import BASE_LABELS, Catalog, FamilyCatalog, load_catalog
from .client import AtessClient, AtessError, HttpError, MalformedResponseError, NoDataError, RateLimitError, TransportError
from .config import MIN_INTERVAL_SECONDS, Config, ConfigError, DeviceConfig, load_config
from .counterguard import CounterGuard
from .models import rated_power_watts
from .discovery import discover, select_devices
from .readings import payload_samples, row_time

log = logging.getLogger("atess_exporter.backfill")

STATE_VERSION = 1
DEFAULT_PAGE_SIZE = 100
DEFAULT_RETRIES = 3
DEFAULT_RETRY_BACKOFF = 30.0
ROWS_PER_DAY = 288  # one row per 5-minute slot
MAX_PAGES = 10_000  # a server that never sends a short page must not loop forever

Clock = Callable[[], float]
Sleep = Callable[[float], Any]
WindowHook = Callable[[str, date, date], Any]


# -- command line -------------------------------------------------------------

def _date_arg(text: str) -> date:
    if not re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid date") from None


def _window_arg(text: str) -> int:
    m = re.match(r"^(\d+)([dw])$", text.strip())
    if not m or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window like 1d, 7d or 1w")
    return int(m.group(1)) * (7 if m.group(2) == "w" else 1)


def _nonneg(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atess-exporter backfill",
        description="Fetch the ATESS history of the configured devices into an OpenMetrics file "
                    "for `promtool tsdb create-blocks-from openmetrics`. See docs/backfill.md.")
    p.add_argument("--config.file", dest="config_file", default=os.environ.get("ATESS_CONFIG_FILE", "config.yaml"),
                   metavar="PATH", help="configuration file (default: %(default)s) [env ATESS_CONFIG_FILE]")
    p.add_argument("--from", dest="start", required=True, type=_date_arg, metavar="YYYY-MM-DD",
                   help="first plant-local day to fetch (inclusive)")
    p.add_argument("--to", dest="end", type=_date_arg, default=None, metavar="YYYY-MM-DD",
                   help="last plant-local day to fetch (inclusive; default: yesterday in atess.timezone)")
    p.add_argument("--sn", dest="sns", action="append", default=None, metavar="SN",
                   help="device serial number, repeatable (default: every configured device)")
    p.add_argument("--output", default="history.om", metavar="PATH",
                   help="OpenMetrics file to write (default: %(default)s); work files go to PATH.parts/")
    p.add_argument("--window", default="1d", type=_window_arg, metavar="Nd",
                   help="days per history request, e.g. 1d or 7d (the API likely caps 7 days; default: 1d)")
    p.add_argument("--page-size", dest="page_size", default=DEFAULT_PAGE_SIZE, type=int, metavar="N",
                   help="rows per history page (default: %(default)s); every page is one rate-limited call")
    p.add_argument("--call-interval", dest="call_interval", default=None, type=_nonneg(float), metavar="SECONDS",
                   help="minimum gap between two calls for one device (default: poll.interval_seconds, 300)")
    p.add_argument("--concurrency", default=None, type=int, metavar="N",
                   help="devices fetched in parallel (default: poll.concurrency)")
    p.add_argument("--retries", default=DEFAULT_RETRIES, type=_nonneg(int), metavar="N",
                   help="retries of a call after a transport error, HTTP 5xx or rate limit (default: %(default)s)")
    p.add_argument("--retry-backoff", dest="retry_backoff", default=DEFAULT_RETRY_BACKOFF, type=_nonneg(float),
                   metavar="SECONDS", help="first retry delay, doubling; never less than --call-interval (default: %(default)g)")
    p.add_argument("--quiet", action="store_true", help="no progress display, only the summary line and warnings")
    p.add_argument("--log.level", dest="log_level", default=None, choices=("debug", "info", "warn", "error"),
                   help="log level (default: info, or warn with --quiet)")
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json"))
    return p


# -- small pieces ---------------------------------------------------------------

def windows(start: date, end: date, days: int) -> Iterator[tuple[date, date]]:
    """Consecutive [first, last] day ranges (both inclusive) covering start..end."""
    day = start
    while day <= end:
        last = min(day + timedelta(days=days - 1), end)
        yield day, last
        day = last + timedelta(days=1)


def calls_for_rows(rows: int, page_size: int) -> int:
    """Pages needed for `rows`: the last page must be short, so an exact multiple costs one empty page."""
    return rows // page_size + 1


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


_escape_help = _escape_label  # OpenMetrics escapes HELP like label values


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in zip(names, values)) + "}"


def _timestamp(ts: float) -> str:
    return str(int(ts)) if ts == int(ts) else f"{ts:.3f}".rstrip("0").rstrip(".")


def _local_midnight(day: date, tz: ZoneInfo) -> float:
    return datetime.combine(day, dtime(0, 0), tzinfo=tz).timestamp()


def _series_key(line: str) -> str:
    return line.rsplit(" ", 2)[0]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def guard_state(guard: CounterGuard) -> dict:
    return {"glitches": guard.glitches, "tracks": guard.dump()}


def restore_guard(state: dict | None, confirm_polls: int) -> CounterGuard:
    guard = CounterGuard(confirm_polls=confirm_polls)
    if state:
        guard.glitches = int(state.get("glitches", 0))
        guard.load(state.get("tracks", ()))
    return guard


class _Stopped(Exception):
    """The run is being interrupted; a worker leaves at the next safe point."""


class Pacer:
    """Spaces one device's calls: the next call starts no sooner than
    `interval` after the previous one ended (the end, so the server, which
    sees the call somewhere in between, never sees two closer than that)."""

    def __init__(self, interval: float, clock: Clock, sleep: Sleep, stop: threading.Event):
        self.interval, self.clock, self.sleep, self.stop = interval, clock, sleep, stop
        self.next_at: float | None = None

    def wait(self) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            if self.next_at is None:
                return
            remaining = self.next_at - self.clock()
            if remaining <= 0:
                return
            self.sleep(remaining)

    def called(self) -> None:
        self.next_at = self.clock() + self.interval

    def defer(self, seconds: float) -> None:
        at = self.clock() + seconds
        self.next_at = at if self.next_at is None else max(self.next_at, at)


# -- progress -------------------------------------------------------------------

class Progress:
    """One line, redrawn in place on a TTY; nothing otherwise (the summary is separate)."""

    def __init__(self, stream: TextIO, live: bool, devices: int, days: int, done_days: int, rows: int):
        self.stream, self.live = stream, live
        self.devices, self.days = devices, days
        self.done_devices, self.done_days, self.rows, self.failed = 0, done_days, rows, 0
        self.visible = False
        self._lock = threading.Lock()
        self._drawn_at = 0.0

    def advance(self, days: int = 0, rows: int = 0, device_done: bool = False, failed: bool = False) -> None:
        with self._lock:
            self.done_days += days
            self.rows += rows
            self.done_devices += device_done
            self.failed += failed
            self._draw(force=device_done or failed)

    def line(self) -> str:
        fail = f", {self.failed} failed" if self.failed else ""
        return (f"backfill: devices {self.done_devices}/{self.devices}, days {self.done_days}/{self.days}, "
                f"rows {self.rows}{fail}")

    def _draw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        self.stream.write("\r\x1b[K" + self.line())
        self.stream.flush()
        self.visible = True

    def draw(self) -> None:
        with self._lock:
            self._draw(force=True)

    def clear(self) -> None:
        """Erase the line (before a log line or the summary)."""
        if self.visible:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.visible = False


class _LogStream:
    """stderr for log records: the progress line is erased first, redrawn on the next update."""

    def __init__(self, stream: TextIO, progress: Progress):
        self.stream, self.progress = stream, progress

    def write(self, text: str) -> int:
        with self.progress._lock:
            self.progress.clear()
            return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


# -- the work directory -----------------------------------------------------------

class WorkDir:
    """`<output>.parts/`: manifest.json, and per device sn-<SN>/state.json + part files."""

    def __init__(self, output: Path):
        self.root = output.with_name(output.name + ".parts")

    def exists(self) -> bool:
        return self.root.exists()

    def open(self, start: date, end: date) -> None:
        """Create, or check that an existing directory belongs to the same run."""
        manifest = self.root / "manifest.json"
        want = {"version": STATE_VERSION, "from": start.isoformat(), "to": end.isoformat()}
        if manifest.exists():
            have = json.loads(manifest.read_text(encoding="utf-8"))
            if {k: have.get(k) for k in want} != want:
                raise ConfigError(
                    f"{self.root}: holds an unfinished backfill of --from {have.get('from')} --to {have.get('to')}; "
                    "resume it with those dates, or delete the directory to start over")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(manifest, json.dumps(want) + "\n")

    def device_dir(self, sn: str) -> Path:
        return self.root / f"sn-{sn}"

    def load_state(self, sn: str) -> dict | None:
        path = self.device_dir(sn) / "state.json"
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def save_state(self, sn: str, state: dict) -> None:
        _atomic_write(self.device_dir(sn) / "state.json", json.dumps(state, separators=(",", ":")) + "\n")

    def write_part(self, sn: str, name: str, text: str) -> None:
        folder = self.device_dir(sn)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / name, text)

    def part_path(self, sn: str, name: str) -> Path:
        return self.device_dir(sn) / name

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -- the backfill -------------------------------------------------------------------

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
                 after_window: WindowHook | None = None):
        self.config, self.devices = config, devices
        self.start, self.end, self.output = start, end, output
        self.window_days, self.page_size = window_days, page_size
        self.call_interval, self.concurrency = call_interval, concurrency
        self.retries, self.retry_backoff = retries, retry_backoff
        self.client, self.catalog, self.clock = client, catalog, clock
        self.stop = threading.Event()
        self.sleep: Sleep = sleep if sleep is not None else self.stop.wait
        self.after_window = after_window
        self.work = WorkDir(output)
        self.confirm_polls = config.poll.counter_reset_confirm_polls
        self.progress = progress
        self.result = Result(devices=len(devices))
        self._lock = threading.Lock()

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
        self.result.samples = self.merge()
        if not self.result.failures:
            self.work.remove()
        return self.result

    def _device_worker(self, device: DeviceConfig) -> None:
        try:
            self._run_device(device)
        except _Stopped:
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
        guard = restore_guard(state.get("guard"), self.confirm_polls)
        guard.rated_watts = rated_power_watts(device.model)
        try:
            path = self.config.endpoint(device.type, "history")
        except KeyError:
            path = None
        todo = list(windows(date.fromisoformat(state["next"]), self.end, self.window_days))
        if todo and path is None:
            self._fail(Failure(sn, todo[0][0], todo[-1][1],
                               f"no history endpoint for device type {device.type}; set endpoints.{device.type}.history",
                               len(todo) - 1))
            return
        family = self.catalog.families[device.type]
        tz = self.config.device_timezone(device)
        pacer = Pacer(self.call_interval, self.clock, self.sleep, self.stop)
        for i, (first, last) in enumerate(todo):
            try:
                rows = self.fetch(pacer, path, sn, first, last)
            except AtessError as exc:
                self._fail(Failure(sn, first, last, str(exc), len(todo) - i - 1))
                return
            glitches = guard.glitches
            text, nrows = self.render(device, family, tz, guard, rows, first, last)
            name = f"{first.isoformat()}_{last.isoformat()}.om"
            self.work.write_part(sn, name, text)
            state.update(next=(last + timedelta(days=1)).isoformat(), parts=state["parts"] + [name],
                         rows=int(state.get("rows", 0)) + nrows, guard=guard_state(guard))
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

    def call(self, pacer: Pacer, path: str, params: dict) -> Any:
        """One history page, retried on transient errors; None when the API has no data."""
        attempt = 0
        while True:
            pacer.wait()
            try:
                return self.client.get(path, params)
            except NoDataError:
                return None
            except (TransportError, RateLimitError, MalformedResponseError, HttpError) as exc:
                error = exc  # transient, perhaps: decided below
            finally:
                pacer.called()  # failed calls count against the rate limit too
            if isinstance(error, HttpError) and error.status < 500 or attempt >= self.retries:
                raise error
            delay = self.retry_backoff * (2 ** attempt)
            attempt += 1
            log.info("history call failed, retrying", extra={"fields": {
                "sn": params.get("deviceSn"), "page": params.get("pageNo"), "outcome": error.outcome,
                "attempt": attempt, "retry_in_seconds": max(delay, self.call_interval)}})
            pacer.defer(delay)

    def fetch(self, pacer: Pacer, path: str, sn: str, first: date, last: date) -> list:
        """Every row of [first 00:00:00, last 23:59:59]: pages from 1 until `total`, a short
        page, or a page identical to the previous one (a server ignoring pageNo)."""
        rows: list = []
        previous = None
        fmt = self.config.history_date_format
        start = datetime.combine(first, dtime(0, 0, 0)).strftime(fmt)
        end = datetime.combine(last, dtime(23, 59, 59)).strftime(fmt)
        for page in range(1, MAX_PAGES + 1):
            data = self.call(pacer, path, {"deviceSn": sn, "startDate": start, "endDate": end,
                                           "pageNo": page, "pageSize": self.page_size})
            if data is None:
                datas: Any = []
            elif isinstance(data, dict):
                datas = data.get("datas")
            else:
                datas = data
            if datas is None:
                datas = []
            if not isinstance(datas, list):
                raise MalformedResponseError(f"{path}: data.datas is {type(datas).__name__}, expected a list")
            if datas and datas == previous:
                return rows  # the same page again: the server ignores pageNo
            previous = datas
            rows.extend(datas)
            total = data.get("total") if isinstance(data, dict) else None
            if isinstance(total, int) and not isinstance(total, bool) and 0 <= total <= len(rows) and datas:
                return rows
            if len(datas) < self.page_size:
                if isinstance(total, int) and not isinstance(total, bool) and total > len(rows):
                    log.warning("history has fewer rows than the API's total; the API may cap pageSize, "
                                "try a smaller --page-size", extra={"fields": {
                                    "sn": sn, "window": f"{first}..{last}", "rows": len(rows), "total": total}})
                return rows
        raise MalformedResponseError(f"{path}: more than {MAX_PAGES} pages for {sn} {first}..{last}")

    def render(self, device: DeviceConfig, family: FamilyCatalog, tz: ZoneInfo, guard: CounterGuard,
               rows: list, first: date, last: date) -> tuple[str, int]:
        """One window's rows as OpenMetrics sample lines, sorted by metric, series, time."""
        lo, hi = _local_midnight(first, tz), _local_midnight(last + timedelta(days=1), tz)
        by_time: dict[float, dict] = {}
        dropped = 0
        for row in rows:
            ts = None
            if isinstance(row, dict):
                ts = row_time(row, tz)
            if ts is None or not lo <= ts < hi or ts in by_time:
                dropped += 1  # no usable time, outside the window, or a repeated slot
                continue
            by_time[ts] = row
        if dropped:
            log.debug("history rows dropped", extra={"fields": {"sn": device.sn, "window": f"{first}..{last}",
                                                                "dropped": dropped}})
        series: dict[tuple[str, tuple[str, ...]], list[tuple[float, float]]] = {}
        for ts in sorted(by_time):
            row_samples = payload_samples(family, by_time[ts], device.model)
            live = guard.live(v for name, entries in row_samples.items()
                              if self.catalog.describe_metric(name).type == "counter" for _, v in entries)
            for name, entries in row_samples.items():
                counter = self.catalog.describe_metric(name).type == "counter"
                for labels, value in entries:
                    if counter:  # the live poller's rules, with the row's own time
                        value = guard.check((name, labels), value, at=ts, live=live)
                        if value is None:
                            continue
                    series.setdefault((name, labels), []).append((ts, value))
        ids = (device.sn, device.model or "unknown")
        out = []
        for name, labels in sorted(series):
            m = self.catalog.describe_metric(name)
            prefix = name + _labels(BASE_LABELS + m.labels, ids + labels)
            out.extend(f"{prefix} {floatToGoString(v)} {_timestamp(ts)}\n" for ts, v in series[(name, labels)])
        return "".join(out), len(by_time)

    # ---- the final file
    def merge(self) -> int:
        """All finished parts into `output`: families grouped, series contiguous, time ascending."""
        buckets = self.work.root / "merge"
        shutil.rmtree(buckets, ignore_errors=True)
        names: set[str] = set()
        sns = sorted(d.sn for d in self.devices)
        for sn in sns:  # pass 1: each device's parts split per metric, in window order
            state = self.work.load_state(sn)
            if not state:
                continue
            folder = buckets / f"sn-{sn}"
            folder.mkdir(parents=True, exist_ok=True)
            handles: dict[str, TextIO] = {}
            try:
                for part in state["parts"]:
                    with open(self.work.part_path(sn, part), encoding="utf-8") as fh:
                        for line in fh:
                            name = line[: line.index("{")]
                            out = handles.get(name)
                            if out is None:
                                out = handles[name] = open(folder / name, "w", encoding="utf-8")
                            out.write(line)
            finally:
                for out in handles.values():
                    out.close()
            names.update(handles)
        known = [n for n in names if n in self.catalog.metrics]
        for n in sorted(set(names) - set(known)):
            log.warning("metric no longer in the catalog, left out", extra={"fields": {"metric": n}})
        samples = 0
        tmp = self.output.with_name(self.output.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as out:  # pass 2: one family at a time
            for name in sorted(known, key=lambda n: self.catalog.describe_metric(n).family):
                m = self.catalog.describe_metric(name)
                help_text = self.catalog.help_text(name, self.config.poll.interval_seconds)
                out.write(f"# HELP {m.family} {_escape_help(help_text)}\n# TYPE {m.family} {m.type}\n")
                for sn in sns:
                    path = buckets / f"sn-{sn}" / name
                    if not path.exists():
                        continue
                    with open(path, encoding="utf-8") as fh:
                        lines = fh.readlines()
                    lines.sort(key=_series_key)  # stable: time order within a series is kept
                    previous = None
                    for line in lines:
                        series, _, ts = line.rsplit(" ", 2)
                        key = (series, ts)
                        if key == previous:
                            continue
                        previous = key
                        out.write(line)
                        samples += 1
            out.write("# EOF\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.output)
        shutil.rmtree(buckets, ignore_errors=True)
        return samples


# -- entry point ---------------------------------------------------------------------

def _level(name: str) -> str:
    return "warning" if name == "warn" else name


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def known_devices(config) -> dict:
    """The devices the live exporter would poll: configured, or discovered in the
    account, narrowed by include/exclude and the shard."""
    topology = None
    if config.discovery.enabled:
        topology = discover(AtessClient(config.api), config, list(config.discovery.families or load_catalog().families))
    return select_devices(config, topology)


def main(argv: list[str], *, clock: Clock | None = None, sleep: Sleep | None = None,
         stderr: TextIO | None = None, after_window: WindowHook | None = None) -> int:
    """`atess-exporter backfill ...`. `clock`, `sleep`, `stderr` and `after_window`
    (called after each finished window with sn, first day, last day) are for tests."""
    stderr = stderr if stderr is not None else sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    def say(text: str) -> None:
        stderr.write(text + "\n")
        stderr.flush()

    try:
        config = load_config(args.config_file, writes_state=False)
    except ConfigError as exc:
        say(f"atess-exporter backfill: config error: {exc}")
        return 1
    try:
        by_sn = known_devices(config)
    except AtessError as exc:
        say(f"atess-exporter backfill: discovery failed: {exc}")
        return 1
    if args.sns:
        unknown = [sn for sn in args.sns if sn not in by_sn]
        if unknown:
            say(f"atess-exporter backfill: --sn {unknown[0]} is not a device in {config.source}; "
                f"configured: {', '.join(sorted(by_sn))}")
            return 2
        devices = [by_sn[sn] for sn in dict.fromkeys(args.sns)]
    else:
        devices = list(by_sn.values())
    end = args.end
    today = datetime.now(ZoneInfo(config.api.timezone)).date()
    if end is None:
        end = today - timedelta(days=1)
    if end < args.start:
        say(f"atess-exporter backfill: --to {end} is before --from {args.start}; both days are inclusive")
        return 2
    if args.page_size < 1:
        say("atess-exporter backfill: --page-size must be 1 or more")
        return 2
    call_interval = config.poll.interval_seconds if args.call_interval is None else args.call_interval
    concurrency = args.concurrency or config.poll.concurrency
    output = Path(args.output)

    quiet = args.quiet
    is_tty = bool(getattr(stderr, "isatty", lambda: False)())
    level = args.log_level or ("warn" if quiet else "info")
    from .logs import setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    job: Backfill | None = None
    progress = Progress(stderr, live=is_tty and not quiet, devices=len(devices), days=0, done_days=0, rows=0)
    setup_logging(_level(level), args.log_format, secrets=config.api.credentials.values(),
                  stream=_LogStream(stderr, progress))
    try:
        job = Backfill(
            config, devices, start=args.start, end=end, output=output, window_days=args.window,
            page_size=args.page_size, call_interval=call_interval, concurrency=concurrency,
            retries=args.retries, retry_backoff=args.retry_backoff, client=AtessClient(config.api),
            catalog=config.catalog(), clock=clock or time.monotonic, sleep=sleep, progress=progress,
            after_window=after_window)
        if end >= today:
            log.warning("--to includes today: today's history is partial and overlaps what the live exporter "
                        "is writing to Prometheus's head block; backfill past days only",
                        extra={"fields": {"to": end.isoformat()}})
        if call_interval < MIN_INTERVAL_SECONDS:
            log.warning("--call-interval below the API's limit of one call per device every 5 minutes; "
                        "calls may be refused", extra={"fields": {"call_interval_seconds": call_interval}})
        if args.window > 7:
            log.warning("--window over 7 days: the API probably refuses such ranges", extra={"fields": {"days": args.window}})
        resuming = job.work.exists()
        try:
            job.work.open(args.start, end)
        except ConfigError as exc:
            say(f"atess-exporter backfill: {exc}")
            return 2
        done_days, done_rows = job.done_so_far()
        progress.days, progress.done_days, progress.rows = job.total_days(), done_days, done_rows
        calls = job.estimated_calls()
        log.info("backfill starting", extra={"fields": {
            "devices": len(devices), "from": args.start.isoformat(), "to": end.isoformat(),
            "resuming": resuming, "days_done": done_days, "calls_per_device": calls,
            "call_interval_seconds": call_interval, "concurrency": concurrency,
            "estimated_duration": _duration(calls * call_interval * -(-len(devices) // max(1, concurrency)))}})
        progress.draw()
        result = job.run()
        progress.clear()
        if result.interrupted:
            say(f"atess-exporter backfill: interrupted; {progress.done_days}/{progress.days} device-days are kept "
                f"in {job.work.root}; run the same command again to resume")
            return 130
        summary = (f"atess-exporter backfill: {len(devices)} device{'s' if len(devices) != 1 else ''}, "
                   f"{progress.done_days}/{progress.days} "
                   f"device-days, {progress.rows} rows, {result.samples} samples -> {output}")
        if result.glitches:
            summary += f"; {result.glitches} lifetime-total glitches held back"
        if result.failures:
            failed = ", ".join(f"{f.sn} from {f.start}" for f in result.failures)
            summary += (f"; FAILED: {failed} (run the same command again to retry; "
                        f"work files kept in {job.work.root})")
        say(summary)
        return 1 if result.failures else 0
    except KeyboardInterrupt:
        if job is not None:
            job.stop.set()
        progress.clear()
        say("atess-exporter backfill: interrupted; run the same command again to resume")
        return 130
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
