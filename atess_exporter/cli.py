"""Command line, with Prometheus-style dotted flags.

No flag takes a credential: secrets come from the config file, `${ENV}`
references or `*_file` keys, never from argv (visible in `ps`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading

from . import __version__
from .catalog import load_catalog
from .config import Config, ConfigError, load_config, parse_config
from .sharding import parse_shard

log = logging.getLogger("atess_exporter")

DEMO_INTERVAL_SECONDS = 15.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atess-exporter", description="Prometheus exporter for the ATESS cloud OpenAPI.")
    p.add_argument("--config.file", dest="config_file", default="config.yaml", metavar="PATH",
                   help="configuration file (default: %(default)s)")
    p.add_argument("--web.listen-address", dest="listen_address", default=":10036", metavar="[HOST]:PORT",
                   help="address to serve /metrics on (default: %(default)s)")
    p.add_argument("--web.config.file", dest="web_config_file", default=None, metavar="PATH",
                   help="exporter-toolkit web configuration (TLS, basic auth) for /metrics (default: none, plain HTTP)")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
                   help="path of the metrics endpoint (default: %(default)s)")
    p.add_argument("--log.level", dest="log_level", default="info", choices=("debug", "info", "warn", "error"))
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json"))
    p.add_argument("--shard", metavar="INDEX/COUNT", default=None,
                   help="poll and expose only this replica's share of the devices (0-based INDEX, e.g. 0/3); "
                        "overrides the config's shard")
    p.add_argument("--demo", action="store_true",
                   help="ignore --config.file and run against the embedded ATESS API simulator")
    p.add_argument("--check-config", action="store_true", help="validate the configuration, print a verdict, exit 0 or 1")
    p.add_argument("--once", action="store_true",
                   help="poll every device once, print the exposition to stdout and exit (non-zero when every device failed)")
    p.add_argument("--list-metrics", action="store_true", help="print the metric catalog as a Markdown table and exit")
    p.add_argument("--version", action="version", version=f"atess-exporter {__version__}")
    return p


def _level(name: str) -> str:
    return "warning" if name == "warn" else name


def demo_config(base_url: str) -> Config:
    """The demo finds its devices the way a real account would: by discovery."""
    return parse_config({
        "atess": {"base_url": base_url, "token": "demo-token", "timezone": "Etc/GMT-1"},
        "poll": {"interval_seconds": DEMO_INTERVAL_SECONDS, "concurrency": 4},
        "discovery": {"enabled": True},
        "settings": {"enabled": True},
        "state_file": "",
    }, source="demo", min_interval=1.0)


def list_metrics() -> str:
    catalog = load_catalog()
    lines = ["| metric | type | labels | vendor fields (family.field \"description\" unit) |", "|---|---|---|---|"]
    for name, m in catalog.metrics.items():
        fields = []
        for fam in catalog.families.values():
            for f in fam.fields.values():
                if f.metric.name == name:
                    lbl = ",".join(f"{k}={v}" for k, v in zip(m.labels, f.label_values))
                    fields.append(f"{fam.name}.{f.field}{'{' + lbl + '}' if lbl else ''} \"{f.doc}\" {f.unit}")
                elif f.state_metric is not None and f.state_metric.name == name:
                    states = ", ".join(f"{value:g}={state}" for value, state in f.states)
                    fields.append(f"{fam.name}.{f.field}: 1 for the current state ({states})")
        labels = ", ".join(("sn", "model") + m.labels)
        lines.append(f"| `{name}` | {m.type} | {labels} | {'<br>'.join(fields).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["backfill"]:
        from .backfill import main as backfill_main

        return backfill_main(argv[1:])
    args = build_parser().parse_args(argv)
    from .logs import setup_logging

    setup_logging(_level(args.log_level), args.log_format)
    if args.list_metrics:
        sys.stdout.write(list_metrics())
        return 0

    simulator = None
    try:
        if args.demo:
            from .simulator import Simulator, demo_devices

            devices = demo_devices()
            simulator = Simulator(devices, token="demo-token", min_interval_seconds=DEMO_INTERVAL_SECONDS * 0.9)
            config = demo_config(simulator.start())
        else:
            config = load_config(args.config_file)
        if args.shard is not None:
            config = dataclasses.replace(config, shard=parse_shard(args.shard))
    except ConfigError as exc:
        print(f"atess-exporter: config error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # --shard
        print(f"atess-exporter: {exc}", file=sys.stderr)
        return 1

    if args.check_config:
        print(f"{config.source}: OK ({len(config.devices)} devices, poll every {config.poll.interval_seconds:g}s)")
        return 0

    setup_logging(_level(args.log_level), args.log_format, secrets=config.api.credentials.values())
    from .app import Exporter
    from .server import MetricsServer

    exporter = Exporter(config)
    try:
        if args.once:
            snaps = exporter.poller.run_once()
            sys.stdout.write(exporter.exposition().decode())
            return 0 if any(s.up for s in snaps) else 1
        try:
            server = MetricsServer(exporter.registry, args.listen_address, args.telemetry_path,
                                   web_config_file=args.web_config_file)
        except (OSError, ValueError) as exc:
            from .webconfig import WebConfigError

            what = "web config error" if isinstance(exc, WebConfigError) else f"cannot listen on {args.listen_address}"
            print(f"atess-exporter: {what}: {exc}", file=sys.stderr)
            return 1
        # Before any poll starts: a SIGTERM from now on ends the exporter cleanly (state saved).
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        server.start()
        exporter.start()
        host = server.httpd.server_address[0] or "localhost"
        url = f"{server.scheme}://{'localhost' if host in ('0.0.0.0', '::') else host}:{server.port}{args.telemetry_path}"
        log.info("serving metrics", extra={"fields": {"url": url, "devices": len(exporter.poller.devices),
                                                         "discovery": config.discovery.enabled,
                                                         "interval_seconds": config.poll.interval_seconds}})
        if args.demo:
            print(f"atess-exporter demo: metrics at {url} (simulated devices, Ctrl-C to stop)", flush=True)
        stopping.wait()
        log.info("shutting down")
        server.stop()
        return 0
    finally:
        exporter.stop()
        if simulator is not None:
            simulator.stop()


if __name__ == "__main__":
    sys.exit(main())
