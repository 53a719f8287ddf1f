"""Behaviour of the ATESS cloud simulator that the exporter's demo mode and tests rely on."""

from __future__ import annotations

import base64
import calendar
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from atess_exporter.simulator import SimDevice, Simulator, demo_devices
from atess_exporter.simulator.physics import LATEST_BUILDERS, hps_central_latest
from support import Clock

PATH = "/api/v1/hps/data-last"
FIELDS_TSV = Path(__file__).parent / "fixtures" / "hps_central_fields.tsv"

# The keys of the example JSON of GET /api/v1/hps/data-last in the vendor doc.
DOC_FIELDS = """
atsBypass bactivePower bapparentPower bipvBuck3 bmsStatus bmsSystemStatus bmsVoltStatus
breactivePower bvbus bypassFreq capacity checkTime cpActivePower cpPowerLimit
dailyEnergyFromMeter dailyEnergyToMeter dailyNonCriticalEnergy deviceSn dgActivePower
dgApparentPower dgCurrentU dgCurrentV dgCurrentW dgGridSelect dgReactivePower
dgTodayIntakePower dgTodayIntakeTime dgTotalIntakePower dgTotalIntakeTime ebatChargeTimeTotal
ebatChargeTotal ebatDischargeTimeTotal ebatDischargeTotal echargeTimeToday echargeToday
edischargeTimeToday edischargeToday egridTimeToday egridTimeTotal egridToday egridTotal
eloadTimeToday eloadTimeTotal eloadToday eloadTotal epvTimeToday epvTimeTotal epvToday epvTotal
etoGridTimeToday etoGridTimeTotal etoGridToday etoGridTotal fac gvpvuv gvpvvw gvpvwu ibat ibuck1
ibuck2 ipv ipva ipvb ipvc ipvu ipvv ipvw loadActivePower loadApparentPower loadIu loadIv loadIw
loadPf loadReactivePower maxChargeCurr maxDischargeCurr maxTemp maxTempGroup maxTempNum maxVolt
maxVoltCell maxVoltGroup maxVoltNum meterCurrentU meterCurrentV meterCurrentW meterPower meterQ
meterS minTemp minTempGroup minTempNum minVolt minVoltCell minVoltGroup minVoltNum mvpv
nonCriticalLoad outvu outvv outvw pac pf ppv ppv1 ppv2 ppv3 pv1Volt pv2NegVolt pv2Volt
pv3NegVolt pv3PosVolt pv3Volt runModel scrTemp status systemNo temp temp1 temp3 temp4 time
totalEnergyFromMeter totalEnergyToMeter totalNonCriticalEnergy vbat vpv vpv2 vpv3 vpvuv vpvvw vpvwu
""".split()

HV_STRING_FIELDS = {
    "ppv1", "ppv2", "ppv3", "pv1Volt", "pv2Volt", "pv2NegVolt", "pv3Volt",
    "pv3PosVolt", "pv3NegVolt", "vpv2", "vpv3", "bvbus", "bipvBuck3",
}
INT_FIELDS = {
    "atsBypass", "bmsStatus", "bmsSystemStatus", "bmsVoltStatus", "capacity", "dgGridSelect",
    "maxTempGroup", "maxTempNum", "maxVoltCell", "maxVoltGroup", "maxVoltNum", "minTempGroup",
    "minTempNum", "minVoltCell", "minVoltGroup", "minVoltNum", "runModel", "status", "systemNo",
}

# Monday 2025-06-02 00:00 UTC.
T0 = calendar.timegm((2025, 6, 2, 0, 0, 0))
HOUR = 3600.0
SN150, SNHV, SN50, SNTZ = "HPS150A2312000147", "HPS100HV2403000082", "HPS50A2208000315", "HPS150TZ0000001"
DEVICES = [
    SimDevice(SN150, model="HPS150"),
    SimDevice(SNHV, model="HPS100HV"),
    SimDevice(SN50, model="HPS50"),
    SimDevice(SNTZ, model="HPS150", tz_offset_hours=2.0),
]
TOKEN = "t0ken"
AUTH = {"Authorization": f"Basic {TOKEN}", "Accept-Language": "en"}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 12 * HOUR)


@pytest.fixture
def sim(clock):
    with Simulator(DEVICES, token=TOKEN, clock=clock) as s:
        yield s


def get(sim: Simulator, sn: str | None = None, headers=AUTH, path: str = PATH, timeout: float = 5):
    params = {} if sn is None else {"deviceSn": sn}
    return requests.get(sim.base_url + path, params=params, headers=headers, timeout=timeout)


def data(sim: Simulator, sn: str) -> dict:
    r = get(sim, sn)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == sim.success_code, body
    return body["data"]


# -- payload shape -------------------------------------------------------------

def test_doc_field_list_is_complete():
    assert len(DOC_FIELDS) == len(set(DOC_FIELDS)) == 132
    if FIELDS_TSV.exists():
        with FIELDS_TSV.open(newline="") as f:
            assert {row["field"] for row in csv.DictReader(f, delimiter="\t")} == set(DOC_FIELDS)


@pytest.mark.parametrize("sn", [SN150, SNHV, SN50])
def test_payload_key_set_is_the_doc_example(sim, sn):
    assert list(data(sim, sn)) == DOC_FIELDS


def _schema_types() -> dict[str, str]:
    if FIELDS_TSV.exists():
        with FIELDS_TSV.open(newline="") as f:
            return {row["field"]: row["schema_type"].split()[0] for row in csv.DictReader(f, delimiter="\t")}
    strings = HV_STRING_FIELDS | {"deviceSn", "time"}
    return {k: "integer" if k in INT_FIELDS else "string" if k in strings else "number" for k in DOC_FIELDS}


@pytest.mark.parametrize("sn", [SN150, SNHV, SN50])
@pytest.mark.parametrize("hour", [3, 12, 20])
def test_json_types_follow_the_schema(sim, clock, sn, hour):
    clock.now = T0 + hour * HOUR
    d = data(sim, sn)
    for key, typ in _schema_types().items():
        v = d[key]
        if typ == "integer":
            assert type(v) is int, key
        elif typ == "number":
            assert type(v) is float, key
            assert v == round(v, 3), key
        elif key in HV_STRING_FIELDS and sn != SNHV:
            assert v is None, key
        else:
            assert isinstance(v, str), key
    assert d["deviceSn"] == sn


def test_hv_string_fields_are_numeric_strings_only_on_hv_models(sim):
    hv = data(sim, SNHV)
    for key in HV_STRING_FIELDS:
        assert isinstance(hv[key], str) and math.isfinite(float(hv[key])), key
    assert float(hv["ppv1"]) > 0
    for sn in (SN150, SN50):
        d = data(sim, sn)
        assert all(d[k] is None for k in HV_STRING_FIELDS), sn


def test_hv_ppv1_is_total_and_ppv_is_string_one(sim):
    # Doc's HV table: ppv = PV1 Power, ppv2/ppv3 = PV2/PV3 Power, ppv1 = Total PV Power.
    d = data(sim, SNHV)
    total = float(d["ppv1"])
    assert 0 < d["ppv"] < total
    assert d["ppv"] + float(d["ppv2"]) + float(d["ppv3"]) == pytest.approx(total, abs=0.2)


# -- values ----------------------------------------------------------------------

def _pv(d: dict) -> float:
    return float(d["ppv1"]) if d["ppv1"] is not None else d["ppv"]


@pytest.mark.parametrize("sn,rating", [(SN150, 150), (SNHV, 100), (SN50, 50), (SNTZ, 150)])
def test_pv_is_zero_at_night_and_high_at_local_noon(sim, clock, sn, rating):
    tz = 2.0 if sn == SNTZ else 0.0
    clock.now = T0 + (2 - tz) * HOUR
    assert _pv(data(sim, sn)) == 0
    # The brightest noon of the week (days differ in cloudiness).
    noons = []
    for day in range(7):
        clock.now = T0 + day * 24 * HOUR + (12 - tz) * HOUR
        noons.append(_pv(data(sim, sn)))
    assert 0.5 * rating < max(noons) <= rating
    assert min(noons) > 0


def test_time_is_local_and_rounded_down_to_the_slot(sim, clock):
    clock.now = T0 + 12 * HOUR + 7 * 60 + 31
    assert data(sim, SN150)["time"] == "2025-06-02 12:05:00"
    assert data(sim, SNTZ)["time"] == "2025-06-02 14:05:00"


def test_same_slot_same_payload_next_slot_new_reading(sim, clock):
    clock.now = T0 + 10 * HOUR
    first = data(sim, SN150)
    clock.now += 299
    assert data(sim, SN150) == first
    clock.now += 1
    nxt = data(sim, SN150)
    assert nxt["time"] == "2025-06-02 10:05:00" and nxt != first


MONOTONIC = [k for k in DOC_FIELDS if k.endswith("Total") or k.startswith("total")]
TODAY = [k for k in DOC_FIELDS if "Today" in k or k.startswith("daily")]


def test_lifetime_totals_never_decrease_over_a_virtual_day(sim, clock):
    clock.now = T0 - HOUR
    prev = data(sim, SNTZ)
    grew = set()
    for _ in range(26 * 12):
        clock.now += 300
        cur = data(sim, SNTZ)
        for k in MONOTONIC:
            assert cur[k] >= prev[k], (k, cur["time"])
            if cur[k] > prev[k]:
                grew.add(k)
        prev = cur
    assert {"epvTotal", "eloadTotal", "egridTotal", "ebatChargeTotal", "ebatDischargeTotal"} <= grew


@pytest.mark.parametrize("dev", DEVICES[:3], ids=lambda d: d.model)
def test_totals_monotonic_and_today_consistent_over_two_weeks(dev):
    prev = hps_central_latest(dev, T0)
    for i in range(1, 14 * 288):
        cur = hps_central_latest(dev, T0 + i * 300)
        for k in MONOTONIC:
            assert cur[k] >= prev[k], (k, cur["time"])
        if cur["time"].endswith("00:00:00"):
            assert all(cur[k] == 0 for k in TODAY), cur["time"]
        else:
            # Within a day, today and total grow by the same energy.
            assert cur["epvTotal"] - prev["epvTotal"] == pytest.approx(cur["epvToday"] - prev["epvToday"], abs=0.15)
        prev = cur


def test_today_values_reset_at_local_midnight(sim, clock):
    # SNTZ is UTC+2: local midnight is 22:00 UTC.
    clock.now = T0 + 21 * HOUR + 55 * 60
    before = data(sim, SNTZ)
    assert before["time"] == "2025-06-02 23:55:00"
    assert before["epvToday"] > 0 and before["eloadToday"] > 0 and before["epvTimeToday"] > 0
    clock.now += 300
    after = data(sim, SNTZ)
    assert after["time"] == "2025-06-03 00:00:00"
    for k in TODAY:
        assert after[k] == 0, k
    assert after["epvTotal"] >= before["epvTotal"]
    # The UTC device is still in its day.
    assert data(sim, SN150)["eloadToday"] > 0


@pytest.mark.parametrize("dev", DEVICES[:3], ids=lambda d: d.model)
def test_battery_and_power_balance_are_plausible(dev):
    charged = discharged_evening = False
    prev = None
    for i in range(7 * 288):
        d = hps_central_latest(dev, T0 + i * 300)
        hour = int(d["time"][11:13])
        assert 0 <= d["capacity"] <= 100
        assert 3.0 <= d["minVolt"] <= d["mvpv"] <= d["maxVolt"] <= 3.45
        assert 380 < d["gvpvuv"] < 420 and 220 < d["outvu"] < 240 and 49.9 < d["fac"] < 50.1
        # pac > 0 discharging: load = PV + battery + grid (bypass).
        assert d["loadActivePower"] == pytest.approx(_pv(d) + d["pac"] + d["bactivePower"], abs=0.08)
        assert d["ibat"] == pytest.approx(d["pac"] * 1000 / d["vbat"], abs=0.2)
        if prev is not None:
            assert abs(d["capacity"] - prev["capacity"]) <= 10
            if prev["pac"] < -1:
                assert d["capacity"] >= prev["capacity"]
        charged |= d["pac"] < -1 and 8 <= hour <= 16
        discharged_evening |= d["pac"] > 1 and 17 <= hour <= 23
        prev = d
    assert charged and discharged_evening


def test_devices_differ_and_payloads_are_deterministic():
    a, b = SimDevice("SN-A"), SimDevice("SN-B")
    assert a.seed != b.seed
    t = T0 + 11 * HOUR
    assert hps_central_latest(a, t) == hps_central_latest(SimDevice("SN-A"), t)
    assert hps_central_latest(a, t)["loadActivePower"] != hps_central_latest(b, t)["loadActivePower"]


def test_payload_is_fast():
    dev = SimDevice("SPEED", model="HPS150")
    hps_central_latest(dev, T0)  # builds the cached week
    n = 500
    start = time.perf_counter()
    for i in range(n):
        hps_central_latest(dev, T0 + i * 300)
    assert (time.perf_counter() - start) / n < 0.001


def test_demo_devices():
    devs = demo_devices()
    # The three central HPS first and unchanged, then one device of every other family.
    assert [(d.sn, d.model, d.family) for d in devs[:3]] == [
        (SN150, "HPS150", "hps_central"), (SNHV, "HPS100HV", "hps_central"), (SN50, "HPS50", "hps_central"),
    ]
    assert [d.family for d in devs[3:]] == ["hps_string", "pcs", "pbd", "bcu", "mbms"]
    assert len({d.sn for d in devs}) == len(devs)
    assert set(LATEST_BUILDERS) == {d.family for d in devs}


# -- the other device families ---------------------------------------------------------

OTHERS = [d for d in demo_devices() if d.family != "hps_central"]


def _family_path(family: str) -> str:
    from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS

    return DEFAULT_ENDPOINTS[family]["latest"]


@pytest.fixture
def fleet(clock):
    with Simulator(demo_devices(), token=TOKEN, clock=clock) as s:
        yield s


@pytest.mark.parametrize("dev", OTHERS, ids=lambda d: d.family)
def test_every_family_is_served_on_its_latest_path(fleet, dev):
    r = get(fleet, dev.sn, path=_family_path(dev.family))
    body = r.json()
    assert r.status_code == 200 and body["code"] == 0, body
    assert body["data"]["deviceSn"] == dev.sn and body["data"]["time"] == "2025-06-02 13:00:00"
    assert fleet.last_payload[dev.sn] == body["data"]
    # A device is only found on its own family's path.
    assert get(fleet, dev.sn, path=PATH).json()["code"] == 400


def test_hps_string_path_is_the_confirmed_one():
    assert _family_path("hps_string") == "/api/v1/hps/data-last-small"


@pytest.mark.parametrize("dev", OTHERS, ids=lambda d: d.family)
def test_other_families_send_some_numbers_as_strings(dev):
    d = LATEST_BUILDERS[dev.family](dev, T0 + 12 * HOUR)
    numbers = {k: v for k, v in d.items() if k not in ("deviceSn", "time", "dataLogSn")
               and not isinstance(v, (bool, dict))}
    assert all(v is not None for v in numbers.values())
    as_text = [k for k, v in numbers.items() if isinstance(v, str)]
    assert as_text, "the vendor sends some numbers as strings"
    for k in as_text:
        assert math.isfinite(float(numbers[k])), k


def _lifetime(d: dict) -> list[str]:
    return [k for k in d if "Total" in k]


def _today(d: dict) -> list[str]:
    return [k for k in d if "Today" in k or k.startswith("eToday")]


@pytest.mark.parametrize("dev", OTHERS, ids=lambda d: d.family)
def test_other_families_totals_grow_and_today_resets(dev):
    prev = LATEST_BUILDERS[dev.family](dev, T0)
    assert _lifetime(prev) and _today(prev)
    grew: set[str] = set()
    for i in range(1, 3 * 288):
        cur = LATEST_BUILDERS[dev.family](dev, T0 + i * 300)
        for k in _lifetime(cur):
            assert float(cur[k]) >= float(prev[k]), (k, cur["time"])
            if float(cur[k]) > float(prev[k]):
                grew.add(k)
        if cur["time"].endswith("00:00:00"):
            assert all(float(cur[k]) == 0 for k in _today(cur)), cur["time"]
        prev = cur
    assert grew, "lifetime totals must move"


@pytest.mark.parametrize("dev", [d for d in OTHERS if d.family in ("hps_string", "pcs", "pbd")], ids=lambda d: d.family)
def test_pv_of_the_other_families_follows_the_sun(dev):
    night = LATEST_BUILDERS[dev.family](dev, T0 + 1 * HOUR)
    assert night["ppv"] == 0
    kw = 1000.0 if dev.family in ("pcs", "pbd") else 1.0  # their ppv is W (PLATFORM.md 4)
    noons = [LATEST_BUILDERS[dev.family](dev, T0 + day * 24 * HOUR + 11 * HOUR)["ppv"] / kw for day in range(7)]
    assert 0.5 * dev.rating_kw < max(noons) <= dev.rating_kw


@pytest.mark.parametrize("dev", [d for d in OTHERS if d.family in ("bcu", "mbms")], ids=lambda d: d.family)
def test_battery_families_are_plausible(dev):
    flows = set()
    for i in range(0, 2 * 288, 3):
        d = LATEST_BUILDERS[dev.family](dev, T0 + i * 300)
        assert 0 <= d["capacity"] <= 100
        assert 3.0 <= float(d["minVolt"]) < float(d["maxVolt"]) <= 3.5
        assert float(d["minTemp"]) < float(d["maxTemp"]) < 60
        assert d["maxChargeCurr"] >= 0 and d["maxDischargeCurr"] >= 0
        assert d["batFlag"] in (-1, 0, 1)
        if d["batFlag"]:
            assert (d["ibat"] > 0) == (d["batFlag"] == 1)
        flows.add(d["batFlag"])
        if dev.family == "mbms":
            assert 1 <= d["maxVoltGroup"] <= d["rackNum"] and d["rackNum"] > 1
        else:
            assert "maxVoltGroup" not in d
    assert {-1, 1} <= flows


# -- envelope, auth, errors --------------------------------------------------------

@pytest.mark.parametrize("code", [0, 200])
def test_success_code_is_selectable(clock, code):
    with Simulator(DEVICES, token=TOKEN, success_code=code, clock=clock) as s:
        body = get(s, SN150).json()
    assert body["code"] == code and body["msg"] == "operate successfully"
    assert body["data"]["deviceSn"] == SN150


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Basic wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}"},
], ids=["missing", "wrong", "no-scheme", "bearer"])
def test_token_refused(sim, headers):
    r = get(sim, SN150, headers=headers)
    assert r.status_code == 200
    assert r.json() == {"code": 403, "data": None, "msg": "No access"}
    assert SN150 not in sim.last_payload


def test_id_and_key_auth(clock):
    good = base64.b64encode(b"my-id:my-key").decode()
    bad = base64.b64encode(b"my-id:other").decode()
    with Simulator(DEVICES, token=None, app_id="my-id", app_key="my-key", clock=clock) as s:
        assert get(s, SN150, headers={"Authorization": f"Basic {good}"}).json()["code"] == 0
        assert get(s, SN150, headers={"Authorization": f"Basic {bad}"}).json()["code"] == 403
        assert get(s, SN150, headers={"Authorization": "Basic demo-token"}).json()["code"] == 403
        assert get(s, SN150, headers={}).json()["code"] == 403


def test_token_and_id_key_both_accepted_when_both_given(clock):
    good = base64.b64encode(b"i:k").decode()
    with Simulator(DEVICES, token="tok", app_id="i", app_key="k", clock=clock) as s:
        assert get(s, SN150, headers={"Authorization": f"Basic {good}"}).json()["code"] == 0
        assert get(s, SN150, headers={"Authorization": "Basic tok"}).json()["code"] == 0
        assert get(s, SN150, headers={"Authorization": "Basic nope"}).json()["code"] == 403


@pytest.mark.parametrize("sn", ["NOPE123", None, ""], ids=["unknown", "missing", "empty"])
def test_unknown_or_missing_sn_is_code_400(sim, sn):
    r = requests.get(sim.base_url + PATH, params=None if sn is None else {"deviceSn": sn},
                     headers=AUTH, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == 400 and body["data"] is None


def test_unknown_path_is_an_html_404(sim):
    r = get(sim, SN150, path="/api/v1/hps/nothing-here")
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("text/html") and "<html>" in r.text


def test_routes_are_extensible(sim):
    from atess_exporter.simulator import Reply

    sim.routes["/api/v1/plant/list"] = lambda s, req: Reply(envelope=s.envelope_dict([{"plantId": 1}]))
    assert get(sim, path="/api/v1/plant/list").json()["data"] == [{"plantId": 1}]


def test_binds_loopback_and_stops(clock):
    s = Simulator(DEVICES, token=TOKEN, clock=clock)
    url = s.start(port=0)
    assert url.startswith("http://127.0.0.1:") and url == s.base_url
    assert get(s, SN50).status_code == 200
    s.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + PATH, params={"deviceSn": SN50}, headers=AUTH, timeout=2)


# -- rate limit and accounting ----------------------------------------------------

def test_rate_limit_answers_429_and_counts(clock):
    with Simulator(DEVICES, token=TOKEN, min_interval_seconds=300, clock=clock) as s:
        assert get(s, SN150).status_code == 200
        clock.now += 10
        r = get(s, SN150)
        assert r.status_code == 429
        assert r.json() == {"code": 429, "data": None, "msg": "request too frequent"}
        assert s.rate_limit_violations == 1
        assert get(s, SN50).status_code == 200  # per (path, SN)
        clock.now += 290
        assert get(s, SN150).status_code == 200
        assert s.rate_limit_violations == 1
        s.reset_counters()
        assert s.rate_limit_violations == 0


def test_no_rate_limit_by_default(sim):
    for _ in range(3):
        assert get(sim, SN150).status_code == 200
    assert sim.rate_limit_violations == 0


def test_call_accounting(sim, clock):
    t1 = clock.now
    get(sim, SN150)
    clock.now += 60
    get(sim, SN150)
    get(sim, SN50)
    get(sim, "NOPE")
    assert sim.calls[(PATH, SN150)] == 2
    assert sim.calls[(PATH, SN50)] == 1
    assert sim.calls[(PATH, "NOPE")] == 1
    assert sim.call_log == [(t1, PATH, SN150), (t1 + 60, PATH, SN150), (t1 + 60, PATH, SN50), (t1 + 60, PATH, "NOPE")]
    sim.reset_counters()
    assert not sim.calls and not sim.call_log


def test_last_payload_is_what_was_served(sim):
    served = data(sim, SNHV)
    assert sim.last_payload[SNHV] == served
    assert SN50 not in sim.last_payload


# -- faults -------------------------------------------------------------------------

def test_fault_http_500(sim):
    sim.set_fault(SN150, "http_500")
    r = get(sim, SN150)
    assert r.status_code == 500 and "<html>" in r.text


def test_fault_http_429(sim):
    sim.set_fault(SN150, "http_429")
    r = get(sim, SN150)
    assert r.status_code == 429 and r.json()["code"] == 429
    assert sim.rate_limit_violations == 0


def test_fault_html(sim):
    sim.set_fault(SN150, "html")
    r = get(sim, SN150)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        r.json()


def test_fault_invalid_json(sim):
    sim.set_fault(SN150, "invalid_json")
    r = get(sim, SN150)
    assert r.status_code == 200 and r.text.startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)


def test_fault_api_error(sim):
    sim.set_fault(SN150, "api_error")
    r = get(sim, SN150)
    assert r.status_code == 200 and r.json() == {"code": 500, "data": None, "msg": "fail"}


def test_fault_data_null(sim):
    sim.set_fault(SN150, "data_null")
    body = get(sim, SN150).json()
    assert body["code"] == 0 and body["data"] is None


def test_fault_auth(sim):
    sim.set_fault(SN150, "auth")
    assert get(sim, SN150).json() == {"code": 403, "data": None, "msg": "No access"}


def test_fault_delay_makes_a_client_time_out(sim):
    sim.set_fault(SN150, "delay", seconds=5)
    with pytest.raises(requests.Timeout):
        get(sim, SN150, timeout=0.2)
    # stop() (fixture teardown) releases the waiting handler.


def test_fault_delay_then_normal_answer(sim):
    sim.set_fault(SN150, "delay", seconds=0.01)
    assert get(sim, SN150).json()["data"]["deviceSn"] == SN150


def test_fault_fields_merged_over_payload(sim):
    sim.set_fault(SN150, "fields", fields={"ppv": "", "vbat": None, "temp": "n/a"})
    d = data(sim, SN150)
    assert (d["ppv"], d["vbat"], d["temp"]) == ("", None, "n/a")
    assert isinstance(d["epvTotal"], float) and list(d) == DOC_FIELDS
    assert sim.last_payload[SN150] == d


def test_faults_are_per_sn_and_clearable(sim):
    sim.set_fault(SN150, "api_error")
    assert get(sim, SN50).json()["code"] == 0
    assert get(sim, SN150).json()["code"] == 500
    assert get(sim, SN150).json()["code"] == 500  # lasts until cleared
    sim.clear_faults()
    assert get(sim, SN150).json()["code"] == 0


def test_unknown_fault_kind_is_rejected(sim):
    with pytest.raises(ValueError):
        sim.set_fault(SN150, "meteor")


# -- command line ---------------------------------------------------------------------

def test_module_serves_demo_fleet():
    proc = subprocess.Popen(
        [sys.executable, "-m", "atess_exporter.simulator", "--port", "0", "--token", "cli"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        sn = demo_devices()[0].sn
        r = requests.get(url + PATH, params={"deviceSn": sn}, headers={"Authorization": "Basic cli"}, timeout=5)
        assert r.json()["data"]["deviceSn"] == sn
    finally:
        proc.terminate()
        proc.wait(timeout=5)
