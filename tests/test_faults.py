"""Faults of the API: the faulty device goes down, the others carry on, nothing is lost."""

import json
import logging

import pytest

from atess_exporter.app import Exporter
from atess_exporter.live.store import Cache
from atess_exporter.catalog import load_catalog
from atess_exporter.api.client import TransportError
from atess_exporter.exposition.collectors import DeviceStatusCollector, ReadingsCollector
from atess_exporter.live.poller import Poller
from atess_exporter.simulator import Simulator, demo_devices
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from support import FakeClient, exposed, make_config, one_device_poller, parse_exposition, scrape, series, value

LATEST = "/api/v1/hps/data-last"
DEVICES = demo_devices()
BAD, GOOD = DEVICES[0].sn, [d.sn for d in DEVICES[1:]]
FAST_RETRY = {"retry_backoff_seconds": 0.001}


def outcomes(parsed):
    """Requests by outcome, summed over the endpoints of all families."""
    out = {}
    for lbls, v in series(parsed, "atess_api_requests_total").items():
        out[dict(lbls)["outcome"]] = out.get(dict(lbls)["outcome"], 0) + v
    return out


FAULTS = [
    # simulator fault, outcome, calls made for the device (1 + retries when retried)
    ("http_500", "http_5xx", 3),
    ("http_429", "rate_limited", 1),
    ("html", "html_response", 1),
    ("invalid_json", "invalid_json", 1),
    ("api_error", "api_error", 1),
    ("data_null", "no_data", 1),
]


@pytest.mark.parametrize("fault,outcome,calls", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_faulty_device_goes_down_alone(sim, caplog, fault, outcome, calls):
    exporter = Exporter(make_config(sim.base_url, poll=FAST_RETRY))
    exporter.poller.poll_all_once()          # all good first: readings cached
    sim.set_fault(BAD, fault)
    sim.reset_counters()
    with caplog.at_level(logging.INFO):
        exporter.poller.poll_all_once()
    parsed = scrape(exporter)
    assert value(parsed, "atess_device_up", sn=BAD) == 0
    assert all(value(parsed, "atess_device_up", sn=sn) == 1 for sn in GOOD)
    assert outcomes(parsed)[outcome] == calls
    assert sim.calls[(LATEST, BAD)] == calls
    # The last good readings stay visible (not stale yet), marked by up=0.
    assert value(parsed, "atess_pv_power_watts", sn=BAD) is not None
    failures = [r for r in caplog.records if r.getMessage() == "poll failed" and r.fields["sn"] == BAD]
    assert len(failures) == 1 and failures[0].fields["outcome"] == outcome


def test_slow_device_times_out_without_delaying_the_others(sim):
    sim.set_fault(BAD, "delay", seconds=5)
    # as many workers as devices: every poll starts at once, so "not delayed" is exact
    exporter = Exporter(make_config(sim.base_url, atess={"timeout_seconds": 0.3},
                                    poll={"retries": 0, "concurrency": len(DEVICES)}))
    snaps = {s.sn: s for s in exporter.poller.poll_all_once()}
    assert not snaps[BAD].up and "no answer within 0.3s" in snaps[BAD].error
    assert all(snaps[sn].up for sn in GOOD)
    # The good devices were answered before the slow one gave up.
    assert all(snaps[sn].last_success <= snaps[BAD].last_attempt + 0.3 for sn in GOOD)
    assert outcomes(scrape(exporter))["timeout"] == 1


def test_connection_refused_retries_then_marks_every_device_down():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
        exporter = Exporter(make_config(url, poll=FAST_RETRY))
        snaps = exporter.poller.poll_all_once()
    parsed = scrape(exporter)
    assert not any(s.up for s in snaps)
    assert outcomes(parsed) == {"connection_error": 3 * len(DEVICES)}  # 1 call + 2 retries each
    assert value(parsed, "atess_device_online", sn=BAD) == 0


def test_retry_recovers_from_a_transient_error():
    attempts = []

    def flaky():
        attempts.append(1)
        return TransportError("x: connection failed", "connection_error") if len(attempts) == 1 else {"ppv": "3"}

    config = make_config("http://127.0.0.1:9", devices=[{"sn": "A", "type": "hps_central"}], poll=FAST_RETRY)
    poller = Poller(config, FakeClient({"A": flaky}), Cache(), load_catalog())
    assert poller.poll_all_once()[0].up and len(attempts) == 2


def test_refused_credentials_pause_every_device():
    with Simulator(DEVICES, token="the-right-token") as sim:
        exporter = Exporter(make_config(sim.base_url, poll={"concurrency": 1}))
        now = [1_000_000.0]
        exporter.poller.clock = lambda: now[0]
        exporter.poller.auth.clock = lambda: now[0]    # the pause runs on the monotonic clock
        exporter.poller.poll_all_once()
        parsed = scrape(exporter)
        assert value(parsed, "atess_api_auth_ok") == 0
        assert not any(value(parsed, "atess_device_up", sn=d.sn) for d in DEVICES)
        # concurrency 1: the first refusal stops the others from even trying
        assert sum(sim.calls.values()) == 1 and outcomes(parsed) == {"auth_failed": 1}

        exporter.poller.poll_all_once()       # still inside the pause: no call at all
        assert sum(sim.calls.values()) == 1
        now[0] += 300                         # one interval later: one probe
        exporter.poller.poll_all_once()
        assert sum(sim.calls.values()) == 2
        now[0] += 300                         # the pause doubled: still quiet
        exporter.poller.poll_all_once()
        assert sum(sim.calls.values()) == 2


def test_auth_ok_returns_once_the_api_accepts(sim):
    exporter = Exporter(make_config(sim.base_url))
    exporter.poller.poll_all_once()
    assert value(scrape(exporter), "atess_api_auth_ok") == 1


def test_rate_limit_answer_backs_off_that_device_only(sim):
    exporter = Exporter(make_config(sim.base_url))
    sim.set_fault(BAD, "http_429")
    exporter.poller.poll_all_once()
    assert exporter.poller.rate_limit_factor(BAD) == 2
    assert all(exporter.poller.rate_limit_factor(sn) == 1 for sn in GOOD)
    exporter.poller.scheduler.phases, exporter.poller.scheduler.origin = {BAD: 0.0}, 0.0
    assert exporter.poller.next_due(BAD, due=0.0, started=0.0) == 602.0, "two intervals (+ the 2-s margin)"
    sim.clear_faults()
    exporter.poller.poll_all_once()
    assert exporter.poller.rate_limit_factor(BAD) == 1


def test_bad_fields_are_skipped_and_the_device_stays_up(sim):
    sim.set_fault(BAD, "fields", fields={"ppv": None, "vbat": "", "temp": "n/a", "capacity": "55"})
    exporter = Exporter(make_config(sim.base_url))
    exporter.poller.poll_all_once()
    parsed = scrape(exporter)
    assert value(parsed, "atess_device_up", sn=BAD) == 1
    assert value(parsed, "atess_pv_power_watts", sn=BAD) is None
    assert value(parsed, "atess_battery_voltage_volts", sn=BAD) is None
    assert value(parsed, "atess_ambient_temperature_celsius", sn=BAD) is None
    assert value(parsed, "atess_battery_soc_ratio", sn=BAD) == pytest.approx(0.55)
    assert value(parsed, "atess_device_unusable_fields", sn=BAD) == 1   # "n/a"; null and "" are routine
    assert value(parsed, "atess_pv_power_watts", sn=GOOD[0]) is not None


# -- stale data ----------------------------------------------------------------

T0 = 1767261600.0  # the payload's time, 2026-01-01 10:00:00 UTC


def collect_at(now, payloads, poll=None):
    config = make_config("http://127.0.0.1:9", devices=[{"sn": "A", "type": "hps_central"}], poll=poll or {})
    cache = Cache()
    poller = Poller(config, FakeClient({"A": payloads}), cache, load_catalog(), clock=lambda: T0 + 30)
    poller.poll_all_once()
    registry = CollectorRegistry()
    registry.register(DeviceStatusCollector(cache, config.poll, clock=lambda: now))
    registry.register(ReadingsCollector(cache, load_catalog(), config.poll, clock=lambda: now))
    return parse_exposition(generate_latest(registry).decode())


ASLEEP = {"time": "2026-01-01 10:00:00", "ppv": "0.5", "epvTotal": "100", "epvToday": "3"}


def test_old_data_is_offline_and_then_withdrawn():
    fresh = collect_at(T0 + 600, ASLEEP)
    assert value(fresh, "atess_device_up", sn="A") == 1 and value(fresh, "atess_device_online", sn="A") == 1

    stale = collect_at(T0 + 901, ASLEEP)   # the API answers, but the reading is 15 min old
    assert value(stale, "atess_device_up", sn="A") == 1 and value(stale, "atess_device_online", sn="A") == 0
    assert value(stale, "atess_pv_power_watts", sn="A") == 500

    gone = collect_at(T0 + 3601, ASLEEP)   # an hour: gauges withdrawn, counter and status stay
    assert value(gone, "atess_pv_power_watts", sn="A") is None
    assert value(gone, "atess_pv_energy_today_joules", sn="A") is None
    assert value(gone, "atess_pv_energy_joules_total", sn="A") == 100 * 3.6e6
    assert value(gone, "atess_device_info", sn="A") == 1
    assert value(gone, "atess_device_data_timestamp_seconds", sn="A") == T0


def test_stale_thresholds_are_configurable():
    parsed = collect_at(T0 + 200, ASLEEP, poll={"stale_after_seconds": 120, "max_data_age_seconds": 180})
    assert value(parsed, "atess_device_online", sn="A") == 0
    assert value(parsed, "atess_pv_power_watts", sn="A") is None


# -- lifetime counters -----------------------------------------------------------

def test_a_transient_zero_never_makes_a_total_go_backwards():
    poller = one_device_poller(["100", "0", "0", "101", "102"])
    assert exposed(poller, 5) == [(100, 0), (100, 1), (100, 2), (101, 2), (102, 2)]


def test_a_sustained_reset_is_accepted_after_confirmation():
    poller = one_device_poller(["100", "5", "6", "7", "8"], confirm=3)
    assert [v for v, _ in exposed(poller, 5)] == [100, 100, 100, 7, 8]


def test_last_good_totals_survive_a_restart(tmp_path):
    state = str(tmp_path / "state.json")
    first = one_device_poller(["100"], state_file=state)
    first.poll_all_once()
    assert json.loads(open(state).read())["counters"]["A"]
    second = one_device_poller(["0", "100.5"], state_file=state)   # restarted; the cloud says 0
    assert exposed(second, 2) == [(100, 1), (100.5, 1)]


def test_an_unreadable_state_file_is_not_fatal(tmp_path, caplog):
    state = tmp_path / "state.json"
    state.write_text("{not json")
    poller = one_device_poller(["7"], state_file=str(state))
    assert exposed(poller, 1) == [(7, 0)]
    assert "state file unreadable" in caplog.text


def test_one_refusal_episode_pauses_once_not_per_device():
    with Simulator(DEVICES, token="the-right-token") as sim:
        exporter = Exporter(make_config(sim.base_url, poll={"concurrency": 4}))
        now = [1_000_000.0]
        exporter.poller.clock = lambda: now[0]
        exporter.poller.auth.clock = lambda: now[0]
        exporter.poller.poll_all_once()      # several devices refused at once
        now[0] += 300                         # one interval: the pause is over
        calls = sum(sim.calls.values())
        exporter.poller.poll_all_once()
        assert sum(sim.calls.values()) > calls, "the pause did not escalate per refused device"
