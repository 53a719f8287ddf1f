"""Command line, with Prometheus-style dotted flags.

No flag takes a credential: secrets come from the config file, `${ENV}`
references or `*_file` keys, never from argv (visible in `ps`).

Every option's default can come from an environment variable, ATESS_ plus the
flag's name in capitals (`--web.listen-address` -> ATESS_WEB_LISTEN_ADDRESS),
so a container is configured without replacing its command; a flag given on
the command line wins. The one-shot modes (--check-config, --once,
--list-metrics) have none.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Mapping

from atess_exporter import __version__

if TYPE_CHECKING:
    from atess_exporter.config import Config
    from atess_exporter.stopsignals import StopSignals

# catalog, config and the rest are imported inside the functions that use them:
# main() must install its SIGTERM handler before anything slow (in a container the
# exporter is PID 1, and PID 1 ignores a signal it has no handler for).

log = logging.getLogger("atess_exporter")

DEMO_INTERVAL_SECONDS = 15.0


# name -> (module, one line for --help); `atess-exporter NAME --help` tells more.
SUBCOMMANDS = {
    "backfill": ("backfill", "fetch the history of the devices into an OpenMetrics file for promtool"),
    "healthcheck": ("healthcheck", "ask the running exporter's /healthz, as it is configured (the image's HEALTHCHECK)"),
    "probe": ("probe.command", "check a live account: one call per endpoint, a table, suggested endpoints: overrides"),
    "simulate": ("simulate", "serve a simulated ATESS cloud (N devices in M plants) to point a config at"),
}

ENV_PREFIX = "ATESS_"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def env_name(flag: str) -> str:
    """--web.listen-address -> ATESS_WEB_LISTEN_ADDRESS"""
    return ENV_PREFIX + flag.lstrip("-").upper().replace(".", "_").replace("-", "_")


def _env_option(p: argparse.ArgumentParser, environ: Mapping[str, str], flag: str, help: str, **kw) -> None:
    """An option whose default comes from its ATESS_* variable when that is set."""
    name = env_name(flag)
    value = environ.get(name)
    if kw.get("action") == "store_true":
        if value is not None:
            if value.strip().lower() not in TRUE + FALSE:
                p.error(f"{name}={value!r}: expected 1/true/yes/on or 0/false/no/off")
            kw["default"] = value.strip().lower() in TRUE
    elif value is not None:
        if kw.get("choices") and value not in kw["choices"]:
            p.error(f"{name}={value!r}: expected one of {', '.join(kw['choices'])}")
        kw["default"] = value
    p.add_argument(flag, help=f"{help} [env {name}]", **kw)


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return int(text)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    environ = os.environ if environ is None else environ
    commands = "\n".join(f"  {name:<12} {line}" for name, (_, line) in SUBCOMMANDS.items())
    p = argparse.ArgumentParser(
        prog="atess-exporter", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Prometheus exporter for the ATESS cloud OpenAPI.",
        epilog=f"sub-commands (atess-exporter COMMAND --help):\n{commands}\n\n"
               f"Every option can also be set by the environment variable in [env ...]; a flag given\n"
               f"on the command line wins. Credentials are never flags: see the config file's token.")
    opt = functools.partial(_env_option, p, environ)
    opt("--config.file", "configuration file (default: %(default)s)", dest="config_file", default="config.yaml",
        metavar="PATH")
    opt("--web.listen-address", "address to serve /metrics on (default: %(default)s)", dest="listen_address",
        default=":10036", metavar="[HOST]:PORT")
    opt("--web.config.file", "exporter-toolkit web configuration (TLS, basic auth) for /metrics "
        "(default: none, plain HTTP)", dest="web_config_file", default=None, metavar="PATH")
    opt("--web.max-connections", "open client connections at most (default: 1024, or half the descriptor limit "
        "if lower)", dest="max_connections", default=None, type=_positive_int, metavar="N")
    opt("--web.max-auth-checks", "basic-auth password checks (bcrypt) running at once; beyond it an unverified "
        "password gets 503 at once (default: %(default)s)", dest="max_auth_checks", default=2, type=_positive_int,
        metavar="N")
    opt("--web.telemetry-path", "path of the metrics endpoint (default: %(default)s)", dest="telemetry_path",
        default="/metrics", metavar="PATH")
    opt("--log.level", "log level (default: %(default)s)", dest="log_level", default="info",
        choices=("debug", "info", "warn", "error"))
    opt("--log.format", "log line format (default: %(default)s)", dest="log_format", default="logfmt",
        choices=("logfmt", "json"))
    opt("--shard", "poll and expose only this replica's share of the devices (0-based INDEX, e.g. 0/3); "
        "overrides the config's shard", metavar="INDEX/COUNT", default=None)
    opt("--demo", "ignore --config.file and run against the embedded ATESS API simulator", action="store_true")
    opt("--demo.dialect", "how the demo's simulator speaks: documented (the vendor doc) or platform (as the "
        "vendor's servers send data: their spellings, field sets and zones) (default: %(default)s)",
        dest="demo_dialect", default="documented", choices=("documented", "platform"))
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
    from atess_exporter.config import parse_config

    return parse_config({
        "atess": {"base_url": base_url, "token": "demo-token"},   # timezone: auto, measured
        "poll": {"interval_seconds": DEMO_INTERVAL_SECONDS, "concurrency": 4},
        "discovery": {"enabled": True},
        "settings": {"enabled": True},
        "state_file": "",
        # No source gives these tables (docs/api.md): the demo shows how a user who
        # knows their site's values supplies them, without a release.
        "enums": {"dgGridSelect": {0: "grid", 1: "generator"}, "atsBypass": {0: "absent", 1: "present"},
                  "bmsVoltStatus": {0: "open", 1: "closed"}, "bmsSystemStatus": {0: "idle", 1: "normal"}},
        # A time-of-use tariff, so the dashboards' cost and savings panels have data.
        "tariffs": [{"currency": "EUR", "import_price": 0.30, "export_price": 0.08,
                     "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "07:00", "to": "22:00",
                                  "import_price": 0.38}]}],
    }, source="demo", min_interval=1.0)


def list_metrics() -> str:
    from atess_exporter.catalog import load_catalog

    catalog = load_catalog()
    lines = ["| metric | type | labels | vendor fields (family.field \"description\" unit) |", "|---|---|---|---|"]
    for name, m in catalog.metrics.items():
        fields = []
        for fam, variant, f in catalog.field_sources():
            where = f"{fam.name}.{f.field}" + (f" ({variant} models)" if variant else "")
            if f.metric.name == name:
                lbl = ",".join(f"{k}={v}" for k, v in zip(m.labels, f.label_values))
                fields.append(f"{where}{'{' + lbl + '}' if lbl else ''} \"{f.doc}\" {f.unit}")
            elif f.state_metric is not None and f.state_metric.name == name:
                states = ", ".join(f"{value:g}={state}" for value, state in f.states) or "no table: give one under enums:"
                fields.append(f"{where}: 1 for the current state ({states})")
        labels = ", ".join(("sn", "model") + m.labels)
        lines.append(f"| `{name}` | {m.type} | {labels} | {'<br>'.join(fields).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return importlib.import_module(f".{SUBCOMMANDS[argv[0]][0]}", __package__).main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.check_config or args.once or args.list_metrics:
        return _run(args, None)
    # Before anything slow: a stop during start-up ends the start-up, and exits 0.
    from atess_exporter.stopsignals import StopSignals

    stopping = StopSignals()
    try:
        return _run(args, stopping)
    finally:
        stopping.close()


def _run(args: argparse.Namespace, stopping: StopSignals | None) -> int:
    """The exporter; `stopping` is set by SIGTERM/SIGINT (None in the one-shot modes)."""
    from atess_exporter.config import ConfigError, load_config
    from atess_exporter.outside.logs import setup_logging

    setup_logging(_level(args.log_level), args.log_format)
    if args.list_metrics:
        sys.stdout.write(list_metrics())
        return 0

    simulator = None
    try:
        if args.demo:
            from atess_exporter.simulator import Simulator, demo_devices

            devices = demo_devices()
            simulator = Simulator(devices, token="demo-token", min_interval_seconds=DEMO_INTERVAL_SECONDS * 0.9,
                                  dialect=args.demo_dialect)
            config = demo_config(simulator.start())
        else:
            config = load_config(args.config_file)
        if args.shard is not None:
            from atess_exporter.config.shard import parse_shard

            config = dataclasses.replace(config, shard=parse_shard(args.shard))
    except ConfigError as exc:
        print(f"atess-exporter: config error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # --shard
        print(f"atess-exporter: {exc}", file=sys.stderr)
        return 1

    if args.check_config:
        print(f"{config.source}: OK ({check_summary(config)})")
        return 0

    if stopping is not None and stopping.is_set():
        if simulator is not None:
            simulator.stop()
        return 0
    setup_logging(_level(args.log_level), args.log_format, secrets=config.secrets())
    from atess_exporter.app import Exporter

    exporter = Exporter(config)
    try:
        if args.once:
            snaps = exporter.run_once()
            sys.stdout.write(exporter.exposition().decode())
            return 0 if any(s.up for s in snaps) else 1
        try:
            server = exporter.web_server(args.listen_address, args.telemetry_path,
                                         web_config_file=args.web_config_file, max_connections=args.max_connections,
                                         max_auth_checks=args.max_auth_checks, demo=args.demo)
        except (OSError, ValueError) as exc:
            from atess_exporter.web.webconfig import WebConfigError

            what = "web config error" if isinstance(exc, WebConfigError) else f"cannot listen on {args.listen_address}"
            print(f"atess-exporter: {what}: {exc}", file=sys.stderr)
            return 1
        # The handlers main() installed before start-up stay: a SIGTERM at any point,
        # even before the first poll, ends the exporter cleanly (state saved).
        server.start()
        host = str(server.httpd.server_address[0]) or "localhost"
        url = f"{server.scheme}://{'localhost' if host in ('0.0.0.0', '::') else host}:{server.port}{args.telemetry_path}"
        # Logged once the device set is known (after the first discovery), so the count is real.
        exporter.start(on_ready=lambda devices: log.info("serving metrics", extra={"fields": {
            "url": url, "devices": devices, "accounts": len(config.all_accounts()),
            "discovery": any(a.discovery.enabled for a in config.all_accounts()),
            "interval_seconds": config.poll.interval_seconds}}))
        if args.demo:
            print(f"atess-exporter demo: metrics at {url} (simulated devices, Ctrl-C to stop)", flush=True)
        if stopping is not None:   # always when serving: main() installed the stop signals
            stopping.wait()
        log.info("shutting down")
        server.stop()
        return 0
    finally:
        exporter.stop()
        if simulator is not None:
            simulator.stop()


def check_summary(config) -> str:
    """What --check-config found, per account: "12 devices + discovery, poll every 300s"."""
    def one(account) -> str:
        which = f"{len(account.devices)} devices" + (" + discovery" if account.discovery.enabled else "")
        if account.discovery.enabled and not account.devices:
            which = "every device of the account, by discovery"
        return f"{which}, poll every {account.poll.interval_seconds:g}s"

    accounts = config.all_accounts()
    if len(accounts) == 1:
        return one(accounts[0])
    return f"{len(accounts)} accounts: " + "; ".join(f"{a.name}: {one(a)}" for a in accounts)


if __name__ == "__main__":
    sys.exit(main())
