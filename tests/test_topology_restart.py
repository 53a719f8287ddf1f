"""Discovery across restarts: the plant list is spent as if capped at 10 calls a day."""

import json
import logging
import time

import pytest

from atess_exporter.api.client import AtessClient
from atess_exporter.live import listing
from atess_exporter.live.poller import Poller
from atess_exporter.live.store import Cache
from atess_exporter.simulator import Simulator, demo_devices
from support import TOKEN, Account, discovering, make_config, served, wait_for

T0 = 1_780_000_000.0


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def plant_list_calls(sim, config):
    path = config.endpoint("plant", "list")
    return sum(n for (p, _), n in sim.calls.items() if p == path)


def start(sim, state_file, t, shard="0/1", **discovery):
    config = make_config(sim.base_url, devices=[], state_file=str(state_file), shard=shard,
                         discovery={"enabled": True, **discovery})
    poller = Poller(config, AtessClient(config.api), Cache(), config.catalog(), clock=Clock(t))
    poller.run_once()
    return config, poller


@pytest.fixture
def sim():
    with Simulator(demo_devices(), token=TOKEN) as simulator:
        yield simulator


def test_default_refresh_stays_under_ten_plant_lists_a_day():
    config = make_config("http://127.0.0.1:9", devices=[], discovery={"enabled": True})
    assert 86400 / config.discovery.refresh_seconds <= 8


def test_a_restart_within_refresh_seconds_lists_nothing(sim, tmp_path):
    state = tmp_path / "state.json"
    config, first = start(sim, state, T0)
    assert plant_list_calls(sim, config) == 1
    devices = set(first.devices)
    assert len(devices) == len(demo_devices())
    for restart_at in (T0 + 60, T0 + 3600, T0 + 10000):   # a crash loop, a rolling update
        _, again = start(sim, state, restart_at)
        assert plant_list_calls(sim, config) == 1
        assert set(again.devices) == devices
        assert again.cache.get(next(iter(devices))).info.get("datalog_sn")
    _, late = start(sim, state, T0 + 10800 + 1)             # older than refresh_seconds: listed again
    assert plant_list_calls(sim, config) == 2
    assert set(late.devices) == devices


def test_a_topology_saved_in_the_future_is_not_trusted(sim, tmp_path):
    state = tmp_path / "state.json"
    config, _ = start(sim, state, T0)
    start(sim, state, T0 - 3600)                           # the clock went back an hour
    assert plant_list_calls(sim, config) == 2


@pytest.mark.parametrize("damage", [
    lambda s: s.update(topology="nonsense"),
    lambda s: s["topology"].update(saved_at="yesterday"),
    lambda s: s["topology"].update(saved_at=None),
    lambda s: s["topology"]["topology"].update(devices=[{"sn": "../../etc", "type": "hps_central"}]),
    lambda s: s["topology"]["topology"].update(devices=[{"sn": "HPS1", "type": "toaster"}]),
    lambda s: s["topology"]["topology"].update(plants={"a": 1}),
    lambda s: s["topology"]["topology"].update(firmware={"HPS1": ["x"]}),
    lambda s: s["topology"]["topology"].update(datalogs=[{"sn": "DL1", "online": "yes"}]),
    lambda s: s["topology"]["topology"].update(rated_watts={"HPS1": float("inf")}),
    lambda s: s["topology"]["topology"].update(plant_list_calls=-1),
    lambda s: s["topology"]["topology"].update(plant_list_calls=10**9),
    lambda s: s["topology"]["topology"].update(plant_list_calls=True),
    lambda s: s["topology"]["topology"].update(plant_list_calls="3"),
], ids=["not-an-object", "saved-at-text", "saved-at-null", "bad-sn", "bad-type", "plants-not-list",
        "firmware-not-text", "online-not-bool", "rating-not-finite", "pages-negative", "pages-huge", "pages-bool",
        "pages-text"])
def test_a_damaged_saved_topology_is_dropped_with_one_warning(sim, tmp_path, caplog, damage):
    state = tmp_path / "state.json"
    config, _ = start(sim, state, T0)
    data = json.loads(state.read_text())
    damage(data)
    state.write_text(json.dumps(data))
    caplog.set_level(logging.WARNING)
    _, again = start(sim, state, T0 + 60)
    assert plant_list_calls(sim, config) == 2             # discovered anew, no crash
    assert len(again.devices) == len(demo_devices())
    warnings = [r for r in caplog.records if "saved topology" in r.getMessage()]
    assert len(warnings) == 1


def test_the_saved_topology_holds_no_city_or_country(sim, tmp_path):
    state = tmp_path / "state.json"
    start(sim, state, T0)
    text = state.read_text()
    assert "Kiel" not in text and "Germany" not in text
    assert "Harbour Depot" in text   # the plant name is a label and a filter key


def test_the_measured_clock_survives_a_restart(tmp_path):
    state = tmp_path / "state.json"
    clock = Clock(T0)
    with Simulator(demo_devices(), token=TOKEN, clock=clock, clock_utc_offset_hours=8) as sim:
        config, first = start(sim, state, T0)
        assert first.server_clock.decision.offset == 28800
        first.save_state()
        again = Poller(config, AtessClient(config.api), Cache(), config.catalog(), clock=Clock(T0 + 60))
    assert again.server_clock.decision.offset == 28800    # used until this run measures anew


def test_a_saved_topology_reads_back_as_discovery_read_it(sim, tmp_path):
    from atess_exporter.account.discovery import topology_from_dict, topology_to_dict

    state = tmp_path / "state.json"
    config, first = start(sim, state, T0)
    again = topology_from_dict(json.loads(json.dumps(topology_to_dict(first.topology))), config.catalog().families)
    assert again.plants and again.datalogs and again.devices
    assert again == first.topology


# -- shards share the account's plant-list budget (issue 21) ------------------------------

def sharded(shard, **discovery):
    return make_config("http://127.0.0.1:9", devices=[], shard=shard, discovery={"enabled": True, **discovery})


def test_a_shard_lists_the_account_count_times_less_often_by_default():
    assert listing.period(sharded("1/3")) == 32400
    assert listing.period(sharded("0/1")) == 10800
    assert listing.period(sharded("1/3", refresh_seconds=10800)) == 10800, "a value the user set is kept"


def test_a_restart_of_one_shard_of_three_reuses_the_topology_for_longer(sim, tmp_path):
    state = tmp_path / "state.json"
    config, _ = start(sim, state, T0, shard="1/3")
    assert plant_list_calls(sim, config) == 1
    _, again = start(sim, state, T0 + 10800 + 1, shard="1/3")     # a single replica would list again here
    assert plant_list_calls(sim, config) == 1
    due = listing.next_listing(config, T0)
    assert T0 + 16200 <= due < T0 + 48600
    start(sim, state, due - 1, shard="1/3")
    assert plant_list_calls(sim, config) == 1
    start(sim, state, due, shard="1/3")
    assert plant_list_calls(sim, config) == 2


def test_three_shards_together_list_the_account_8_times_a_day_at_different_moments():
    day = 86400
    listed = []
    for index in range(3):
        config = sharded(f"{index}/3")
        t = T0 + 17 * index                      # pods start a few seconds apart, each lists at start-up
        while t < T0 + 3 * day:
            listed.append((t, index))
            t = listing.next_listing(config, t)
    second_day = sorted(t for t, _ in listed if T0 + day <= t < T0 + 2 * day)
    assert len(second_day) == 8, "the account as a whole: 8 listings a day, as one replica alone"
    gaps = [b - a for a, b in zip(second_day, second_day[1:])]
    assert min(gaps) == pytest.approx(10800), "the shards take turns, 3 h apart"
    assert len({i for t, i in listed if T0 + day <= t < T0 + 2 * day}) == 3


def test_a_listing_after_a_wild_wall_clock_stays_within_one_and_a_half_periods():
    config = sharded("2/3")
    for last in (0.0, -1e9, 1e12, T0 + 0.5):
        assert last + 16200 <= listing.next_listing(config, last) < last + 48600


@pytest.mark.parametrize("shard, refresh, warns", [
    ("0/3", 10800, True), ("2/3", 32400, False), ("1/3", None, False), ("0/1", 10800, False), ("0/1", 3600, True)])
def test_a_refresh_the_shards_together_overspend_warns_once(caplog, shard, refresh, warns):
    caplog.set_level(logging.WARNING)
    config = sharded(shard, **({"refresh_seconds": refresh} if refresh else {}))
    Poller(config, AtessClient(config.api), Cache(), config.catalog())
    found = [r for r in caplog.records if "more than 10 times a day" in r.getMessage()]
    assert len(found) == (1 if warns else 0)
    if warns:
        count = int(shard.split("/")[1])
        assert found[0].fields["setting"] == "discovery.refresh_seconds"
        assert found[0].fields["suggested"] == 10800 * count
        assert found[0].fields["account_listings_per_day"] == pytest.approx(86400 * count / refresh, abs=0.1)


def next_discovery(exporter, caplog):
    """The running schedule's plan after its first listing: the "next discovery" log line."""
    caplog.set_level(logging.INFO)
    exporter.start()
    try:
        return wait_for(lambda: next((r for r in caplog.records if r.getMessage() == "next discovery"), None),
                        "the first discovery done", 30)
    finally:
        exporter.stop()


def test_the_running_schedule_lists_again_at_this_shards_turn(mocked, caplog):
    record = next_discovery(discovering(mocked, shard="1/3", discovery={"page_size": 100}), caplog)
    at = time.time() + record.fields["in_seconds"]
    assert 16200 - 60 <= record.fields["in_seconds"] <= 48600
    phase = (at - 10800) % 32400          # shard 1 of 3: on a 9-h grid, 3 h after shard 0's
    assert min(phase, 32400 - phase) <= 60


# -- every page of the plant list is one of the 10 calls a day (issue: plant-list pages) ----------

@pytest.fixture
def plants_25():
    """An account of 25 plants: 3 pages of the plant list at discovery.page_size 10."""
    plants = [{"plantId": f"P{i}", "plantName": f"Plant {i}"} for i in range(1, 26)]
    datalogs = [{"dataLogSn": "DL1", "plantId": "P1"}]
    devices = [{"family": "hps_central", "deviceSn": "HPS-A", "deviceModel": "HPS150", "dataLogSn": "DL1"}]
    with served(Account(plants, datalogs, devices)) as acct:
        yield acct


def plant_pages_asked(acct):
    return sum(1 for _, path, _ in acct.requests if path == "/api/v1/plant/list")


def test_a_plant_list_of_three_pages_is_listed_three_times_less_often(plants_25, caplog):
    exporter = discovering(plants_25, discovery={"page_size": 10})
    record = next_discovery(exporter, caplog)
    assert plant_pages_asked(plants_25) == 3
    assert exporter.poller.topology.plant_list_calls == 3
    assert record.fields["in_seconds"] == pytest.approx(3 * 10800, abs=60), "8 plant-list calls a day, not 24"
    told = [r for r in caplog.records if "plant list takes several pages" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.INFO
    assert told[0].fields["plant_list_pages"] == 3 and told[0].fields["period_seconds"] == 32400


def test_three_shards_of_a_three_page_account_each_list_every_27_hours(plants_25, caplog):
    record = next_discovery(discovering(plants_25, shard="1/3", discovery={"page_size": 10}), caplog)
    every = 3 * 3 * 10800
    assert every / 2 - 60 <= record.fields["in_seconds"] < 1.5 * every
    phase = (time.time() + record.fields["in_seconds"] - every / 3) % every   # shard 1's turn on its grid
    assert min(phase, every - phase) <= 60


def test_one_page_keeps_the_default_period(plants_25, caplog):
    exporter = discovering(plants_25, discovery={"page_size": 100})
    record = next_discovery(exporter, caplog)
    assert exporter.poller.topology.plant_list_calls == 1
    assert record.fields["in_seconds"] == pytest.approx(10800, abs=60)
    assert not [r for r in caplog.records if "plant list takes several pages" in r.getMessage()]


def test_a_restart_keeps_the_period_of_the_measured_pages(sim, tmp_path):
    state = tmp_path / "state.json"
    config, _ = start(sim, state, T0, page_size=1)          # the demo account's 2 plants: 2 pages
    assert plant_list_calls(sim, config) == 2
    assert json.loads(state.read_text())["topology"]["topology"]["plant_list_calls"] == 2
    _, again = start(sim, state, T0 + 10800 + 1, page_size=1)   # one page's period is over, two pages' is not
    assert plant_list_calls(sim, config) == 2, "the saved topology serves: nothing listed"
    assert again.topology.plant_list_calls == 2
    start(sim, state, T0 + 2 * 10800, page_size=1)
    assert plant_list_calls(sim, config) == 4


@pytest.mark.parametrize("shard, refresh, warns", [
    ("0/1", 10800, True), ("0/1", 86400, False), ("0/3", 32400, True), ("0/3", 97200, False)])
def test_a_refresh_the_plant_pages_overspend_warns_once_with_the_numbers(plants_25, caplog, shard, refresh, warns):
    caplog.set_level(logging.INFO)
    exporter = discovering(plants_25, shard=shard, discovery={"page_size": 10, "refresh_seconds": refresh})
    assert exporter.poller.refresh_topology()
    assert exporter.poller.refresh_topology()
    count = int(shard.split("/")[1])
    found = [r for r in caplog.records if "plant-list calls a day" in r.getMessage()
             and r.levelno == logging.WARNING]
    assert len(found) == (1 if warns else 0)
    assert listing.period(exporter.config, 3) == refresh, "a value the user set is kept"
    assert not [r for r in caplog.records if "plant list takes several pages" in r.getMessage()]
    if warns:
        fields = found[0].fields
        assert fields["setting"] == "discovery.refresh_seconds"
        assert fields["plant_list_pages"] == 3 and fields["page_size"] == 10
        assert fields["plant_list_calls_per_day"] == pytest.approx(86400 * count * 3 / refresh, abs=0.1)
        assert fields["suggested_refresh_seconds"] == 3 * count * 10800
        assert fields["suggested_page_size"] == 25, "one page of 25 plants a listing fits the budget"
        assert "discovery.page_size" in fields["fix"]
