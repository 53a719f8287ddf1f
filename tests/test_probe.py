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
from atess_exporter.api.paging import rows_of
from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS
from atess_exporter.probe.command import main
from atess_exporter.readings.clock import parse_wall
from atess_exporter.readings.payload import read_payload
from atess_exporter.simulator import Simulator, demo_devices
from atess_exporter.simulator.server import Reply
from support import TOKEN

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
    # Below the table: what the values suggest (the documented central HPS sends line voltages)
    # and which fields fall to atess_vendor_* (the BMS families' soh, rackNum).
    assert re.search(r"hps_central: vpvuv median (3[89]|4[01])\d V: line voltages", text)
    assert re.search(r"mbms: uncatalogued, exported as atess_vendor_\*: (soh, rackNum|rackNum, soh)", text)
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


# -- what probe hands to strangers (issue 19) ------------------------------------------------

PERSONAL = ["Erika Mustermann", "erika@example.org", "+49 431 1234567", "4314712345", "Hafenstraße 5", "24103",
            "10.1234567", "54.3217654", "48213", "KIEL-0042", "Kiel", "Harbour Depot"]


def _plant_personal_data(sim: Simulator, devices) -> None:
    """Personal data under keys no list names, and in free text; SNs in another letter case."""
    plants = DEFAULT_ENDPOINTS["plant"]["list"]
    listing, latest = sim.routes[plants], sim.routes[DEFAULT_ENDPOINTS["hps_central"]["latest"]]
    central = next(d for d in devices if d.family == "hps_central")

    def plant_list(s, req):
        reply = listing(s, req)
        for row in reply.envelope["data"]["datas"]:
            row.update(ownerName="Erika Mustermann", mail="erika@example.org", contactPhone="+49 431 1234567",
                       mobile=4314712345, street="Hafenstraße 5", postCode="24103", lon=10.1234567,
                       lat=54.3217654, uid=48213, stationCode="KIEL-0042",
                       remark=f"call Erika on +49 431 1234567 about {central.sn.lower()}",
                       **{"Erika Mustermann": 1})
        return reply

    def latest_data(s, req):
        reply = latest(s, req)
        if isinstance(reply.envelope.get("data"), dict):
            reply.envelope["data"].update(installerNote="ask Erika Mustermann, 24103 Kiel", gpsLon=10.1234567,
                                          firmwareVersion=str(req.sn).lower())
        return reply

    sim.routes[plants], sim.routes[DEFAULT_ENDPOINTS["hps_central"]["latest"]] = plant_list, latest_data


def test_probe_save_keeps_only_harmless_values(tmp_path):
    devices = demo_devices()
    with Simulator(devices, token=TOKEN) as sim:
        _plant_personal_data(sim, devices)
        rc, text = probe(sim, tmp_path, "--save", str(tmp_path / "rec"))
    assert rc == 0, text
    blob = "".join(p.read_text() for p in sorted((tmp_path / "rec").glob("*.json")))
    for value in PERSONAL + [s for d in devices for s in (d.sn, d.sn.lower(), d.datalog_sn)]:
        assert value.lower() not in blob.lower(), value
    latest = recording.load(tmp_path / "rec" / "hps_central_latest.json")["data"]
    listing = recording.load(tmp_path / "rec" / "hps_central_list.json")["data"]
    assert latest["firmwareVersion"] == latest["deviceSn"]                  # the SN in lower case: the same hash
    assert latest["deviceSn"] in {r["deviceSn"] for r in listing}          # linkable across files
    fam = load_catalog().families["hps_central"]
    reading = read_payload(fam, latest, "HPS150")
    assert reading.catalogued > 50 and not reading.implausible            # the measurements are all there


def test_probe_scrubs_a_token_the_api_echoes_from_stdout_and_saved_files(tmp_path, capsys):
    from urllib.parse import quote

    with Simulator(demo_devices(), token=TOKEN) as sim:
        path = DEFAULT_ENDPOINTS["pcs"]["settings"]
        sim.routes[path] = lambda s, req: Reply(envelope={
            "code": 10086, "msg": f"token {TOKEN} not allowed here (query token={quote(TOKEN)})",
            "data": {"echo": f'{{"Authorization": "Basic {TOKEN}"}}', "model": TOKEN, "deviceSn": TOKEN}})
        rc, text = probe(sim, tmp_path, "--save", str(tmp_path / "rec"))
    assert rc == 1 and "pcs.settings" in text
    saved = "".join(p.read_text() for p in sorted((tmp_path / "rec").glob("*.json")))
    captured = capsys.readouterr()
    for where in (text, saved, captured.out, captured.err):
        assert TOKEN not in where and quote(TOKEN) not in where and "s3cr3t" not in where
