#!/usr/bin/env python
"""Where the exporter's memory goes, by allocation site (issue 21).

    .venv/bin/python benchmarks/memprofile.py [DEVICES]

tracemalloc over the real path in one process: the loopback fleet fake (full
simulator payloads), discovery, two polls of every device over HTTP, and
scrapes of /metrics with Prometheus 2's and 3's headers. Prints the Python heap
added per device, by line and by file (RSS here includes tracemalloc's own
overhead and the fake; benchmarks/realpath.py memory measures RSS).
"""

from __future__ import annotations

import gc
import http.client
import os
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet import rss_mb  # benchmarks/ is the script's own directory

ACCEPTS = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
           "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "text/plain;version=1.0.0;escaping=allow-utf-8")


def main(n: int) -> None:
    tracemalloc.start(10)   # before the exporter's modules load, so their allocations are seen
    from atess_exporter.app import Exporter
    from atess_exporter.config import parse_config
    from atess_exporter.simulator.fleet import FleetAccount
    from atess_exporter.web.server import MetricsServer

    fake = FleetAccount(n // 10, 1, 10, payloads="sim")
    fake.start()
    fake._template("hps_central", "FX0000000")   # the fake's templates, before the baseline
    base = tracemalloc.take_snapshot()
    config = parse_config({"atess": {"base_url": fake.url, "token": "memprofile"},
                           "poll": {"interval_seconds": 30, "concurrency": 8}, "state_file": ""}, min_interval=0.01)
    exporter = Exporter(config)
    exporter.poller.refresh_topology()
    exporter.poller.poll_all_once()
    server = MetricsServer(exporter.registry, "127.0.0.1:0", "/metrics")
    server.start()
    for accept in ACCEPTS:
        for _ in range(2):
            conn = http.client.HTTPConnection("127.0.0.1", server.port)
            conn.request("GET", "/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"})
            conn.getresponse().read()
            conn.close()
    exporter.poller.poll_all_once()
    gc.collect()
    snap = tracemalloc.take_snapshot()
    stats = snap.compare_to(base, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"devices {n}, RSS {rss_mb():.1f} MB (tracemalloc and the fake included)")
    print(f"Python heap added: {total / 2**20:.1f} MB, {total / 1024 / n:.1f} KiB per device")
    for s in stats[:25]:
        print(f"{s.size_diff / 1024 / n:6.2f} KiB/device  {s.traceback.format()[-1].strip()[:140]}")
    print("--- by file")
    for s in snap.compare_to(base, "filename")[:15]:
        print(f"{s.size_diff / 1024 / n:6.2f} KiB/device  {str(s.traceback)[:140]}")
    sys.stdout.flush()
    os._exit(0)   # the fake's and the server's threads need no orderly end here


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
