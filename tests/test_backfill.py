"""History backfill: simulator history endpoint -> OpenMetrics -> promtool -> Prometheus."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest
import requests
import yaml

from atess_exporter import backfill, cli
from atess_exporter.catalog import load_catalog
from atess_exporter.readings.payload import payload_samples
from atess_exporter.simulator import Request, Simulator
from atess_exporter.simulator.history import history_handler
from atess_exporter.simulator.physics import hps_central_latest
from support import (DAY1, DAY2, DAY3, DEV_A, DEV_B, HISTORY_PATH as PATH, TOKEN, Clock, FakeTTY, history_series as series,
                     override_history_rows as _override_rows, plant_utc as utc, require_tool, run_backfill as run, samples_of,
                     stop_process, write_backfill_config as write_config)

@pytest.fixture
def sim2():
    with Simulator([DEV_A, DEV_B], token=TOKEN) as simulator:
        yield simulator


def _request(sn: str | None, **query) -> Request:
    q = {k: str(v) for k, v in query.items()}
    if sn:
        q["deviceSn"] = sn
    return Request("GET", PATH, q, {"Authorization": f"Basic {TOKEN}"})


# -- the simulator's history endpoint ---------------------------------------------

def test_simulator_history_rows_are_the_latest_payload_of_each_slot():
    sim = Simulator([DEV_A], token=TOKEN)
    reply = sim.handle(_request(DEV_A.sn, startDate="2024-03-01 00:00:00", endDate="2024-03-01 23:59:59",
                                pageNo=3, pageSize=100))
    data = reply.envelope["data"]
    assert reply.envelope["code"] == 0
    # the documented page object; the last page is short
    assert (data["total"], data["offset"], data["pageNo"], len(data["datas"])) == (288, 200, 3, 88)
    row = data["datas"][0]
    assert row["time"] == "2024-03-01 16:40:00" and "recordTime" not in row
    assert row == hps_central_latest(DEV_A, utc(DAY1, 16, 40, 1.0))
    past_end = sim.handle(_request(DEV_A.sn, startDate="2024-03-01", endDate="2024-03-01", pageNo=4, pageSize=100))
    assert past_end.envelope["data"]["datas"] == []


def test_simulator_history_has_no_future_rows():
    clock = Clock(utc(DAY1, 0, 12, 1.0))  # 00:12 local: slots 00:00, 00:05, 00:10 exist
    sim = Simulator([DEV_A], token=TOKEN, clock=clock.time)
    data = sim.handle(_request(DEV_A.sn, startDate="2024-03-01", endDate="2024-03-02", pageSize=100)).envelope["data"]
    assert [r["time"][11:] for r in data["datas"]] == ["00:00:00", "00:05:00", "00:10:00"]


@pytest.mark.parametrize("query, code, msg", [
    ({"startDate": "2024-03-01"}, 400, "startDate and endDate"),
    ({"startDate": "2024-3-1", "endDate": "2024-03-01"}, 400, "startDate and endDate"),
    ({"startDate": "2024-02-30", "endDate": "2024-03-01"}, 400, "startDate and endDate"),
    ({"startDate": "2024-03-02", "endDate": "2024-03-01"}, 400, "before"),
    ({"startDate": "2024-03-01", "endDate": "2024-03-08"}, 500, "7 days"),
    ({"startDate": "2024-03-01", "endDate": "2024-03-01", "pageNo": 0}, 400, "pageNo"),
    ({"startDate": "2024-03-01", "endDate": "2024-03-01", "pageSize": 0}, 400, "pageSize"),
    ({"startDate": "2024-03-01", "endDate": "2024-03-01", "pageSize": 1001}, 400, "pageSize"),
    ({"startDate": "2024-03-01", "endDate": "2024-03-01", "pageSize": "x"}, 400, "pageSize"),
])
def test_simulator_history_validates_its_parameters(query, code, msg):
    sim = Simulator([DEV_A], token=TOKEN)
    env = sim.handle(_request(DEV_A.sn, **query)).envelope
    assert env["code"] == code and msg in env["msg"] and env["data"] is None


def test_simulator_history_range_cap_and_unknown_device():
    sim = Simulator([DEV_A], token=TOKEN)
    assert sim.handle(_request(DEV_A.sn, startDate="2024-03-01", endDate="2024-03-07")).envelope["code"] == 0
    sim.history_max_days = 2
    env = sim.handle(_request(DEV_A.sn, startDate="2024-03-01", endDate="2024-03-03")).envelope
    assert env["code"] == 500 and "2 days" in env["msg"]
    assert sim.handle(_request("NOPE", startDate="2024-03-01", endDate="2024-03-01")).envelope["code"] == 400
    assert sim.handle(_request(None, startDate="2024-03-01", endDate="2024-03-01")).envelope["code"] == 400
    sim.routes[PATH] = history_handler("hps_central", max_days=1)
    del sim.history_max_days
    assert sim.handle(_request(DEV_A.sn, startDate="2024-03-01", endDate="2024-03-02")).envelope["code"] == 500


# -- the backfill ------------------------------------------------------------------------

def test_backfill_values_timestamps_and_names(sim2, tmp_path):
    out = tmp_path / "history.om"
    rc, err = run(write_config(tmp_path, sim2), out, "--quiet")
    assert rc == 0, err
    assert not (tmp_path / "history.om.parts").exists()
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "call-interval" in lines[0]  # the warning about --call-interval 0, and the summary
    assert lines[-1].startswith("atess-exporter backfill: 2 devices, 6/6 device-days, 1728 rows")
    samples = samples_of(out)
    catalog = load_catalog()

    for dev, offset in ((DEV_A, 1.0), (DEV_B, -5.0)):
        pv = series(samples, "atess_pv_power_watts", dev.sn, dev.model)
        # Every 5-minute slot from local midnight of --from to 23:55 of --to (both inclusive).
        first, last = utc(DAY1, 0, 0, offset), utc(DAY3, 23, 55, offset)
        assert sorted(pv) == [first + 300 * i for i in range(3 * 288)]
        assert max(pv) == last
        for day, hh, mm in ((DAY1, 0, 0), (date(2024, 3, 2), 12, 0), (DAY3, 23, 55)):
            ts = utc(day, hh, mm, offset)
            payload = hps_central_latest(dev, ts)
            assert payload["time"] == f"{day} {hh:02d}:{mm:02d}:00"
            # total PV power on both models: ppv1 on the HPS100HV, ppv elsewhere
            assert pv[ts] == pytest.approx(float(payload["ppv1" if dev.model.endswith("HV") else "ppv"]) * 1000)
            assert series(samples, "atess_pv_energy_joules_total", dev.sn, dev.model)[ts] == pytest.approx(
                payload["epvTotal"] * 3.6e6)
            assert series(samples, "atess_battery_soc_ratio", dev.sn, dev.model)[ts] == pytest.approx(
                payload["capacity"] / 100)
            # Exactly the live mapping: every series the catalog makes of this payload, same value.
            for name, rows in payload_samples(catalog.families["hps_central"], payload, dev.model).items():
                m = catalog.describe_metric(name)
                for labels, value in rows:
                    got = series(samples, name, dev.sn, dev.model, **dict(zip(m.labels, labels)))[ts]
                    assert got == pytest.approx(value), name
    # No series the live mapping would not make.
    names = {name for name, _ in samples}
    assert names <= set(catalog.metrics)


def test_backfill_file_shape(sim2, tmp_path):
    out = tmp_path / "history.om"
    rc, err = run(write_config(tmp_path, sim2), out, end=DAY1)
    assert rc == 0, err
    samples_of(out, strict=True)  # prometheus-client's OpenMetrics parser accepts it
    text = out.read_text(encoding="utf-8")
    catalog = load_catalog()
    seen_families, current = [], None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = line.split(" ")[2]
            assert current not in seen_families, "a family appears twice"
            seen_families.append(current)
        elif line.startswith("# TYPE "):
            _, _, fam, kind = line.split(" ")
            assert fam == current and kind in ("gauge", "counter")
        elif line != "# EOF":
            name = line[: line.index("{")]
            m = catalog.describe_metric(name)
            assert m.family == current
            assert (m.type == "counter") == name.endswith("_total")
            assert line.startswith((f'{name}{{sn="{DEV_A.sn}",model="{DEV_A.model}"',
                                    f'{name}{{sn="{DEV_B.sn}",model="{DEV_B.model}"'))
            assert line.rsplit(" ", 1)[1].isdigit()  # whole seconds
    assert text.count("# TYPE atess_pv_energy_joules counter\n") == 1
    # the HELP says where the samples come from: the history, not a live poll's cache
    helps = [line for line in text.splitlines() if line.startswith("# HELP ")]
    assert helps and all("Imported from the device's history" in h for h in helps)
    assert "Cached from the last poll" not in text


def test_backfill_progress_on_a_tty(sim2, tmp_path):
    tty = FakeTTY()
    rc, err = run(write_config(tmp_path, sim2, devices=(DEV_A,)), tmp_path / "h.om", "--log.level", "error",
                  end=DAY1, stderr=tty)
    assert rc == 0
    assert "\r\x1b[K" in err and "devices 1/1, days 1/1, rows 288" in err
    # The line is erased before the summary, which ends the output.
    assert err.endswith("\n") and err.rsplit("\r\x1b[K", 1)[1].startswith("atess-exporter backfill: 1 device, ")


@pytest.mark.prometheus
@pytest.mark.promtool
def test_backfill_through_promtool_into_prometheus(tmp_path):
    promtool = require_tool("promtool")
    prometheus = require_tool("prometheus")
    # Past days relative to now (what a user does: yesterday and before).
    today = datetime.now(timezone(timedelta(hours=1))).date()
    first, last = today - timedelta(days=3), today - timedelta(days=2)
    with Simulator([DEV_A], token=TOKEN) as sim:
        out = tmp_path / "history.om"
        rc, err = run(write_config(tmp_path, sim, devices=(DEV_A,)), out, start=first, end=last)
        assert rc == 0, err
    data = tmp_path / "data"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(out), str(data)],
                   check=True, capture_output=True, timeout=300)
    assert any(p.is_dir() for p in data.iterdir())

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "prometheus.yml"
    conf.write_text("global:\n  scrape_interval: 1m\n", encoding="utf-8")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([prometheus, f"--config.file={conf}", f"--storage.tsdb.path={data}",
                             "--storage.tsdb.retention.time=10y", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                if requests.get(f"{base}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            threading.Event().wait(0.2)

        noon = utc(first, 12, 0, 1.0)
        payload = hps_central_latest(DEV_A, noon)
        sel = f'{{sn="{DEV_A.sn}",model="{DEV_A.model}"}}'

        def query(expr: str, at: float) -> float:
            r = requests.get(f"{base}/api/v1/query", params={"query": expr, "time": at}, timeout=10).json()
            assert r["status"] == "success", r
            assert len(r["data"]["result"]) == 1, r
            return float(r["data"]["result"][0]["value"][1])

        assert query(f"atess_pv_power_watts{sel}", noon) == pytest.approx(payload["ppv"] * 1000)
        assert query(f"atess_pv_energy_joules_total{sel}", noon) == pytest.approx(payload["epvTotal"] * 3.6e6)
        # An hour of 5-minute samples, each the simulator's value of that slot.
        r = requests.get(f"{base}/api/v1/query_range", params={
            "query": f"atess_battery_soc_ratio{sel}", "start": noon, "end": noon + 3600, "step": 300}, timeout=10).json()
        values = r["data"]["result"][0]["values"]
        assert len(values) == 13
        for ts, value in values:
            assert float(value) == pytest.approx(hps_central_latest(DEV_A, float(ts))["capacity"] / 100)
        # Energy over the first day from the backfilled counter, as a dashboard computes it.
        midnight = utc(first, 0, 0, 1.0)
        end_of_day = midnight + 86400 - 300
        gained = query(f"atess_pv_energy_joules_total{sel} - atess_pv_energy_joules_total{sel} offset 86100s",
                       end_of_day)
        assert gained == pytest.approx((hps_central_latest(DEV_A, end_of_day)["epvTotal"]
                                        - hps_central_latest(DEV_A, midnight)["epvTotal"]) * 3.6e6)
    finally:
        stop_process(proc)
        log.close()


def test_interrupt_and_resume_gives_the_uninterrupted_file(sim2, tmp_path):
    config = write_config(tmp_path, sim2)
    ref = tmp_path / "ref.om"
    assert run(config, ref, "--concurrency", "1", end=DAY2)[0] == 0
    ref_calls = sum(sim2.calls.values())
    sim2.reset_counters()

    out = tmp_path / "out.om"
    finished = []

    def interrupt_after_three(sn, first, last):
        finished.append((sn, first))
        if len(finished) == 3:
            raise KeyboardInterrupt  # as if Ctrl-C arrived right after the third window

    rc, err = run(config, out, "--concurrency", "1", end=DAY2, after_window=interrupt_after_three)
    assert rc == 130 and "run the same command again to resume" in err
    assert not out.exists() and (tmp_path / "out.om.parts").is_dir()
    first_calls = sum(sim2.calls.values())
    sim2.reset_counters()

    rc, err = run(config, out, "--concurrency", "1", end=DAY2)
    assert rc == 0, err
    assert "resuming=true" in err and "days_done=3" in err   # logfmt booleans: true/false
    assert out.read_bytes() == ref.read_bytes()
    assert not (tmp_path / "out.om.parts").exists()
    # Finished windows were not fetched again: 3 of 4 windows, 3 pages each. (A window
    # started when the interrupt came is not finished; it is fetched again.)
    assert first_calls >= 9 and sum(sim2.calls.values()) == ref_calls - 9
    samples_of(out)  # and no duplicate (series, timestamp)


def test_failed_window_skips_the_device_and_is_retried_on_resume(sim2, tmp_path):
    config = write_config(tmp_path, sim2)
    ref = tmp_path / "ref.om"
    assert run(config, ref)[0] == 0
    out = tmp_path / "out.om"

    def break_a_after_first_window(sn, first, last):
        if sn == DEV_A.sn and first == DAY1:
            sim2.set_fault(DEV_A.sn, "http_500")

    rc, err = run(config, out, "--retries", "2", after_window=break_a_after_first_window)
    assert rc == 1
    assert f"FAILED: {DEV_A.sn} from 2024-03-02" in err and "windows_not_attempted=1" in err
    assert sim2.calls[(PATH, DEV_A.sn)] >= 3  # the failing call was retried
    partial = samples_of(out)  # what did work is written already
    assert len(series(partial, "atess_pv_power_watts", DEV_A.sn, DEV_A.model)) == 288
    assert len(series(partial, "atess_pv_power_watts", DEV_B.sn, DEV_B.model)) == 3 * 288
    assert (tmp_path / "out.om.parts").is_dir()

    sim2.clear_faults()
    rc, err = run(config, out)
    assert rc == 0, err
    assert out.read_bytes() == ref.read_bytes()
    assert not (tmp_path / "out.om.parts").exists()


def test_resume_refuses_a_different_date_range(sim2, tmp_path):
    config = write_config(tmp_path, sim2)
    out = tmp_path / "out.om"

    def stop(sn, first, last):
        raise KeyboardInterrupt

    assert run(config, out, after_window=stop)[0] == 130
    rc, err = run(config, out, end=date(2024, 3, 2))
    assert rc == 2 and "resume it with those dates, or delete the directory" in err


def test_glitched_lifetime_total_does_not_go_backwards(sim2, tmp_path):
    _override_rows(sim2, {(DEV_A.sn, "2024-03-02 12:00:00"): {"epvTotal": 0, "ebatChargeTotal": "0"}})
    out = tmp_path / "out.om"
    rc, err = run(write_config(tmp_path, sim2, devices=(DEV_A,)), out)
    assert rc == 0 and "2 lifetime-total glitches held back" in err
    samples = samples_of(out)
    for name in ("atess_pv_energy_joules_total", "atess_battery_charge_energy_joules_total"):
        s = series(samples, name, DEV_A.sn, DEV_A.model)
        values = [s[ts] for ts in sorted(s)]
        assert values == sorted(values), f"{name} went backwards"
        glitch = utc(date(2024, 3, 2), 12, 0, 1.0)
        assert s[glitch] == s[glitch - 300] > 0  # the last good value is held
    # Gauges of the same row are untouched.
    assert series(samples, "atess_pv_power_watts", DEV_A.sn, DEV_A.model)[glitch] > 0


def test_counter_guard_state_survives_a_resume(sim2, tmp_path):
    """A reset confirmed across the window boundary (2 low readings at the end of
    day 1, the 3rd at the start of day 2) is believed alike with or without a resume."""
    low = {"epvTotal": 5.0}
    _override_rows(sim2, {(DEV_A.sn, "2024-03-01 23:50:00"): low, (DEV_A.sn, "2024-03-01 23:55:00"): low,
                          (DEV_A.sn, "2024-03-02 00:00:00"): low})
    config = write_config(tmp_path, sim2, devices=(DEV_A,))
    ref = tmp_path / "ref.om"
    assert run(config, ref)[0] == 0
    s = series(samples_of(ref), "atess_pv_energy_joules_total", DEV_A.sn, DEV_A.model)
    assert s[utc(date(2024, 3, 2), 0, 0, 1.0)] == 5.0 * 3.6e6  # the third low reading is believed
    assert s[utc(DAY1, 23, 55, 1.0)] > 5.0 * 3.6e6             # the first two were held back

    out = tmp_path / "out.om"

    def stop_after_day1(sn, first, last):
        raise KeyboardInterrupt

    assert run(config, out, after_window=stop_after_day1)[0] == 130
    state = json.loads((tmp_path / "out.om.parts" / f"sn-{DEV_A.sn}" / "state.json").read_text())
    assert state["next"] == "2024-03-02"
    assert run(config, out)[0] == 0
    assert out.read_bytes() == ref.read_bytes()


def test_rate_limit_respected_and_calls_counted(tmp_path):
    clock = Clock(time.time())
    with Simulator([DEV_A, DEV_B], token=TOKEN, min_interval_seconds=300, clock=clock.time) as sim:
        config = write_config(tmp_path, sim)
        out = tmp_path / "out.om"
        rc, err = run(config, out, "--call-interval", "300", clock=clock.time, sleep=clock.sleep)
        assert rc == 0, err
        assert sim.rate_limit_violations == 0
        # 3 windows of 1 day, 288 rows each: pages of 100, 100, 88.
        assert sim.calls[(PATH, DEV_A.sn)] == sim.calls[(PATH, DEV_B.sn)] == 3 * 3
        for sn in (DEV_A.sn, DEV_B.sn):
            times = [t for t, path, s in sim.call_log if s == sn]
            assert all(b - a >= 300 for a, b in zip(times, times[1:]))
        assert clock.slept > 0  # it waited (in fake time), it did not sleep for real

        # Two days per window with pages of 200: 576 rows -> 200, 200, 176; plus 288 -> 200, 88.
        sim.reset_counters()
        rc, err = run(config, tmp_path / "out2.om", "--call-interval", "300", "--window", "2d",
                      "--page-size", "200", clock=clock.time, sleep=clock.sleep)
        assert rc == 0, err
        assert sim.rate_limit_violations == 0
        assert sim.calls[(PATH, DEV_A.sn)] == 3 + 2
        assert (tmp_path / "out2.om").read_bytes() == out.read_bytes()

        # Without the gap the simulator refuses, and the backfill reports the failure.
        sim.reset_counters()
        rc, err = run(config, tmp_path / "out3.om", "--retries", "1", clock=clock.time, sleep=clock.sleep)
        assert rc == 1 and sim.rate_limit_violations > 0 and "429" in err


def test_window_over_the_api_cap_is_reported(sim2, tmp_path):
    rc, err = run(write_config(tmp_path, sim2, devices=(DEV_A,)), tmp_path / "o.om", "--window", "8d",
                  end=date(2024, 3, 8))
    assert rc == 1 and "must not exceed 7 days" in err and "--window over 7 days" in err


def test_usage_errors(sim2, tmp_path):
    config = write_config(tmp_path, sim2)
    assert run(config, tmp_path / "o.om", "--sn", "UNKNOWN")[0] == 2
    assert run(config, tmp_path / "o.om", start=DAY3, end=DAY1)[0] == 2
    assert run(config, tmp_path / "o.om", "--window", "0d")[0] == 2
    rc, err = run(str(tmp_path / "missing.yaml"), tmp_path / "o.om")
    assert rc == 1 and "config error" in err


def test_sn_selection_and_cli_dispatch(sim2, tmp_path, capsys):
    out = tmp_path / "o.om"
    config = write_config(tmp_path, sim2)
    rc = cli.main(["backfill", "--config.file", config, "--from", "2024-03-01", "--to", "2024-03-01",
                   "--output", str(out), "--call-interval", "0", "--sn", DEV_B.sn, "--quiet"])
    assert rc == 0
    sns = {dict(labels)["sn"] for _, labels in samples_of(out)}
    assert sns == {DEV_B.sn}
    assert sim2.calls[(PATH, DEV_A.sn)] == 0


def test_windows_and_page_arithmetic():
    assert list(backfill.windows(DAY1, DAY3, 2)) == [(DAY1, date(2024, 3, 2)), (DAY3, DAY3)]
    assert list(backfill.windows(DAY1, DAY1, 7)) == [(DAY1, DAY1)]
    assert backfill.calls_for_rows(288, 100) == 3
    assert backfill.calls_for_rows(288, 288) == 2  # a full last page needs an empty one to end


def test_every_simulated_family_gets_history_for_free(tmp_path):
    """Any family with a payload builder: register history_handler(family) at the
    configured history path, and the backfill fills that family's metrics."""
    from atess_exporter.config import load_config
    from atess_exporter.simulator import demo_devices
    from atess_exporter.simulator.physics import LATEST_BUILDERS

    devices = {}
    for d in demo_devices():
        devices.setdefault(d.family, d)
    devices = [d for fam, d in sorted(devices.items()) if fam in LATEST_BUILDERS]
    with Simulator(devices, token=TOKEN) as sim:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({
            "atess": {"base_url": sim.base_url, "token": TOKEN},
            "devices": [{"sn": d.sn, "type": d.family, "model": d.model,
                         "timezone": f"Etc/GMT{-int(d.tz_offset_hours):+d}"} for d in devices],
        }), encoding="utf-8")
        config = load_config(str(path))
        for d in devices:
            sim.routes[config.endpoint(d.family, "history")] = history_handler(d.family)
        out = tmp_path / "all.om"
        rc, err = run(str(path), out, "--quiet", end=DAY1)
        assert rc == 0, err
    catalog = load_catalog()
    samples = samples_of(out)
    for d in devices:
        first = utc(DAY1, 12, 0, d.tz_offset_hours)
        expected = {name: rows for name, rows in payload_samples(
            catalog.families[d.family], LATEST_BUILDERS[d.family](d, first), d.model).items() if name in catalog.metrics}
        assert expected, d.family
        for name, rows in expected.items():
            m = catalog.describe_metric(name)
            for labels, value in rows:
                points = series(samples, name, d.sn, d.model, **dict(zip(m.labels, labels)))
                assert len(points) == 288, (d.family, name)
                if m.type == "gauge":
                    assert points[first] == pytest.approx(value), (d.family, name)


def test_backfill_takes_the_devices_from_discovery(tmp_path):
    from atess_exporter.backfill import known_devices
    from atess_exporter.simulator import Simulator, demo_devices
    from support import make_config

    with Simulator(demo_devices(), token=TOKEN) as sim:
        config = make_config(sim.base_url, devices=[], discovery={"enabled": True, "exclude": {"plant": ["Hill Farm"]}})
        found = known_devices(config)
    assert sorted(found) == sorted(d.sn for d in demo_devices() if d.plant_id == "PL1001")


def test_backfill_asks_for_date_times_and_reads_time(sim2, tmp_path):
    """The doc: startDate/endDate are 'YYYY-MM-DD HH:MM:SS' (a day is 00:00:00 .. 23:59:59),
    pages start at 1, rows carry `time`; recordTime stays a fallback."""
    queries = []
    inner = sim2.routes[PATH]

    def spy(s, req):
        queries.append(dict(req.query))
        reply = inner(s, req)
        if reply.envelope and reply.envelope["data"] and req.sn == DEV_A.sn:
            for row in reply.envelope["data"]["datas"]:
                row["recordTime"] = row.pop("time")  # the older spelling
        return reply

    sim2.routes[PATH] = spy
    out = tmp_path / "history.om"
    rc, err = run(write_config(tmp_path, sim2), out, "--quiet", end=DAY1)
    assert rc == 0, err
    assert queries and all(q["startDate"] == "2024-03-01 00:00:00" and q["endDate"] == "2024-03-01 23:59:59"
                           for q in queries)
    assert min(int(q["pageNo"]) for q in queries) == 1
    samples = samples_of(out)
    for dev in (DEV_A, DEV_B):
        assert len(series(samples, "atess_pv_power_watts", dev.sn, dev.model)) == 288


def test_history_stops_on_a_page_that_repeats(sim2, tmp_path):
    """A server that ignores pageNo: the second page equals the first, and the backfill stops."""
    calls = []
    inner = sim2.routes[PATH]

    def stuck(s, req):
        calls.append(req.query["pageNo"])
        return inner(s, Request(req.method, req.path, {**req.query, "pageNo": "1"}, req.headers))

    sim2.routes[PATH] = stuck
    out = tmp_path / "history.om"
    rc, err = run(write_config(tmp_path, sim2), out, "--quiet", "--sn", DEV_A.sn, "--page-size", "100", end=DAY1)
    assert rc == 0, err
    assert len(calls) == 2


@pytest.mark.parametrize("fault,calls", [("http_500", 3), ("http_429", 1), ("html", 1)])
def test_backfill_retries_what_live_polling_retries(sim2, tmp_path, fault, calls):
    """One retry policy: no answer or a 5xx is retried (here --retries 2); a rate-limit
    answer or a broken answer is not (tests/test_faults.py: the same calls for live
    polls); the device stops and a second run resumes it."""
    sim2.set_fault(DEV_A.sn, fault)
    rc, err = run(write_config(tmp_path, sim2, devices=(DEV_A,)), tmp_path / "out.om", "--retries", "2")
    assert rc == 1 and f"FAILED: {DEV_A.sn} from 2024-03-01" in err
    assert sim2.calls[(PATH, DEV_A.sn)] == calls


def test_start_line_recommends_the_concurrency_that_finishes_soonest(tmp_path):
    """8 devices x 7 days at concurrency 4 and 300 s per call: two rounds, 3.5 h; the start
    line names --concurrency 8 and its time. At 8 it says nothing more."""
    from atess_exporter.backfill.cli import plan

    calls = 7 * 3   # one-day windows of 288 rows, pages of 100
    slow = plan(8, calls, 300, 4)
    assert slow["estimated_duration"] == "3.5h"
    assert slow["recommended"].startswith("--concurrency 8 finishes in about 105min")
    assert "recommended" not in plan(8, calls, 300, 8)
    assert plan(300, 3, 300, 4)["recommended"].startswith("--concurrency 150 ")  # 256 at most: two rounds either way
    assert "recommended" not in plan(1, 3, 300, 4)

    clock = Clock(time.time())
    with Simulator([DEV_A, DEV_B], token=TOKEN, min_interval_seconds=300, clock=clock.time) as sim:
        config = write_config(tmp_path, sim)
        rc, err = run(config, tmp_path / "out.om", "--call-interval", "300", "--concurrency", "1", end=DAY1,
                      clock=clock.time, sleep=clock.sleep)
    assert rc == 0, err
    start = next(line for line in err.splitlines() if "backfill starting" in line)
    assert "concurrency=1" in start and "estimated_duration=30min" in start
    assert 'recommended="--concurrency 2 finishes in about 15min' in start
    assert backfill.main(["--config.file", config, "--from", DAY1.isoformat(), "--concurrency", "0"],
                         stderr=io.StringIO()) == 2


def test_merge_keeps_vendor_fields_and_warns_only_for_names_once_catalogued(tmp_path, caplog):
    """Parts may hold atess_vendor_* series (uncatalogued fields, exported live as well, also
    met by an earlier run of a resumed backfill) and names an older catalog had: the first
    are kept without a word, the others left out with a warning naming them."""
    from atess_exporter.backfill.merge import merge_parts
    from atess_exporter.backfill.workdir import WorkDir
    from atess_exporter.catalog import load_catalog

    out = tmp_path / "h.om"
    work = WorkDir(out)
    work.open(DAY1, DAY1)
    work.write_part("X1", "p1", 'atess_pv_power_watts{sn="X1",model="HPS50"} 100.0 1700000000\n'
                                'atess_vendor_fancy_reading{sn="X1",model="HPS50"} 7.0 1700000000\n'
                                'atess_old_renamed_watts{sn="X1",model="HPS50"} 1.0 1700000000\n')
    work.save_state("X1", {"parts": ["p1"]})
    with caplog.at_level(logging.WARNING, logger="atess_exporter.backfill"):
        assert merge_parts(work, ["X1"], load_catalog(), out) == 2
    text = out.read_text()
    assert "# TYPE atess_vendor_fancy_reading gauge" in text and "atess_vendor_fancy_reading{" in text
    assert "# HELP atess_vendor_fancy_reading Uncatalogued vendor field" in text and "history" in text
    assert "atess_old_renamed_watts" not in text
    warned = [r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records]
    assert len(warned) == 1 and "atess_old_renamed_watts" in warned[0], warned
