"""``python -m atess_exporter.simulator``: serve the demo fleet on 127.0.0.1."""

from __future__ import annotations

import argparse
import threading

from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS
from atess_exporter.simulator import Simulator, demo_devices


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m atess_exporter.simulator",
                                 description="Simulated ATESS cloud OpenAPI (127.0.0.1 only).")
    ap.add_argument("--port", type=int, default=18080, help="TCP port, 0 for any free one (default 18080)")
    ap.add_argument("--token", default="demo-token", help="accepted token: 'Authorization: Basic <token>'")
    ap.add_argument("--app-id", help="also accept Basic base64(ID:KEY) with --app-key")
    ap.add_argument("--app-key")
    ap.add_argument("--success-code", type=int, default=0, choices=(0, 200))
    ap.add_argument("--min-interval", type=float, default=None,
                    help="answer 429 to the same endpoint+SN sooner than this many seconds")
    ap.add_argument("--dialect", default="documented", choices=("documented", "platform"),
                    help="documented: the vendor doc's names; platform: as the vendor's servers send data (default documented)")
    args = ap.parse_args(argv)
    if (args.app_id is None) != (args.app_key is None):
        ap.error("--app-id and --app-key go together")

    sim = Simulator(demo_devices(), token=args.token, app_id=args.app_id, app_key=args.app_key,
                    success_code=args.success_code, min_interval_seconds=args.min_interval, dialect=args.dialect)
    url = sim.start(port=args.port)
    print(url, flush=True)
    for dev in sim.devices.values():
        print(f"  {dev.model:<9} {url}{DEFAULT_ENDPOINTS[dev.family]['latest']}?deviceSn={dev.sn}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
