"""`atess-exporter simulate`: a simulated ATESS cloud on 127.0.0.1 to point a config at,
with the URL and token printed.

`--devices N --plants M` serves a generated fleet; `--config.file` serves the devices a
config lists (their SNs, types and models); `--write-config OUT` writes that config (or a
minimal one) with `atess:` pointed at the simulator, ready for `--check-config`, `--once`
or a real run. Nothing leaves the machine: the simulator listens on loopback only.
An entry point, not part of simulator/: the simulator stands apart from the exporter's
rooms, and reading a user's config is the exporter's job (config/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from atess_exporter.simulator import SimDevice, demo_devices, fleet_of
from atess_exporter.simulator.__main__ import add_server_options, parse_server_options
from atess_exporter.simulator.device import MAX_FLEET


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="atess-exporter simulate",
                                 description="Serve a simulated ATESS cloud OpenAPI on 127.0.0.1 and print its URL and token.")
    ap.add_argument("--devices", type=int, default=None, metavar="N",
                    help=f"serve N generated devices (1..{MAX_FLEET}; default: the 8-device demo fleet)")
    ap.add_argument("--plants", type=int, default=None, metavar="M", help="spread them over M plants (default: N/5, at least 1)")
    ap.add_argument("--config.file", dest="config_file", default=None, metavar="PATH",
                    help="also serve the devices this config lists (sn, type, model), so your own config finds them")
    ap.add_argument("--write-config", default=None, metavar="OUT", type=Path,
                    help="write --config.file (or a minimal config) with atess.base_url and token set to this simulator")
    add_server_options(ap, port=0)
    return ap


def _config_data(path: str | None) -> dict[str, Any]:
    """The config file as written (not expanded), checked the way the exporter checks it."""
    if path is None:
        return {}
    from atess_exporter.config import load_config
    from atess_exporter.outside.yamlfile import load_yaml_file

    load_config(path, writes_state=False)   # a ConfigError here is the exporter's own one-liner
    data = load_yaml_file(path)
    return data if isinstance(data, dict) else {}


def _devices(args: argparse.Namespace, data: dict[str, Any]) -> list[SimDevice]:
    listed = [SimDevice(sn=str(d["sn"]), family=d["type"], model=str(d.get("model") or d["type"].upper()),
                        plant_id=str(d.get("plant_id") or "PL1001"))
              for d in data.get("devices") or [] if isinstance(d, dict)]
    if args.devices is None and args.plants is None:
        generated = [] if listed else demo_devices()
    else:
        n = args.devices if args.devices is not None else 8
        generated = fleet_of(n, args.plants if args.plants is not None else max(1, n // 5))
    taken = {d.sn for d in listed}
    return listed + [d for d in generated if d.sn not in taken]


def _pointed_config(data: dict[str, Any], base_url: str, token: str) -> dict[str, Any]:
    """The config with its credentials replaced by the simulator's (no real secret is copied)."""
    atess = {k: v for k, v in (data.get("atess") or {}).items()
             if k not in ("token", "token_file", "app_id", "app_id_file", "app_key", "app_key_file")}
    out = {**data, "atess": {**atess, "base_url": base_url, "token": token}, "state_file": ""}
    if not out.get("devices"):
        out["discovery"] = {**(out.get("discovery") or {}), "enabled": True}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_server_options(build_parser(), argv)
    from atess_exporter.config import ConfigError
    from atess_exporter.simulator import Simulator

    try:
        data = _config_data(args.config_file)
        devices = _devices(args, data)
    except (ConfigError, ValueError) as exc:
        print(f"atess-exporter simulate: {exc}", file=sys.stderr)
        return 1
    sim = Simulator(devices, token=args.token, app_id=args.app_id, app_key=args.app_key,
                    success_code=args.success_code, min_interval_seconds=args.min_interval, dialect=args.dialect)
    try:
        url = sim.start(port=args.port)
    except OSError as exc:
        print(f"atess-exporter simulate: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        plants = len({d.plant_id for d in devices})
        print(f"simulated ATESS cloud: {len(devices)} devices in {plants} plants\n"
              f"  base_url: {url}\n  token:    {args.token}\n"
              f"point a config at it:\n  atess: {{base_url: '{url}', token: {args.token}}}", flush=True)
        if args.write_config is not None:
            import yaml

            args.write_config.write_text(yaml.safe_dump(_pointed_config(data, url, args.token), sort_keys=False),
                                         encoding="utf-8")
            print(f"wrote {args.write_config}: your config pointed at the simulator", flush=True)
        print("Ctrl-C to stop", flush=True)
        from atess_exporter.stopsignals import StopSignals

        stopping = StopSignals()
        try:
            stopping.wait()
        finally:
            stopping.close()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
