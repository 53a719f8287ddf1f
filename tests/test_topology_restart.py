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
from support import TOKEN, discovering, make_config, wait_for

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
], ids=["not-an-object", "saved-at-text", "saved-at-null", "bad-sn", "bad-type", "plants-not-list",
        "firmware-not-text", "online-not-bool", "rating-not-finite"])
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


def test_the_running_schedule_lists_again_at_this_shards_turn(mocked, caplog):
    caplog.set_level(logging.INFO)
    exporter = discovering(mocked, shard="1/3")
    exporter.start()
    try:
        record = wait_for(lambda: next((r for r in caplog.records if r.getMessage() == "next discovery"), None),
                          "the first discovery done", 30)
    finally:
        exporter.stop()
    at = time.time() + record.fields["in_seconds"]
    assert 16200 - 60 <= record.fields["in_seconds"] <= 48600
    phase = (at - 10800) % 32400          # shard 1 of 3: on a 9-h grid, 3 h after shard 0's
    assert min(phase, 32400 - phase) <= 60
