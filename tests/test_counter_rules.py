"""Lifetime counters are believed only when physically possible (live poller and backfill)."""

import json
import math
from datetime import date
from functools import partial

from atess_exporter.readings.counterguard import CounterGuard
from atess_exporter.simulator import Simulator
from support import (DEV_A, HISTORY_PATH as PATH, KWH, TOKEN, exposed, history_series as series, one_device_poller,
                     override_history_rows as _override_rows, plant_utc as utc, run_backfill as run, samples_of,
                     write_backfill_config as write_config)

poller = partial(one_device_poller, model="HPS10KTL")   # a string HPS of 10 kW: the rise check has a rating
PV = "atess_pv_energy_joules_total"
PV_TIME = "atess_pv_time_seconds_total"


def test_zero_for_three_polls_is_no_reading_not_a_reset():
    # the device is offline 15 min: the cloud reads 0 three times (confirm_polls is 3)
    values = [v for v, _ in exposed(poller(["100", "0", "0", "0", "100.1"]), 5)]
    assert values == [100, 100, 100, 100, 100.1]


def test_a_first_reading_of_zero_or_below_exports_nothing():
    assert exposed(poller(["0", "-500", "100"]), 3) == [(None, 0), (None, 0), (100, 0)]


def test_a_non_finite_or_absurd_total_is_never_exported_however_often_it_repeats():
    p = poller(["100"] + ["1e308"] * 5 + ["100.2"] + ["1e9"] * 3)
    results, implausible = [], []
    for _ in range(10):
        snap = p.poll_device(p.devices["A"])
        results.append(snap.samples[PV][0][1] / KWH)
        implausible.append(snap.implausible_fields)
        p.test_clock.now += 300
    assert all(math.isfinite(v) for v in results)
    assert results == [100] * 6 + [100.2] * 4
    # 1e308 kWh is outside any physical range: withheld as implausible, the last good value kept.
    assert implausible == [0] + [1] * 5 + [0] + [0] * 3
    # 1e9 kWh is in range but not possible for a 10 kW device within 5 min: a glitch, held back.
    assert snap.glitches == 3


def test_a_rise_faster_than_the_rated_power_is_held_back_until_time_makes_it_possible():
    # HPS10KTL: 10 kW. 50 kWh more within 300 s is impossible; after 2 h it is not.
    p = poller(["100", "101", "151"] + ["151"] * 24)
    results = exposed(p, 27)
    assert [v for v, _ in results[:3]] == [100, 101, 101]
    assert results[2][1] == 1
    assert results[-1][0] == 151, "a real rise is believed once the elapsed time allows it"


def test_unknown_rated_power_skips_the_energy_rise_check():
    assert [v for v, _ in exposed(poller(["100", "151"], model=""), 2)] == [100, 151]


def test_a_time_counter_cannot_run_faster_than_the_clock():
    p = poller([{"epvTimeTotal": "10"}, {"epvTimeTotal": "20"}, {"epvTimeTotal": "10.1"}])
    hours = [v for v, _ in exposed(p, 3, name=PV_TIME, unit=3600)]
    assert hours == [10, 10, 10.1], "10 h of operation within 5 min is held back"


def test_a_reset_needs_consistent_growing_readings_below_the_old_value():
    # 5 then 900 kWh within 300 s on a 10 kW device: not the same new meter; 900, 901, 902 are.
    values = [v for v, _ in exposed(poller(["1000", "5", "900", "901", "902", "903"]), 6)]
    assert values == [1000, 1000, 1000, 1000, 902, 903]


def test_a_falling_pending_reading_restarts_the_confirmation():
    values = [v for v, _ in exposed(poller(["100", "5", "3", "4", "4.1", "4.2"]), 6)]
    assert values == [100, 100, 100, 100, 4.1, 4.2]


def test_a_missing_total_keeps_the_last_good_value():
    results = exposed(poller(["100", {"ppv": "1"}, "100.1"]), 3)
    assert [v for v, _ in results] == [100, 100, 100.1]
    assert results[-1][1] == 0, "a missing field is no reading, not a glitch"


def test_old_state_files_load_and_new_ones_round_trip(tmp_path):
    state = tmp_path / "state.json"
    key = [PV, []]
    state.write_text(json.dumps({"version": 1, "counters": {"A": [
        [key, 100 * KWH, 0, 0.0],                        # written before the rise check existed
        [["atess_load_energy_joules_total", []], float("inf"), 0, 0.0],   # not a reading: dropped
        [["atess_grid_import_energy_joules_total", []], -5.0, 0, 0.0],
    ]}}))
    p = poller(["101", "100.5"], state_file=str(state))
    assert p.guards["A"].last((PV, ())) == 100 * KWH
    assert p.guards["A"].last(("atess_load_energy_joules_total", ())) is None
    assert p.guards["A"].last(("atess_grid_import_energy_joules_total", ())) is None
    assert [v for v, _ in exposed(p, 1)] == [101]
    p.save_state()
    again = poller(["150"], state_file=str(state))     # 49 kWh in no time on 10 kW: held
    assert [v for v, _ in exposed(again, 1)] == [101]


def test_guard_rules_directly_with_timestamps():
    guard = CounterGuard(confirm_polls=2, rated_watts=1000.0)
    key = (PV, ())
    assert guard.check(key, float("nan"), at=0) is None
    assert guard.check(key, 10 * KWH, at=0) == 10 * KWH
    assert guard.check(key, float("-inf"), at=300) == 10 * KWH
    assert guard.check(key, 20 * KWH, at=600) == 10 * KWH        # 10 kWh in 10 min on 1 kW
    assert guard.check(key, 20 * KWH, at=36_000) == 20 * KWH     # ... but in 10 hours, yes


def test_backfill_applies_the_same_rules(tmp_path):
    with Simulator([DEV_A], token=TOKEN) as sim:
        _override_rows(sim, {
            (DEV_A.sn, "2024-03-02 12:00:00"): {"epvTotal": "1e308"},
            (DEV_A.sn, "2024-03-02 12:05:00"): {"epvTotal": 1e9},        # HPS50 cannot make 1 TWh in 5 min
            (DEV_A.sn, "2024-03-02 12:10:00"): {"epvTotal": -500},
        })
        out = tmp_path / "out.om"
        rc, err = run(write_config(tmp_path, sim, devices=(DEV_A,)), out)
    assert rc == 0, err
    s = series(samples_of(out), PV, DEV_A.sn, DEV_A.model)
    values = [s[ts] for ts in sorted(s)]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert values == sorted(values), "never backwards"
    before = utc(date(2024, 3, 2), 11, 55, 1.0)
    for minute in (0, 5, 10):
        # held at the last good value, or (outside the physical range) left out of that slot
        assert s.get(utc(date(2024, 3, 2), 12, minute, 1.0), s[before]) == s[before]
    assert utc(date(2024, 3, 2), 12, 5, 1.0) in s, "a possible-range glitch is held, not dropped"


def test_a_true_zero_is_exported_while_the_device_reports_other_totals():
    # no generator ever run: 0 beside a positive PV total is a reading; all zeros is an offline device
    gen = "atess_generator_energy_joules_total"
    p = poller([{"epvTotal": "100", "dgTotalIntakePower": "0"},
                {"epvTotal": "0", "dgTotalIntakePower": "0"},
                {"epvTotal": "100.1", "dgTotalIntakePower": "0.5"}])
    results = exposed(p, 3, name=gen)
    assert [v for v, _ in results] == [0, 0, 0.5]
    fresh = poller([{"epvTotal": "0", "dgTotalIntakePower": "0"}])
    assert exposed(fresh, 1, name=gen) == [(None, 0)]


def test_a_restored_counter_the_catalog_no_longer_has_is_not_exported(tmp_path):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "counters": {"A": [
        [["atess_renamed_energy_joules_total", []], 5.0, 0, 0.0],
        [[PV, ["bogus-label"]], 5.0, 0, 0.0],
    ]}}))
    p = poller(["100"], state_file=str(state))
    snap = p.poll_device(p.devices["A"])
    assert "atess_renamed_energy_joules_total" not in snap.samples
    assert snap.samples[PV] == (((), 100 * KWH),)


def test_backfill_keeps_the_last_good_total_where_a_row_lacks_it(tmp_path):
    """'No reading' is one rule for both sides: a history row without the field writes the
    last good value at the row's time, as a row reading 0 does and as the live poller keeps
    exposing it."""
    with Simulator([DEV_A], token=TOKEN) as sim:
        inner = sim.routes[PATH]

        def handle(s, req):
            reply = inner(s, req)
            for row in reply.envelope["data"]["datas"] if reply.envelope and reply.envelope["data"] else ():
                if row["time"] == "2024-03-02 12:00:00":
                    row.pop("epvTotal")
            return reply

        sim.routes[PATH] = handle
        out = tmp_path / "out.om"
        rc, err = run(write_config(tmp_path, sim, devices=(DEV_A,)), out)
    assert rc == 0, err
    s = series(samples_of(out), PV, DEV_A.sn, DEV_A.model)
    assert s[utc(date(2024, 3, 2), 12, 0, 1.0)] == s[utc(date(2024, 3, 2), 11, 55, 1.0)]


def test_live_and_backfill_save_the_guard_alike(tmp_path):
    """One serialisation: what either side saves, the other restores to the same judgments."""
    guard = CounterGuard(confirm_polls=3)
    guard.check((PV, ()), 100.0, at=0.0)
    guard.check((PV, ()), 0.0, at=300.0)            # a glitch, counted
    state = json.loads(json.dumps(guard.state()))
    restored = CounterGuard.restore(state, 3)
    assert restored.glitches == guard.glitches == 1
    assert restored.check((PV, ()), 90.0, at=600.0) == guard.check((PV, ()), 90.0, at=600.0) == 100.0
    p = poller(["100"], state_file=str(tmp_path / "state.json"))
    p.poll_device(p.devices["A"])
    p.save_state()
    saved = json.loads((tmp_path / "state.json").read_text())["counters"]["A"]
    assert CounterGuard.restore(saved, 3).last((PV, ())) == 100 * KWH
