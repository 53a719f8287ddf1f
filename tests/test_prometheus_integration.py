"""End to end: the demo exporter, scraped by a real Prometheus that loads our
rule files, must answer every PromQL expression of the dashboards and rules.

Catches what static checks cannot: a metric or label renamed in the exporter
but not in a dashboard, a join that matches nothing, a recording rule that never
produces a series. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support import PROM_DIR, ROOT, fetch, free_port, query, require_tool, stop_process, wait_for

pytestmark = pytest.mark.prometheus   # every test here runs a real Prometheus

RULE_FILES = [PROM_DIR / "recording.yml", PROM_DIR / "alerts.yml"]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))

# Grafana variables -> values that make the query cover every device.
# `plant` and `sn` are always used as regex matchers (=~), so ".*" means "all".
VARIABLES = {
    "account": ".*",           # the All value: also matches series without the label (one account)
    "plant": ".*",
    "sn": ".*",
    "top": "10",               # the fleet dashboard's ranking size (topk/bottomk)
    "__rate_interval": "1m",   # >= 4 scrapes at the test's 1 s scrape interval
    "__interval": "15s",
    "__range": "5m",           # covers every sample of this short-lived Prometheus
}

# Expressions that may legitimately return nothing against the healthy demo fleet.
# They must still be valid PromQL, and every atess_* metric they name must exist.
ALLOWED_EMPTY = {
    # Dashboards: alert tables, empty while nothing fires (and the demo is healthy).
    'ALERTS{alertname=~"Atess.*", account=~".*|"}': "no alert is pending or firing for the healthy demo",
    'ALERTS{alertname=~"AtessExporter.*|AtessApi.*|AtessPolling.*|AtessDevice(Down|Offline)", account=~".*|"}':
        "same, exporter-side alerts only",
}
# Household figures by the plant's local day: empty at times of day, valid PromQL always
# (patterns over the expanded expression). Every recorded name they use must be a rule.
ALLOWED_EMPTY_PATTERNS = {
    r":local_day\{[^}]*\}\[1d\] offset -1d30m\)": "per-day bars: no local midnight passes while the demo runs "
                                         "(test_daily_energy_follows_the_plants_local_midnight crosses one)",
    r"self_(consumption|sufficiency)_ratio:today": "empty from local midnight to the day's first PV (load) reading",
    r":last_local_day\{": "yield of the last complete local day: none completes while the demo runs",
    r"\(atess_device_online == 0\)": "plants ranked by devices not online: every demo device is online",
    r"\[1d:1m\] offset -1d30m\)": "device per-day bars: as above, no local midnight passes while the demo runs",
}
ALLOWED_EMPTY_RECORDS = {
    r":local_day$": "recorded only when a local day ends",
    r":last_local_day$": "a plant's last complete local day: none completes while the demo runs",
    r"self_(consumption|sufficiency)_ratio:today$": "empty from local midnight to the day's first PV (load) reading",
}
# Alert rules: a healthy fleet must not trigger any of them (asserted below).
ALLOWED_EMPTY_ALERTS = {
    "AtessExporterDown": "the exporter is up",
    "AtessExporterNotPolling": "polls succeed every 15 s",
    "AtessApiAuthFailing": "the simulator accepts the demo token",
    "AtessPollingBehind": "three demo devices never wait for a worker",
    "AtessShardMissing": "one unsharded exporter (shard 0 of 1)",
    "AtessDeviceDown": "every demo device answers",
    "AtessDeviceOffline": "demo data is fresh (online 1)",
    "AtessDeviceLost": "the cloud flags no demo device lost",
    "AtessInverterFault": "demo devices run on grid",
    "AtessInverterPermanentFault": "demo devices run on grid",
    "AtessPlantLowYield": "no local day completes while the demo runs",
    "AtessBatterySocLow": "demo SOC stays at or above 20 %",
    "AtessBatteryCellVoltageSpread": "demo cell spread is a few mV",
    "AtessBatteryOverTemperature": "demo batteries run at 20-35 °C",
    "AtessInverterOverTemperature": "demo inverters run below 50 °C",
    "AtessGridLost": "the demo grid is always present",
    "AtessRunningOnGenerator": "the demo devices have no generator (dg fields 0)",
}

DEADLINE_SECONDS = 40


@contextlib.contextmanager
def demo_exporter(tmp_path_factory, *args: str):
    port = free_port()
    log = (tmp_path_factory.mktemp("exporter") / "exporter.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "exporter.py"), "--demo", "--web.listen-address", f"127.0.0.1:{port}", *args],
        cwd=tmp_path_factory.mktemp("exporter-cwd"), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        def device_data():
            body = fetch(url)
            return body if b"atess_pv_energy_joules_total{" in body else None

        body = wait_for(device_data, "exporter /metrics with device data", procs=[proc])
        devices = body.count(b"\natess_device_info{")
        assert devices >= 3, body[:2000]
        yield {"address": f"127.0.0.1:{port}", "devices": devices}
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def exporter_url(tmp_path_factory):
    with demo_exporter(tmp_path_factory) as url:
        yield url


@contextlib.contextmanager
def running_prometheus(target: str, work: Path, rule_files=RULE_FILES):
    """A Prometheus on 127.0.0.1 scraping `target` every second with our rules; yields its URL."""
    binary = require_tool("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "atess", "static_configs": [{"targets": [target]}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        cwd=work, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: fetch(f"{base}/-/ready") is not None, "prometheus ready", procs=[proc])
        yield base, proc
    finally:
        stop_process(proc)
        log.close()
        if proc.returncode not in (0, -15):
            print((work / "prometheus.log").read_text()[-3000:])


def _scraping(exporter_url, tmp_path_factory):
    with running_prometheus(exporter_url["address"], tmp_path_factory.mktemp("prometheus")) as (base, proc):
        def scalar(expr: str) -> float:
            res = query(base, expr)
            return float(res[0]["value"][1]) if res else 0.0

        # a few scrapes, every device, and the slowest recording rule has produced a series
        wait_for(lambda: scalar('count_over_time(up{job="atess"}[1m])') >= 5
                 and scalar('min_over_time(up{job="atess"}[1m])') == 1, "five successful scrapes", procs=[proc])
        wait_for(lambda: scalar("count(atess_device_info)") == exporter_url["devices"], "every demo device", procs=[proc])
        wait_for(lambda: scalar("count(atess_plant:pv_energy_joules:today)")
                 == scalar("count(count by (plant_name) (atess_device_info))") > 0,
                 "recording rules, one series per plant", procs=[proc])
        yield base


@pytest.fixture(scope="module")
def prometheus(exporter_url, tmp_path_factory):
    yield from _scraping(exporter_url, tmp_path_factory)


@pytest.fixture(scope="module")
def platform_prometheus(tmp_path_factory):
    """The demo fleet as the platform's servers speak (simulator/platform.py), scraped alike."""
    with demo_exporter(tmp_path_factory, "--demo.dialect", "platform") as url:
        yield from _scraping(url, tmp_path_factory)


def expand(expr: str, **values: str) -> str:
    variables = {**VARIABLES, **values}

    def sub(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in variables:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return variables[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", sub, expr)


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboard_expressions(raw: bool = False) -> list[tuple[str, str]]:
    """Every panel query and variable series; expanded with VARIABLES unless `raw`."""
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for p in walk_panels(dash["panels"]):
            for t in p.get("targets", []):
                out.append((f"{path.name}: {p['title']} [{t['refId']}]", t["expr"] if raw else expand(t["expr"])))
        for v in dash["templating"]["list"]:
            if v["type"] != "query":
                continue
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
            expr = m.group(1) if m else q  # label_values(series, label): the series must exist
            out.append((f"{path.name}: variable {v['name']}", expr if raw else expand(expr)))
    return out


def rule_expressions() -> list[tuple[str, str, str | None]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule["alert"]
                out.append((f"{path.name}: {name}", rule["expr"], rule.get("alert")))
    return out


RECORDED = {r["record"] for g in yaml.safe_load((PROM_DIR / "recording.yml").read_text())["groups"]
            for r in g["rules"] if "record" in r}


def test_expression_inventory_is_complete():
    """The extraction sees every panel query and every rule (guards the test itself)."""
    dash = dashboard_expressions()
    assert len(dash) > 100
    assert sum(1 for _, e in dash if "atess_device_info" in e) >= 3
    rules = rule_expressions()
    assert {a for _, _, a in rules if a} == set(ALLOWED_EMPTY_ALERTS)
    assert set(ALLOWED_EMPTY) <= {e for _, e in dash}, "allow-list entry no longer in any dashboard"
    for pattern in ALLOWED_EMPTY_PATTERNS:
        assert any(re.search(pattern, e) for _, e in dash), f"{pattern} matches no dashboard expression"
    for pattern in ALLOWED_EMPTY_RECORDS:
        assert any(re.search(pattern, r) for r in RECORDED), f"{pattern} matches no recording rule"


def test_every_dashboard_and_rule_expression_returns_data(prometheus, platform_prometheus):
    """Against the documented demo, or the same fleet speaking the platform's dialect
    (the PCS/PBD/string-HPS fields of PLATFORM.md 5-7 exist only there)."""
    problems = []
    checked = 0
    for where, expr in dashboard_expressions() + [(w, e) for w, e, _ in rule_expressions()]:
        alert = where.split(": ", 1)[1] if where.startswith("alerts.yml") else None
        try:
            result = query(prometheus, expr) or query(platform_prometheus, expr)
        except ValueError as exc:
            problems.append(f"{where}: invalid: {exc}\n    {expr}")
            continue
        checked += 1
        if result:
            continue
        record = where.split(": ", 1)[1] if where.startswith("recording.yml") else ""
        if (expr in ALLOWED_EMPTY or alert in ALLOWED_EMPTY_ALERTS
                or any(re.search(p, expr) for p in ALLOWED_EMPTY_PATTERNS)
                or any(re.search(p, record) for p in ALLOWED_EMPTY_RECORDS)):
            # may be empty, but must not be empty because of a misspelt metric
            for metric in sorted(set(re.findall(r"\batess_[a-z0-9_:]+", expr))):
                if ":" in metric:
                    if metric not in RECORDED:
                        problems.append(f"{where}: {metric} is no recording rule")
                elif not (query(prometheus, f"count({{__name__=\"{metric}\"}})")
                          or query(platform_prometheus, f"count({{__name__=\"{metric}\"}})")):
                    problems.append(f"{where}: metric {metric} does not exist")
            continue
        missing = [m for m in sorted(set(re.findall(r"\batess_[a-z0-9_:]+\b", expr)))
                   if ":" not in m and not query(prometheus, f"count({{__name__=\"{m}\"}})")
                   and not query(platform_prometheus, f"count({{__name__=\"{m}\"}})")]
        hint = f" (missing metrics: {', '.join(missing)})" if missing else ""
        problems.append(f"{where}: no data{hint}\n    {expr}")
    assert checked > 100
    assert not problems, f"{len(problems)} expression(s) failed:\n" + "\n".join(problems)


def test_healthy_demo_fires_no_alert(prometheus):
    """The alert expressions are quiet on the healthy demo fleet (not just 'valid')."""
    firing = {}
    for _where, expr, alert in rule_expressions():
        if alert:
            result = query(prometheus, expr)
            if result:
                firing[alert] = [r["metric"] for r in result]
    assert not firing, firing


def test_fleet_join_assigns_every_device_to_its_plant(prometheus):
    res = query(prometheus, "atess_battery_soc_ratio * on(sn) group_left(plant_name) atess_device_info")
    plants = {r["metric"]["sn"]: r["metric"]["plant_name"] for r in res}
    devices = {r["metric"]["sn"]: r["metric"]["plant_name"] for r in query(prometheus, "atess_device_info")}
    assert plants and plants == {sn: devices[sn] for sn in plants}
    assert set(plants.values()) == {"Harbour Depot", "Hill Farm"}
    socs = [float(r["value"][1]) for r in res]
    assert all(0 <= v <= 1 for v in socs), socs  # a ratio: Grafana shows it with unit percentunit
    # the recorded sum against the same sum over the raw series at the rule's own evaluation time:
    # at "now" a scrape between the evaluation and the query would tell them apart
    evaluated = float(query(prometheus, "max(timestamp(atess_plant:load_power_watts:sum))")[0]["value"][1])
    per_plant = {r["metric"]["plant_name"]: float(r["value"][1])
                 for r in query(prometheus, "atess_plant:load_power_watts:sum", at=evaluated)}
    per_device = query(prometheus, "sum by (plant_name) (atess_load_power_watts * on(sn) group_left(plant_name) atess_device_info)",
                       at=evaluated)
    assert per_plant == pytest.approx({r["metric"]["plant_name"]: float(r["value"][1]) for r in per_device})


# ------------------------------------------------------------------ accounts

def without_account_filter(expr: str) -> str:
    expr = re.sub(r'account=~"\$account\|?"', "", expr)
    return re.sub(r"\{\s*,\s*", "{", re.sub(r",\s*\}", "}", expr)).replace("{}", "")


def label_values(base: str, series: str, label: str) -> set[str]:
    """What Grafana's label_values(series, label) offers (no empty values)."""
    return {r["metric"][label] for r in query(base, series) if r["metric"].get(label)}


def test_one_account_the_account_variable_narrows_nothing(prometheus):
    """A single-account exporter has no account label: the Account variable offers nothing
    but All (.*), and every dashboard query gives exactly what it gives without the filter."""
    assert label_values(prometheus, "atess_device_info", "account") == set()
    at = time.time()
    compared = 0
    for where, raw in dashboard_expressions(raw=True):
        if "$account" not in raw:
            continue
        unfiltered = expand(without_account_filter(raw))
        assert "$account" not in unfiltered and 'account=~' not in unfiltered, unfiltered
        with_all = sorted(query(prometheus, expand(raw), at=at), key=json.dumps)
        assert with_all == sorted(query(prometheus, unfiltered, at=at), key=json.dumps), where
        compared += bool(with_all)
    assert compared > 80


@pytest.fixture(scope="module")
def two_accounts_prometheus(tmp_path_factory):
    """One exporter, two accounts (the demo fleet as north, four devices in two plants as
    south), scraped by a real Prometheus with the recording rules."""
    from atess_exporter.app import Exporter
    from atess_exporter.config import parse_config
    from atess_exporter.simulator import Simulator, demo_devices, fleet_of
    from atess_exporter.web.server import MetricsServer

    require_tool("prometheus")
    south_fleet = fleet_of(4, 2)
    with Simulator(demo_devices(), token="north-token") as north, Simulator(south_fleet, token="south-token") as south:
        exporter = Exporter(parse_config({
            "atess": {"timeout_seconds": 5},
            "poll": {"interval_seconds": 2, "concurrency": 2},
            "accounts": [{"name": "north", "base_url": north.base_url, "token": "north-token"},
                         {"name": "south", "base_url": south.base_url, "token": "south-token"}],
            "state_file": "",
        }, source="two-accounts", min_interval=1.0))
        server = MetricsServer(exporter.registry, "127.0.0.1:0")
        server.start()
        exporter.start()
        try:
            with running_prometheus(f"127.0.0.1:{server.port}", tmp_path_factory.mktemp("prometheus")) as (base, proc):
                def plants_recorded():
                    return {(r["metric"].get("account"), r["metric"]["plant_id"])
                            for r in query(base, "atess_plant:pv_energy_joules:today")}
                wait_for(lambda: len(plants_recorded()) == 4 and len(query(base, "atess_device_info")) == 12
                         and len(query(base, "atess_plant:pv_power_watts:sum")) == 4
                         and len(query(base, "rate(atess_api_requests_total[1m]) > 0")) >= 2,
                         "both accounts' plants recorded", procs=[proc])
                yield {"base": base, "north": {d.sn for d in demo_devices()}, "south": {d.sn for d in south_fleet}}
        finally:
            exporter.stop()
            server.stop()


def grafana_values(base: str, account: str) -> dict[str, str]:
    """The variables as Grafana sets them for one account, Plant on All: the SN variable's
    All is the list of the cascaded options (no custom allValue), device detail one SN."""
    sns = sorted(label_values(base, f'atess_device_info{{account=~"{account}", plant_name=~".*"}}', "sn"))
    return {"account": account, "plant": ".*", "sn": "(" + "|".join(re.escape(s) for s in sns) + ")"}


def test_one_account_of_two_narrows_every_dashboard_to_its_plants_and_devices(two_accounts_prometheus):
    """Account north, Plant All: the plants offered, and every series every panel draws,
    are north's; Account All shows both accounts, one series per account on the
    exporter's own panels."""
    base, north, south = (two_accounts_prometheus[k] for k in ("base", "north", "south"))
    info = query(base, "atess_device_info")
    owner = {r["metric"]["sn"]: r["metric"]["account"] for r in info}
    assert owner == {**{sn: "north" for sn in north}, **{sn: "south" for sn in south}}
    plant_owner = {r["metric"]["plant_name"]: r["metric"]["account"] for r in info}
    plant_id_owner = {r["metric"]["plant_id"]: r["metric"]["account"] for r in info}
    # the variables cascade: north's plants and devices only
    assert label_values(base, "atess_device_info", "account") == {"north", "south"}
    assert label_values(base, 'atess_device_info{account=~"north"}', "plant_name") == {"Harbour Depot", "Hill Farm"}
    assert label_values(base, 'atess_device_info{account=~".*"}', "plant_name") == set(plant_owner)
    values = grafana_values(base, "north")
    assert set(values["sn"][1:-1].split("|")) == {re.escape(s) for s in north}

    at = time.time()
    shown, narrowed, leaks = 0, 0, []
    for where, raw in dashboard_expressions(raw=True):
        if "$account" not in raw:
            continue
        north_only = query(base, expand(raw, **values), at=at)
        everyone = query(base, expand(raw, account=".*", plant=".*", sn=".*"), at=at)
        for r in north_only:
            m = r["metric"]
            if (m.get("account", "north") != "north" or owner.get(m.get("sn"), "north") != "north"
                    or plant_owner.get(m.get("plant_name"), "north") != "north"
                    or plant_id_owner.get(m.get("plant_id"), "north") != "north"):
                leaks.append(f"{where}: {m}")
        shown += bool(north_only)
        # by name: the same panel with Account All shows south's too
        named = [r for r in north_only if {"account", "sn", "plant_name", "plant_id"} & set(r["metric"])]
        narrowed += bool(named) and len(north_only) < len(everyone)
    assert not leaks, "\n".join(leaks)
    assert shown > 80 and narrowed > 40, (shown, narrowed)
    at_pv = 'sum(atess_pv_power_watts * on(sn) group_left() atess_device_info{account="north"})'
    fleet_pv = next(t["expr"] for p in walk_panels(json.loads((ROOT / "dashboards" / "fleet-overview.json").read_text())["panels"])
                    if p["title"] == "PV power" and p["type"] == "stat" for t in p["targets"])
    # at a rule evaluation's own time, the recorded sum is the readings' sum at that time
    evaluated = float(query(base, 'max(timestamp(atess_plant:pv_power_watts:sum{account="north"}))', at=at)[0]["value"][1])
    north_pv = query(base, expand(fleet_pv, **values), at=evaluated)
    assert float(north_pv[0]["value"][1]) == pytest.approx(float(query(base, at_pv, at=evaluated)[0]["value"][1]))
    south_pv = query(base, expand(fleet_pv, **grafana_values(base, "south")), at=evaluated)
    every_pv = query(base, expand(fleet_pv, account=".*"), at=evaluated)
    assert float(every_pv[0]["value"][1]) == pytest.approx(float(north_pv[0]["value"][1]) + float(south_pv[0]["value"][1]))

    # what a user sees: the fleet's sites ranked, north's only; then both with Account All
    fleet = json.loads((ROOT / "dashboards" / "fleet-overview.json").read_text())
    panels = {p["title"]: p for p in walk_panels(fleet["panels"])}
    highest = panels["PV power now, highest"]["targets"][0]["expr"]
    assert {r["metric"]["plant_name"] for r in query(base, expand(highest, **values))} == {"Harbour Depot", "Hill Farm"}
    assert {r["metric"]["plant_name"] for r in query(base, expand(highest, account=".*"))} == set(plant_owner)
    # exporter health: one authorization series per account, or the one chosen
    health = json.loads((ROOT / "dashboards" / "exporter-health.json").read_text())
    for p in walk_panels(health["panels"]):
        for t in p.get("targets", []):
            if "atess_api_" in t["expr"] or "atess_poll_" in t["expr"]:
                both = query(base, expand(t["expr"], account=".*"))
                assert {r["metric"].get("account") for r in both} >= {"north", "south"} or p["type"] == "heatmap", p["title"]
                assert {r["metric"].get("account") for r in query(base, expand(t["expr"], account="south"))} <= {"south", None}


# ------------------------------------------------------------------ a local midnight

def household_oracle(catalog, payloads: dict) -> dict[str, float]:
    """Each device's day totals as the recording rules define them (joules), from payloads."""
    from atess_exporter.readings.payload import payload_samples

    out = {"pv": 0.0, "export": 0.0, "import": 0.0, "consumption": 0.0}
    for family, payload in payloads.values():
        samples = {name: rows[0][1] for name, rows in payload_samples(catalog.families[family], payload).items() if rows}
        out["pv"] += samples["atess_pv_energy_today_joules"]
        for way in ("export", "import"):  # at the grid meter where there is one
            out[way] += samples.get(f"atess_meter_{way}_energy_today_joules",
                                    samples.get(f"atess_grid_{way}_energy_today_joules", 0.0))
        out["consumption"] += (samples["atess_load_energy_today_joules"]
                               + samples.get("atess_non_critical_load_energy_today_joules", 0.0))
    return out


def test_daily_energy_follows_the_plants_local_midnight(tmp_path):
    """A simulated plant at UTC+1 crosses its local midnight while a real Prometheus scrapes it:
    the per-day panels give exactly the day's totals of the devices' daily counters, the
    running totals start again, and the household ratio of that day follows from them."""
    from atess_exporter.app import Exporter
    from atess_exporter.catalog import load_catalog
    from atess_exporter.config import parse_config
    from atess_exporter.web.server import MetricsServer
    from atess_exporter.simulator import SimDevice, Simulator
    from atess_exporter.simulator.physics import LATEST_BUILDERS

    require_tool("prometheus")
    devices = [SimDevice(sn="HPS150A2312000147", model="HPS150", tz_offset_hours=1.0, plant_id="PL1001"),
               SimDevice(sn="HPS30TL2405000021", family="hps_string", model="HPS30TL", tz_offset_hours=1.0,
                         plant_id="PL1001")]
    # The simulated clock runs with the real one, ahead of it (fresh data): first at 23:00
    # local time (UTC+1) of some day, then, once Prometheus has the day, moved on so that
    # midnight comes at `crossing`: 8 s past a real minute and at least 12 s later, so that
    # Prometheus has the old day at the minute before (the device dashboard reads the
    # counters on a one-minute grid).
    real0 = time.time()
    midnight = ((real0 + 7200) // 86400 + 1) * 86400 - 3600
    shift = [midnight - 3600 - real0]
    sim = Simulator(devices, token="day-token", clock=lambda: time.time() + shift[0])
    sim.start()
    exporter = Exporter(parse_config({
        "atess": {"base_url": sim.base_url, "token": "day-token", "timezone": "Etc/GMT-1", "timeout_seconds": 5},
        "poll": {"interval_seconds": 2, "concurrency": 2},
        "state_file": "",
    }, source="day-boundary", min_interval=1.0))
    # the exporter lives in the simulated time too: a reading is never placed after its poll
    exporter.poller.clock = lambda: time.time() + shift[0]
    server = MetricsServer(exporter.registry, "127.0.0.1:0")
    server.start()
    exporter.start()
    try:
        with running_prometheus(f"127.0.0.1:{server.port}", tmp_path, [PROM_DIR / "recording.yml"]) as (base, proc):
            def plant_pv_today() -> float | None:
                res = query(base, 'atess_plant:pv_energy_joules:today{plant_name="Harbour Depot"}')
                return float(res[0]["value"][1]) if res else None

            before = wait_for(lambda: plant_pv_today(), "the day's running total", procs=[proc])
            crossing = math.ceil((time.time() + 12) / 60) * 60 + 8
            shift[0] = midnight - crossing
            wait_for(lambda: len(query(base, "atess_device:pv_energy_joules:local_day[1h]")) == 2,
                     "both devices' day totals recorded after midnight",
                     seconds=crossing - time.time() + 30, procs=[proc])
            after = plant_pv_today()

            catalog = load_catalog()
            day = household_oracle(catalog, {d.sn: (d.family, LATEST_BUILDERS[d.family](d, midnight - 1)) for d in devices})
            assert before <= day["pv"] and after is not None and after < day["pv"] / 2

            # The dashboard's queries, as Grafana sends them for the bar of this day (a step
            # before the crossing: the window is the next 24 h 30 min).
            fleet = json.loads((ROOT / "dashboards" / "fleet-overview.json").read_text())
            panels = {p["title"]: p for p in walk_panels(fleet["panels"])}
            per_day = {t["refId"]: expand(t["expr"]) for t in panels["Energy per day"]["targets"]}
            at = crossing - 3600
            pv_bar = query(base, per_day["A"], at=at)
            assert [r["metric"]["plant_name"] for r in pv_bar] == ["Harbour Depot"]
            assert float(pv_bar[0]["value"][1]) == pytest.approx(day["pv"] / 3.6e6, rel=1e-9)
            # the day before has no bar in this window
            assert query(base, per_day["A"], at=at - 86400) == []

            # The device dashboard reads each device's own counter, without recording rules.
            detail = json.loads((ROOT / "dashboards" / "device-detail.json").read_text())
            detail_pv = expand(next(t["expr"] for p in walk_panels(detail["panels"]) if p["title"] == "Energy per day"
                                    for t in p["targets"] if t["legendFormat"] == "PV"))
            from atess_exporter.readings.payload import payload_samples
            want = {d.sn: payload_samples(catalog.families[d.family], LATEST_BUILDERS[d.family](d, midnight - 1))
                    ["atess_pv_energy_today_joules"][0][1] / 3.6e6 for d in devices}
            got = {r["metric"]["sn"]: float(r["value"][1]) for r in query(base, detail_pv, at=at)}
            assert got == pytest.approx(want, rel=1e-9)
            assert query(base, detail_pv, at=at - 86400) == []

            ratio = {t["refId"]: expand(t["expr"]) for t in panels["Self-consumption and self-sufficiency per day"]["targets"]}
            self_consumption = float(query(base, ratio["A"], at=at)[0]["value"][1])
            assert self_consumption == pytest.approx(min(1.0, max(0.0, 1 - day["export"] / day["pv"])), rel=1e-9)
            self_sufficiency = float(query(base, ratio["B"], at=at)[0]["value"][1])
            assert self_sufficiency == pytest.approx(min(1.0, max(0.0, 1 - day["import"] / day["consumption"])), rel=1e-9)
            assert 0 < day["import"] < day["consumption"]  # the simulated day has both, so the ratio is not trivial
    finally:
        exporter.stop()
        server.stop()
        sim.stop()
