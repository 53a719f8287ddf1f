"""Three shards as a StatefulSet runs them, scraped by a real Prometheus (issue 21).

Each exporter gets the same configuration and ATESS_SHARD=auto/3; only its
HOSTNAME differs (atess-exporter-0..2, as Kubernetes names a StatefulSet's
pods), so each derives its shard from its ordinal. The account is the loopback
fleet fake. Every device must be exported exactly once, the account-wide series
once, every device called once in its interval across all shards, the plant list
once per shard (they share its daily budget), and a killed
shard must fire AtessShardMissing (its `for:` shortened here; promtool tests
the real timing).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atess_exporter.simulator.fleet import FleetAccount
from support import PROM_DIR, ROOT, fetch, free_port, query, require_tool, stop_process, wait_for

SHARDS = 3


def rules_with_short_for(work: Path) -> list[Path]:
    alerts = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "AtessShardMissing":
                rule["for"] = "2s"
    path = work / "alerts.yml"
    path.write_text(yaml.safe_dump(alerts))
    return [PROM_DIR / "recording.yml", path]


@pytest.mark.prometheus
def test_three_shards_export_every_device_once_and_a_missing_shard_fires(tmp_path):
    prometheus_binary = require_tool("prometheus")
    with FleetAccount(plants=30, devices_per_datalog=10, enforce_interval=300) as fake:   # 300 devices
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"atess": {"base_url": fake.url, "token": "shard-test"}, "state_file": ""}))
        exporters, ports = [], []
        try:
            for ordinal in range(SHARDS):
                port = free_port()
                env = {**os.environ, "ATESS_SHARD": f"auto/{SHARDS}", "HOSTNAME": f"atess-exporter-{ordinal}"}
                log = (tmp_path / f"exporter-{ordinal}.log").open("w")
                exporters.append(subprocess.Popen(
                    [sys.executable, str(ROOT / "exporter.py"), "--config.file", str(config),
                     "--web.listen-address", f"127.0.0.1:{port}"],
                    cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT))
                ports.append(port)
            prom_config = {
                "global": {"scrape_interval": "2s", "scrape_timeout": "1900ms", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in rules_with_short_for(tmp_path)],
                "scrape_configs": [{"job_name": "atess", "static_configs": [
                    {"targets": [f"127.0.0.1:{port}" for port in ports]}]}],
            }
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
            prom_port = free_port()
            prom_log = (tmp_path / "prometheus.log").open("w")
            prom = subprocess.Popen(
                [prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                cwd=tmp_path, stdout=prom_log, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{prom_port}"
            try:
                wait_for(lambda: fetch(f"{base}/-/ready") is not None, "prometheus ready", procs=[prom])

                def scalar(expr: str) -> float:
                    res = query(base, expr)
                    return float(res[0]["value"][1]) if res else 0.0

                wait_for(lambda: scalar('count(atess_device_up == 1)') == 300, "every device polled and scraped",
                         90, procs=[prom, *exporters])
                assert query(base, "count by (sn) (atess_device_info) > 1") == [], "no device in two shards"
                assert scalar("count(atess_device_info)") == 300
                assert scalar("count(count by (instance) (atess_device_info))") == SHARDS, "every shard has devices"
                assert sorted(r["metric"]["shard"] for r in query(base, "atess_exporter_shards")) == ["0", "1", "2"]
                assert scalar("count(atess_plant_info)") == 30, "account-wide series once, not once per shard"
                assert scalar("count(count by (instance) (atess_plant_info))") == 1
                stats = fake.stats()
                assert stats["devices_called"] == 300 and stats["latest_per_device_max"] == 1, \
                    "one call per device in its interval across all shards"
                assert fake.refused == 0
                # every shard lists the whole account at start-up (no saved topology), none again within
                # the test: the next listing is 1.5 to 4.5 h away (3 shards share 8 listings a day)
                assert stats["calls"]["list:plant"] == SHARDS
                # quiet while all three report (a scrape that timed out on a loaded machine may have
                # made it pending for a moment)
                wait_for(lambda: query(base, 'ALERTS{alertname="AtessShardMissing"}') == [],
                         "AtessShardMissing quiet with every shard up", procs=[prom])

                stop_process(exporters[2])
                wait_for(lambda: query(base, 'ALERTS{alertname="AtessShardMissing", alertstate="firing"}'),
                         "AtessShardMissing firing", procs=[prom])
            finally:
                stop_process(prom)
                prom_log.close()
        finally:
            for proc in exporters:
                stop_process(proc)
