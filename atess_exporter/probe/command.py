"""`atess-exporter probe`: check a live account endpoint by endpoint.

One call per endpoint the config would use (the lists when it discovers, then
for one device of each family: latest data, settings, one history page), each
a different path or device, so the probe stays within the API's "once every
5 minutes" per device and endpoint. Per call it reports what the cloud
answered and what the catalog makes of it; a path that answers 404 or an
error code is retried once at each documented alternative
(endpoints.ALTERNATIVES), and the one that answers is offered as an
`endpoints:` override. `--save DIR` writes every answer redacted
(recording.py), ready to attach to a bug report or to add to
tests/fixtures/recorded/.

Exit status: 0 when every endpoint answered, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from atess_exporter.probe import recording
from atess_exporter.catalog import Catalog, parse_number
from atess_exporter.api.client import (ApiError, AtessClient, AtessError, HttpError, MalformedResponseError, NoDataError)
from atess_exporter.config import Config, ConfigError, DeviceConfig, load_config
from atess_exporter.account.discovery import walk
from atess_exporter.api.paging import rows_of
from atess_exporter.catalog.endpoints import (ALTERNATIVES, DEFAULT_ENDPOINTS, NON_DEVICE_FAMILIES, history_dates, status as doc_status)
from atess_exporter.outside.zones import offset_text, zone_name
from atess_exporter.readings.clock import ServerClock, parse_wall, row_wall
from atess_exporter.readings.payload import read_payload
from atess_exporter.account.typeguess import answering_family

ANSWERED = ("success", "no_data")
HISTORY_PAGE_SIZE = 10
MAX_PLANTS = 5          # plants whose dataloggers the walk reads
MAX_DATALOGGERS = 10    # dataloggers whose device lists the walk reads


@dataclass
class Check:
    family: str
    operation: str
    path: str
    outcome: str = ""
    status: int | None = None
    code: Any = None
    msg: str = ""
    data: Any = None
    model: str = ""
    notes: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)   # what the values suggest, printed below the table
    counts: dict[str, int] = field(default_factory=dict)
    time_ok: bool | None = None
    suggestion: str = ""
    origin: str = ""      # documented / assumed (our default path) or overridden (the config's own)

    @property
    def answered(self) -> bool:
        return self.outcome in ANSWERED


def _call(client: AtessClient, path: str, params: dict) -> tuple[str, int | None, Any, str, Any]:
    """(outcome, HTTP status, envelope code, msg, data) of one GET, the code as the API sent it; never raises."""
    try:
        answer = client.call(path, params)
        return "success", 200, answer.code, answer.msg, answer.data
    except NoDataError as exc:
        return "no_data", 200, exc.code, "no data", None
    except ApiError as exc:
        return exc.outcome, 200, exc.code, str(exc.msg)[:120], None
    except HttpError as exc:
        return exc.outcome, exc.status, None, "", None
    except AtessError as exc:
        return exc.outcome, getattr(exc, "status", None), None, str(exc)[:120], None


class Probe:
    def __init__(self, config: Config, client: AtessClient, catalog: Catalog, today: date,
                 wall_clock: Callable[[], float] = time.time):
        self.config, self.client, self.catalog, self.today = config, client, catalog, today
        self.wall_clock = wall_clock
        self.server_clock = ServerClock(config.api_zone())
        self.checks: list[Check] = []

    def check(self, family: str, operation: str, params: dict, model: str = "", keep: bool = True) -> Check:
        path = self.config.endpoint(family, operation)
        outcome, status, code, msg, data = _call(self.client, path, params)
        c = Check(family, operation, path, outcome, status, code, msg, data, model)
        default = DEFAULT_ENDPOINTS.get(family, {}).get(operation)
        c.origin = doc_status(family, operation) if path == default else "overridden"
        if not c.answered and self._worth_an_alternative(c):
            c.suggestion = self._alternative(family, operation, params, path)
            if not c.suggestion and c.origin == "overridden":
                c.suggestion = (f"endpoints.{family}.{operation}: {path} is your override and did not answer; "
                                f"remove it to use the default {default}, or correct the path")
        if keep:
            self.checks.append(c)
        return c

    @staticmethod
    def _worth_an_alternative(c: Check) -> bool:
        return c.status == 404 or c.outcome in ("api_error", "html_response", "http_error", "invalid_response")

    def _alternative(self, family: str, operation: str, params: dict, tried: str) -> str:
        default = DEFAULT_ENDPOINTS.get(family, {}).get(operation)
        if operation == "latest" and params.get("deviceSn") and family not in NON_DEVICE_FAMILIES:
            found = answering_family(self.client, self.config, params["deviceSn"], family, self.catalog.families)
            if found is not None:
                return (f"devices: [{{sn: {params['deviceSn']}, type: {found[0]}}}]  "
                        f"# answered on {found[0]}'s path {self.config.endpoint(found[0], 'latest')}, not {family}'s")
        for alt in ([default] if default and default != tried else []) + list(ALTERNATIVES.get((family, operation), ())):
            if alt == tried:
                continue
            outcome, *_ = _call(self.client, alt, params)
            if outcome in ANSWERED and alt == default:
                return f"remove endpoints.{family}.{operation} (your {tried}): the default {default} answered"
            if outcome in ANSWERED:
                return f"endpoints: {{{family}: {{{operation}: {alt}}}}}"
        return ""

    # -- the walk ------------------------------------------------------------
    def run(self) -> None:
        devices: dict[str, DeviceConfig] = {}
        for d in self.config.devices:
            devices.setdefault(d.type, d)
        families = list(self.config.discovery.families or self.catalog.families)
        if self.config.discovery.enabled or not self.config.devices:
            self._lists(families, devices)
        yesterday = self.today - timedelta(days=1)
        fmt = self.config.history_date_format
        for family in sorted(devices):
            dev = devices[family]
            polled = self.wall_clock()
            latest = self.check(family, "latest", {"deviceSn": dev.sn}, dev.model)
            self._describe_payload(latest, dev, polled)
            settings = self.check(family, "settings", {"deviceSn": dev.sn}, dev.model)
            if isinstance(settings.data, dict):
                settings.counts["fields"] = len(settings.data)
            if not self.config.settings.enabled:
                settings.notes.append("settings are off in this config")
            history = self.check(family, "history", {
                "deviceSn": dev.sn, **history_dates(yesterday, yesterday, fmt),
                "pageNo": 1, "pageSize": HISTORY_PAGE_SIZE}, dev.model)
            self._describe_history(history, dev)
        self.server_clock.decide()

    def _lists(self, families: list[str], devices: dict[str, DeviceConfig]) -> None:
        """The account walk discovery takes (account/discovery.py), bounded: the first page
        of each list, MAX_PLANTS plants, MAX_DATALOGGERS dataloggers, and a family's lists
        only until one device of it is found; each call a different list or datalogger."""
        lists: dict[str, Check] = {}

        def listing(kind: str, params: dict[str, Any]) -> list[dict]:
            c = self.check(kind, "list", {**params, "pageNo": 1, "pageSize": 10}, keep=kind == "plant")
            rows = self._rows(c)
            if kind != "plant" and (kind not in lists or not c.answered or (rows and kind != "datalog")):
                lists[kind] = c   # the one shown: the first, or one that failed, or (a family) one with rows
            return rows

        for found in walk(listing, families, wanted=lambda family: family not in devices,
                          max_plants=MAX_PLANTS, max_datalogs=MAX_DATALOGGERS):
            if found is not None and found.device is not None and found.device.type not in devices:
                devices[found.device.type] = DeviceConfig(sn=found.device.sn, type=found.device.type,
                                                          model=found.device.model)
        self.checks.extend(lists[k] for k in ["datalog", *families] if k in lists)

    def _rows(self, c: Check) -> list[dict]:
        if c.data is None:
            return []
        try:
            rows, total = rows_of(c.path, c.data)
        except MalformedResponseError:
            c.notes.append("neither an array nor a page object")
            return []
        c.counts["rows"] = len(rows)
        c.notes.append("bare array" if isinstance(c.data, list) else f"page object, total {total:g}" if total is not None
                       else "page object without total")
        return [r for r in rows if isinstance(r, dict)]

    def _describe_payload(self, c: Check, dev: DeviceConfig, polled: float) -> None:
        if not isinstance(c.data, dict):
            return
        family = self.catalog.families[dev.type]
        reading = read_payload(family, c.data, dev.model)
        c.counts.update(fields=len(c.data), catalogued=reading.catalogued, uncatalogued=reading.uncatalogued,
                        unusable=reading.unusable, implausible=len(reading.implausible))
        c.hints.extend(what_values_suggest(family.normalise(c.data)))
        if reading.uncatalogued_fields:
            shown = reading.uncatalogued_fields[:12]
            c.hints.append(f"uncatalogued, exported as atess_vendor_*: {', '.join(shown)}"
                           + (" ..." if len(reading.uncatalogued_fields) > len(shown) else "")
                           + " (map them under catalog_overrides, or report them)")
        if reading.kilo_suspects:
            c.hints.append("1000x too large for the rating, W rather than kW? "
                           + ", ".join(f"{f}: {{unit: W}}" for f in reading.kilo_suspects))
        wall = parse_wall(c.data.get("time"))
        c.time_ok = wall is not None
        if wall is not None and not dev.timezone:
            self.server_clock.observe(dev.sn, wall, polled)
        if reading.variant:
            c.notes.append(f"model variant {reading.variant}")
        for bad in reading.implausible[:3]:
            c.notes.append(f"{bad.field}={bad.value:g} outside {bad.allowed}")
        if reading.lost:
            c.notes.append("the cloud says lost: true")

    def _describe_history(self, c: Check, dev: DeviceConfig) -> None:
        rows = self._rows(c)
        if rows:
            c.time_ok = row_wall(rows[0]) is not None


def what_values_suggest(payload: Mapping) -> list[str]:
    """What an account's own values say about the disputed readings (PLATFORM.md 3, 5)."""
    notes = []
    volts = sorted(v for v in (parse_number(payload.get(f)) for f in ("vpvuv", "vpvvw", "vpvwu")) if v and v > 50)
    if volts:
        median = statistics.median(volts)
        if median < 300:
            reading, metric, phase = "phase voltages", "atess_output_phase_voltage_volts", "u"
        else:
            reading, metric, phase = "line voltages", "atess_output_line_voltage_volts", "uv"
        notes.append(f"vpvuv median {median:.0f} V: {reading} (to export them so: "
                     f"vpvuv: {{metric: {metric}, labels: {{phase: {phase}}}}}, and vpvvw, vpvwu)")
    pf = parse_number(payload.get("loadPf"))
    if pf is not None and 0 < abs(pf) <= 1:
        notes.append(f"loadPf {pf:g} looks like a ratio, not a percentage: loadPf: {{unit: \"1\"}}")
    if any(parse_number(payload.get(f)) for f in ("gridTotal", "toGridTotal")):
        notes.append("gridTotal/toGridTotal: direction disputed, compare with the device display "
                     "(atess_grid_exchange_energy_joules_total{vendor_field})")
    return notes


# -- output ------------------------------------------------------------------

def clock_line(clock: ServerClock) -> str:
    """What the latest readings say about the zone the servers write `time` in."""
    d = clock.decision
    if d.offset is None:
        measured = (f"not measured ({d.voting} fresh readings disagree)" if d.voting
                    else "not measured (no fresh latest reading)")
    elif d.voting == 1:
        measured = f"{offset_text(d.offset)} from 1 device's latest reading (it rests on that device)"
    else:
        measured = f"{offset_text(d.offset)} from {d.agreeing} of {d.voting} devices' latest readings"
    if clock.zone is not None:
        return f"API servers' clock: atess.timezone {zone_name(clock.zone)} (configured); measured: {measured}\n"
    used = "" if d.offset is not None else "; the exporter reads times as UTC until it measures one, set atess.timezone to be sure"
    return f"API servers' clock: {measured}{used}\n"


def render(checks: list[Check]) -> str:
    head = ("endpoint", "path", "result", "HTTP", "code", "fields", "catalogued", "uncatalogued", "unusable",
            "implausible", "time", "notes")
    rows = []
    for c in checks:
        counts = c.counts
        rows.append((f"{c.family}.{c.operation}" + ("" if c.family in NON_DEVICE_FAMILIES and c.origin != "overridden" else f" ({c.origin})"),
                     c.path, c.outcome, "" if c.status is None else str(c.status),
                     ("ok" if c.answered else "") if c.code is None else str(c.code)[:12],
                     str(counts.get("fields", counts.get("rows", ""))),
                     *(str(counts.get(k, "")) for k in ("catalogued", "uncatalogued", "unusable", "implausible")),
                     {None: "", True: "parsed", False: "NOT parsed"}[c.time_ok],
                     "; ".join(([c.msg] if c.msg else []) + c.notes)[:120]))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
    out = [line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in rows]
    hints = [f"  {c.family}: {h}" for c in checks for h in c.hints]
    if hints:
        out += ["", "What the values suggest (catalog_overrides: {family: {fields: ...}} applies it):"] + hints
    suggestions = [c.suggestion for c in checks if c.suggestion]
    if suggestions:
        out += ["", "Suggested fixes (tried where the configured paths did not answer):"]
        out += [f"  {s}" for s in suggestions]
    failed = [c for c in checks if not c.answered]
    out += ["", f"{len(checks) - len(failed)} of {len(checks)} endpoints answered"
            + (f"; failed: {', '.join(f'{c.family}.{c.operation}' for c in failed)}" if failed else "")]
    return "\n".join(out) + "\n"


def save_all(checks: list[Check], directory: Path, redactor: recording.Redaction) -> list[Path]:
    paths = []
    for c in checks:
        # msg is the API's free text: outcome and code say what it said, without it.
        record = {"family": c.family, "operation": c.operation, "path": c.path, "model": c.model,
                  "outcome": c.outcome, "status": c.status,
                  "code": redactor.redact({"code": c.code})["code"] if isinstance(c.code, (int, str)) else None,
                  "msg": "<text>" if c.msg else "", "data": redactor.redact(c.data)}
        text = redactor.dumps(record)
        paths.append(recording.save(directory, f"{c.family}_{c.operation}", text))
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atess-exporter probe",
                                description="Check a live ATESS account: one call per endpoint the config uses, "
                                            "a table of what each answered, suggested endpoints: overrides.")
    p.add_argument("--config.file", dest="config_file", default=os.environ.get("ATESS_CONFIG_FILE", "config.yaml"),
                   metavar="PATH", help="configuration file (default: %(default)s) [env ATESS_CONFIG_FILE]")
    p.add_argument("--account", metavar="NAME", default=None,
                   help="with accounts: in the config, the account to probe (required when there are several)")
    p.add_argument("--save", metavar="DIR", type=Path, default=None,
                   help="write every answer, redacted (only measurements, codes and list shapes kept, identifiers hashed, all other text and the credentials removed), as JSON files into DIR")
    return p


def main(argv: list[str], *, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
         today: Callable[[], date] = date.today, session: Any = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config_file).one_account(args.account)
    except (ConfigError, ValueError) as exc:
        print(f"atess-exporter probe: config error: {exc}", file=err)
        return 1
    from atess_exporter.outside.logs import setup_logging
    from atess_exporter.outside.text import Redactor

    setup_logging("warning", "logfmt", secrets=config.api.credentials.values())
    client = AtessClient(config.api, session=session)
    probe = Probe(config, client, config.catalog(), today())
    probe.run()
    # The API's own text (an error message may echo the credential) reaches stdout only scrubbed.
    scrub = Redactor(config.api.credentials.values()).scrub
    out.write(scrub(render(probe.checks)))
    out.write(clock_line(probe.server_clock))
    if args.save is not None:
        redactor = recording.Redaction(recording.harmless_keys(probe.catalog), config.api.credentials.values())
        try:
            paths = save_all(probe.checks, args.save, redactor)
        except OSError as exc:
            print(f"atess-exporter probe: cannot write {args.save}: {exc.strerror}", file=err)
            return 1
        out.write(f"wrote {len(paths)} redacted answers to {args.save}\n")
    return 0 if probe.checks and all(c.answered for c in probe.checks) else 1
