"""A large account on loopback, for fleet-scale tests and benchmarks.

The demo simulator (server.py) computes a day of physics per device; this one
serves the shapes only, fast enough for 10,000 devices on one core: the plant
and datalogger lists as page objects, the device lists as bare arrays, and a
small latest-data payload. Every call answers after `latency` seconds (a cloud
on another continent), and it can play the parts of the real API that hurt a
fleet:

  * `max_page_size`: pages never larger than this, whatever `pageSize` asks
    (the page object then says the size it used);
  * `enforce_interval`: a latest-data call within this many seconds of the
    same device's previous call is refused with HTTP 429 (the documented
    "once every 5 minutes", enforced to the millisecond);
  * `latest_latency`: a different latency for latest-data calls;
  * `payloads="sim"`: the demo simulator's full payloads (132 fields on a
    central HPS) instead of a small one, from a few templates per family
    recomputed each 5-minute slot, so readings change as in production.

It counts every call (per path kind, per device) and every refusal, so a test
can assert "<= 1 call per device per interval" from the server's side.

    with FleetAccount(plants=1000, datalogs_per_plant=1, devices_per_datalog=10,
                      latency=0.1) as fake:
        fake.url  ->  http://127.0.0.1:PORT
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS

FAMILY_CYCLE = ("hps_central", "hps_string", "pcs", "pbd", "bcu")
MODEL = {"hps_central": "HPS150", "hps_string": "HPS30TL", "pcs": "PCS250", "pbd": "PBD250", "bcu": "BCU"}


class FleetAccount:
    def __init__(self, plants: int, datalogs_per_plant: int = 1, devices_per_datalog: int = 10,
                 latency: float = 0.0, latest_latency: float | None = None, max_page_size: int = 1000,
                 enforce_interval: float = 0.0, families: tuple[str, ...] = FAMILY_CYCLE,
                 clock=time.monotonic, payloads: str = "small", prefix: str = ""):
        self.latency = latency
        self.latest_latency = latency if latest_latency is None else latest_latency
        self.max_page_size = max_page_size
        self.enforce_interval = enforce_interval
        self.clock = clock
        # `prefix`: several fakes side by side (accounts) list different plants and devices
        self.plants = [{"plantId": f"PL{prefix}{p:05d}", "plantName": f"Plant {prefix}{p}"} for p in range(plants)]
        self.datalogs: dict[str, list[dict]] = {}
        self.device_lists: dict[tuple[str, str], list[dict]] = {}
        self.family_of: dict[str, str] = {}
        n = 0
        for plant in self.plants:
            rows = self.datalogs[plant["plantId"]] = []
            for d in range(datalogs_per_plant):
                dl = f"DL{plant['plantId'][2:]}{d:02d}"
                rows.append({"dataLogSn": dl, "plantId": plant["plantId"], "status": 1})
                for _ in range(devices_per_datalog):
                    family = families[n % len(families)]
                    sn = f"FX{prefix}{n:07d}"
                    n += 1
                    self.family_of[sn] = family
                    self.device_lists.setdefault((family, dl), []).append(
                        {"deviceSn": sn, "dataLogSn": dl, "deviceModel": MODEL.get(family, ""), "lost": False, "status": "2"})
        self.routes: dict[str, tuple[str, str]] = {}
        for family, ops in DEFAULT_ENDPOINTS.items():
            for op in ("list", "latest"):
                if op in ops:
                    self.routes[ops[op]] = (family, op)
        self._lock = threading.Lock()
        self.calls: dict[str, int] = defaultdict(int)          # "list" / "latest" / "other"
        self.device_calls: dict[str, list[float]] = defaultdict(list)
        self.refused = 0
        self.in_flight = self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self.payloads = payloads
        self._templates: tuple[int, dict] = (-1, {})

    @property
    def sns(self) -> list[str]:
        return sorted(self.family_of)

    # -- answers -------------------------------------------------------------

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        family, op = self.routes.get(path, ("", ""))
        if op == "list":
            with self._lock:
                self.calls["list"] += 1
                self.calls[f"list:{family}"] += 1   # "list:plant": the list the platform allows 10 times a day
            if family == "plant":
                return 200, self._page(self.plants, query)
            if family == "datalog":
                return 200, self._page(self.datalogs.get(query.get("plantId", ""), []), query)
            return 200, {"code": 0, "msg": "", "data": self.device_lists.get((family, query.get("dataLogSn", "")), [])}
        if op == "latest":
            return self._latest(family, query.get("deviceSn", ""))
        with self._lock:
            self.calls["other"] += 1
        return 404, {"code": 400, "msg": "not found", "data": None}

    def stats(self) -> dict:
        with self._lock:
            firsts = [t[0] for t in self.device_calls.values() if t]
            gaps = [b - a for t in self.device_calls.values() for a, b in zip(t, t[1:])]
            return {"calls": dict(self.calls), "refused": self.refused, "max_in_flight": self.max_in_flight,
                    "devices_called": len(self.device_calls),
                    "latest_per_device_max": max((len(t) for t in self.device_calls.values()), default=0),
                    "first_call_span": max(firsts) - min(firsts) if firsts else None,
                    "min_gap": min(gaps, default=None), "now_since_first": self.clock() - min(firsts) if firsts else None}

    def _page(self, rows: list[dict], query: dict[str, str]) -> dict:
        try:
            no, asked = max(1, int(query.get("pageNo", "1"))), max(1, int(query.get("pageSize", "10")))
        except ValueError:
            return {"code": 400, "msg": "pageNo and pageSize must be numbers", "data": None}
        size = min(asked, self.max_page_size)
        chunk = rows[(no - 1) * size: no * size]
        return {"code": 0, "msg": "", "data": {"datas": chunk, "offset": (no - 1) * size, "pageNo": no,
                                               "pageSize": size, "total": len(rows)}}

    def _latest(self, family: str, sn: str) -> tuple[int, Any]:
        now = self.clock()
        with self._lock:
            self.calls["latest"] += 1
            if self.family_of.get(sn) != family:
                return 200, {"code": 400, "msg": "device not found", "data": None}
            previous = self.device_calls[sn]
            if self.enforce_interval and previous and now - previous[-1] < self.enforce_interval:
                self.refused += 1
                return 429, {"code": 429, "msg": "once every 5 minutes", "data": None}
            previous.append(now)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        if self.payloads == "sim":
            data = dict(self._template(family, sn), deviceSn=sn, time=stamp)
        else:
            data = {"time": stamp, "ppv": "12.5", "pac": "10.0", "soc": "55", "epvTotal": "1234.5", "status": 2}
        return 200, {"code": 0, "msg": "", "data": data}

    SEEDS = 8

    def _template(self, family: str, sn: str) -> dict:
        """The simulator's payload for one of SEEDS devices of the family, this 5-minute slot."""
        from atess_exporter.simulator.device import SimDevice
        from atess_exporter.simulator.physics import LATEST_BUILDERS, SLOT_SECONDS

        now = time.time()
        slot = int(now // SLOT_SECONDS)
        with self._lock:
            current, templates = self._templates
            if current != slot:
                templates = {(f, seed): LATEST_BUILDERS[f](SimDevice(sn=f"T{seed}", family=f, model=MODEL[f], seed=seed), now)
                             for f in MODEL for seed in range(self.SEEDS)}
                self._templates = (slot, templates)
        return templates[(family, int(sn[-7:]) % self.SEEDS)]

    def calls_within(self, seconds: float) -> int:
        """Devices called twice within `seconds` (what a limit of one per interval refuses)."""
        with self._lock:
            return sum(1 for times in self.device_calls.values()
                       if any(b - a < seconds for a, b in zip(times, times[1:])))

    # -- the server ------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/_stats":  # the benchmark's view of the calls, not an API path
                    self._send(200, fake.stats())
                    return
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    family, op = fake.routes.get(url.path, ("", ""))
                    time.sleep(fake.latest_latency if op == "latest" else fake.latency)
                    status, body = fake.answer(url.path, query)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                self._send(status, body)

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 512

            def handle_error(self, request, client_address) -> None:
                pass  # a client that left mid-answer (an exporter stopping) is no news

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="fleet-fake", daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FleetAccount":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()



def main(argv: list[str] | None = None) -> None:
    """`python -m atess_exporter.simulator.fleet --plants 1000 ...`: prints the URL, serves
    until stdin closes (a benchmark runs it in a process of its own)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="fleet-fake")
    parser.add_argument("--plants", type=int, default=1000)
    parser.add_argument("--datalogs-per-plant", type=int, default=1)
    parser.add_argument("--devices-per-datalog", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--latest-latency", type=float, default=None)
    parser.add_argument("--max-page-size", type=int, default=1000)
    parser.add_argument("--enforce-interval", type=float, default=0.0)
    parser.add_argument("--payloads", choices=("small", "sim"), default="small")
    parser.add_argument("--prefix", default="", help="of plant ids and SNs: fakes side by side list different ones")
    args = parser.parse_args(argv)
    fake = FleetAccount(args.plants, args.datalogs_per_plant, args.devices_per_datalog, latency=args.latency,
                        latest_latency=args.latest_latency, max_page_size=args.max_page_size,
                        enforce_interval=args.enforce_interval, payloads=args.payloads, prefix=args.prefix)
    print(fake.start(), flush=True)
    sys.stdin.read()
    fake.stop()


if __name__ == "__main__":
    main()
