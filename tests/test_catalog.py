"""The field catalog: vendor fields -> metrics, for every device family."""

from __future__ import annotations

import csv
import inspect
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from atess_exporter.exposition import collectors as collector_module
from atess_exporter.live.store import Cache, DeviceSnapshot
from atess_exporter.catalog import NOT_MEASUREMENTS, UNIT_SCALE, load_catalog
from atess_exporter.catalog.naming import RESERVED_SUFFIXES, snake_case
from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS, OPERATIONS
from atess_exporter.readings.payload import payload_samples, read_payload
from atess_exporter.simulator import SimDevice, demo_devices
from atess_exporter.simulator.physics import LATEST_BUILDERS
from atess_exporter.simulator.server import DEFAULT_ROUTES
from support import require_tool

FIELDS_TSV = Path(__file__).parent / "fixtures" / "hps_central_fields.tsv"
T0 = 1748865600.0  # Monday 2025-06-02 12:00 UTC
DEVICE_FAMILIES = {"hps_central", "hps_string", "pcs", "pbd", "bcu", "mbms"}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture
def fresh():
    """A catalog of its own, so uncatalogued fields seen here stay here."""
    return load_catalog.__wrapped__()


def _doc_rows() -> list[dict]:
    with FIELDS_TSV.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _one(samples: dict, name: str) -> float:
    rows = samples[name]
    assert len(rows) == 1, rows
    return rows[0][1]


# -- (a) the central HPS against the vendor doc ---------------------------------

def test_every_documented_central_field_is_mapped_or_skipped(catalog):
    fam = catalog.families["hps_central"]
    doc = {row["field"] for row in _doc_rows()}
    assert len(doc) == 132
    missing = sorted(doc - set(fam.fields) - set(fam.skip))
    assert not missing
    assert not set(fam.fields) & set(fam.skip)
    # Nothing catalogued that the doc does not have but the platform's names every family shares
    # (PLATFORM.md 5-7, each saying so); skipped besides: what is never a measurement.
    extra = set(fam.fields) - doc
    assert all("PLATFORM.md" in fam.fields[f].note for f in extra), sorted(extra)
    assert set(fam.skip) - doc - {"pfSymbol"} <= set(NOT_MEASUREMENTS)
    hv = fam.for_model("HPS150HV")
    assert set(hv.fields) - extra <= doc and "ppv1" in hv.fields


# Unit in the description's parentheses -> (catalog unit, factor to the base unit).
DOC_UNITS = {
    "kW": ("kW", 1e3), "kWh": ("kWh", 3.6e6), "KVA": ("kVA", 1e3), "Kvar": ("kvar", 1e3),
    "V": ("V", 1.0), "A": ("A", 1.0), "Hz": ("Hz", 1.0), "°C": ("C", 1.0),
    "%": ("percent", 0.01), "H": ("h", 3600.0), "Min": ("min", 60.0), "s": ("s", 1.0),
}
# The doc gives "(kWh)" for two durations; the catalog reads them as minutes.
UNIT_EXCEPTIONS = {"echargeTimeToday": "min", "edischargeTimeToday": "min"}


@pytest.mark.parametrize("row", _doc_rows(), ids=lambda r: r["field"])
def test_central_unit_follows_the_description(catalog, row):
    fam = catalog.families["hps_central"]
    field, desc = row["field"], row["description"]
    if field in fam.skip:
        return
    fmap = fam.fields[field]
    m = re.search(r"\(([^)]*)\)\s*$", desc)
    if field in UNIT_EXCEPTIONS:
        assert fmap.unit == UNIT_EXCEPTIONS[field]
        assert "kWh" in fmap.note and "duration" in fmap.note
    elif m:
        unit, factor = DOC_UNITS[m.group(1)]
        assert (fmap.unit, fmap.scale) == (unit, factor), desc
    else:
        # No unit in the doc: a unit other than "1" must be marked as assumed or sourced.
        assert fmap.unit == "1" or re.search(r"assumed|PLATFORM\.md", fmap.note, re.I), (field, fmap.note)
    assert fmap.scale == UNIT_SCALE[fmap.unit]


# -- (b) the fixed names -------------------------------------------------------------

FIXED = [
    ("ppv", "atess_pv_power_watts", "gauge", 12.5, 12500.0),
    ("loadActivePower", "atess_load_power_watts", "gauge", 3.25, 3250.0),
    ("pac", "atess_battery_power_watts", "gauge", -7.5, -7500.0),
    ("capacity", "atess_battery_soc_ratio", "gauge", 87, 0.87),
    ("vbat", "atess_battery_voltage_volts", "gauge", 614.4, 614.4),
    ("ibat", "atess_battery_current_amperes", "gauge", -12.2, -12.2),
    ("temp", "atess_ambient_temperature_celsius", "gauge", 24.5, 24.5),
    ("fac", "atess_output_frequency_hertz", "gauge", 50.01, 50.01),
    ("epvTotal", "atess_pv_energy_joules_total", "counter", 1234.5, 1234.5 * 3.6e6),
    ("epvToday", "atess_pv_energy_today_joules", "gauge", 12.5, 12.5 * 3.6e6),
    ("egridTotal", "atess_grid_import_energy_joules_total", "counter", 100.0, 3.6e8),
    ("etoGridTotal", "atess_grid_export_energy_joules_total", "counter", 2.0, 7.2e6),
]


@pytest.mark.parametrize("field,name,kind,raw,value", FIXED, ids=[f[0] for f in FIXED])
def test_fixed_central_names(catalog, field, name, kind, raw, value):
    fam = catalog.families["hps_central"]
    assert fam.fields[field].metric.name == name
    assert catalog.describe_metric(name).type == kind
    samples = payload_samples(fam, {field: raw})
    assert _one(samples, name) == pytest.approx(value)
    assert samples[name][0][0] == ()


# -- (c) what the values look like ------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ("12.5", 12500.0), (" 12.5 ", 12500.0), (12.5, 12500.0), (0, 0.0), ("0", 0.0), ("-3", -3000.0),
    (None, None), ("", None), ("   ", None), ("n/a", None), ("string", None), ("NaN", None), ("inf", None),
    ([1], None), ({"v": 1}, None),
], ids=repr)
def test_value_forms(catalog, raw, expected):
    samples = payload_samples(catalog.families["hps_central"], {"ppv": raw})
    if expected is None:
        assert "atess_pv_power_watts" not in samples
    else:
        assert _one(samples, "atess_pv_power_watts") == pytest.approx(expected)


def test_labelled_fields_share_one_metric(catalog):
    samples = payload_samples(catalog.families["hps_central"], {"gvpvuv": 401.0, "gvpvvw": "399.5", "gvpvwu": None})
    assert dict(samples["atess_grid_voltage_volts"]) == {("uv",): 401.0, ("vw",): 399.5}


def test_skipped_fields_give_nothing(catalog):
    assert payload_samples(catalog.families["hps_central"], {"deviceSn": "123", "time": "2025-06-02 12:00:00",
                                                              "recordTime": "2025-06-02 12:00:00"}) == {}


# -- (d) every family, against the simulator -------------------------------------------------

def test_families_endpoints_and_simulator_agree(catalog):
    assert set(catalog.families) == DEVICE_FAMILIES
    assert set(LATEST_BUILDERS) == DEVICE_FAMILIES
    assert set(DEFAULT_ENDPOINTS) == DEVICE_FAMILIES | {"plant", "datalog"}
    for family in DEVICE_FAMILIES:
        assert set(DEFAULT_ENDPOINTS[family]) == set(OPERATIONS), family
        assert DEFAULT_ENDPOINTS[family]["latest"] in DEFAULT_ROUTES, family
    for obj in ("plant", "datalog"):
        assert set(DEFAULT_ENDPOINTS[obj]) == {"list", "info"}
    assert DEFAULT_ENDPOINTS["hps_central"]["latest"] == "/api/v1/hps/data-last"
    assert DEFAULT_ENDPOINTS["hps_central"]["history"] == "/api/v1/hps/data-list"
    assert DEFAULT_ENDPOINTS["hps_string"]["latest"] == "/api/v1/hps/data-last-small"
    assert DEFAULT_ENDPOINTS["hps_string"]["history"] == "/api/v1/hps/data-list-small"
    paths = [p for ops in DEFAULT_ENDPOINTS.values() for p in ops.values()]
    assert len(paths) == len(set(paths)) and all(p.startswith("/api/v1/") for p in paths)


def _sim_devices() -> list[SimDevice]:
    return demo_devices() + [SimDevice("HPS150HVX0000001", model="HPS150HV")]


# Deliberately uncatalogued numbers in the simulated payloads (names with no
# documented meaning), so the demo exercises the atess_vendor_* path.
SIM_UNCATALOGUED = {"soh", "rackNum"}


@pytest.mark.parametrize("family", sorted(DEVICE_FAMILIES))
def test_simulated_payload_is_catalogued(catalog, family):
    fam = catalog.families[family]
    devices = [d for d in _sim_devices() if d.family == family]
    assert devices
    seen: set[str] = set()
    for dev in devices:
        view = fam.for_model(dev.model)
        for hour in (0, 6, 12, 18):
            payload = LATEST_BUILDERS[family](dev, T0 + hour * 3600)
            unknown = sorted(k for k, v in payload.items() if view.canonical(k) is None and not isinstance(v, dict))
            assert set(unknown) <= SIM_UNCATALOGUED, f"{family}: uncatalogued fields from our own simulator: {unknown}"
            seen |= {k for k, v in payload.items() if v is not None}
            reading = read_payload(fam, payload, dev.model)
            assert not reading.implausible and not reading.unusable, (dev.sn, reading.implausible)
            vendor = {n for n in reading.samples if catalog.uncatalogued.get(n) is not None}
            assert vendor == {f"atess_vendor_{snake_case(k)}" for k in unknown}
    if family == "hps_central":
        # ... and the simulator fills every catalogued central field, the HV ones included.
        hv = fam.for_model("HPS150HV")
        doc = {row["field"] for row in _doc_rows()}
        assert (set(fam.fields) | set(hv.fields)) & doc <= seen, sorted(set(fam.fields) & doc - seen)


@pytest.mark.parametrize("family", sorted(DEVICE_FAMILIES))
def test_lifetime_fields_are_counters_and_today_fields_gauges(catalog, family):
    for field, fmap in catalog.families[family].fields.items():
        lifetime = "Total" in field or field.startswith("total")  # dgTotalIntakePower too
        assert (fmap.metric.type == "counter") == lifetime, field
        if "Today" in field or field.startswith("daily"):
            assert fmap.metric.type == "gauge" and "_today_" in fmap.metric.name, field


def test_metric_names_follow_the_rules(catalog):
    units = ("watts", "joules", "volts", "amperes", "volt_amperes", "celsius", "hertz", "seconds", "ratio")
    used = {f.metric.name for fam in catalog.families.values() for _, f in fam.all_fields()}
    used |= {f.state_metric.name for fam in catalog.families.values() for _, f in fam.all_fields() if f.state_metric}
    used |= {f.fault_metric.name for fam in catalog.families.values() for _, f in fam.all_fields() if f.fault_metric}
    for name, m in catalog.metrics.items():
        assert re.fullmatch(r"atess_[a-z][a-z0-9_]*", name)
        assert name.endswith("_total") == (m.type == "counter")
        assert not name.removesuffix("_total").endswith(RESERVED_SUFFIXES), name
        assert name in used, f"{name} is fed by no vendor field"
        base = name.removesuffix("_total")
        # A unit suffix is a base unit; a kilo/minute/hour/percent one never appears.
        assert not re.search(r"_(kilo\w*|kw|kwh|minutes?|hours?|percent|pct)(_|$)", base), name
        if base.endswith(("_power", "_energy", "_voltage", "_current", "_temperature", "_frequency")):
            pytest.fail(f"{name}: a physical quantity without its unit ({', '.join(units)})")


def test_same_meaning_same_name_across_families(catalog):
    f = catalog.families
    # Every family reads the central names the same way...
    for name in ("ppv", "vbat", "ibat", "capacity", "epvTotal", "maxVolt", "bmsStatus"):
        assert len({f[x].fields[name].metric.name for x in DEVICE_FAMILIES}) == 1, name
    # ... and the other spellings with a source land on the same metrics.
    assert f["bcu"].fields["soc"].metric.name == f["pcs"].fields["capacity"].metric.name == "atess_battery_soc_ratio"
    assert f["bcu"].fields["cBat"].metric.name == f["hps_central"].fields["ibat"].metric.name
    assert f["hps_string"].fields["eBatChargeToday"].metric.name == f["hps_string"].fields["echargeToday"].metric.name
    # Battery positions are gauges of their own, not labels.
    for fam in ("bcu", "mbms"):
        for field in ("maxVoltNum", "maxVoltCell", "minTempNum"):
            assert f[fam].fields[field].metric.labels == ()


def test_an_alternative_spelling_gives_its_series_once(catalog):
    samples = payload_samples(catalog.families["pcs"], {"bactivePower": 2.0, "bActivePower": 3.0})
    assert samples["atess_bypass_power_watts"] == (((), 2000.0),)


@pytest.mark.parametrize("family", sorted(DEVICE_FAMILIES - {"hps_central"}))
def test_fields_without_the_doc_say_where_they_come_from(catalog, family):
    text = (Path(__file__).resolve().parents[1] / "atess_exporter" / "catalog" / f"{family}.yaml").read_text()
    assert re.search(r"NOT documented|ASSUMED|unknown", text.split("family:")[0])
    central = catalog.families["hps_central"].fields
    for field, fmap in catalog.families[family].fields.items():
        if central.get(field) is fmap:
            continue  # inherited: the central doc is its source
        assert re.search(r"assumed|seen in|doc's|public client|recorded|PLATFORM\.md|platform", fmap.note, re.I), (family, field)


# -- (e) uncatalogued fields -----------------------------------------------------------------

def test_unknown_numeric_field_becomes_a_gauge(fresh):
    fam = fresh.families["hps_central"]
    samples = payload_samples(fam, {"ppv": 1, "newFancyReading": "42.5", "someNote": "hello", "nothing": None})
    assert _one(samples, "atess_vendor_new_fancy_reading") == 42.5
    assert not {n for n in samples if "note" in n or "nothing" in n}
    m = fresh.describe_metric("atess_vendor_new_fancy_reading")
    assert m.type == "gauge" and m.labels == ()
    help_text = fresh.help_text("atess_vendor_new_fancy_reading", 300)
    assert "uncatalogued" in help_text.lower() and "hps_central.newFancyReading" in help_text
    assert "Cached" in help_text
    assert snake_case("newFancyReading") == "new_fancy_reading"
    with pytest.raises(KeyError):
        fresh.describe_metric("atess_vendor_some_note")


def test_same_unknown_field_in_two_families_shares_one_gauge(fresh):
    payload_samples(fresh.families["pcs"], {"gridTie": 1})
    samples = payload_samples(fresh.families["bcu"], {"gridTie": 0})
    assert _one(samples, "atess_vendor_grid_tie") == 0
    assert "pcs.gridTie" in fresh.help_text("atess_vendor_grid_tie", 300)
    assert "bcu.gridTie" in fresh.help_text("atess_vendor_grid_tie", 300)


@pytest.mark.parametrize("field,name", [
    ("pvPowerWatts", "atess_vendor_pv_power_watts"),        # a catalogued name, in the reserved namespace
    ("epvTotal2Total", "atess_vendor_epv_total2_total_value"),  # a counter suffix on a gauge
    ("fooCount", "atess_vendor_foo_count_value"), ("fooSum", "atess_vendor_foo_sum_value"),
    ("fooInfo", "atess_vendor_foo_info_value"), ("fooCreated", "atess_vendor_foo_created_value"),
    ("fooBucket", "atess_vendor_foo_bucket_value"),
    ("chargeTimeH", "atess_vendor_charge_timeh"),           # promtool: abbreviated unit
    ("delayMs", "atess_vendor_delayms"), ("pvGauge", "atess_vendor_pvgauge"),
    ("runMinutes", "atess_vendor_runminutes"), ("s", "atess_vendor_svalue"),
    ("deviceUp", "atess_vendor_device_up"),                 # the exporter's own names
    ("deviceOnline", "atess_vendor_device_online"),
    ("settingFooBar", "atess_vendor_setting_foo_bar"),      # names like our settings, plants, dataloggers
    ("plantCapacityWatts", "atess_vendor_plant_capacity_watts"),
    ("datalogOnline", "atess_vendor_datalog_online"),
])
def test_generated_names_never_collide(fresh, field, name):
    samples = payload_samples(fresh.families["pcs"], {field: 7})
    assert list(samples) == [name]
    assert name not in fresh.metrics


def test_two_fields_with_one_snake_name_get_two_gauges(fresh):
    samples = payload_samples(fresh.families["pbd"], {"fooBar": 1, "foo_bar": 2})
    assert sorted(samples) == ["atess_vendor_foo_bar", "atess_vendor_foo_bar2"]
    assert sorted(v for rows in samples.values() for _, v in rows) == [1, 2]


def test_uncatalogued_registration_is_thread_safe(fresh):
    fams = [fresh.families[f] for f in sorted(DEVICE_FAMILIES)]
    payload = {f"field{i}Xyz": i for i in range(200)} | {"fieldXyz": 1, "field_xyz": 2}
    results: list[dict] = []
    start = threading.Barrier(8)

    def work(fam):
        start.wait()
        results.append(payload_samples(fam, payload))

    threads = [threading.Thread(target=work, args=(fams[i % len(fams)],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {frozenset(r) for r in results}
    assert len(names) == 1 and len(next(iter(names))) == 202
    assert {n: v for n, rows in results[0].items() for _, v in rows} == \
        {n: v for n, rows in results[-1].items() for _, v in rows}


# -- (f) enumerations with known states ----------------------------------------------------------

@pytest.mark.parametrize("family", ["hps_central", "hps_string", "pcs"])
@pytest.mark.parametrize("mode,state", [(0, "peak"), (5, "load_first"), ("6", "peak_shaving"),
                                        (15, "smart_meter")])
def test_operation_mode_states(catalog, family, mode, state):
    samples = payload_samples(catalog.families[family], {"runModel": mode})
    assert _one(samples, "atess_operation_mode") == float(mode)
    rows = dict(samples["atess_operation_mode_state"])
    assert len(rows) == 18
    assert [k for k, v in rows.items() if v == 1.0] == [(state,)]
    assert set(rows.values()) == {0.0, 1.0}


@pytest.mark.parametrize("family", ["bcu", "mbms"])
@pytest.mark.parametrize("flag,state", [(-1, "charging"), (0, "idle"), ("1", "discharging")])
def test_battery_flow_states(catalog, family, flag, state):
    rows = dict(payload_samples(catalog.families[family], {"batFlag": flag})["atess_battery_flow_state"])
    assert [k for k, v in rows.items() if v == 1.0] == [(state,)] and len(rows) == 3


def test_unknown_enum_value_keeps_raw_value_and_no_state_is_one(catalog):
    samples = payload_samples(catalog.families["hps_central"], {"runModel": 42})
    assert _one(samples, "atess_operation_mode") == 42
    assert all(v == 0.0 for _, v in samples["atess_operation_mode_state"])
    assert payload_samples(catalog.families["hps_central"], {"runModel": "auto"}) == {}


def test_state_series_name_every_vendor_field(catalog):
    assert "hps_central.runModel" in catalog.help_text("atess_operation_mode_state", 300)


# -- (g) the whole exposition passes promtool --------------------------------------------------

def _make(cls, cache, catalog, now):
    """A collector from collector.py, whatever its current constructor takes."""
    from atess_exporter.config import PollConfig

    known = {"cache": cache, "catalog": catalog, "interval_seconds": 300.0, "poll": PollConfig(),
             "clock": lambda: now}
    kwargs = {}
    for name, p in inspect.signature(cls).parameters.items():
        if name in known:
            kwargs[name] = known[name]
        elif p.default is inspect.Parameter.empty:
            pytest.fail(f"{cls.__name__}: unknown constructor parameter {name}")
    return cls(**kwargs)


def exposition(catalog, extra_fields: dict | None = None) -> bytes:
    now = time.time()
    cache = Cache()
    for i, dev in enumerate(_sim_devices()):
        payload = dict(LATEST_BUILDERS[dev.family](dev, now))
        if i == 0 and extra_fields:
            payload.update(extra_fields)
        cache.account().put(DeviceSnapshot(sn=dev.sn, device_type=dev.family, model=dev.model, up=True,
                                 last_attempt=now, last_success=now, data_time=now,
                                 samples=payload_samples(catalog.families[dev.family], payload)))
    registry = CollectorRegistry()
    registry.register(_make(collector_module.ReadingsCollector, cache, catalog, now))
    registry.register(_make(collector_module.DeviceStatusCollector, cache, catalog, now))
    registry.register(collector_module.BuildInfoCollector())
    return generate_latest(registry)


EXTRA = {"newFancyReading": "1.5", "somethingTotal": 3, "pvPowerWatts": 2, "chargeTimeH": 1,
         "deviceUp": 1, "pvGauge": 4, "fooCount": 5, "remark": "text never breaks it", "nullish": None}


def test_exposition_has_every_family(fresh):
    text = exposition(fresh, EXTRA).decode()
    for dev in _sim_devices():
        assert f'sn="{dev.sn}"' in text
    assert 'atess_operation_mode_state{model="HPS150",sn="HPS150A2312000147",state="load_first"} 1.0' in text
    assert "atess_vendor_new_fancy_reading{" in text and "atess_vendor_something_total_value{" in text
    assert "remark" not in text and "nullish" not in text
    assert re.search(r"^# TYPE atess_pv_energy_joules(_total)? counter$", text, re.M)
    assert re.search(r'^atess_pv_energy_joules_total\{model="PCS100",sn="PCS100A2309000058"\} \S+$', text, re.M)


@pytest.mark.promtool
def test_promtool_check_metrics_is_clean(fresh):
    promtool = require_tool("promtool")
    body = exposition(fresh, EXTRA)
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stdout == b"" and result.stderr == b"", \
        (result.stdout + result.stderr).decode()
