"""What the real API's documents say, as a user of the exporter sees it: model-aware
fields, flags that are not gauges, the cloud's `lost`, implausible values withheld,
enumeration tables, and the user's corrections in the config."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from atess_exporter.app import Exporter
from atess_exporter.live.store import Cache
from atess_exporter.catalog import load_catalog
from atess_exporter.exposition.collectors import DeviceStatusCollector, ReadingsCollector
from atess_exporter.config import ConfigError
from atess_exporter.live.poller import Poller
from atess_exporter.readings.payload import payload_samples, read_payload
from support import FakeClient, make_config, parse_exposition, series, value

NOW = time.time()
STAMP = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(NOW - 60))


def scrape(devices: list[dict], payloads: dict, now: float = NOW, polls: int = 1, **sections):
    """Poll each device `polls` times (one clock tick of 400 s apart) and scrape."""
    config = make_config("http://127.0.0.1:9", devices=devices, **sections)
    catalog = config.catalog()
    cache = Cache()
    clock = [now]
    poller = Poller(config, FakeClient(payloads), cache, catalog, clock=lambda: clock[0])
    for i in range(polls):
        clock[0] = now + 400 * i
        poller.poll_all_once()
    registry = CollectorRegistry()
    registry.register(DeviceStatusCollector(cache, config.poll, clock=lambda: clock[0]))
    registry.register(ReadingsCollector(cache, catalog, config.poll, clock=lambda: clock[0]))
    return parse_exposition(generate_latest(registry).decode())


def central(sn: str, model: str) -> dict:
    return {"sn": sn, "type": "hps_central", "model": model}


# -- model-aware fields ---------------------------------------------------------------

def test_hv_and_standard_models_report_the_same_total_pv_power():
    payloads = {
        # HPS150HV: ppv is PV1 only, ppv1 the total (sent as a string, as documented)
        "HV1": {"ppv": 10.0, "ppv1": "30.0", "ppv2": "12.0", "ppv3": "8.0", "vpv": 480.0, "time": STAMP},
        "STD": {"ppv": 30.0, "vpv": 620.0, "time": STAMP},
    }
    parsed = scrape([central("HV1", "HPS150HV"), central("STD", "HPS150")], payloads)
    assert value(parsed, "atess_pv_power_watts", sn="HV1") == value(parsed, "atess_pv_power_watts", sn="STD") == 30000
    strings = {dict(k)["string"]: v for k, v in series(parsed, "atess_pv_string_power_watts", sn="HV1").items()}
    assert strings == {"1": 10000, "2": 12000, "3": 8000}
    assert value(parsed, "atess_pv_string_pole_voltage_volts", sn="HV1", string="1", pole="positive") == 480
    assert not series(parsed, "atess_pv_voltage_volts", sn="HV1"), "vpv is a pole voltage on HV models"
    assert value(parsed, "atess_pv_voltage_volts", sn="STD") == 620


def test_an_hv_payload_is_recognised_when_the_model_is_unknown():
    fam = load_catalog().families["hps_central"]
    samples = payload_samples(fam, {"ppv": 10.0, "ppv1": "30.0", "pv1Volt": "900"}, model="")
    assert samples["atess_pv_power_watts"] == (((), 30000.0),)
    assert payload_samples(fam, {"ppv": 10.0}, model="")["atess_pv_power_watts"] == (((), 10000.0),)


# -- not every number is a measurement ------------------------------------------------

def test_flags_ids_and_nested_objects_never_become_gauges():
    payload = {"ppv": 1.0, "lost": False, "again": True, "withTime": True, "id": 123456, "address": 5,
               "systemNo": 1, "dataLogSn": "DL1", "deviceNo": 2, "alias": "roof",
               "calendar": {"year": 2020, "month": 5}, "extra": [1, 2], "gridTie": True}
    for family in ("hps_central", "hps_string", "pcs", "pbd", "bcu", "mbms"):
        samples = payload_samples(load_catalog().families[family], payload)
        assert set(samples) == {"atess_pv_power_watts"}, (family, sorted(samples))


def test_lost_true_makes_the_device_offline():
    payloads = {"A": {"ppv": 1.0, "time": STAMP, "lost": True}, "B": {"ppv": 1.0, "time": STAMP, "lost": False}}
    parsed = scrape([central("A", "HPS50"), central("B", "HPS50")], payloads)
    assert value(parsed, "atess_device_online", sn="A") == 0
    assert value(parsed, "atess_device_online", sn="B") == 1
    assert value(parsed, "atess_device_up", sn="A") == 1, "the API answered: up, but the device is lost"
    # its own series, fresh reading or not: AtessDeviceLost alerts on it without a day of history
    assert value(parsed, "atess_device_lost", sn="A") == 1
    assert value(parsed, "atess_device_lost", sn="B") == 0


def test_no_lost_flag_means_no_lost_series():
    parsed = scrape([central("A", "HPS50")], {"A": {"ppv": 1.0, "time": STAMP}})
    assert not series(parsed, "atess_device_lost", sn="A")


@pytest.mark.parametrize("stamp", ["string", "", "2024-13-45 99:00:00", "3024-01-01 00:00:00", None])
def test_a_reading_without_a_usable_time_is_fresh_only_while_it_changes(stamp):
    frozen = {"ppv": 1.0, "time": stamp}
    changing = iter(range(1, 100))
    payloads = {"FROZEN": frozen, "MOVING": lambda: {"ppv": float(next(changing)), "time": stamp}}
    devices = [central("FROZEN", "HPS50"), central("MOVING", "HPS50")]
    once = scrape(devices, payloads)
    assert value(once, "atess_device_online", sn="FROZEN") == 1, "just changed (first reading)"
    assert not series(once, "atess_device_data_timestamp_seconds", sn="FROZEN")
    later = scrape(devices, payloads, polls=4, poll={"stale_after_seconds": 900})  # 1,200 s of the same payload
    assert value(later, "atess_device_online", sn="FROZEN") == 0
    assert value(later, "atess_device_online", sn="MOVING") == 1


def test_without_a_usable_time_the_lost_flag_decides():
    payloads = {"A": {"ppv": 1.0, "time": "string", "lost": False}, "B": {"ppv": 1.0, "time": "string", "lost": True}}
    parsed = scrape([central("A", "HPS50"), central("B", "HPS50")], payloads, polls=4)
    assert value(parsed, "atess_device_online", sn="A") == 1
    assert value(parsed, "atess_device_online", sn="B") == 0


# -- plausible values only ------------------------------------------------------------

def test_implausible_values_are_withheld_counted_and_logged(caplog):
    payload = {"capacity": 150, "maxVolt": 70.1, "loadPf": 230, "pf": 0.98, "ppv": 1500.0, "pac": -20.0,
               "vbat": 614.4, "time": STAMP}
    with caplog.at_level(logging.DEBUG, logger="atess_exporter"):
        parsed = scrape([central("A", "HPS150")], {"A": payload})
    assert value(parsed, "atess_device_implausible_fields", sn="A") == 4
    for name in ("atess_battery_soc_ratio", "atess_battery_max_cell_voltage_volts", "atess_load_power_factor",
                 "atess_pv_power_watts"):
        assert not series(parsed, name, sn="A"), f"{name}: withheld, never clamped"
    assert value(parsed, "atess_power_factor", sn="A") == 0.98
    assert value(parsed, "atess_battery_power_watts", sn="A") == -20000
    lines = [r.getMessage() + " " + str(getattr(r, "fields", "")) for r in caplog.records
             if "implausible" in r.getMessage()]
    assert len(lines) == 4 and any("maxVolt" in line and "70.1" in line and "[0, 5]" in line for line in lines)


def test_sentinels_of_absent_sensors_are_no_reading_not_implausible():
    """PLATFORM.md 8: 0xFFF6 mV cells, 0xFED4 decidegrees, -1 words, bmsStatus 254 without a BMS."""
    payload = {"maxVolt": 65.526, "minVolt": "65.526", "mvpv": 65.535, "temp1": 6523.6, "temp": 6523.6,
               "bmsStatus": 254, "sysFaultWord3": -1, "sysFaultWord4": 65535, "alarmCode1": -1,
               "vbat": 614.4, "time": STAMP}
    parsed = scrape([central("A", "HPS150")], {"A": payload})
    assert value(parsed, "atess_device_implausible_fields", sn="A") == 0
    for name in ("atess_battery_max_cell_voltage_volts", "atess_battery_min_cell_voltage_volts",
                 "atess_battery_cell_voltage_volts", "atess_internal_temperature_celsius",
                 "atess_ambient_temperature_celsius", "atess_bms_battery_status", "atess_bms_battery_status_state",
                 "atess_fault_word", "atess_fault_active", "atess_alarm_code"):
        assert not series(parsed, name, sn="A"), f"{name}: a sentinel is no reading"
    assert value(parsed, "atess_battery_voltage_volts", sn="A") == 614.4


def test_load_pf_is_a_percentage_exported_as_a_ratio():
    parsed = scrape([central("A", "HPS150")], {"A": {"loadPf": 100, "pf": 0.001, "time": STAMP}})
    assert value(parsed, "atess_load_power_factor", sn="A") == 1.0
    assert value(parsed, "atess_power_factor", sn="A") == 0.001
    assert value(parsed, "atess_device_implausible_fields", sn="A") == 0


def test_pcs_and_pbd_ppv_is_watts_while_their_string_powers_are_kilowatts():
    devices = [{"sn": "P", "type": "pcs", "model": "PCS500"}, {"sn": "D", "type": "pbd", "model": "PBD250"}]
    payloads = {"P": {"ppv": 108000, "ppv1": 40.5, "ppv5": 12.0, "pcsActivePower": 79.0, "time": STAMP},
                "D": {"ppv": "189000", "ppv1": 60.0, "ppv2": "55.5", "ppv5": 0, "time": STAMP}}
    parsed = scrape(devices, payloads)
    assert value(parsed, "atess_pv_power_watts", sn="P") == 108000, "108 kW, not withheld"
    assert value(parsed, "atess_pv_string_power_watts", sn="P", string="1") == 40500
    assert value(parsed, "atess_pv_string_power_watts", sn="P", string="5") == 12000
    assert value(parsed, "atess_output_power_watts", sn="P") == 79000
    assert value(parsed, "atess_pv_power_watts", sn="D") == 189000
    assert value(parsed, "atess_pv_string_power_watts", sn="D", string="2") == 55500
    assert value(parsed, "atess_device_implausible_fields", sn="P") == 0 == value(parsed, "atess_device_implausible_fields", sn="D")


def test_fault_words_become_named_faults_with_the_protocols_byte_swap():
    # A real PCS record without BMS and grid (PLATFORM.md 5): BMS communication fault, BMS fault, AC no utility;
    # word 5 = 1024 (0x0400): high byte bit 2 = D2, LCD emergency stop (ENUMS.md 7).
    payload = {"sysFaultWord1": 0, "sysFaultWord2": (1 << 11) | (1 << 13), "sysFaultWord3": 1 << 8,
               "sysFaultWord5": 1024, "sysFaultWord7": -1, "sysFaultWord8": 1 << 15, "time": STAMP}
    parsed = scrape([{"sn": "P", "type": "pcs", "model": "PCS500"}], {"P": payload})
    active = {(dict(k)["word"], dict(k)["fault"]) for k, v in series(parsed, "atess_fault_active", sn="P").items() if v == 1}
    assert active == {("2", "bms_communication_fault"), ("2", "bms_fault"), ("3", "ac_no_utility"),
                      ("5", "lcd_emergency_stop")}, "word 8 = 0x8000 is D7 (high byte bit 7): undefined, no name"
    assert value(parsed, "atess_fault_word", sn="P", word="1") == 0
    assert value(parsed, "atess_fault_word", sn="P", word="8") == 32768
    assert not series(parsed, "atess_fault_word", sn="P", word="7"), "-1: not available"
    # The PBD has its own table: word 1 bit D8 is PV1 over-voltage there.
    pbd = scrape([{"sn": "D", "type": "pbd", "model": "PBD250"}], {"D": {"sysFaultWord1": 1, "time": STAMP}})
    assert {dict(k)["fault"] for k in series(pbd, "atess_fault_active", sn="D")} == {"pv1_over_voltage"}


def test_powers_1000x_too_large_for_the_model_name_the_override(caplog):
    watts = {"ppv": 30000, "pac": -12000, "loadActivePower": 25000, "bactivePower": 4000, "time": STAMP}
    with caplog.at_level(logging.WARNING, logger="atess_exporter"):
        parsed = scrape([central("A", "HPS50")], {"A": watts}, polls=3)
    warnings = [r for r in caplog.records if "1000x" in r.getMessage()]
    assert len(warnings) == 1, "once per device, not per poll"
    assert "catalog_overrides" in str(warnings[0].fields["fix"]) and "ppv: {unit: W}" in str(warnings[0].fields["fix"])
    assert not series(parsed, "atess_pv_power_watts", sn="A")
    # ... and the override it names fixes it, without a release.
    fixed = scrape([central("A", "HPS50")], {"A": watts}, catalog_overrides={"hps_central": {"fields": {
        f: {"unit": "W"} for f in ("ppv", "pac", "loadActivePower", "bactivePower")}}})
    assert value(fixed, "atess_pv_power_watts", sn="A") == 30000
    assert value(fixed, "atess_battery_power_watts", sn="A") == -12000


def test_the_watts_warning_reasons_per_field_not_per_payload(caplog):
    """PLATFORM.md 4: one payload mixes W and kW. A PCS's ppv is catalogued as W; one
    kW field in W (pac) is named on its own, without a majority of fields agreeing."""
    payload = {"ppv": 108000, "pac": 90000, "loadActivePower": 49.0, "bactivePower": 19.0, "time": STAMP}
    with caplog.at_level(logging.WARNING, logger="atess_exporter"):
        parsed = scrape([{"sn": "P", "type": "pcs", "model": "PCS500"}], {"P": payload}, polls=2)
    warnings = [r for r in caplog.records if "1000x" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].fields["fields"] == "pac"
    assert "pac: {unit: W}" in warnings[0].fields["fix"] and "ppv" not in warnings[0].fields["fix"]
    assert value(parsed, "atess_pv_power_watts", sn="P") == 108000
    assert value(parsed, "atess_load_power_watts", sn="P") == 49000


def test_the_rating_comes_from_normal_power_before_the_model_name():
    # An unknown model: without a rating nothing is too large; normalPower (W) gives one.
    payloads = {"A": {"normalPower": 10000, "ppv": 45.0, "pac": 5.0, "time": STAMP},
                "B": {"ppv": 45.0, "pac": 5.0, "time": STAMP}}
    parsed = scrape([central("A", ""), central("B", "")], payloads)
    assert not series(parsed, "atess_pv_power_watts", sn="A"), "45 kW is over 3x a 10 kW rating"
    assert value(parsed, "atess_device_rated_power_watts", sn="A") == 10000
    assert value(parsed, "atess_pv_power_watts", sn="B") == 45000
    # ... and before a model name that says otherwise.
    parsed = scrape([central("C", "HPS150")], {"C": {"normalPower": "10000", "ppv": 45.0, "time": STAMP}})
    assert not series(parsed, "atess_pv_power_watts", sn="C")


# -- enumerations -------------------------------------------------------------------------

def _states(parsed, name, sn="A"):
    return {dict(k)["state"] for k, v in series(parsed, name, sn=sn).items() if v == 1}


def test_running_state_has_real_names_and_lost_is_minus_one():
    parsed = scrape([central("A", "HPS50"), central("B", "HPS50")],
                    {"A": {"status": 2, "time": STAMP}, "B": {"status": -1, "time": STAMP}})
    assert _states(parsed, "atess_device_status_state") == {"on_grid"}
    assert _states(parsed, "atess_device_status_state", sn="B") == {"lost"}


def test_packed_bms_word_is_split_into_its_two_bytes():
    parsed = scrape([central("A", "HPS50")], {"A": {"bmsStatus": 0x0401, "bmsSystemStatus": 9, "time": STAMP}})
    assert value(parsed, "atess_bms_battery_status", sn="A") == 4
    assert value(parsed, "atess_bms_system_status", sn="A") == 1, "the low byte of the word, not the 9 beside it"
    assert _states(parsed, "atess_bms_battery_status_state") == {"charging"}


def test_the_disputed_operation_mode_table_can_be_replaced_in_the_config():
    payload = {"A": {"runModel": 0, "time": STAMP}}
    default = scrape([central("A", "HPS50")], payload)
    assert value(default, "atess_operation_mode", sn="A") == 0
    assert _states(default, "atess_operation_mode_state") == {"peak"}
    other = scrape([central("A", "HPS50")], payload, enums={"runModel": "mode_selection"})
    assert _states(other, "atess_operation_mode_state") == {"load_first"}
    inline = scrape([central("A", "HPS50")], payload, enums={"runModel": {0: "my_mode", 1: "other"}})
    assert _states(inline, "atess_operation_mode_state") == {"my_mode"}
    off = scrape([central("A", "HPS50")], payload, enums={"runModel": "none"})
    assert not series(off, "atess_operation_mode_state") and value(off, "atess_operation_mode", sn="A") == 0


def test_a_field_without_a_published_table_gets_states_from_the_config():
    payload = {"A": {"dgGridSelect": 1, "time": STAMP}}
    assert not series(scrape([central("A", "HPS50")], payload), "atess_generator_grid_select_state")
    parsed = scrape([central("A", "HPS50")], payload, enums={"dgGridSelect": {0: "grid", 1: "generator"}})
    assert _states(parsed, "atess_generator_grid_select_state") == {"generator"}


# -- corrections in the config ----------------------------------------------------------

def test_overrides_change_unit_metric_range_or_skip_per_family_and_model():
    payload = {"ppv": 30000, "loadPf": 0.9, "pac": 900.0, "time": STAMP, "vpvun": 230.5}
    overrides = {"hps_central": {
        "fields": {"loadPf": {"skip": True}, "pac": {"range": [-1e6, 1e6], "rating": "none"},
                   "vpvun": {"metric": "atess_output_phase_voltage_volts", "unit": "V", "labels": {"phase": "u"}}},
        "models": {"HPS150X": {"fields": {"ppv": {"unit": "W"}}}}}}
    devices = [central("X", "HPS150X"), central("Y", "HPS150")]
    parsed = scrape(devices, {"X": payload, "Y": payload}, catalog_overrides=overrides)
    assert value(parsed, "atess_pv_power_watts", sn="X") == 30000, "W on this model"
    assert not series(parsed, "atess_pv_power_watts", sn="Y"), "kW elsewhere: 30 MW is implausible"
    assert not series(parsed, "atess_load_power_factor")
    assert value(parsed, "atess_battery_power_watts", sn="Y") == 900000, "its own range"
    assert value(parsed, "atess_output_phase_voltage_volts", sn="X", phase="u") == 230.5
    assert not series(parsed, "atess_vendor_vpvun"), "now catalogued"


@pytest.mark.parametrize("overrides, enums, message", [
    ({"hps_centrl": {}}, {}, "catalog_overrides.hps_centrl: unknown device family (did you mean 'hps_central'?)"),
    ({"hps_central": {"field": {}}}, {}, "catalog_overrides.hps_central.field: unknown key (did you mean 'fields'?)"),
    ({"hps_central": {"fields": {"ppv": {"unit": "MW"}}}}, {}, "catalog_overrides.hps_central.fields.ppv: unit 'MW' is not one of"),
    ({"hps_central": {"fields": {"ppv": {"metric": "atess_pv_powr_watts"}}}}, {}, "did you mean 'atess_pv_power_watts'"),
    ({"hps_central": {"fields": {"ppv": {"metric": "atess_grid_voltage_volts"}}}}, {}, "labels [] differ from atess_grid_voltage_volts's ['phase']"),
    ({"hps_central": {"fields": {"ppv": {"range": [5, 1]}}}}, {}, "range must be finite with low <= high"),
    ({"hps_central": {"fields": {"ppv": {"skip": "yes"}}}}, {}, "write `skip: true` alone"),
    ({"hps_central": {"fields": {"newThing": {"unit": "W"}}}}, {}, "newThing is not catalogued for this family; give at least metric and unit"),
    ({"hps_central": {"fields": {"ppv": {"metric": "atess_battery_power_watts"}}}}, {}, "same series as"),
    ({}, {"runModle": "mode_selection"}, "enums.runModle: not an enumeration field (did you mean 'runModel'?)"),
    ({}, {"runModel": "modes"}, "enums.runModel: 'modes' is not a known table"),
    ({}, {"runModel": {0: "Load First"}}, "must be snake_case"),
    (["hps_central"], {}, "catalog_overrides: must be a mapping, got a list"),
    ({}, "none", "enums: must be a mapping, got a string"),
])
def test_bad_overrides_stop_start_up_with_the_key_and_the_fix(overrides, enums, message):
    with pytest.raises(ConfigError) as err:
        make_config("http://127.0.0.1:9", catalog_overrides=overrides, enums=enums)
    text = str(err.value)
    assert message in text and "\n" not in text and "Correcting the catalog" in text


def test_check_config_validates_overrides(tmp_path, capsys):
    from atess_exporter.cli import main

    path = tmp_path / "config.yaml"
    path.write_text("atess: {base_url: 'http://127.0.0.1:9', token: x}\ndevices: [{sn: A1, type: hps_central}]\n"
                    "catalog_overrides: {hps_central: {fields: {ppv: {unit: kw}}}}\n")
    assert main(["--check-config", "--config.file", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "catalog_overrides.hps_central.fields.ppv: unit 'kw'" in err


# -- the documented paths and shapes, end to end ----------------------------------------------

def test_without_endpoints_the_documented_paths_are_called(sim):
    exporter = Exporter(make_config(sim.base_url, devices=[], discovery={"enabled": True},
                                    settings={"enabled": True}))
    exporter.poller.run_once()
    called = {path for path, _ in sim.calls}
    for path in ("/api/v1/hps/data-last", "/api/v1/hps/data-last-small", "/api/v1/pbd/data-last",
                 "/api/v1/hps/big-setting", "/api/v1/hps/small-setting", "/api/v1/bms/bcu-setting",
                 "/api/v1/bms/buc-base-info/list"):
        assert path in called, path
    parsed = parse_exposition(exporter.exposition().decode())
    assert len(series(parsed, "atess_device_up")) == len(sim.devices)
    assert all(v == 1 for v in series(parsed, "atess_device_up").values())
    assert all(v == 0 for v in series(parsed, "atess_device_implausible_fields").values())


def test_read_payload_reports_unusable_text_but_not_flags():
    fam = load_catalog().families["hps_central"]
    reading = read_payload(fam, {"ppv": "n/a", "vbat": True, "pac": None, "fac": ""}, "HPS50")
    assert reading.unusable == 2 and reading.samples == {}


def test_one_payload_cannot_flood_the_exposition_with_unknown_fields():
    fam = load_catalog.__wrapped__().families["pcs"]
    samples = payload_samples(fam, {f"oddField{i}": i for i in range(5000)} | {"ppv": 1.0})
    vendor = [n for n in samples if n.startswith("atess_vendor_")]
    assert len(vendor) == 256 and "atess_pv_power_watts" in samples
