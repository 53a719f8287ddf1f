"""`atess-exporter probe` against the simulator, and the recorded answers it writes."""

from __future__ import annotations

import io
import json
import re
from datetime import date
from pathlib import Path

import pytest
import yaml

from atess_exporter.probe import recording
from atess_exporter.catalog import load_catalog
from atess_exporter.account.discovery import rows_of
from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS
from atess_exporter.probe.command import main
from atess_exporter.readings.clock import parse_wall
from atess_exporter.readings.payload import read_payload
from atess_exporter.simulator import Simulator, demo_devices
from conftest import TOKEN

RECORDED = Path(__file__).parent / "fixtures" / "recorded"


def probe(sim: Simulator, tmp_path: Path, *extra: str, **config) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"atess": {"base_url": sim.base_url, "token": TOKEN},
                                    "discovery": {"enabled": True}, **config}), encoding="utf-8")
    out = io.StringIO()
    rc = main(["--config.file", str(path), *extra], out=out, today=lambda: date(2025, 6, 3))
    return rc, out.getvalue()


def test_probe_checks_every_endpoint_once_and_saves_redacted_answers(tmp_path):
    devices = demo_devices()
    with Simulator(devices, token=TOKEN, min_interval_seconds=300) as sim:
        rc, text = probe(sim, tmp_path, "--save", str(tmp_path / "rec"))
        assert sim.rate_limit_violations == 0, "never more than one call per endpoint and device"
    assert rc == 0, text
    assert "26 of 26 endpoints answered" in text
    for family in ("hps_central", "hps_string", "pcs", "pbd", "bcu", "mbms"):
        for op in ("list", "latest", "settings", "history"):
            row = next(line for line in text.splitlines() if line.startswith(f"{family}.{op} "))
            assert DEFAULT_ENDPOINTS[family][op] in row and " success " in row, row
            if op in ("latest", "history"):
                assert re.search(r"\bparsed\b", row) and "NOT parsed" not in row, row
    assert "model variant hv" in text
    saved = sorted((tmp_path / "rec").glob("*.json"))
    assert len(saved) == 26
    blob = "".join(p.read_text() for p in saved)
    for secret in [TOKEN, "Harbour Depot", "Kiel", *(d.sn for d in devices), *(d.datalog_sn for d in devices)]:
        assert secret not in blob, secret
    record = recording.load(tmp_path / "rec" / "hps_central_latest.json")
    assert record["data"]["deviceSn"].startswith("SN-") and record["model"] in {d.model for d in devices}
    listing = recording.load(tmp_path / "rec" / "hps_central_list.json")
    assert {r["deviceSn"] for r in listing["data"]} >= {record["data"]["deviceSn"]}, "stable hashes across files"


def test_probe_suggests_the_override_for_a_path_that_answers_404(tmp_path):
    with Simulator(demo_devices(), token=TOKEN) as sim:
        documented = DEFAULT_ENDPOINTS["bcu"]["settings"]
        sim.routes["/api/v1/bms/buc-setting"] = sim.routes.pop(documented)  # the other spelling answers
        rc, text = probe(sim, tmp_path)
    assert rc == 1
    row = next(line for line in text.splitlines() if line.startswith("bcu.settings "))
    assert " 404 " in row
    assert "endpoints: {bcu: {settings: /api/v1/bms/buc-setting}}" in text
    assert "failed: bcu.settings" in text


def test_probe_reports_a_refused_token_and_exits_1(tmp_path):
    with Simulator(demo_devices(), token="another-token") as sim:
        rc, text = probe(sim, tmp_path)
    assert rc == 1 and "auth_failed" in text


# -- the recorded fixtures: every file, through the same code as live polls ------------------

def _recordings():
    return sorted(RECORDED.rglob("*.json"))


def test_there_are_recordings_of_every_operation():
    ops = {(r["family"], r["operation"]) for r in map(recording.load, _recordings())}
    assert {op for _, op in ops} == {"list", "latest", "settings", "history"}


@pytest.mark.parametrize("path", _recordings(), ids=lambda p: str(p.relative_to(RECORDED)))
def test_recorded_answers_read_cleanly(path):
    record = recording.load(path)
    catalog = load_catalog()
    data = record["data"]
    if record["operation"] == "latest" and record["family"] in catalog.families:
        reading = read_payload(catalog.families[record["family"]], data, record.get("model"))
        assert reading.samples
        if "vendor-doc" not in path.name:
            assert not reading.implausible and not reading.unusable
            assert parse_wall(data["time"]) is not None
    elif record["operation"] in ("list", "history") and data is not None:
        rows, _ = rows_of(record["path"], data)
        assert all(isinstance(r, dict) for r in rows)


def test_the_vendor_docs_own_example_is_survived():
    """The doc's example: every string-typed field is "string", every number 0."""
    record = recording.load(RECORDED / "vendor-doc_hps_central_latest.json")
    fam = load_catalog().families["hps_central"]
    reading = read_payload(fam, record["data"], "HPS150")
    assert len(record["data"]) == 132
    assert reading.unusable == 12, "the string-typed fields carry text"
    assert not reading.implausible
    assert parse_wall(record["data"]["time"]) is None
    assert reading.samples["atess_pv_power_watts"] == (((), 0.0),)
    assert not [n for n in reading.samples if n.startswith("atess_vendor_")]
    assert json.dumps(reading.samples)  # plain data
