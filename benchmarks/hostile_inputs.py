#!/usr/bin/env python
"""What hostile peers and configs cost the exporter (issue 12), measured on loopback.

    .venv/bin/python benchmarks/hostile_inputs.py

Each row runs in a fresh subprocess (peak RSS is per process):

- gzip bomb: one API call answered with 1 MiB of gzip that inflates to 1 GiB;
  peak RSS of the calling process, against the same process making a normal call.
- dripping server: one call against a server sending 1 byte/s, timeout_seconds 5.
- SIGTERM: the exporter (2 devices, timeout_seconds 60) with both calls hanging
  on a dripping server; time from SIGTERM to exit.
- configs: --check-config on a YAML "billion laughs" and on token_file: /dev/zero;
  time and peak RSS.

The scrape side and the files read back (issue 19), against the demo exporter
(`--demo`, 8 simulated devices) in its own process, measured from outside:

- 4,000 distinct `Accept: application/openmetrics-text;version=1.0.N`: the
  exporter's RSS, against 4,000 scrapes with Prometheus' own Accept;
- 1,000 `version=1.0.0x`: the answers and the error lines logged;
- a password flood (basic auth, bcrypt cost 10): 16 clients with distinct
  wrong passwords for 10 s, while a scraper with valid credentials scrapes
  every 0.5 s on its kept-alive connection: its latency against the same
  scraper without the flood, failed scrapes, and how fast the flood is refused;
- bcrypt timing: a wrong password against an unknown user, at cost 12;
- a GET carrying a second request in its body: the answers sent;
- the state file planted (`/dev/zero`, a FIFO, 100,000-deep nesting): start-up
  time and peak RSS of a fresh process;
- a device list of 100,000 rows and a settings answer of 100,000 keys: devices
  adopted, series, RSS and time, through discovery and the settings read.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from hostile_api import HostileServer, envelope, gzip_bomb, response  # noqa: E402

PATH = "/api/v1/hps/data-last"
TOKEN = "bench-token-value"


def child_call(base_url: str, timeout: float) -> None:
    """In a subprocess: one client call; prints outcome, seconds, RSS before and peak."""
    from atess_exporter.api.client import AtessClient, AtessError
    from atess_exporter.config import parse_config

    config = parse_config({"atess": {"base_url": base_url, "token": TOKEN, "timeout_seconds": timeout},
                           "devices": [{"sn": "SN1", "type": "hps_central"}], "state_file": ""})
    client = AtessClient(config.api)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        client.latest(PATH, "SN1")
        outcome = "success"
    except AtessError as exc:
        outcome = exc.outcome
    took = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "seconds": took, "rss_before_kib": before, "peak_kib": peak}))


def run_child(base_url: str, timeout: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", base_url, str(timeout)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def bomb_rows() -> list[str]:
    bomb = gzip_bomb(1 << 30)
    normal = run_with(lambda conn, req, srv: conn.sendall(response(envelope({"ppv": "1"}))), 10)
    bombed = run_with(lambda conn, req, srv: conn.sendall(response(bomb, headers={"Content-Encoding": "gzip"})), 10)
    return [f"| gzip bomb: {len(bomb) / 2**20:.1f} MiB inflating to 1 GiB | `{bombed['outcome']}` in "
            f"{bombed['seconds']:.2f} s, peak RSS {mib(bombed['peak_kib'])} (a normal call: {mib(normal['peak_kib'])}) |"]


def run_with(handler, timeout: float) -> dict:
    with HostileServer(handler) as server:
        return run_child(server.base_url, timeout)


def drip_rows() -> list[str]:
    body = envelope({"ppv": "1" * 200})

    def drip(conn, request, server):
        conn.sendall(response(body)[: -len(body)])
        server.drip(conn, body, every=1.0, limit=60)

    result = run_with(drip, 5)
    return [f"| server dripping 1 byte/s, `timeout_seconds: 5` | `{result['outcome']}` after {result['seconds']:.2f} s |"]


def sigterm_rows() -> list[str]:
    def hang(conn, request, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        server.drip(conn, b" " * 1000, every=1.0, limit=60)

    with tempfile.TemporaryDirectory() as tmp, HostileServer(hang) as server:
        cfg = os.path.join(tmp, "config.yaml")
        with open(cfg, "w") as fh:
            json.dump({"atess": {"base_url": server.base_url, "token": TOKEN, "timeout_seconds": 60},
                       "poll": {"retries": 0},
                       "devices": [{"sn": "SN1", "type": "hps_central"}, {"sn": "SN2", "type": "hps_central"}],
                       "state_file": os.path.join(tmp, "state.json")}, fh)
        proc = subprocess.Popen([sys.executable, "-m", "atess_exporter", "--config.file", cfg,
                                 "--web.listen-address", "127.0.0.1:0"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            server.connected.wait(30)
            time.sleep(1.0)  # both calls in flight
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=90)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
    return [f"| SIGTERM with 2 calls hanging (`timeout_seconds: 60`) | exit {proc.returncode} after {took:.2f} s |"]


def config_rows() -> list[str]:
    base = f"atess: {{base_url: 'http://127.0.0.1:9', token: {TOKEN}}}\ndevices: [{{sn: SN1, type: hps_central}}]\nstate_file: ''\n"
    lol = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for n in "bcdefghi":
        lol += f"{n}: &{n} [" + ",".join(["*" + prev] * 9) + "]\n"
        prev = n
    cases = {
        "YAML billion laughs": base + "x:\n" + "".join("  " + line + "\n" for line in lol.splitlines()),
        "`token_file: /dev/zero`": base.replace(f"token: {TOKEN}", "token_file: /dev/zero"),
        "YAML nested 3,000 deep": base + "x: " + "[" * 3000 + "]" * 3000 + "\n",
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in cases.items():
            path = os.path.join(tmp, "config.yaml")
            with open(path, "w") as fh:
                fh.write(text)
            code = ("import resource,sys,time;from atess_exporter import cli;t=time.monotonic();"
                    f"rc=cli.main(['--check-config','--config.file',{path!r}]);"
                    "print(rc,time.monotonic()-t,resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,file=sys.stderr)")
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
            lines = done.stderr.strip().splitlines()
            rc, secs, peak = lines[-1].split()
            rows.append(f"| config: {name} | refused (exit {rc}) in {float(secs) * 1000:.0f} ms, peak RSS {mib(int(peak))}, "
                        f"{len(lines) - 1} line: `{lines[0][:110]}...` |")
    return rows


# -- the scrape side: the demo exporter in its own process -----------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoExporter:
    """`atess-exporter --demo` on a loopback port; rss() reads its /proc status."""

    def __init__(self, *extra: str):
        self.port = free_port()
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "atess_exporter", "--demo", "--web.listen-address",
                                      f"127.0.0.1:{self.port}", *extra], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=self.log)

    def __enter__(self):
        import http.client

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                time.sleep(3)                  # the first polls and renders
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the demo exporter did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(30)

    def rss_kib(self, field: str = "VmRSS") -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def error_lines(self) -> int:
        self.log.seek(0)
        return sum(1 for line in self.log if "level=error" in line)


def scrape_n(port: int, accepts, headers=None) -> list[int]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses = []
    for accept in accepts:
        conn.request("GET", "/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip", **(headers or {})})
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
    conn.close()
    return statuses


PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def accept_rows() -> list[str]:
    with DemoExporter() as ref:
        before = ref.rss_kib()
        scrape_n(ref.port, [PROMETHEUS_ACCEPT] * 4000)
        same = ref.rss_kib()
    with DemoExporter() as exp:
        start = exp.rss_kib()
        t0 = time.monotonic()
        statuses = scrape_n(exp.port, [f"application/openmetrics-text;version=1.0.{i}" for i in range(4000)])
        took = time.monotonic() - t0
        after = exp.rss_kib()
        bad = scrape_n(exp.port, ["application/openmetrics-text;version=1.0.0x"] * 1000)
        errors = exp.error_lines()
    return [f"| 4,000 distinct `Accept: application/openmetrics-text;version=1.0.N` | 1.35 GB RSS (45 MB before) | "
            f"{statuses.count(200)} answered 200 in {took:.1f} s; RSS {mib(start)} → {mib(after)} "
            f"(4,000 scrapes with Prometheus' Accept: {mib(before)} → {mib(same)}) |",
            f"| 1,000 `Accept: ...;version=1.0.0x` | 500 and an error line each | {bad.count(200)} × 200 in the default "
            f"text format, {errors} error lines |"]


def flood_rows() -> list[str]:
    import base64
    import http.client
    import statistics
    import threading

    import bcrypt

    password = "bench-password"
    with tempfile.TemporaryDirectory() as tmp:
        web = os.path.join(tmp, "web.yml")
        with open(web, "w") as fh:
            fh.write(f"basic_auth_users:\n  prometheus: {bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()}\n")
        with DemoExporter("--web.config.file", web) as exp:
            good = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode()}
            scraper = http.client.HTTPConnection("127.0.0.1", exp.port, timeout=10)

            def scrape_for(seconds: float) -> tuple[list[float], int]:
                nonlocal scraper
                lat, failed = [], 0
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    t0 = time.monotonic()
                    try:
                        scraper.request("GET", "/metrics", headers={**good, "Accept": PROMETHEUS_ACCEPT})
                        resp = scraper.getresponse()
                        resp.read()
                        failed += resp.status != 200
                    except (OSError, http.client.HTTPException):
                        failed += 1
                        scraper.close()
                        scraper = http.client.HTTPConnection("127.0.0.1", exp.port, timeout=10)
                    lat.append(time.monotonic() - t0)
                    time.sleep(0.5)
                return lat, failed

            quiet, quiet_failed = scrape_for(10)
            stop = threading.Event()
            refusals: list[tuple[int, float]] = []

            def flood(worker: int) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    t0 = time.monotonic()
                    try:
                        conn = http.client.HTTPConnection("127.0.0.1", exp.port, timeout=10)
                        auth = base64.b64encode(f"prometheus:wrong {worker} {n}".encode()).decode()
                        conn.request("GET", "/metrics", headers={"Authorization": "Basic " + auth})
                        resp = conn.getresponse()
                        resp.read()
                        conn.close()
                        refusals.append((resp.status, time.monotonic() - t0))
                    except (OSError, http.client.HTTPException):
                        refusals.append((0, time.monotonic() - t0))

            threads = [threading.Thread(target=flood, args=(w,), daemon=True) for w in range(16)]
            for t in threads:
                t.start()
            loud, loud_failed = scrape_for(10)
            stop.set()
            for t in threads:
                t.join(15)
            peak = exp.rss_kib("VmHWM")
    ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms"
    busy = [t for s, t in refusals if s == 503]
    wrong = [t for s, t in refusals if s == 401]
    return [f"| password flood: 16 clients, distinct wrong passwords, 10 s (bcrypt cost 10) | 7 of 8 scrapes failed, "
            f"for a minute per 1,000 queued after | scraper: {len(loud) - loud_failed} of {len(loud)} answered, median "
            f"{ms(loud)}, max {max(loud) * 1000:.0f} ms (no flood: median {ms(quiet)}, {quiet_failed} failed); flood: "
            f"{len(refusals) / 10:.0f} requests/s, {len(busy)} × 503 in {ms(busy) if busy else '-'}, {len(wrong)} × 401 "
            f"(bcrypt) in {ms(wrong) if wrong else '-'}; peak RSS {mib(peak)} |"]


def timing_rows() -> list[str]:
    import base64
    import statistics

    import bcrypt

    from atess_exporter.web.webconfig import BasicAuth

    auth = BasicAuth({"prometheus": bcrypt.hashpw(b"x", bcrypt.gensalt(12))})

    times: dict[str, list[float]] = {"prometheus": [], "nobody": []}
    for i in range(7):                          # interleaved: the machine's load drifts alike for both
        for user in times:
            header = "Basic " + base64.b64encode(f"{user}:guess {i}".encode()).decode()
            t0 = time.perf_counter()
            auth.check(header)
            times[user].append(time.perf_counter() - t0)
    known, unknown = statistics.median(times["prometheus"]), statistics.median(times["nobody"])
    return [f"| bcrypt timing at cost 12: wrong password vs unknown user | 4× | {known * 1000:.0f} ms vs "
            f"{unknown * 1000:.0f} ms ({unknown / known:.2f}×) |"]


def framing_rows() -> list[str]:
    import re
    import socket

    smuggled = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    with DemoExporter() as exp:
        with socket.create_connection(("127.0.0.1", exp.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled
                         + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
        with socket.create_connection(("127.0.0.1", exp.port), timeout=5) as sock:
            t0 = time.monotonic()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1f\r\n" + smuggled
                         + b"\r\n0\r\n\r\n")
            te = b""
            while chunk := sock.recv(65536):
                te += chunk
            took = time.monotonic() - t0
    statuses = lambda raw: " ".join(s.decode() for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw))
    return [f"| GET with a second request in its body (`Content-Length`), then one more | 3 answers (200 404 200) | "
            f"{statuses(out)} |",
            f"| the same body `Transfer-Encoding: chunked` | 2 answers | {statuses(te)}, connection closed in "
            f"{took * 1000:.1f} ms |"]


def state_child(case: str) -> None:
    """In a subprocess: the counter state loaded from a planted state file."""
    from atess_exporter.catalog import load_catalog
    from atess_exporter.live.counters import CounterState

    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "state.json")
    if case == "zero":
        os.symlink("/dev/zero", path)
    elif case == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "w") as fh:
            fh.write("[" * 100_000 + "]" * 100_000)
    catalog = load_catalog()
    t0 = time.monotonic()
    CounterState(catalog, 3, path)
    took = time.monotonic() - t0
    print(json.dumps({"seconds": took, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def state_rows() -> list[str]:
    rows = []
    for case, what, before in (("zero", "a symlink to `/dev/zero`", "9 GB RSS"), ("fifo", "a FIFO", "start-up hangs"),
                               ("deep", "JSON nested 100,000 deep", "start-up crashes")):
        out = subprocess.run([sys.executable, __file__, "--state-child", case], capture_output=True, text=True,
                             timeout=120, cwd=ROOT)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(f"| `state_file`: {what} | {before} | started without it in {got['seconds'] * 1000:.0f} ms, "
                    f"peak RSS {mib(got['peak_kib'])}, one warning |")
    return rows


def flood_child(case: str) -> None:
    """In a subprocess: discovery or a settings read against a simulator answering 100,000 rows/keys."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from atess_exporter.app import Exporter
    from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS
    from atess_exporter.config import parse_config
    from atess_exporter.simulator import Simulator, demo_devices

    with Simulator(demo_devices(), token=TOKEN) as sim:
        if case == "devices":
            path = DEFAULT_ENDPOINTS["hps_central"]["list"]
            listing = sim.routes[path]

            def many(s, req):
                reply = listing(s, req)
                reply.envelope["data"] = list(reply.envelope["data"]) + [
                    {"deviceSn": f"FLOOD{i:06d}", "deviceModel": "HPS150", "dataLogSn": "x"} for i in range(100_000)]
                return reply
            sim.routes[path] = many
        else:
            sim.routes[DEFAULT_ENDPOINTS["hps_central"]["settings"]] = lambda s, req: __import__(
                "atess_exporter.simulator.server", fromlist=["Reply"]).Reply(
                envelope={"code": 0, "msg": "", "data": {f"flood{i:06d}": i for i in range(100_000)}})
        exporter = Exporter(parse_config({"atess": {"base_url": sim.base_url, "token": TOKEN,
                                                    "max_response_bytes": 64 * 1024 * 1024},
                                          "discovery": {"enabled": True}, "settings": {"enabled": True},
                                          "state_file": ""}, min_interval=0.01))
        t0 = time.monotonic()
        exporter.poller.refresh_topology()
        if case == "settings":
            dev = next(d for d in exporter.poller.devices.values() if d.type == "hps_central")
            exporter.poller.poll_settings(dev)
        took = time.monotonic() - t0
        text = exporter.exposition().decode()
    series = sum(1 for line in text.splitlines() if line.startswith("atess_setting_"))
    print(json.dumps({"seconds": took, "devices": len(exporter.poller.devices), "settings_series": series,
                      "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def input_rows() -> list[str]:
    got = {}
    for case in ("devices", "settings"):
        out = subprocess.run([sys.executable, __file__, "--flood-child", case], capture_output=True, text=True,
                             timeout=300, cwd=ROOT)
        got[case] = json.loads(out.stdout.strip().splitlines()[-1])
    d, s = got["devices"], got["settings"]
    return [f"| device list of 100,000 rows | 100,000 devices adopted, 914 MB | {d['devices']} adopted "
            f"(`discovery.max_devices`), the rest counted, in {d['seconds']:.1f} s; peak RSS {mib(d['peak_kib'])} |",
            f"| settings answer of 100,000 keys | 100,000 series per device | {s['settings_series']} setting series "
            f"(`settings.max_keys` 500 per device), the rest counted; peak RSS {mib(s['peak_kib'])} |"]


def main() -> None:
    print("| what was tried | what happens now |\n|---|---|")
    for rows in (bomb_rows, drip_rows, sigterm_rows, config_rows):
        for row in rows():
            print(row, flush=True)
    print("\n| what was tried (issue 19) | before | now |\n|---|---|---|")
    for rows in (accept_rows, flood_rows, timing_rows, framing_rows, state_rows, input_rows):
        for row in rows():
            print(row, flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_call(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1:2] == ["--state-child"]:
        state_child(sys.argv[2])
    elif sys.argv[1:2] == ["--flood-child"]:
        flood_child(sys.argv[2])
    elif sys.argv[1:2] == ["--only"]:
        print("| what was tried (issue 19) | before | now |\n|---|---|---|")
        for name in sys.argv[2:]:
            for row in globals()[name]():
                print(row, flush=True)
    else:
        main()
