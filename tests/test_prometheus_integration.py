"""End to end: the demo exporter, scraped by a real Prometheus that loads our
rule files, must answer every PromQL expression of the dashboards and rules.

Catches what static checks cannot: a metric or label renamed in the exporter
but not in a dashboard, a join that matches nothing, a recording rule that never
produces a series. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tools import require_tool, stop_process

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "dashboards" / "prometheus"
RULE_FILES = [PROM_DIR / "recording.yml", PROM_DIR / "alerts.yml"]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))

# Grafana variables -> values that make the query cover every device.
# `plant` and `sn` are always used as regex matchers (=~), so ".*" means "all".
VARIABLES = {
    "plant": ".*",
    "sn": ".*",
    "__rate_interval": "1m",   # >= 4 scrapes at the test's 1 s scrape interval
    "__interval": "15s",
    "__range": "5m",           # covers every sample of this short-lived Prometheus
}

# Expressions that may legitimately return nothing against the healthy demo fleet.
# They must still be valid PromQL, and every atess_* metric they name must exist.
ALLOWED_EMPTY = {
    # Dashboards: alert tables, empty while nothing fires (and the demo is healthy).
    'ALERTS{alertname=~"Atess.*"}': "no alert is pending or firing for the healthy demo",
    'ALERTS{alertname=~"AtessExporter.*|AtessApi.*|AtessDevice(Down|Offline)"}': "same, exporter-side alerts only",
}
# Alert rules: a healthy fleet must not trigger any of them (asserted below).
ALLOWED_EMPTY_ALERTS = {
    "AtessExporterDown": "the exporter is up",
    "AtessExporterNotPolling": "polls succeed every 15 s",
    "AtessApiAuthFailing": "the simulator accepts the demo token",
    "AtessDeviceDown": "every demo device answers",
    "AtessDeviceOffline": "demo data is fresh (online 1)",
    "AtessBatterySocLow": "demo SOC stays at or above 20 %",
    "AtessBatteryCellVoltageSpread": "demo cell spread is a few mV",
    "AtessBatteryOverTemperature": "demo batteries run at 20-35 °C",
    "AtessInverterOverTemperature": "demo inverters run below 50 °C",
    "AtessGridLost": "the demo grid is always present",
    "AtessRunningOnGenerator": "the demo devices have no generator (dg fields 0)",
}

DEADLINE_SECONDS = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def wait_for(what: str, check, deadline_seconds: float = DEADLINE_SECONDS, procs=()):
    """Poll check() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + deadline_seconds
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{what}: process {p.args[0]} exited with {p.returncode}")
        try:
            result = check()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"timed out after {deadline_seconds}s waiting for {what} (last error: {last!r})")


@pytest.fixture(scope="module")
def exporter_url(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("exporter") / "exporter.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "exporter.py"), "--demo", "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=tmp_path_factory.mktemp("exporter-cwd"), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        def device_data():
            body = http_get(url)
            return body if b"atess_pv_energy_joules_total{" in body else None

        body = wait_for("exporter /metrics with device data", device_data, procs=[proc])
        devices = body.count(b"\natess_device_info{")
        assert devices >= 3, body[:2000]
        yield {"address": f"127.0.0.1:{port}", "devices": devices}
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def prometheus(exporter_url, tmp_path_factory):
    binary = require_tool("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [{"job_name": "atess", "static_configs": [{"targets": [exporter_url["address"]]}]}],
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
        wait_for("prometheus ready", lambda: http_get(f"{base}/-/ready") is not None, procs=[proc])

        def scalar(expr: str) -> float:
            res = query(base, expr)
            return float(res[0]["value"][1]) if res else 0.0

        # a few scrapes, every device, and the slowest recording rule has produced a series
        wait_for("five successful scrapes", lambda: scalar('count_over_time(up{job="atess"}[1m])') >= 5
                 and scalar('min_over_time(up{job="atess"}[1m])') == 1, procs=[proc])
        wait_for("every demo device", lambda: scalar("count(atess_device_info)") == exporter_url["devices"], procs=[proc])
        wait_for("recording rules, one series per plant",
                 lambda: scalar("count(atess_plant:pv_energy_joules:increase1d)")
                 == scalar("count(count by (plant_name) (atess_device_info))") > 0, procs=[proc])
        yield base
    finally:
        stop_process(proc)
        log.close()
        if proc.returncode not in (0, -15):
            print((work / "prometheus.log").read_text()[-3000:])


def query(base: str, expr: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = json.loads(http_get(url))
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
    if body.get("status") != "success":
        raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"value": data["result"]}]
    return data["result"]


def expand(expr: str) -> str:
    def sub(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in VARIABLES:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return VARIABLES[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", sub, expr)


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboard_expressions() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for p in walk_panels(dash["panels"]):
            for t in p.get("targets", []):
                out.append((f"{path.name}: {p['title']} [{t['refId']}]", expand(t["expr"])))
        for v in dash["templating"]["list"]:
            if v["type"] != "query":
                continue
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
            expr = m.group(1) if m else q  # label_values(series, label): the series must exist
            out.append((f"{path.name}: variable {v['name']}", expand(expr)))
    return out


def rule_expressions() -> list[tuple[str, str, str | None]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule["alert"]
                out.append((f"{path.name}: {name}", rule["expr"], rule.get("alert")))
    return out


def test_expression_inventory_is_complete():
    """The extraction sees every panel query and every rule (guards the test itself)."""
    dash = dashboard_expressions()
    assert len(dash) > 100
    assert sum(1 for _, e in dash if "atess_device_info" in e) >= 3
    rules = rule_expressions()
    assert {a for _, _, a in rules if a} == set(ALLOWED_EMPTY_ALERTS)
    assert set(ALLOWED_EMPTY) <= {e for _, e in dash}, "allow-list entry no longer in any dashboard"


def test_every_dashboard_and_rule_expression_returns_data(prometheus):
    problems = []
    checked = 0
    for where, expr in dashboard_expressions() + [(w, e) for w, e, _ in rule_expressions()]:
        alert = where.split(": ", 1)[1] if where.startswith("alerts.yml") else None
        try:
            result = query(prometheus, expr)
        except ValueError as exc:
            problems.append(f"{where}: invalid: {exc}\n    {expr}")
            continue
        checked += 1
        if result:
            continue
        if expr in ALLOWED_EMPTY or alert in ALLOWED_EMPTY_ALERTS:
            # may be empty, but must not be empty because of a misspelt metric
            for metric in sorted(set(re.findall(r"\batess_[a-z0-9_]+\b", expr))):
                if not query(prometheus, f"count({{__name__=\"{metric}\"}})"):
                    problems.append(f"{where}: metric {metric} does not exist")
            continue
        missing = [m for m in sorted(set(re.findall(r"\batess_[a-z0-9_:]+\b", expr)))
                   if ":" not in m and not query(prometheus, f"count({{__name__=\"{m}\"}})")]
        hint = f" (missing metrics: {', '.join(missing)})" if missing else ""
        problems.append(f"{where}: no data{hint}\n    {expr}")
    assert checked > 100
    assert not problems, f"{len(problems)} expression(s) failed:\n" + "\n".join(problems)


def test_healthy_demo_fires_no_alert(prometheus):
    """The alert expressions are quiet on the healthy demo fleet (not just 'valid')."""
    firing = {}
    for where, expr, alert in rule_expressions():
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
    per_plant = {r["metric"]["plant_name"]: float(r["value"][1]) for r in query(prometheus, "atess_plant:load_power_watts:sum")}
    per_device = query(prometheus, "sum by (plant_name) (atess_load_power_watts * on(sn) group_left(plant_name) atess_device_info)")
    assert per_plant == pytest.approx({r["metric"]["plant_name"]: float(r["value"][1]) for r in per_device})
