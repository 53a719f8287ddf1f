#!/usr/bin/env python
"""Fleet benchmarks through the path a user's process takes (issue 21).

    .venv/bin/python benchmarks/realpath.py discovery [--plants 1000] [--devices-per-plant 10] [--latency 0.1]
    .venv/bin/python benchmarks/realpath.py restart [--plants 1000] [--max-calls 3600]
    .venv/bin/python benchmarks/realpath.py once [--devices 5000] [--latency 0.8]
    .venv/bin/python benchmarks/realpath.py accounts [--devices 2000] [--accounts 10] [--latency 0.2]

The exporter runs as its own process (`exporter.py --config.file ...`, a
token-only config, JSON logs), the account is the loopback fake of
atess_exporter/simulator/fleet.py in another process (its calls answer after
`latency`), so neither measures the other's CPU.

discovery: time from the exporter's start to its "serving metrics" line (logged
once the first discovery has adopted the account), the devices adopted, the
list calls the fake answered. Reference, measured in the same run: the fake's
round trip for one list call (20 calls in a row) times the list calls needed,
divided by discovery.concurrency (the best any walk at that concurrency can do).

restart: a first exporter whose walk `discovery.max_calls` stops, stopped right
after its first refresh; a second one from the same state file: the devices it
adopts at start-up, its list calls then and until its walk ends, against the
calls one complete walk needs.

once: `exporter.py --once` over N explicit devices whose latest-data calls answer
after `latency`: its wall time, the most calls the fake saw in flight, and the
reference measured in the same run (the fake's round trip times N, divided by
poll.concurrency: what --once took before it sized its workers).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKEN = "bench-token"


class Fake:
    """The fleet fake in a process of its own."""

    def __init__(self, **options):
        args = [sys.executable, "-m", "atess_exporter.simulator.fleet"]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.url = self.proc.stdout.readline().strip()
        split = urlsplit(self.url)
        self.host, self.port = split.hostname, split.port

    def get(self, path: str) -> dict:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def round_trip(self, n: int = 20, path: str = "/api/v1/hps/big-base-info/list?dataLogSn=DL0000000") -> float:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        started = time.monotonic()
        for _ in range(n):
            conn.request("GET", path)
            conn.getresponse().read()
        conn.close()
        return (time.monotonic() - started) / n

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Exporter:
    """exporter.py as a user runs it; every JSON log line is kept with its arrival time."""

    def __init__(self, config: dict, workdir: Path, env: dict | None = None):
        import yaml

        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "exporter.py"), "--config.file", str(path), "--log.format", "json",
             "--web.listen-address", "127.0.0.1:0"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=workdir,
            env={**os.environ, **(env or {})})
        self.lines: list[tuple[float, dict]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"msg": line.strip()}
            with self._cond:
                self.lines.append((time.monotonic() - self.started, record))
                self._cond.notify_all()

    def wait_for(self, msg: str, timeout: float) -> tuple[float, dict] | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, record in self.lines:
                    if record.get("msg") == msg:
                        return at, record
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self._cond.wait(left)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def list_calls_needed(plants: int, max_page_size: int = 1000) -> int:
    """One complete walk of the fake's account: the plant pages, a datalogger list per plant
    (one datalogger each), a device list per datalogger and family."""
    from atess_exporter.config.model import DiscoveryConfig

    families = 6
    return -(-plants // min(max_page_size, DiscoveryConfig().page_size)) + plants + plants * families


def discovery(args) -> dict:
    fake = Fake(plants=args.plants, devices_per_datalog=args.devices_per_plant, latency=args.latency,
                max_page_size=args.max_page_size)
    try:
        round_trip = fake.round_trip()
        with tempfile.TemporaryDirectory() as tmp:
            config = {"atess": {"base_url": fake.url, "token": TOKEN}}
            exporter = Exporter(config, Path(tmp))
            try:
                ready = exporter.wait_for("serving metrics", args.timeout)
                stats = fake.get("/_stats")
            finally:
                exporter.stop()
            warnings = [r for _, r in exporter.lines if r.get("level") in ("warning", "error")]
    finally:
        fake.stop()
    from atess_exporter.config.model import DiscoveryConfig

    concurrency = DiscoveryConfig().concurrency
    needed = list_calls_needed(args.plants, args.max_page_size)
    reference = needed * round_trip / concurrency
    seconds = ready[0] if ready else float("nan")
    return {"plants": args.plants, "devices": args.plants * args.devices_per_plant,
            "adopted": ready[1].get("devices") if ready else 0, "seconds": round(seconds, 1),
            "list_calls": stats["calls"].get("list", 0) - 20, "list_calls_needed": needed,
            "round_trip_ms": round(round_trip * 1000, 1), "reference_seconds": round(reference, 1),
            "ratio": round(seconds / reference, 2) if ready else None,
            "warnings": [w.get("msg") for w in warnings][:5]}


def restart(args) -> dict:
    """A walk stopped by discovery.max_calls, the exporter restarted (SIGTERM) right after:
    what the second process adopts at start-up and the list calls until its walk ends,
    against one complete walk's calls (the reference: nothing read twice)."""
    fake = Fake(plants=args.plants, devices_per_datalog=args.devices_per_plant, latency=args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = {"atess": {"base_url": fake.url, "token": TOKEN}, "state_file": str(Path(tmp) / "state.json"),
                      "discovery": {"max_calls": args.max_calls}}
            first = Exporter(config, Path(tmp))
            try:
                found = first.wait_for("discovery", args.timeout)
            finally:
                first.stop()
            calls_first = fake.get("/_stats")["calls"].get("list", 0)
            second = Exporter(config, Path(tmp))
            try:
                ready = second.wait_for("serving metrics", 120)
                calls_at_start = fake.get("/_stats")["calls"].get("list", 0) - calls_first
                deadline = time.monotonic() + args.timeout
                done = None
                while done is None and time.monotonic() < deadline and second.proc.poll() is None:
                    time.sleep(1)
                    done = next((r for _, r in list(second.lines) if r.get("msg") == "discovery" and r.get("complete")),
                                None)
                ended = time.monotonic() - second.started
            finally:
                second.stop()
            calls = fake.get("/_stats")["calls"].get("list", 0)
    finally:
        fake.stop()
    return {"plants": args.plants, "devices": args.plants * args.devices_per_plant, "max_calls": args.max_calls,
            "first_run_devices": found[1].get("devices") if found else None, "first_run_list_calls": calls_first,
            "adopted_at_restart": ready[1].get("devices") if ready else None, "list_calls_at_restart": calls_at_start,
            "walk_ended_after_restart_s": round(ended, 1) if done else None,
            "devices_at_end": done.get("devices") if done else None,
            "list_calls_total": calls, "one_walk_needs": list_calls_needed(args.plants)}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# What Prometheus 2 and 3 ask for (benchmarks/scrape.py measures every format).
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "text/plain;version=1.0.0;escaping=allow-utf-8")


def prometheus_scrape(url: str, clients: int = 1) -> int:
    """One scrape as Prometheus 2 makes it (gzip), and as Prometheus 3 with `clients` 2 (each
    format the exporter serves keeps its own rendered pieces); the bytes received."""
    split = urlsplit(url)
    size = 0
    for accept in PROMETHEUS_ACCEPT[:clients]:
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=120)
        conn.request("GET", split.path, headers={"Accept": accept, "Accept-Encoding": "gzip"})
        size += len(conn.getresponse().read())
        conn.close()
    return size


def scrape(url: str) -> dict[str, float]:
    """The exporter's own unlabelled gauges (atess_poll_*, process_*) from /metrics."""
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=120)
    conn.request("GET", split.path)
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, number = line.partition(" ")
            out[name] = float(number)
    return out


def polling(args) -> dict:
    """A fleet of explicit devices under the default poll settings, the fake refusing any call
    inside a device's interval; runs `duration` seconds, then reads the fake's counts."""
    fake = Fake(plants=args.devices // 10, devices_per_datalog=10, latency=0.1, latest_latency=args.latency,
                enforce_interval=args.interval)
    try:
        round_trip = fake.round_trip(5, "/api/v1/hps/data-last?deviceSn=NOT-IN-THE-FLEET")
        devices = fleet_devices(args.devices)
        poll = {"interval_seconds": args.interval}
        if args.max_concurrency:
            poll["max_concurrency"] = args.max_concurrency
        with tempfile.TemporaryDirectory() as tmp:
            config = {"atess": {"base_url": fake.url, "token": TOKEN}, "devices": devices, "poll": poll,
                      "state_file": ""}
            exporter = Exporter(config, Path(tmp))
            try:
                ready = exporter.wait_for("serving metrics", 120)
                url = ready[1]["url"]
                swept_at = None
                deadline = time.monotonic() + args.duration
                while time.monotonic() < deadline:
                    time.sleep(5)
                    stats = fake.get("/_stats")
                    if swept_at is None and stats["devices_called"] == args.devices:
                        swept_at = time.monotonic() - exporter.started
                        rss_after_sweep = rss_mb(exporter.proc.pid)
                metrics = scrape(url)
                stats = fake.get("/_stats")
                rss_end = rss_mb(exporter.proc.pid)
            finally:
                exporter.stop()
    finally:
        fake.stop()
    ideal = args.devices * round_trip / max(metrics.get("atess_poll_concurrency", 1), 1)
    return {"devices": args.devices, "latency_s": args.latency, "interval_s": args.interval,
            "max_concurrency": args.max_concurrency or "default", "run_s": args.duration,
            "round_trip_ms": round(round_trip * 1000), "devices_polled": stats["devices_called"],
            "startup_sweep_s": round(stats["first_call_span"], 1) if stats["first_call_span"] else None,
            "all_polled_after_start_s": round(swept_at, 1) if swept_at else None,
            "sweep_vs_interval": round(stats["first_call_span"] / args.interval, 2) if stats["first_call_span"] else None,
            "refused_inside_interval": stats["refused"], "min_gap_s": round(stats["min_gap"], 2) if stats["min_gap"] else None,
            "max_calls_per_device": stats["latest_per_device_max"],
            "concurrency": metrics.get("atess_poll_concurrency"), "overdue": metrics.get("atess_poll_overdue_devices"),
            "behind": metrics.get("atess_poll_devices_behind"),
            "sweep_metric_s": metrics.get("atess_poll_sweep_duration_seconds"),
            "oldest_reading_age_s": metrics.get("atess_poll_oldest_reading_age_seconds"),
            "ideal_sweep_s": round(ideal, 1), "warning": [w.get("devices_behind") for _, w in exporter.lines
                                                          if w.get("msg", "").startswith("polling cannot keep up")],
            "rss_after_sweep_mb": round(rss_after_sweep, 1) if swept_at else None, "rss_end_mb": round(rss_end, 1)}


def fleet_devices(n: int) -> list[dict]:
    from atess_exporter.simulator.fleet import FleetAccount

    sns = FleetAccount(n // 10, 1, 10)   # the fake's SNs and families, not served
    return [{"sn": sn, "type": sns.family_of[sn]} for sn in sns.sns]


def once(args) -> dict:
    """`exporter.py --once` over a fleet of explicit devices, as a user runs it."""
    import yaml

    fake = Fake(plants=args.devices // 10, devices_per_datalog=10, latency=0.1, latest_latency=args.latency)
    try:
        round_trip = fake.round_trip(5, "/api/v1/hps/data-last?deviceSn=NOT-IN-THE-FLEET")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(yaml.safe_dump({"atess": {"base_url": fake.url, "token": TOKEN},
                                            "devices": fleet_devices(args.devices), "state_file": ""}))
            started = time.monotonic()
            done = subprocess.run([sys.executable, str(ROOT / "exporter.py"), "--once", "--config.file", str(path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp, timeout=args.timeout)
            took = time.monotonic() - started
        stats = fake.get("/_stats")
    finally:
        fake.stop()
    before = args.devices * round_trip / 4   # poll.concurrency's default: --once before it sized its workers
    return {"devices": args.devices, "latency_s": args.latency, "exit": done.returncode, "once_s": round(took, 1),
            "of_interval": round(took / 300, 2), "peak_in_flight": stats["max_in_flight"],
            "devices_polled": stats["devices_called"], "round_trip_ms": round(round_trip * 1000),
            "at_4_workers_s": round(before, 1), "ratio_to_4_workers": round(took / before, 2)}


def accounts(args) -> list[dict]:
    """The same devices as one account (the reference, measured in the same run) and split over
    `accounts` accounts, each its own loopback fake in its own process: time from start to the
    last device's first poll, calls per device, RSS after the sweep and three Prometheus
    scrapes, and the ratios of the split run to the reference."""
    rows = []
    for count in (1, args.accounts):
        per = args.devices // count
        fakes = [Fake(plants=per // 10, devices_per_datalog=10, latency=0.01, latest_latency=args.latency,
                      payloads="sim", prefix=f"A{i}" if count > 1 else "") for i in range(count)]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                if count == 1:
                    config: dict = {"atess": {"base_url": fakes[0].url, "token": TOKEN}}
                else:
                    config = {"accounts": [{"name": f"customer-{i}", "base_url": fake.url, "token": TOKEN}
                                           for i, fake in enumerate(fakes)]}
                config["state_file"] = str(Path(tmp) / "state.json")
                exporter = Exporter(config, Path(tmp), env=args.env)
                try:
                    ready = exporter.wait_for("serving metrics", 900)
                    url = ready[1]["url"]
                    deadline = time.monotonic() + 1800
                    while (sum(f.get("/_stats")["devices_called"] for f in fakes) < per * count
                           and time.monotonic() < deadline):
                        time.sleep(1)
                    swept = time.monotonic() - exporter.started
                    for _ in range(3):
                        prometheus_scrape(url)
                    rss = rss_mb(exporter.proc.pid)
                    stats = [f.get("/_stats") for f in fakes]
                finally:
                    exporter.stop()
        finally:
            for fake in fakes:
                fake.stop()
        rows.append({"accounts": count, "devices": per * count, "sweep_s": round(swept, 1), "rss_mb": round(rss, 1),
                     "latest_calls": sum(st["calls"].get("latest", 0) for st in stats),
                     "plant_list_calls": sum(st["calls"].get("list:plant", 0) for st in stats)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    ref, split = rows
    split.update(sweep_ratio=round(split["sweep_s"] / ref["sweep_s"], 2), rss_ratio=round(split["rss_mb"] / ref["rss_mb"], 2),
                 rss_per_account_mb=round((split["rss_mb"] - ref["rss_mb"]) / (args.accounts - 1), 1))
    return rows


def memory(args) -> list[dict]:
    """RSS of the exporter process on the real path: a token-only config discovers the fake's
    account, the poller polls every device over HTTP (full simulator payloads that change every
    5 minutes), Prometheus 2 and 3 scrape every 15 s. RSS after the start-up sweep (and three
    scrapes), then after `churn` seconds more of polling and scraping (max and last)."""
    rows = []
    for n in [int(x) for x in args.devices.split(",")]:
        fake = Fake(plants=n // 10, devices_per_datalog=10, latency=0.01, latest_latency=args.latency, payloads="sim")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                config = {"atess": {"base_url": fake.url, "token": TOKEN},
                          "state_file": str(Path(tmp) / "state.json")}
                exporter = Exporter(config, Path(tmp), env=args.env)
                try:
                    ready = exporter.wait_for("serving metrics", 900)
                    url = ready[1]["url"]
                    deadline = time.monotonic() + 1800
                    while fake.get("/_stats")["devices_called"] < n and time.monotonic() < deadline:
                        time.sleep(2)
                    swept = time.monotonic() - exporter.started
                    for _ in range(3):
                        prometheus_scrape(url, args.clients)
                    after_sweep = rss_mb(exporter.proc.pid)
                    peak, end = after_sweep, time.monotonic() + args.churn
                    while time.monotonic() < end:
                        time.sleep(15)
                        prometheus_scrape(url, args.clients)
                        peak = max(peak, rss_mb(exporter.proc.pid))
                    last = rss_mb(exporter.proc.pid)
                    polls = fake.get("/_stats")["calls"].get("latest", 0)
                finally:
                    exporter.stop()
        finally:
            fake.stop()
        goal = 50 + 40 * n / 1024
        rows.append({"devices": n, "sweep_s": round(swept), "rss_after_sweep_mb": round(after_sweep, 1),
                     "rss_churn_max_mb": round(peak, 1), "rss_churn_end_mb": round(last, 1),
                     "churn_s": args.churn, "polls": polls, "scrapers": args.clients,
                     "malloc_arena_max": args.malloc_arena_max or "glibc default", "goal_mb": round(goal, 1),
                     "kib_per_device_above_50mb": round(max(peak - 50, 0) * 1024 / n, 1),
                     "within_goal": peak <= goal})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)

    def account(name: str, latency: float, timeout: float) -> argparse.ArgumentParser:
        """A subcommand over the fake's account: its size, its lists' latency, how long to wait."""
        command = sub.add_parser(name)
        command.add_argument("--plants", type=int, default=1000)
        command.add_argument("--devices-per-plant", type=int, default=10)
        command.add_argument("--latency", type=float, default=latency)
        command.add_argument("--timeout", type=float, default=timeout)
        return command

    def fleet(name: str, devices: int, latency: float) -> argparse.ArgumentParser:
        """A subcommand over N devices whose latest-data calls answer after `latency`."""
        command = sub.add_parser(name)
        command.add_argument("--devices", type=int, default=devices)
        command.add_argument("--latency", type=float, default=latency)
        return command

    d = account("discovery", 0.1, 600)
    d.add_argument("--max-page-size", type=int, default=1000)
    p = fleet("polling", 5000, 0.8)
    p.add_argument("--interval", type=float, default=300)
    p.add_argument("--max-concurrency", type=int, default=0)
    p.add_argument("--duration", type=float, default=640)
    r = account("restart", 0.0, 900)
    r.add_argument("--max-calls", type=int, default=3600)
    o = fleet("once", 5000, 0.8)
    o.add_argument("--timeout", type=float, default=1800)
    a = fleet("accounts", 2000, 0.2)
    a.add_argument("--accounts", type=int, default=10)
    m = sub.add_parser("memory")
    m.add_argument("--devices", default="1000,5000,10000")
    m.add_argument("--latency", type=float, default=0.05)
    m.add_argument("--churn", type=float, default=600, help="seconds of polling and scraping after the sweep")
    m.add_argument("--clients", type=int, default=1, choices=(1, 2), help="1: Prometheus 2's headers; 2: also Prometheus 3's")
    m.add_argument("--malloc-arena-max", type=int, default=0, help="run the exporter with MALLOC_ARENA_MAX=N")
    args = parser.parse_args()
    args.env = {"MALLOC_ARENA_MAX": str(args.malloc_arena_max)} if getattr(args, "malloc_arena_max", 0) else None
    result = {"discovery": discovery, "polling": polling, "restart": restart, "once": once,
              "memory": memory, "accounts": accounts}[args.what](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
