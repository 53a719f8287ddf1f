"""A whole account without an SN list: plants, dataloggers, devices, settings."""

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from atess_exporter.app import Exporter
from atess_exporter.config import ConfigError
from atess_exporter.config.shard import in_shard
from support import BASE, TOKEN, discovering, make_config, scrape, series, value


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
    from atess_exporter.api.paging import pages

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
    from atess_exporter.api.paging import pages

    two = [{"plantId": "A"}, {"plantId": "B"}]
    client, calls, reply = _client_for(lambda path, query: {"datas": two})  # no total, pageNo ignored
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=reply)
        got = list(pages(client, "/api/v1/plant/list", {}, 2))
    assert [r["plantId"] for r in got] == ["A", "B"], "2 plants, not 2,000"
    assert len(calls) == 2, "the second page repeats the first: stop"


def test_a_list_that_never_ends_stops_at_the_page_cap():
    """The cap ends the calls, and the list fails: a list read in part is not the list."""
    from atess_exporter.api.paging import pages
    from atess_exporter.api.client import MalformedResponseError

    client, calls, reply = _client_for(lambda path, query: {"datas": [{"plantId": query["pageNo"]}] * 2})
    got = []
    with responses.RequestsMock() as mock, pytest.raises(MalformedResponseError, match="within 7 pages"):
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=reply)
        got.extend(pages(client, "/api/v1/plant/list", {}, 2, max_pages=7))
    assert len(calls) == 7 and len(got) == 14


def test_a_list_past_the_page_cap_keeps_the_devices(mocked):
    """discovery.max_pages reached while the list's total promises more: the total wins (the
    account's own size, not a constant); nothing read so far is dropped either way."""
    exporter = discovering(mocked, discovery={"max_pages": 2})   # 3 plants, 2 a page: 2 pages
    assert exporter.poller.refresh_topology()
    before = sorted(exporter.poller.devices)
    mocked.plants += [{"plantId": f"P{i}", "plantName": f"Plant {i}"} for i in (4, 5)]   # now 3 pages
    assert exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == before == ["HPS-A", "HPS-B", "PCS-C", "TL-D"]
    assert {p.plant_id for p in exporter.poller.topology.plants} == {"P1", "P2", "P3", "P4", "P5"}
    assert exporter.poller.topology.complete


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


def test_a_capped_refresh_adopts_what_it_found_and_the_next_continues(mocked, caplog):
    exporter = discovering(mocked, discovery={"max_calls": 3})
    assert exporter.poller.refresh_topology(), "a cap stops the walk, it does not fail the refresh"
    assert len(mocked.requests) == 3
    parsed = scrape(exporter)
    assert value(parsed, "atess_discovery_unread_lists") > 0, "the shortfall is a metric"
    lists = sum(v for lbls, v in series(parsed, "atess_api_requests_total").items() if "list" in dict(lbls)["endpoint"])
    assert lists == 3
    refreshes = 1
    while exporter.poller.topology.unread_lists and refreshes < 10:
        exporter.poller.refresh_topology()
        refreshes += 1
    assert sorted(exporter.poller.devices) == ["HPS-A", "HPS-B", "PCS-C", "TL-D"]
    assert value(scrape(exporter), "atess_discovery_unread_lists") == 0
    # 2 plant pages + 3 datalogger lists + 3 x 3 device lists: every page read once, none again
    asked = [(path, tuple(sorted((k, v[0]) for k, v in q.items()))) for _, path, q in mocked.requests]
    assert len(asked) == 14 and len(set(asked)) == 14, "the walk continued; it never restarted from zero"
    assert refreshes == 5
    warnings = [r for r in caplog.records if "stopped before the end" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].fields["setting"] == "discovery.max_calls"


def test_devices_found_by_an_unfinished_walk_are_adopted_and_none_removed(mocked):
    exporter = discovering(mocked, discovery={"max_calls": 5})
    while exporter.poller.refresh_topology() and exporter.poller.topology.unread_lists:
        pass
    assert sorted(exporter.poller.devices) == ["HPS-A", "HPS-B", "PCS-C", "TL-D"]
    mocked.devices = [d for d in mocked.devices if d["deviceSn"] != "HPS-A"]   # gone from the account
    assert exporter.poller.refresh_topology() and exporter.poller.topology.unread_lists
    assert "HPS-A" in exporter.poller.devices, "a walk that has not reached the end removes nothing"
    while exporter.poller.topology.unread_lists:
        exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == ["HPS-B", "PCS-C", "TL-D"], "the finished walk does"


def test_a_failed_device_list_costs_only_its_devices_and_is_retried(mocked):
    failing = {"DL2"}
    reply = mocked.reply

    def flaky(request):
        if "dataLogSn=DL2" in request.url and failing:
            return 502, {}, "<html>bad gateway</html>"
        return reply(request)

    mocked.reply = flaky
    exporter = discovering(mocked)
    assert exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == ["HPS-A", "HPS-B", "TL-D"]
    assert value(scrape(exporter), "atess_discovery_unread_lists") == 3   # DL2's three family lists
    failing.clear()
    done = len(mocked.requests)
    assert exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == ["HPS-A", "HPS-B", "PCS-C", "TL-D"]
    assert len(mocked.requests) - done == 3, "only the failed lists were read again"


def test_a_device_the_list_calls_lost_is_offline(mocked):
    mocked.devices[0]["lost"] = True   # HPS-A; its latest payload carries no lost flag
    exporter = discovering(mocked)
    exporter.poller.refresh_topology()
    exporter.poller.poll_all_once()
    parsed = scrape(exporter)
    assert value(parsed, "atess_device_online", sn="HPS-A") == 0
    assert value(parsed, "atess_device_online", sn="HPS-B") == 1
    assert value(parsed, "atess_device_lost", sn="HPS-A") == 1


def _paged(rows, cap, said=True, total=True):
    """A list server that never sends more than `cap` rows a page, whatever pageSize asks."""
    def answer(path, query):
        no, size = int(query["pageNo"]), min(int(query["pageSize"]), cap)
        page = {"datas": rows[(no - 1) * size: no * size]}
        if said:
            page["pageSize"] = size
        if total:
            page["total"] = len(rows)
        return page
    return answer


@pytest.mark.parametrize("said", [True, False], ids=["says-its-size", "silent"])
def test_a_short_page_while_total_says_more_is_followed_at_the_servers_size(said):
    from atess_exporter.api.paging import pages

    rows = [{"plantId": f"P{i}"} for i in range(1000)]
    client, calls, reply = _client_for(_paged(rows, 10, said=said))
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=reply)
        got = list(pages(client, "/api/v1/plant/list", {}, 100, max_pages=50))
    assert [r["plantId"] for r in got] == [r["plantId"] for r in rows], "1,000 plants, not the first 10"
    assert len(calls) == 100, "100 pages of 10, each once"
    assert {q["pageSize"] for _, q in calls[1:]} == {"10"}, "the server's own page size from the second page on"


def test_without_a_total_a_page_of_the_servers_stated_size_is_not_the_end():
    from atess_exporter.api.paging import pages

    rows = [{"plantId": f"P{i}"} for i in range(25)]
    client, calls, reply = _client_for(_paged(rows, 10, total=False))
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=reply)
        got = list(pages(client, "/api/v1/plant/list", {}, 100))
    assert len(got) == 25 and len(calls) == 3


def test_a_total_beyond_max_pages_is_read_to_its_end():
    from atess_exporter.api.paging import pages

    rows = [{"plantId": f"P{i}"} for i in range(120)]
    client, calls, reply = _client_for(_paged(rows, 1000))
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=reply)
        got = list(pages(client, "/api/v1/plant/list", {}, 2, max_pages=7))
    assert len(got) == 120 and len(calls) == 60, "the account's own total sets the pages, not a constant"


def test_each_list_endpoint_is_paced_across_threads():
    from atess_exporter.account.discovery import EndpointPacer

    now = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)

    pacer = EndpointPacer(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        pacer.wait()   # all at the same instant, as five threads would
    assert slept == [0.25, 0.5, 0.75, 1.0], "five calls spread over a second at 4 calls/s"
    now[0] += 10
    pacer.wait()
    assert len(slept) == 4, "an idle endpoint is called at once"


def test_a_large_account_is_adopted_whole_on_its_first_refresh_by_a_token_only_config():
    """The issue's shape at a tenth of the scale: a server capping pages at 7, many lists."""
    from atess_exporter.config import parse_config
    from atess_exporter.simulator.fleet import FleetAccount

    with FleetAccount(plants=60, datalogs_per_plant=2, devices_per_datalog=5, max_page_size=7) as fake:
        config = parse_config({"atess": {"base_url": fake.url, "token": TOKEN},
                               "discovery": {"calls_per_second": 1000}})
        exporter = Exporter(config)
        assert exporter.poller.refresh_topology()
        assert sorted(exporter.poller.devices) == fake.sns, "all 600 devices"
        assert exporter.poller.topology.complete
        assert fake.calls["list"] == 9 + 60 + 120 * 6, "9 plant pages, one list per plant and per datalogger x family"
        assert fake.max_in_flight > 1, "lists are read in parallel"


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


def test_a_failed_listing_is_retried_in_minutes_not_at_the_next_refresh():
    """At start-up a failed listing leaves nothing to poll: it is tried again after 5 minutes,
    doubling with each failure in a row (never more often than that), and at the refresh
    interval again once it succeeds; refused credentials wait for their own pause."""
    import threading
    import time as _time
    from types import SimpleNamespace

    from atess_exporter.live.schedule import Scheduler

    outcome = {"listed": False, "pause": None}
    jobs = SimpleNamespace(discovered=threading.Event(), devices={}, topology=None,
                           refresh_topology=lambda: outcome["listed"], auth_pause=lambda: outcome["pause"])
    config = make_config("http://127.0.0.1:9", devices=[], discovery={"enabled": True})
    scheduler = Scheduler(config, jobs, threading.Event())

    def next_in() -> float:
        scheduler._job("discovery", "", _time.monotonic())
        due = max(d for d, kind, _ in scheduler._heap if kind == "discovery")
        scheduler._heap.clear()
        return due - _time.monotonic()

    assert [round(next_in(), -1) for _ in range(3)] == [300, 600, 1200]
    outcome["pause"] = 30.0
    assert round(next_in()) == 30
    outcome.update(listed=True, pause=None)
    assert round(next_in(), -2) == config.discovery.refresh_seconds
    outcome["listed"] = False
    assert round(next_in(), -1) == 300      # a new run of failures starts at 5 minutes again
