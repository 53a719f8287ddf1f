#!/usr/bin/env python
"""What a real Prometheus gets from /metrics at fleet scale (issue 13), in one run.

    .venv/bin/python benchmarks/scrape.py [--devices 1000,10000] [--scrapes 20]
                                          [--cpu-seconds 60] [--out benchmarks/scrape-results.md]

Each size runs in a fresh process, on 127.0.0.1 only. N hps_central devices
are cached (snapshots from simulator payloads, as benchmarks/fleet.py makes
them) and served by server.MetricsServer, the real handler. Clients send the
headers real scrapers send (CLIENTS: Prometheus 2.42 captured, Prometheus 3
with text 1.0.0, curl). Devices change at the production rate: each poll
(every 300 s per device) gives new values and times, so N/20 devices change
between two scrapes 15 s apart.

* exporter, production: N/20 devices replaced in 30 steps with the server's
  between-scrapes rendering (Renderer.refresh, which MetricsServer runs every
  0.5 s) after each step -- 15 s of production compressed -- then one scrape.
  The CPU of the 30 steps and the scrape is the CPU per 15-s interval.
* exporter, burst: N/20 devices replaced just before the scrape, with no
  rendering ahead: the scrape pays for all of them (the worst case).
* same bytes from memory: the uncompressed body the exporter sent, served by
  a trivial http.server handler over the same loopback (the limit).
* library: prometheus_client's own answer to those headers: the encoder
  choose_encoder picks over the live registry, then gzip level 1, in-process
  (no HTTP, so generous to the library).
* 4 scrapers: four clients scraping back to back for a while, Prometheus 2.42
  headers, while devices change in real time at the production rate and the
  server's refresh thread runs (after one untimed first scrape: steady state).
* CPU at one scrape per 15 s: the same in real time for --cpu-seconds with one
  scraper (in another process) every 15 s; the exporter process' CPU time over
  wall time, minus the thread that plays the poller.
* RSS: in a process of its own doing only what the exporter does (N devices,
  Prometheus 2.42 scraping while devices change), and its peak, against RSS
  before the cache was filled.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import gzip
import http.client
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fleet import filled_exporter, machine, make_templates, ms, peak_mb, rss_mb, serve, summary  # noqa: E402

PROD_INTERVAL = 300.0
SCRAPE_INTERVAL = 15.0
CLIENTS = {
    "Prometheus 2.42": ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "gzip"),
    "Prometheus 3 (text 1.0.0)": ("text/plain;version=1.0.0;escaping=allow-utf-8", "gzip"),
    "curl": ("*/*", None),
}
MAIN = "Prometheus 2.42"
GOALS = {"vs_memory": 3.0, "vs_library": 0.05, "p99": 1.0, "cpu": 0.10, "kib_per_device": 40.0, "base_mb": 50.0}


def fetch(conn: http.client.HTTPConnection, client: str) -> tuple[float, bytes, dict]:
    accept, encoding = CLIENTS[client]
    headers = {"Accept": accept}
    if encoding:
        headers["Accept-Encoding"] = encoding
    t0 = time.perf_counter()
    conn.request("GET", "/metrics", headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    assert resp.status == 200, resp.status
    return elapsed, body, dict(resp.getheaders())


class Fleet:
    """Replaces device snapshots as polls would: new values and times."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.sns = [d.sn for d in exporter.cache.snapshot()]
        self.count = 0
        self.lock = threading.Lock()

    def change(self, k: int) -> None:
        for _ in range(k):
            with self.lock:
                sn = self.sns[self.count % len(self.sns)]
                self.count += 1
                step = self.count
            snap = self.exporter.cache.get(sn)
            f = 1.0 + (step % 13) / 1000
            samples = {name: tuple((labels, v * f) for labels, v in rows) for name, rows in snap.samples.items()}
            t = snap.last_attempt + 1
            self.exporter.cache.account().put(dataclasses.replace(snap, samples=samples, last_attempt=t, last_success=t, data_time=t - 60))


def child(n: int, scrapes: int, cpu_seconds: float) -> dict:
    from atess_exporter.web.server import MetricsServer
    from prometheus_client.exposition import choose_encoder

    import atess_exporter.app  # noqa: F401  (imported before the baseline RSS)
    now = time.time()
    exporter, _ = filled_exporter(n, now, make_templates(now))
    fleet = Fleet(exporter)
    per_scrape = max(1, round(n * SCRAPE_INTERVAL / PROD_INTERVAL))
    out: dict = {"n": n, "changed_per_scrape": per_scrape, "rows": {}}

    for client in CLIENTS:
        # One server per client, so the CPU column is one format's (a renderer keeps
        # every format asked for lately up to date).
        server = MetricsServer(exporter.registry, "127.0.0.1:0")
        server.refresh_seconds = None          # rendering ahead is driven below, step by step
        server.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        fetch(conn, client)                    # the first scrape renders every device once
        prod, cpu, bodies = [], [], []
        for _ in range(scrapes):
            c0 = time.process_time()
            for step in range(30):
                fleet.change(per_scrape // 30 + (step < per_scrape % 30))
                server.renderer.refresh()
            elapsed, body, headers = fetch(conn, client)
            cpu.append(time.process_time() - c0)
            prod.append(elapsed)
            bodies.append((body, headers))
        burst = []
        for _ in range(max(3, scrapes // 4)):
            fleet.change(per_scrape)
            burst.append(fetch(conn, client)[0])
        body, headers = bodies[-1]
        plain = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
        out["rows"][client] = {"production": summary(prod), "burst": summary(burst), "cpu_per_interval": summary(cpu),
                               "wire_bytes": len(body), "bytes": len(plain), "gzip": headers.get("Content-Encoding") == "gzip"}
        conn.close()
        if client != MAIN:
            server.stop()
        else:
            main_server = server
    server = main_server

    # The limit: the main client's uncompressed bytes from memory, same loopback.
    _, body, headers = fetch(http.client.HTTPConnection("127.0.0.1", server.port, timeout=600), MAIN)
    plain = gzip.decompress(body)
    limit, lport = serve(lambda accept, enc: (plain, {"Content-Type": "application/openmetrics-text"}))
    lconn = http.client.HTTPConnection("127.0.0.1", lport, timeout=600)
    times = []
    for _ in range(scrapes):
        t0 = time.perf_counter()
        lconn.request("GET", "/metrics")
        r = lconn.getresponse()
        r.read()
        times.append(time.perf_counter() - t0)
    out["memory"] = summary(times)
    lconn.close()
    limit.shutdown()
    limit.server_close()

    # The library's own answer to the main client's headers.
    encoder, _ = choose_encoder(CLIENTS[MAIN][0])
    lib = []
    for _ in range(max(2, min(5, 20000 // n))):
        t0 = time.perf_counter()
        gzip.compress(encoder(exporter.registry), compresslevel=1)
        lib.append(time.perf_counter() - t0)
    out["library"] = summary(lib)
    server.stop()

    # Real time from here on: the server renders ahead every 0.5 s as in production.
    # Steady state: no format warmed but the one scraped, and its first (cold) scrape untimed.
    server = MetricsServer(exporter.registry, "127.0.0.1:0")
    server.warm_accepts = ()
    server.start()
    fetch(http.client.HTTPConnection("127.0.0.1", server.port, timeout=600), MAIN)
    stop = threading.Event()
    poller_cpu = [0.0]

    def poller():
        every = PROD_INTERVAL / n
        next_at = time.monotonic()
        while not stop.is_set():
            next_at += every
            fleet.change(1)
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)
        poller_cpu[0] = time.thread_time()

    mover = threading.Thread(target=poller)
    mover.start()
    results: list[list[float]] = [[] for _ in range(4)]
    until = time.monotonic() + max(20.0, min(60.0, n / 100))

    def scraper(i):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        while time.monotonic() < until or len(results[i]) < 3:
            results[i].append(fetch(c, MAIN)[0])
        c.close()

    threads = [threading.Thread(target=scraper, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["concurrent"] = summary([x for r in results for x in r])

    # CPU with one Prometheus scraping every 15 s (the scraper in its own process).
    script = (f"import http.client, time\nc = http.client.HTTPConnection('127.0.0.1', {server.port}, timeout=600)\n"
              f"end = time.monotonic() + {cpu_seconds}\n"
              f"while time.monotonic() < end:\n t = time.monotonic()\n c.request('GET', '/metrics', headers={{'Accept': {CLIENTS[MAIN][0]!r}, 'Accept-Encoding': 'gzip'}})\n"
              f" c.getresponse().read()\n time.sleep(max(0, t + {SCRAPE_INTERVAL} - time.monotonic()))\n")
    stop.set()
    mover.join()
    stop.clear()
    mover = threading.Thread(target=poller)
    mover.start()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=cpu_seconds + 600)
    wall = time.monotonic() - w0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    mover.join()
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime) - poller_cpu[0]
    out["cpu_share"] = cpu / wall
    out["cpu_wall"] = wall
    server.stop()
    out["load"] = os.getloadavg()
    return out


def child_memory(n: int) -> dict:
    """RSS of a process doing only what the exporter does: N devices cached, the
    server rendering ahead, Prometheus 2.42 scraping while devices change."""
    from atess_exporter.web.server import MetricsServer

    import atess_exporter.app  # noqa: F401  (imported before the baseline RSS)
    now = time.time()
    templates = make_templates(now)      # the simulator's payloads are not the exporter's memory
    gc.collect()
    base = rss_mb()
    exporter, _ = filled_exporter(n, now, templates)
    fleet = Fleet(exporter)
    per_scrape = max(1, round(n * SCRAPE_INTERVAL / PROD_INTERVAL))
    server = MetricsServer(exporter.registry, "127.0.0.1:0")
    server.refresh_seconds = None
    server.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    for _ in range(6):
        for step in range(30):
            fleet.change(per_scrape // 30 + (step < per_scrape % 30))
            server.renderer.refresh()
        fetch(conn, MAIN)
    conn.close()
    gc.collect()
    out = {"base_mb": base, "rss_mb": rss_mb(), "peak_mb": peak_mb()}
    server.stop()
    return out


def report(args, results: list[dict], elapsed: float) -> str:
    m = machine()
    lines = [
        "# /metrics benchmark: what Prometheus gets",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared), Python {m['python']}. Load average during the run: "
        + ", ".join(f"{r['n']:,} devices {r['load'][0]:.1f}" for r in results) + ".",
        f"Command: `.venv/bin/python benchmarks/scrape.py --devices {args.devices} --scrapes {args.scrapes} "
        f"--cpu-seconds {args.cpu_seconds:g}` (run took {elapsed:.0f} s). Method: the docstring of benchmarks/scrape.py.",
        "",
        "Client headers: " + "; ".join(f"**{k}**: `Accept: {a}`" + (f", `Accept-Encoding: {e}`" if e else ", no Accept-Encoding")
                                        for k, (a, e) in CLIENTS.items()) + ".",
        "",
        "| devices | client | body (on the wire) | production: median / p99 | burst: median / p99 | CPU per 15 s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for client, row in r["rows"].items():
            wire = f"{row['bytes'] / 1e6:.1f} MB" + (f" ({row['wire_bytes'] / 1e6:.1f} MB gzip)" if row["gzip"] else "")
            lines.append(f"| {r['n']:,} | {client} | {wire} | {ms(row['production']['median'])} / {ms(row['production']['p99'])} | "
                         f"{ms(row['burst']['median'])} / {ms(row['burst']['p99'])} | {ms(row['cpu_per_interval']['median'])} |")
    lines += [
        "",
        f"Goals, {MAIN} headers (production median; k = N/20 devices changed per scrape):",
        "",
        "| devices | exporter | same bytes from memory | ÷ | ≤ 3× | library OM + gzip | ÷ | ≤ 0.05× | 4 scrapers p99 (n) | < 1 s | CPU, 1 scrape / 15 s | < 10 % | RSS (peak) | per device over base | ≤ 40 KiB + 50 MB |",
        "|---:|---:|---:|---:|:--:|---:|---:|:--:|---:|:--:|---:|:--:|---:|---:|:--:|",
    ]
    for r in results:
        fast = r["rows"][MAIN]["production"]["median"]
        vm, vl = fast / r["memory"]["median"], fast / r["library"]["median"]
        per = (r["rss_mb"] - r["base_mb"]) * 1024 / r["n"]
        budget = GOALS["kib_per_device"] * r["n"] / 1024 + GOALS["base_mb"]
        ok = lambda flag: "pass" if flag else "**miss**"
        lines.append(
            f"| {r['n']:,} | {ms(fast)} | {ms(r['memory']['median'])} | {vm:.2f} | {ok(vm <= GOALS['vs_memory'])} | "
            f"{ms(r['library']['median'])} | {vl:.3f} | {ok(vl <= GOALS['vs_library'])} | "
            f"{ms(r['concurrent']['p99'])} ({r['concurrent']['n']}) | {ok(r['concurrent']['p99'] < GOALS['p99'])} | "
            f"{r['cpu_share'] * 100:.1f} % | {ok(r['cpu_share'] < GOALS['cpu'])} | {r['rss_mb']:.0f} MB ({r['peak_mb']:.0f} MB) | "
            f"{per:.1f} KiB (base {r['base_mb']:.0f} MB) | {ok(max(r['rss_mb'], r['peak_mb']) <= budget)} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", default="1000,10000")
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--cpu-seconds", type=float, default=60.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "scrape-results.md"))
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, what, seconds = args.child
        print(json.dumps(child_memory(int(n)) if what == "memory" else child(int(n), int(what), float(seconds))))
        return
    started = time.time()
    results = []
    for n in [int(x) for x in args.devices.split(",") if x.strip()]:
        print(f"[scrape] {n} devices ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", str(n), str(args.scrapes), str(args.cpu_seconds)],
                              capture_output=True, text=True, cwd=ROOT, timeout=7200)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"benchmark child for {n} devices failed")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        proc = subprocess.run([sys.executable, __file__, "--child", str(n), "memory", "0"],
                              capture_output=True, text=True, cwd=ROOT, timeout=7200)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"memory child for {n} devices failed")
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        results.append(result)
    text = report(args, results, time.time() - started)
    print(text)
    Path(args.out).write_text(text)
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
