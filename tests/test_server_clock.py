"""The exporter against API servers writing `time` in UTC+8 and in UTC, with the
user's machine in UTC and in UTC-5: data timestamps are right from the first poll."""

import logging
import time

import pytest
import responses
from prometheus_client import CollectorRegistry, generate_latest

from atess_exporter.api.client import AtessClient
from atess_exporter.catalog import load_catalog
from atess_exporter.exposition.collectors import DeviceStatusCollector, ServerClockCollector
from atess_exporter.live.poller import Poller
from atess_exporter.live.store import Cache
from atess_exporter.simulator import SimDevice, Simulator
from atess_exporter.simulator.server import slot_start_utc
from support import TOKEN, make_config, parse_exposition, value

NOW = 1_780_000_000.0 + 137.0   # a fixed instant, 137 s into a 5-minute slot


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def fleet(n: int = 5) -> list[SimDevice]:
    # plants in different zones: the plant's zone must not matter for `time`
    zones = (0.0, 1.0, -5.0, 5.5, 8.0)
    return [SimDevice(sn=f"HPS150A23120{i:05d}", model="HPS150", tz_offset_hours=zones[i % len(zones)]) for i in range(n)]


@pytest.fixture(params=["UTC", "EST5"], ids=["user-in-UTC", "user-in-UTC-5"])
def user_zone(request, monkeypatch):
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def scrape(poller: Poller, clock: Clock) -> dict:
    registry = CollectorRegistry()
    registry.register(DeviceStatusCollector(poller.cache.cache, poller.config.poll, clock=clock))
    registry.register(ServerClockCollector(poller.cache.cache))
    return parse_exposition(generate_latest(registry).decode())


def run_first_poll(sim: Simulator, clock: Clock, **config) -> Poller:
    cfg = make_config(sim.base_url, devices=list(sim.devices.values()), **config)
    poller = Poller(cfg, AtessClient(cfg.api), Cache(), load_catalog(), clock=clock)
    poller.poll_all_once()
    return poller


@pytest.mark.parametrize("servers_hours", [8.0, 0.0])
def test_default_config_places_readings_right_from_the_first_poll(servers_hours, user_zone, caplog):
    caplog.set_level(logging.INFO)
    clock = Clock(NOW)
    devices = fleet(5)
    with Simulator(devices, token=TOKEN, clock=clock, clock_utc_offset_hours=servers_hours) as sim:
        two_days_old = devices[0].sn
        sim.set_fault(two_days_old, "fields", fields={"time": sim.render_time(NOW - 2 * 86400)})
        poller = run_first_poll(sim, clock)
    parsed = scrape(poller, clock)
    for device in devices[1:]:
        truth = slot_start_utc(device, NOW)
        got = value(parsed, "atess_device_data_timestamp_seconds", sn=device.sn)
        assert abs(got - truth) <= 900, (device.sn, got - truth)
        assert value(parsed, "atess_device_online", sn=device.sn) == 1
    old = value(parsed, "atess_device_data_timestamp_seconds", sn=two_days_old)
    assert old == pytest.approx(NOW - 2 * 86400, abs=900)        # still two days old
    assert value(parsed, "atess_device_online", sn=two_days_old) == 0
    assert value(parsed, "atess_api_clock_offset_seconds") == servers_hours * 3600
    assert value(parsed, "atess_api_clock_offset_devices") == 4
    found = [r for r in caplog.records if r.getMessage() == "API servers' clock found"]
    assert len(found) == 1 and found[0].fields["offset_seconds"] == servers_hours * 3600
    assert found[0].fields["devices"] == 4


def test_a_lone_device_decides_and_says_it_rests_on_one_device(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock(NOW)
    with Simulator(fleet(1), token=TOKEN, clock=clock, clock_utc_offset_hours=8) as sim:
        poller = run_first_poll(sim, clock)
    parsed = scrape(poller, clock)
    assert value(parsed, "atess_api_clock_offset_seconds") == 28800
    assert value(parsed, "atess_api_clock_offset_devices") == 1
    assert any("rests on that device" in r.getMessage() for r in caplog.records)


def test_the_clock_keeps_watching_and_re_decides(caplog):
    clock = Clock(NOW)
    devices = fleet(3)
    with Simulator(devices, token=TOKEN, clock=clock, clock_utc_offset_hours=8) as sim:
        poller = run_first_poll(sim, clock)
        assert poller.server_clock.decision.offset == 28800
        caplog.set_level(logging.INFO)
        caplog.clear()
        # the vendor moves its servers to UTC
        clock.t += 300
        sim.clock_utc_offset_hours = 0
        poller.poll_all_once()
    parsed = scrape(poller, clock)
    assert value(parsed, "atess_api_clock_offset_seconds") == 0
    for device in devices:
        assert abs(value(parsed, "atess_device_data_timestamp_seconds", sn=device.sn) - slot_start_utc(device, clock.t)) <= 900
    assert [r.getMessage() for r in caplog.records if "clock" in r.getMessage()] == ["API servers' clock changed"]


def test_an_explicit_zone_overrides_the_measurement():
    clock = Clock(NOW)
    devices = fleet(3)
    with Simulator(devices, token=TOKEN, clock=clock, clock_utc_offset_hours=8) as sim:
        poller = run_first_poll(sim, clock, atess={"timezone": "GMT+8"})
    parsed = scrape(poller, clock)
    assert value(parsed, "atess_api_clock_offset_seconds") == 28800
    for device in devices:
        assert abs(value(parsed, "atess_device_data_timestamp_seconds", sn=device.sn) - slot_start_utc(device, NOW)) <= 900


def test_a_wrong_explicit_zone_is_never_8_hours_wrong_silently(caplog):
    caplog.set_level(logging.WARNING)
    clock = Clock(NOW)
    devices = fleet(3)
    with Simulator(devices, token=TOKEN, clock=clock, clock_utc_offset_hours=8) as sim:
        poller = run_first_poll(sim, clock, atess={"timezone": "UTC"})
    parsed = scrape(poller, clock)
    for device in devices:  # 8 h in the future: no time, and not online
        assert ("atess_device_data_timestamp_seconds", frozenset({("sn", device.sn), ("model", "HPS150")})) not in parsed
        assert value(parsed, "atess_device_online", sn=device.sn) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("ahead of the poll" in m for m in messages)
    assert any("another zone than atess.timezone" in m for m in messages)


@responses.activate
def test_a_reading_far_in_the_future_is_unknown_and_not_fresh():
    """`responses` is simpler here: three devices, one with a `time` a day ahead."""
    base = "http://127.0.0.1:9"
    sns = ["HPSA0000000001", "HPSA0000000002", "HPSA0000000003"]
    def text(ts):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts + 8 * 3600))
    times = {sns[0]: text(NOW - 60), sns[1]: text(NOW - 200), sns[2]: text(NOW + 86400)}
    for sn in sns:
        responses.get(f"{base}/api/v1/hps/data-last", match=[responses.matchers.query_param_matcher({"deviceSn": sn})],
                      json={"code": 0, "msg": "ok", "data": {"deviceSn": sn, "time": times[sn], "ppv": 1.5}})
    clock = Clock(NOW)
    cfg = make_config(base, devices=[{"sn": sn, "type": "hps_central", "model": "HPS150"} for sn in sns])
    poller = Poller(cfg, AtessClient(cfg.api), Cache(), load_catalog(), clock=clock)
    poller.poll_all_once()
    parsed = scrape(poller, clock)
    assert value(parsed, "atess_api_clock_offset_seconds") == 28800
    assert value(parsed, "atess_device_data_timestamp_seconds", sn=sns[0]) == NOW - 60
    assert value(parsed, "atess_device_online", sn=sns[2]) == 0
    assert poller.cache.get(sns[2]).data_time is None and poller.cache.get(sns[2]).time_refused


# -- backfill and probe use the same clock ---------------------------------------

def write_config(tmp_path, sim, devices, state_file="", **atess):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "atess": {"base_url": sim.base_url, "token": TOKEN, "timeout_seconds": 5, **atess},
        "devices": [{"sn": d.sn, "type": d.family, "model": d.model} for d in devices],
        "state_file": state_file,
    }), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("servers_hours", [8.0, 0.0])
def test_backfill_measures_the_servers_zone_and_stamps_rows_right(tmp_path, servers_hours):
    import io

    from atess_exporter import backfill

    devices = fleet(3)
    with Simulator(devices, token=TOKEN, clock_utc_offset_hours=servers_hours) as sim:
        config = write_config(tmp_path, sim, devices)
        err, out = io.StringIO(), tmp_path / "h.om"
        day = (time.gmtime(time.time() + servers_hours * 3600 - 2 * 86400))
        day = f"{day.tm_year:04d}-{day.tm_mon:02d}-{day.tm_mday:02d}"
        rc = backfill.main(["--config.file", config, "--from", day, "--to", day, "--output", str(out),
                            "--call-interval", "0", "--retry-backoff", "0", "--sn", devices[0].sn], stderr=err)
        assert rc == 0, err.getvalue()
        latest_calls = sum(n for (p, _), n in sim.calls.items() if p.endswith("data-last"))
    assert latest_calls == len(devices)          # one latest-data call per device measures it
    assert "API servers' clock found" in err.getvalue()
    stamps = sorted({float(line.rsplit(" ", 1)[1]) for line in out.read_text().splitlines() if not line.startswith("#")})
    # the servers' day starts at its midnight: 00:00 in UTC+offset
    y, m, d = map(int, day.split("-"))
    import calendar
    midnight = calendar.timegm((y, m, d, 0, 0, 0)) - servers_hours * 3600
    assert stamps[0] == midnight and stamps[-1] == midnight + 86400 - 300 and len(stamps) == 288


def test_backfill_without_a_measurement_stops_and_asks_for_the_zone(tmp_path):
    import io

    from atess_exporter import backfill

    devices = fleet(1)
    with Simulator(devices, token=TOKEN, clock_utc_offset_hours=8) as sim:
        sim.set_fault(devices[0].sn, "fields", fields={"time": "2001-01-01 00:00:00"})   # nothing fresh
        config = write_config(tmp_path, sim, devices)
        err = io.StringIO()
        rc = backfill.main(["--config.file", config, "--from", "2024-03-01", "--to", "2024-03-01",
                            "--output", str(tmp_path / "h.om"), "--call-interval", "0"], stderr=err)
    assert rc == 1
    assert "set atess.timezone" in err.getvalue() and not (tmp_path / "h.om").exists()


def test_backfill_beside_a_live_exporter_takes_its_measured_offset(tmp_path):
    """The live exporter has just polled: the API refuses backfill's latest-data calls
    ("too frequent"); the offset the exporter measured and saved serves instead."""
    import io

    from atess_exporter import backfill

    devices = fleet(3)
    state = tmp_path / "state.json"
    with Simulator(devices, token=TOKEN, clock_utc_offset_hours=8, min_interval_seconds=300) as sim:
        live = run_first_poll(sim, time.time, state_file=str(state))
        assert live.server_clock.decision.offset == 28800
        err, out = io.StringIO(), tmp_path / "h.om"
        rc = backfill.main(["--config.file", write_config(tmp_path, sim, devices, state_file=str(state)),
                            "--from", "2024-03-01", "--to", "2024-03-01", "--output", str(out),
                            "--call-interval", "0", "--retry-backoff", "0", "--page-size", "1000",
                            "--sn", devices[1].sn], stderr=err)
        assert sim.rate_limit_violations >= 3        # every measuring call was refused
    assert rc == 0, err.getvalue()
    assert "taken from the live exporter's state file" in err.getvalue()
    import calendar
    stamps = sorted({float(line.rsplit(" ", 1)[1]) for line in out.read_text().splitlines() if not line.startswith("#")})
    assert stamps[0] == calendar.timegm((2024, 3, 1, 0, 0, 0)) - 8 * 3600


def test_probe_prints_the_clock_it_found(tmp_path):
    import io
    from datetime import date

    from atess_exporter.probe.command import main

    devices = [SimDevice(sn="HPS150A2312000147", model="HPS150"),
               SimDevice(sn="PCS100A2309000058", family="pcs", model="PCS100")]
    with Simulator(devices, token=TOKEN, clock_utc_offset_hours=8) as sim:
        out = io.StringIO()
        main(["--config.file", write_config(tmp_path, sim, devices)], out=out, err=io.StringIO(),
             today=lambda: date(2025, 6, 3))
    assert "API servers' clock: UTC+08:00 from 2 of 2 devices' latest readings" in out.getvalue()


def test_plant_rows_give_their_zone_in_any_spelling():
    from atess_exporter.account.discovery import plant_zone

    assert plant_zone({"timezone": 8}) == "UTC+08:00"
    assert plant_zone({"timezone": "GMT+8"}) == "UTC+08:00"
    assert plant_zone({"timezoneText": "GMT-5"}) == "UTC-05:00"
    assert plant_zone({"timeZone": "Europe/Berlin"}) == "Europe/Berlin"
    assert plant_zone({"timezone": "", "atsTimezoneStr": "UTC+05:30"}) == "UTC+05:30"
    assert plant_zone({"timezone": "somewhere"}) == ""


def test_a_normal_start_on_a_utc8_platform_warns_of_nothing(caplog):
    caplog.set_level(logging.WARNING)
    clock = Clock(NOW)
    with Simulator(fleet(5), token=TOKEN, clock=clock, clock_utc_offset_hours=8) as sim:
        run_first_poll(sim, clock)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_large_fleet_decides_before_its_first_round_ends():
    """Ten agreeing devices decide: the rest of a big first round is placed right as it comes."""
    clock = Clock(NOW)
    devices = fleet(14)
    with Simulator(devices, token=TOKEN, clock=clock, clock_utc_offset_hours=8) as sim:
        cfg = make_config(sim.base_url, devices=devices)
        poller = Poller(cfg, AtessClient(cfg.api), Cache(), load_catalog(), clock=clock)
        configured = list(poller.devices.values())
        for device in configured[:9]:
            poller.poll_device(device)
        assert poller.server_clock.decision.offset is None
        poller.poll_device(configured[9])
        assert poller.server_clock.decision.offset == 28800
        late = poller.poll_device(configured[10])
    assert abs(late.data_time - slot_start_utc(devices[10], NOW)) <= 900


def test_probe_says_when_the_clock_rests_on_one_device_or_none(tmp_path):
    import io
    from datetime import date

    from atess_exporter.probe.command import main

    devices = [SimDevice(sn="HPS150A2312000147", model="HPS150")]
    with Simulator(devices, token=TOKEN, clock_utc_offset_hours=-5) as sim:
        out = io.StringIO()
        main(["--config.file", write_config(tmp_path, sim, devices)], out=out, err=io.StringIO(),
             today=lambda: date(2025, 6, 3))
        assert "API servers' clock: UTC-05:00 from 1 device's latest reading (it rests on that device)" in out.getvalue()
        sim.set_fault(devices[0].sn, "fields", fields={"time": "2001-01-01 00:00:00"})
        out = io.StringIO()
        main(["--config.file", write_config(tmp_path, sim, devices)], out=out, err=io.StringIO(),
             today=lambda: date(2025, 6, 3))
    assert "API servers' clock: not measured (no fresh latest reading); the exporter reads times as UTC" in out.getvalue()


def test_a_device_zone_overrides_for_that_device_only():
    clock = Clock(NOW)
    devices = fleet(4)
    with Simulator(devices, token=TOKEN, clock=clock, clock_utc_offset_hours=8) as sim:
        rows = [{"sn": d.sn, "type": d.family, "model": d.model} for d in devices]
        rows[0]["timezone"] = "GMT+8"            # right: UTC+8
        rows[1]["timezone"] = "Etc/GMT+8"        # POSIX sign: UTC-8, 16 h off; the user asked for it
        cfg = make_config(sim.base_url, devices=rows)
        poller = Poller(cfg, AtessClient(cfg.api), Cache(), load_catalog(), clock=clock)
        poller.poll_all_once()
    parsed = scrape(poller, clock)
    assert value(parsed, "atess_api_clock_offset_devices") == 2     # the two measured devices
    for device in (devices[0], devices[2], devices[3]):
        assert abs(value(parsed, "atess_device_data_timestamp_seconds", sn=device.sn) - slot_start_utc(device, NOW)) <= 900
    assert value(parsed, "atess_device_online", sn=devices[1].sn) == 0  # 16 h in the future: refused
