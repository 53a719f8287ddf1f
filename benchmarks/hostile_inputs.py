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


def main() -> None:
    print("| what was tried | what happens now |\n|---|---|")
    for rows in (bomb_rows, drip_rows, sigterm_rows, config_rows):
        for row in rows():
            print(row, flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_call(sys.argv[2], float(sys.argv[3]))
    else:
        main()
