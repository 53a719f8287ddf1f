"""`atess-exporter backfill ...`: the arguments, the devices, the warnings before a
long run, the summary line and the exit code (see the package docstring)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, TextIO

from atess_exporter.catalog import load_catalog
from atess_exporter.api.client import AtessClient, AtessError
from atess_exporter.config import MIN_INTERVAL_SECONDS, ConfigError, load_config
from atess_exporter.account.discovery import discover, select_devices
from atess_exporter.backfill.pacing import Clock, LogStream, Progress, Sleep
from atess_exporter.backfill.calibrate import CalibrationError, servers_zone
from atess_exporter.backfill.run import Backfill, WindowHook

log = logging.getLogger("atess_exporter.backfill")  # the package's name: log lines read as before the split

DEFAULT_PAGE_SIZE = 100
DEFAULT_RETRIES = 3
DEFAULT_RETRY_BACKOFF = 30.0


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


MAX_CONCURRENCY = 256   # as poll.concurrency: threads and connections, not API calls per device


def _concurrency(text: str) -> int:
    value = _nonneg(int)(text)
    if not 1 <= value <= MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 1 and {MAX_CONCURRENCY}")
    return value


def plan(devices: int, calls_per_device: int, call_interval: float, concurrency: int) -> dict[str, Any]:
    """The start line's estimate, and the concurrency that fits the range in the least
    time the rate limit allows. Calls to one device are spaced by call_interval; devices
    run side by side, `concurrency` at a time, so the run takes about
    calls x interval x rounds, rounds = ceil(devices / concurrency). The least is one
    round; the smallest concurrency giving the fewest rounds is recommended."""
    def duration(c: int) -> float:
        return calls_per_device * call_interval * -(-devices // max(1, c))

    rounds = -(-devices // MAX_CONCURRENCY)
    best = max(1, -(-devices // rounds)) if devices else 1
    out: dict[str, Any] = {"concurrency": concurrency, "estimated_duration": _duration(duration(concurrency))}
    if duration(best) < duration(concurrency):
        out["recommended"] = (f"--concurrency {best} finishes in about {_duration(duration(best))}, the least the API's "
                              f"limit of one call per device every {call_interval:g}s allows for this range")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atess-exporter backfill",
        description="Fetch the ATESS history of the configured devices into an OpenMetrics file "
                    "for `promtool tsdb create-blocks-from openmetrics`. See docs/backfill.md.")
    p.add_argument("--config.file", dest="config_file", default=os.environ.get("ATESS_CONFIG_FILE", "config.yaml"),
                   metavar="PATH", help="configuration file (default: %(default)s) [env ATESS_CONFIG_FILE]")
    p.add_argument("--account", metavar="NAME", default=None,
                   help="with accounts: in the config, the account whose devices to fetch (required when there are several)")
    p.add_argument("--from", dest="start", required=True, type=_date_arg, metavar="YYYY-MM-DD",
                   help="first day to fetch (inclusive), in the zone the API writes times in")
    p.add_argument("--to", dest="end", type=_date_arg, default=None, metavar="YYYY-MM-DD",
                   help="last day to fetch (inclusive; default: yesterday in the API's zone: measured, or atess.timezone)")
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
    p.add_argument("--concurrency", default=None, type=_concurrency, metavar="N",
                   help="devices fetched in parallel, 1-256 (default: poll.concurrency; the start line recommends "
                        "the value that finishes soonest)")
    p.add_argument("--retries", default=DEFAULT_RETRIES, type=_nonneg(int), metavar="N",
                   help="retries of a call after a transport error or HTTP 5xx (default: %(default)s); "
                        "any other failure stops the device: run again to resume")
    p.add_argument("--retry-backoff", dest="retry_backoff", default=DEFAULT_RETRY_BACKOFF, type=_nonneg(float),
                   metavar="SECONDS", help="first retry delay, doubling; never less than --call-interval (default: %(default)g)")
    p.add_argument("--quiet", action="store_true", help="no progress display, only the summary line and warnings")
    p.add_argument("--log.level", dest="log_level", default=None, choices=("debug", "info", "warn", "error"),
                   help="log level (default: info, or warn with --quiet)")
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json"))
    return p



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
        config = load_config(args.config_file, writes_state=False).one_account(args.account)
    except (ConfigError, ValueError) as exc:
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
    if args.end is not None and args.end < args.start:
        say(f"atess-exporter backfill: --to {args.end} is before --from {args.start}; both days are inclusive")
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
    from atess_exporter.outside.logs import setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    job: Backfill | None = None
    progress = Progress(stderr, live=is_tty and not quiet, devices=len(devices), days=0, done_days=0, rows=0)
    setup_logging(_level(level), args.log_format, secrets=config.api.credentials.values(),
                  stream=LogStream(stderr, progress))
    try:
        try:  # after the log set-up: the offset found is logged
            zone = servers_zone(config, AtessClient(config.api), list(by_sn.values()))
        except CalibrationError as exc:
            say(f"atess-exporter backfill: {exc}")
            return 1
        today = datetime.now(zone).date()
        end = args.end if args.end is not None else today - timedelta(days=1)
        if end < args.start:
            say(f"atess-exporter backfill: --to {end} is before --from {args.start}; both days are inclusive")
            return 2
        job = Backfill(
            config, devices, start=args.start, end=end, output=output, window_days=args.window,
            page_size=args.page_size, call_interval=call_interval, concurrency=concurrency,
            retries=args.retries, retry_backoff=args.retry_backoff, client=AtessClient(config.api, connections=concurrency),
            catalog=config.catalog(), clock=clock or time.monotonic, sleep=sleep, progress=progress,
            after_window=after_window, zone=zone)
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
            "call_interval_seconds": call_interval, **plan(len(devices), calls, call_interval, concurrency)}})
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
