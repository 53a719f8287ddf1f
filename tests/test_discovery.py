"""A whole account without an SN list: plants, dataloggers, devices, settings."""

import json
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from atess_exporter.app import Exporter
from atess_exporter.config import ConfigError
from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS
from atess_exporter.config.shard import in_shard
from support import TOKEN, make_config, scrape, series, value

BASE = "http://127.0.0.1:9"


LIST_FAMILY = {DEFAULT_ENDPOINTS[f]["list"]: f for f in ("hps_central", "hps_string", "pcs")}


class Account:
    """A fake ATESS account behind `responses`: the documented list shapes (device lists
    keyed by dataLogSn, bare arrays; plant and datalogger lists as page objects),
    latest data, settings."""

    def __init__(self, plants, datalogs, devices, settings=None):
        self.plants, self.datalogs, self.devices = plants, datalogs, devices
        self.settings = settings or {}
        self.requests = []
        self.plant_list_broken = False

    def _page(self, rows, query):
        no, size = int(query["pageNo"][0]), int(query["pageSize"][0])
        return {"code": 0, "msg": "", "data": {"datas": rows[(no - 1) * size: no * size], "offset": (no - 1) * size,
                                               "pageNo": no, "pageSize": size, "total": len(rows)}}

    def reply(self, request):
        url = urlsplit(request.url)
        query = parse_qs(url.query)
        self.requests.append((request.method, url.path, query))
        path = url.path
        if path == "/api/v1/plant/list" and self.plant_list_broken:
            return 502, {}, "<html>bad gateway</html>"
        if path == "/api/v1/plant/list":
            body = self._page(self.plants, query)
        elif path == "/api/v1/datalog/list":
            body = self._page([d for d in self.datalogs if d["plantId"] == query["plantId"][0]], query)
        elif path in LIST_FAMILY:
            rows = [d for d in self.devices if d["family"] == LIST_FAMILY[path] and d["dataLogSn"] == query["dataLogSn"][0]]
            body = {"code": 0, "msg": "", "data": rows}
        elif path.endswith("setting"):
            body = {"code": 0, "msg": "", "data": self.settings.get(query["deviceSn"][0])}
        else:  # latest data
            now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            body = {"code": 0, "msg": "", "data": {"ppv": "2.5", "time": now}}
        return 200, {}, json.dumps(body)


def account():
    plants = [{"plantId": f"P{i}", "plantName": f"Plant {i}", "capacity": 100 * i, "country": "DE", "city": "Kiel"} for i in (1, 2, 3)]
    datalogs = [{"dataLogSn": "DL1", "plantId": "P1", "status": 1}, {"dataLogSn": "DL2", "plantId": "P2", "status": 0},
                {"dataLogSn": "DL3", "plantId": "P3"}]
    devices = [
        {"family": "hps_central", "deviceSn": "HPS-A", "deviceModel": "HPS150", "dataLogSn": "DL1", "firmwareVersion": "V1.2", "lost": False},
        {"family": "hps_central", "deviceSn": "HPS-B", "deviceModel": "HPS100", "dataLogSn": "DL1"},
        {"family": "pcs", "deviceSn": "PCS-C", "deviceModel": "PCS250", "dataLogSn": "DL2"},
        {"family": "hps_string", "deviceSn": "TL-D", "deviceModel": "HPS30TL", "dataLogSn": "DL3"},
    ]
    return Account(plants, datalogs, devices)


def discovering(acct, **sections):
    sections.setdefault("discovery", {})
    sections["discovery"] = {"enabled": True, "page_size": 2, "families": ["hps_central", "hps_string", "pcs"], **sections["discovery"]}
    return Exporter(make_config(BASE, devices=sections.pop("devices", []), **sections))


@pytest.fixture
def mocked():
    acct = account()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=acct.reply)
        yield acct


def test_discovery_pages_through_the_whole_account(mocked):
    exporter = discovering(mocked)
    assert exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == ["HPS-A", "HPS-B", "PCS-C", "TL-D"]
    plant_pages = [q["pageNo"][0] for m, p, q in mocked.requests if p == "/api/v1/plant/list"]
    assert plant_pages == ["1", "2"], "3 plants at page size 2: two pages"
    exporter.poller.poll_all_once()
    parsed = scrape(exporter)
    assert value(parsed, "atess_device_info", sn="HPS-A") == 1
    info = next(iter(series(parsed, "atess_device_info", sn="HPS-A")))
    assert dict(info)["plant_name"] == "Plant 1" and dict(info)["plant_id"] == "P1"
    assert dict(info)["datalog_sn"] == "DL1" and dict(info)["firmware"] == "V1.2" and dict(info)["model"] == "HPS150"
    assert value(parsed, "atess_plant_capacity_watts", plant_id="P2") == 200_000
    assert value(parsed, "atess_plant_info", plant_id="P3", plant_name="Plant 3") == 1
    assert value(parsed, "atess_datalog_online", datalog_sn="DL1") == 1
    assert value(parsed, "atess_datalog_online", datalog_sn="DL2") == 0
    assert value(parsed, "atess_device_up", sn="PCS-C") == 1
    assert all(method == "GET" for method, _, _ in mocked.requests)


def test_devices_that_leave_the_account_lose_their_series(mocked):
    exporter = discovering(mocked)
    exporter.poller.refresh_topology()
    exporter.poller.poll_all_once()
    assert value(scrape(exporter), "atess_pv_power_watts", sn="HPS-B") == 2500
    mocked.devices = [d for d in mocked.devices if d["deviceSn"] != "HPS-B"] + [
        {"family": "pcs", "dataLogSn": "DL3", "deviceSn": "PCS-NEW", "deviceModel": "PCS500"}]
    exporter.poller.refresh_topology()
    parsed = scrape(exporter)
    assert not series(parsed, "atess_pv_power_watts", sn="HPS-B")
    assert not series(parsed, "atess_device_up", sn="HPS-B")
    assert value(parsed, "atess_device_info", sn="PCS-NEW") == 1
    assert "PCS-NEW" in exporter.poller.devices


def test_a_failed_refresh_keeps_the_known_devices(mocked):
    exporter = discovering(mocked, poll={"retries": 0})
    exporter.poller.refresh_topology()
    mocked.plant_list_broken = True
    assert not exporter.poller.refresh_topology()
    assert len(exporter.poller.devices) == 4


def test_explicit_devices_win_and_filters_narrow(mocked):
    exporter = discovering(mocked, devices=[{"sn": "HPS-A", "type": "hps_central", "model": "MyName"},
                                            {"sn": "EXTRA", "type": "hps_central"}],
                           discovery={"exclude": {"plant": ["Plant 2"]}})
    exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == ["EXTRA", "HPS-A", "HPS-B", "TL-D"]
    assert exporter.poller.devices["HPS-A"].model == "MyName"
    assert exporter.poller.devices["HPS-A"].plant_id == "P1", "keeps the plant the account knows"

    only = discovering(mocked, discovery={"include": {"sn": ["TL-D"], "plant": ["P2"]}})
    only.poller.refresh_topology()
    assert sorted(only.poller.devices) == ["PCS-C", "TL-D"]


def test_endpoint_paths_can_be_overridden(mocked):
    exporter = discovering(mocked, endpoints={"plant": {"list": "/api/v2/plants"}})
    exporter.poller.refresh_topology()
    assert "/api/v1/plant/list" not in [p for _, p, _ in mocked.requests]
    assert any(p == "/api/v2/plants" for _, p, _ in mocked.requests)


def test_settings_are_read_only_gauges_and_info(mocked):
    mocked.settings = {"HPS-A": {"exportLimit": "50", "runModel": 2, "workMode": "Load First", "deviceSn": "HPS-A", "note": None}}
    exporter = discovering(mocked, settings={"enabled": True})
    exporter.poller.refresh_topology()
    exporter.poller.poll_settings(exporter.poller.devices["HPS-A"])
    parsed = scrape(exporter)
    assert value(parsed, "atess_setting_export_limit", sn="HPS-A") == 50
    assert value(parsed, "atess_setting_run_model", sn="HPS-A") == 2
    assert value(parsed, "atess_setting_info", sn="HPS-A", setting="workMode", value="Load First") == 1
    assert all(method == "GET" for method, _, _ in mocked.requests)


def test_settings_cannot_be_read_more_than_hourly():
    with pytest.raises(ConfigError, match="settings.refresh_seconds: 60 is below the minimum 3600"):
        make_config(BASE, settings={"refresh_seconds": 60})


def test_shard_keeps_only_this_replicas_devices(mocked):
    sns = ["HPS-A", "HPS-B", "PCS-C", "TL-D"]
    seen = []
    for index in range(2):
        exporter = discovering(mocked, shard=f"{index}/2")
        exporter.poller.refresh_topology()
        assert all(in_shard(sn, index, 2) for sn in exporter.poller.devices)
        seen += list(exporter.poller.devices)
    assert sorted(seen) == sns, "every device in exactly one shard"


def test_discovery_against_the_simulator_finds_the_demo_site(sim):
    exporter = Exporter(make_config(sim.base_url, devices=[], discovery={"enabled": True, "page_size": 3},
                                    settings={"enabled": True}))
    snaps = exporter.poller.run_once()
    assert sorted(s.sn for s in snaps) == sorted(d.sn for d in sim.devices.values())
    assert all(s.up for s in snaps)
    parsed = scrape(exporter)
    plants = {dict(lbls)["plant_name"] for lbls in series(parsed, "atess_plant_info")}
    assert plants == {"Harbour Depot", "Hill Farm"}
    families = {}
    for lbls in series(parsed, "atess_device_info"):
        families.setdefault(dict(lbls)["plant_name"], set()).add(dict(lbls)["device_type"])
    assert len(families["Harbour Depot"]) >= 3, "several families under one plant"
    assert value(parsed, "atess_datalog_online", datalog_sn="DL1001B") == 0
    assert series(parsed, "atess_setting_soc_low_limit")
    assert series(parsed, "atess_setting_level1_cell_volt_high_warning"), "the documented BCU settings"
    # the documented paths were called: device lists keyed by datalogger, settings big/small/bcu
    assert sim.calls[("/api/v1/plant/list", None)] == 1
    for path in ("/api/v1/hps/big-setting", "/api/v1/hps/small-setting", "/api/v1/bms/bcu-setting"):
        assert any(p == path for p, _ in sim.calls), path
    assert sim.calls[("/api/v1/bms/buc-base-info/list", None)] >= 1
    assert not any(path.endswith("setting") and sn is None for path, sn in sim.calls)


def test_simulator_pages_and_refuses_writes(sim):
    import requests

    auth = {"Authorization": f"Basic {TOKEN}"}
    first = requests.get(sim.base_url + "/api/v1/plant/list", params={"pageNo": 1, "pageSize": 1}, headers=auth, timeout=5).json()
    second = requests.get(sim.base_url + "/api/v1/plant/list", params={"pageNo": 2, "pageSize": 1}, headers=auth, timeout=5).json()
    third = requests.get(sim.base_url + "/api/v1/plant/list", params={"pageNo": 3, "pageSize": 1}, headers=auth, timeout=5).json()
    assert [len(p["data"]["datas"]) for p in (first, second, third)] == [1, 1, 0]
    assert first["data"]["datas"][0]["plantId"] != second["data"]["datas"][0]["plantId"]
    put = requests.put(sim.base_url + "/api/v1/hps/big-setting", params={"deviceSn": "HPS150A2312000147"}, headers=auth, timeout=5)
    assert put.status_code == 405


def test_setting_names_follow_the_catalogs_promtool_safe_rules():
    from atess_exporter.readings.devicesettings import read_device_settings

    numbers = read_device_settings({"chargeTimeMinutes": 30, "maxCount": "4", "exportLimit": "50"}).numbers
    assert numbers == {"atess_setting_charge_timeminutes": ("chargeTimeMinutes", 30.0),
                       "atess_setting_max_count_value": ("maxCount", 4.0),
                       "atess_setting_export_limit": ("exportLimit", 50.0)}


# -- the list shapes and paging rules a real account may answer with ----------------------

def _client_for(mock_answers):
    """A client whose GETs answer from `mock_answers(path, query) -> data` (envelope added)."""
    from atess_exporter.api.client import AtessClient

    calls = []

    def reply(request):
        url = urlsplit(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        calls.append((url.path, query))
        return 200, {}, json.dumps({"code": 0, "msg": "", "data": mock_answers(url.path, query)})

    return AtessClient(make_config(BASE).api), calls, reply


@pytest.mark.parametrize("shape", ["bare", "page"])
def test_lists_answer_a_bare_array_or_a_page_object(shape):
    from atess_exporter.account.discovery import pages

    rows = [{"deviceSn": f"SN{i}"} for i in range(5)]

    def answer(path, query):
        if shape == "bare":
            return rows
        no, size = int(query["pageNo"]), int(query["pageSize"])
        return {"datas": rows[(no - 1) * size: no * size], "offset": (no - 1) * size, "pageNo": no,
                "pageSize": size, "total": len(rows)}

    client, calls, reply = _client_for(answer)
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=reply)
        got = list(pages(client, "/x/list", {"dataLogSn": "DL"}, 2))
    assert [r["deviceSn"] for r in got] == [r["deviceSn"] for r in rows]
    assert len(calls) == (1 if shape == "bare" else 3), "a bare array is the whole list; pages stop on total"


def test_a_list_ignoring_pageno_is_read_once_not_forever():
    from atess_exporter.account.discovery import pages

    two = [{"plantId": "A"}, {"plantId": "B"}]
    client, calls, reply = _client_for(lambda path, query: {"datas": two})  # no total, pageNo ignored
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=reply)
        got = list(pages(client, "/api/v1/plant/list", {}, 2))
    assert [r["plantId"] for r in got] == ["A", "B"], "2 plants, not 2,000"
    assert len(calls) == 2, "the second page repeats the first: stop"


def test_a_list_that_never_ends_stops_at_the_page_cap():
    """The cap ends the calls, and the list fails: a list read in part is not the list."""
    from atess_exporter.account.discovery import pages
    from atess_exporter.api.client import MalformedResponseError

    client, calls, reply = _client_for(lambda path, query: {"datas": [{"plantId": query["pageNo"]}] * 2})
    got = []
    with responses.RequestsMock() as mock, pytest.raises(MalformedResponseError, match="within 7 pages"):
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=reply)
        got.extend(pages(client, "/api/v1/plant/list", {}, 2, max_pages=7))
    assert len(calls) == 7 and len(got) == 14


def test_a_list_past_the_page_cap_keeps_the_devices(mocked):
    """discovery.max_pages reached: the refresh fails (as over the call budget) instead of
    taking the pages read for the whole account and dropping the devices beyond them."""
    exporter = discovering(mocked, discovery={"max_pages": 2})   # 3 plants, 2 a page: 2 pages
    assert exporter.poller.refresh_topology()
    before = sorted(exporter.poller.devices)
    mocked.plants += [{"plantId": f"P{i}", "plantName": f"Plant {i}"} for i in (4, 5)]   # now 3 pages
    assert not exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == before == ["HPS-A", "HPS-B", "PCS-C", "TL-D"]


def test_an_empty_list_is_no_devices_not_an_error(mocked):
    mocked.devices = [d for d in mocked.devices if d["dataLogSn"] != "DL2"]
    exporter = discovering(mocked)
    assert exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == ["HPS-A", "HPS-B", "TL-D"]


def test_discovery_refuses_what_the_config_would_refuse(mocked):
    mocked.devices += [{"family": "pcs", "deviceSn": "X" * 5000, "dataLogSn": "DL2"},
                       {"family": "pcs", "deviceSn": "   ", "dataLogSn": "DL2"},
                       {"family": "pcs", "deviceSn": "bad sn\n", "dataLogSn": "DL2"}]
    mocked.plants[0]["capacity"] = "1e309"
    mocked.plants[1]["plantName"] = "P" * 1000
    exporter = discovering(mocked)
    assert exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == ["HPS-A", "HPS-B", "PCS-C", "TL-D"]
    assert exporter.poller.topology.skipped == 3
    parsed = scrape(exporter)
    assert not series(parsed, "atess_plant_capacity_watts", plant_id="P1"), "no +Inf capacity"
    names = {dict(lbls)["plant_name"] for lbls in series(parsed, "atess_plant_info")}
    assert max(len(n) for n in names) <= 128


def test_discovery_calls_are_counted_and_budgeted(mocked):
    exporter = discovering(mocked, discovery={"max_calls": 3})
    assert not exporter.poller.refresh_topology(), "the budget ends the refresh, which keeps the devices"
    assert len(mocked.requests) == 3
    parsed = scrape(exporter)
    lists = sum(v for lbls, v in series(parsed, "atess_api_requests_total").items() if "list" in dict(lbls)["endpoint"])
    assert lists == 3


def test_a_device_the_list_calls_lost_is_offline(mocked):
    mocked.devices[0]["lost"] = True   # HPS-A; its latest payload carries no lost flag
    exporter = discovering(mocked)
    exporter.poller.refresh_topology()
    exporter.poller.poll_all_once()
    parsed = scrape(exporter)
    assert value(parsed, "atess_device_online", sn="HPS-A") == 0
    assert value(parsed, "atess_device_online", sn="HPS-B") == 1
    assert value(parsed, "atess_device_lost", sn="HPS-A") == 1


def test_a_listed_rating_bounds_the_readings_before_the_model_name(mocked):
    """normalPower/nominalPower (W) in a list row is the device's rating (PLATFORM.md 9);
    a plant row without capacity gives it as nominalPower (W)."""
    mocked.devices[0]["normalPower"] = 500           # HPS-A, an "HPS150" by name: 0.5 kW by its list row
    mocked.devices[2]["nominalPower"] = "250000"     # PCS-C
    del mocked.plants[2]["capacity"]
    mocked.plants[2]["nominalPower"] = 30000
    exporter = discovering(mocked)
    assert exporter.poller.refresh_topology()
    assert exporter.poller.topology.rated_watts == {"HPS-A": 500.0, "PCS-C": 250000.0}
    exporter.poller.poll_all_once()
    parsed = scrape(exporter)
    assert value(parsed, "atess_plant_capacity_watts", plant_id="P3") == 30000
    assert not series(parsed, "atess_pv_power_watts", sn="HPS-A"), "2.5 kW is over 3x a 0.5 kW rating"
    assert value(parsed, "atess_device_implausible_fields", sn="HPS-A") == 1
    assert value(parsed, "atess_pv_power_watts", sn="HPS-B") == 2500
