"""The exporter against both dialects of the simulator: the vendor doc's, and the
platform's (simulator/platform.py: the spellings, field sets, zones and personal
data of the servers the ATESS cloud was built on, PLATFORM.md)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import date
from pathlib import Path

import pytest

from atess_exporter.app import Exporter
from atess_exporter.catalog import load_catalog, parse_number
from atess_exporter.probe import command as probe_command
from atess_exporter.simulator import Simulator, demo_devices
from support import TOKEN, make_config, parse_exposition, series, value

BEFORE = json.loads((Path(__file__).parent / "fixtures" / "catalog_before_issue18.json").read_text())["families"]
NOW = time.time()   # one moment for every simulator here: both dialects read the same physics, fresh

# PLATFORM.md 5-7, transcribed: every field it names, per section.
_RANGE = lambda stem, a, b: [f"{stem}{i}" for i in range(a, b + 1)]
PLATFORM_FIELDS = {
    "pcs": ["bvpv", "bipv", "vacuv", "vacvw", "vacwu", "bipvu", "bipvv", "bipvw", "i1A", "i1B", "i1C", "bvpvuv",
            "bvpvvw", "bvpvwu", "gridFreq", "pfSymbol", "risoBatp", "risoBatn", "gfdi1", "gfdi2", "loadIa", "loadIb",
            "loadIc", "vpvuv", "vpvvw", "vpvwu", "bvbus", "bvbusPosi", "bvbusNega", "outApparentPower",
            "pcsActivePower", "outReactivePower", "loadToday", "loadTotal", "loadTimeToday", "loadTimeTotal",
            "toGridToday", "toGridTotal", "toGridTimeToday", "toGridTimeTotal", "gridToday", "gridTotal",
            "gridTimeToday", "gridTimeTotal", "vacu", "vacv", "vacw", *_RANGE("temp", 1, 6), "pacToBattery",
            "pacToGrid", "powerGird", "toPowerGird", *_RANGE("sysFaultWord", 1, 8), "alarmCode1", "alarmCode2",
            "electricState", "bmsProtection", "typeFlag", "selfTime"],
    "pbd": [*_RANGE("bipvBuck", 1, 5), "biOutBuck1", "biOutBuck2", "biout", "bvout", "bvbus", "ipv",
            *_RANGE("ipv", 1, 5), "vpv", *_RANGE("vpv", 1, 5), "ppv", *_RANGE("ppv", 1, 5), "pbdBatPower",
            "pbdOutPowe", "eOutToday", "eOutTotal", "epvToday", "epvTotal", "epvTimeToday", "epvTimeTotal",
            "eChargeToday", "eChargeTotal", "eDischargeToday", "eDischargeTotal", "eChargeTimeToday",
            "eChargeTimeTotal", "eDischargeTimeToday", "eDischargeTimeTotal", "temp", "temppvBuckModule",
            "tempoutBuckModule", "temppvBuckL", "tempoutBuckL", "risoPVp", "risoPVn", "risoBatp", "risoBatn",
            "risoBusp", "risoBusn", "selfTime", "typeFlag", "electricState", "bmsStatus", "bmsVoltStatus",
            "bmsProtection", *_RANGE("sysFaultWord", 1, 6)],
    "hps_string": ["temp2", "temp5", "temp6", "selfTime", "typeFlag", "effectiveness", "insulDetecPosi",
                   "insulDetecNega", "pvpir1", "pvnir1", "batpir", "batnir", "iboard", "inductorCurr", "invuv",
                   "invvw", "invwu", "pac1", "pac2", "rac", "runStatus", "bmsShowStatus", "cfdllc1", "cfdllc2",
                   "batcdct", "batldt", "bmstc", "bmstv", *_RANGE("sysFaultWord", 1, 9), "ipv2", "gridFreq",
                   "vpvun", "vpvvn", "vpvwn"],
}
PERSONAL = ("Hafenstrasse", "owner0.mueller", "owner1.mueller", "Jana Mueller", "5550123", "example.org",
            "54.32077", "10.12262", "24103", "Solar Nord")


@pytest.mark.parametrize("family", sorted(PLATFORM_FIELDS))
def test_every_field_platform_md_names_is_catalogued(family):
    fam = load_catalog().families[family]
    unknown = [f for f in PLATFORM_FIELDS[family] if fam.canonical(f) is None]
    assert not unknown, f"{family}: {unknown}"


def _exporter(sim: Simulator, **sections) -> Exporter:
    return Exporter(make_config(sim.base_url, devices=[], discovery={"enabled": True}, **sections))


def _midday_devices() -> list:
    """The demo fleet in a zone where it is about noon at NOW: its PV reads daylight, never a
    night's zeros, whatever hour the test runs at."""
    at = time.gmtime(NOW)
    offset = round(12 - at.tm_hour - at.tm_min / 60)     # -12 .. +12
    return [dataclasses.replace(d, tz_offset_hours=float(offset)) for d in demo_devices()]


def _polled(dialect: str, caplog=None):
    sim = Simulator(_midday_devices(), token=TOKEN, clock=lambda: NOW, dialect=dialect)
    sim.start()
    try:
        exporter = _exporter(sim)
        exporter.poller.run_once()
        return sim, exporter, exporter.exposition().decode()
    finally:
        sim.stop()


def _is_numeric(raw) -> bool:
    return not isinstance(raw, bool) and parse_number(raw) is not None


def test_fewer_than_40_percent_of_todays_vendor_series_remain_on_the_platforms_payloads(capsys):
    sim, exporter, text = _polled("platform")
    parsed = parse_exposition(text)
    catalog = exporter.catalog
    families = {d.sn: d.family for d in sim.devices.values()}
    report = []
    for sn, family in sorted(families.items(), key=lambda kv: kv[1]):
        payload = sim.last_payload[sn]
        before = sorted(k for k, v in payload.items() if _is_numeric(v) and k not in BEFORE[family])
        fam = catalog.families[family]
        after = sorted(k for k, v in fam.normalise(payload).items() if _is_numeric(v) and fam.canonical(k) is None)
        numeric = sum(1 for v in payload.values() if _is_numeric(v))
        report.append(f"{family:<11} {sn:<20} numeric fields {numeric:>3}  atess_vendor_* before {len(before):>3}"
                      f"  after {len(after):>2}  {after}")
        exported = [n for (n, labels) in parsed if n.startswith("atess_vendor_") and dict(labels)["sn"] == sn]
        assert len(exported) == len(after), (sn, exported, after)
        if family in PLATFORM_FIELDS or family == "hps_central":
            assert len(after) < 0.4 * len(before), (family, before, after)
        for k in after:
            assert k.casefold() not in fam._spellings, f"{k} is a case variant of a catalogued name"
            assert k not in PLATFORM_FIELDS.get(family, ()), f"{k} is a PLATFORM.md field"
    with capsys.disabled():
        print("\n" + "\n".join(report))


def _pv_and_battery(text: str, sn: str) -> tuple[float, float]:
    parsed = parse_exposition(text)
    return value(parsed, "atess_pv_power_watts", sn=sn), value(parsed, "atess_battery_voltage_volts", sn=sn)


@pytest.mark.parametrize("dialect", ["documented", "platform"])
def test_the_exporter_reads_both_dialects_alike(dialect):
    sim, exporter, text = _polled(dialect)
    parsed = parse_exposition(text)
    for dev in sim.devices.values():
        assert value(parsed, "atess_device_up", sn=dev.sn) == 1, dev.sn
        assert value(parsed, "atess_device_implausible_fields", sn=dev.sn) == 0, (dev.sn, sim.last_payload[dev.sn])
        vendor = [n for (n, labels) in parsed if n.startswith("atess_vendor_") and dict(labels)["sn"] == dev.sn]
        fam = exporter.catalog.families[dev.family]
        assert not [n for n in vendor if any(n == f"atess_vendor_{k.lower()}" for k in fam.fields)], vendor
    for (name, _labels), v in parsed.items():
        if name == "atess_load_power_factor":
            assert 0.9 <= v <= 1.0, "loadPf is a percentage: 95 is 0.95"
    pcs = next(d.sn for d in sim.devices.values() if d.family == "pcs")
    assert value(parsed, "atess_pv_power_watts", sn=pcs) > 1000, "PCS ppv arrives in W"


def test_both_dialects_give_the_same_readings_under_their_own_names():
    _, _, documented = _polled("documented")
    _, _, platform = _polled("platform")
    for sn in ("PCS100A2309000058", "PBD250A2310000112", "HPS30TL2405000021", "HPS150A2312000147"):
        assert _pv_and_battery(documented, sn)[0] == _pv_and_battery(platform, sn)[0], sn
    # bvpv is vbat, eChargeToday is echargeToday, bActivePower is bactivePower
    d, p = parse_exposition(documented), parse_exposition(platform)
    for name in ("atess_battery_voltage_volts", "atess_battery_charge_energy_today_joules", "atess_bypass_power_watts",
                 "atess_grid_voltage_volts"):
        assert series(d, name, sn="PCS100A2309000058") == series(p, name, sn="PCS100A2309000058"), name
    # The platform's PCS carries its own fields, under their own metrics.
    assert value(p, "atess_output_power_watts", sn="PCS100A2309000058") is not None
    assert series(p, "atess_grid_exchange_energy_joules_total", sn="PCS100A2309000058")
    assert value(p, "atess_output_ac_voltage_volts", sn="PCS100A2309000058", channel="uv") < 260
    assert value(d, "atess_output_ac_voltage_volts", sn="HPS150A2312000147", channel="uv") > 380


def test_ratings_come_from_the_device_lists():
    sim, exporter, _ = _polled("platform")
    rated = exporter.poller.topology.rated_watts
    assert rated == {d.sn: d.rating_kw * 1000 for d in sim.devices.values()}


def test_personal_data_of_plant_and_datalogger_rows_reaches_no_label_log_or_saved_file(caplog, tmp_path):
    with caplog.at_level(logging.DEBUG, logger="atess_exporter"):
        sim, exporter, text = _polled("platform")
    logs = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    for needle in PERSONAL:
        assert needle not in text, needle
        assert needle not in logs, needle
    assert 'country="' not in text and 'city="' not in text
    # probe --save: every answer written, redacted
    sim = Simulator(demo_devices(), token=TOKEN, dialect="platform")
    with sim:
        config = tmp_path / "config.yaml"
        config.write_text(f"atess:\n  base_url: {sim.base_url}\n  token: {TOKEN}\n")
        out = tmp_path / "saved"
        import io
        buf = io.StringIO()
        probe_command.main(["--config.file", str(config), "--save", str(out)], out=buf, err=buf,
                           today=lambda: date(2026, 5, 28))
    saved = "\n".join(p.read_text() for p in out.glob("*.json"))
    assert "plant_lat" in saved and "userAccount" in saved, "the answers were saved, keys and all"
    for needle in PERSONAL + ("Kiel", "Germany"):
        assert needle not in saved, needle
    assert "vpvuv median 2" in buf.getvalue() and "phase voltages" in buf.getvalue()


RECORDED_NAMES = json.loads((Path(__file__).parent / "fixtures" / "platform_field_names.json").read_text())["families"]


@pytest.mark.parametrize("family", sorted(RECORDED_NAMES))
def test_the_platforms_recorded_field_names_mostly_leave_atess_vendor(family, capsys):
    """The same count on the field names of the platform's public example answers,
    independent of our simulator: before = not known to the catalog as it was,
    after = still unknown (each would be one atess_vendor_* series)."""
    fam = load_catalog().families[family]
    names = RECORDED_NAMES[family]
    before = [n for n in names if n not in BEFORE[family]]
    after = [n for n in names if fam.canonical(n) is None]
    with capsys.disabled():
        print(f"\n{family}: {len(names)} numeric fields, atess_vendor_* before {len(before)}, after {len(after)} {after}")
    assert len(after) < 0.4 * len(before)
    assert not set(after) & set(PLATFORM_FIELDS.get(family, ()))


def test_backfill_reads_the_platforms_history_rows_like_latest_data(tmp_path):
    """History rows in the platform's spellings give the catalogued series, no atess_vendor_*."""
    import io
    import yaml
    from atess_exporter import backfill

    devices = [d for d in demo_devices() if d.family in ("pcs", "pbd", "hps_string")]
    day = date.fromtimestamp(NOW - 86400)
    with Simulator(devices, token=TOKEN, dialect="platform") as sim:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "atess": {"base_url": sim.base_url, "token": TOKEN, "timeout_seconds": 5},
            "devices": [{"sn": d.sn, "type": d.family, "model": d.model} for d in devices]}))
        out = tmp_path / "out.om"
        err = io.StringIO()
        rc = backfill.main(["--config.file", str(config), "--from", day.isoformat(), "--to", day.isoformat(),
                            "--output", str(out), "--call-interval", "0", "--retry-backoff", "0"], stderr=err)
    assert rc == 0, err.getvalue()
    text = out.read_text()
    assert "atess_vendor_" not in text
    for needle in ('atess_pv_power_watts{sn="PCS100A2309000058"', 'atess_battery_charge_energy_today_joules{sn="PBD250',
                   'atess_grid_exchange_energy_joules_total{sn="PCS100A2309000058"', 'atess_insulation_resistance_ohms{'):
        assert needle in text.replace(',model="PCS100"', "").replace(',model="PBD250"', ""), needle
