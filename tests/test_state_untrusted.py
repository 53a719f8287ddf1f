"""The state file is untrusted input (issue 19): planted, damaged or written by another
version, it never stops start-up or polling, never hangs, and is read within bounds."""

import json
import logging
import os
import threading

import pytest

from atess_exporter.live import state as state_mod
from support import KWH, PV_TOTAL as PV, exposed, one_device_poller


def poller(readings, state_file=""):
    """One HPS10KTL (10 kW) `A` polled 300 s apart (support.one_device_poller)."""
    return one_device_poller(readings, model="HPS10KTL", state_file=state_file)

GOOD_ROW = [[PV, []], 100 * KWH, 0, 0.0, 1_699_999_000.0, None]


def warnings_of(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and "state file" in r.getMessage()]


@pytest.mark.parametrize("content", [
    {"version": 1, "counters": []},                                      # counters a list
    {"version": 1, "counters": {"A": 5}},                                # a device's rows a number
    {"version": 1, "counters": {"A": [{"a": 1}], "B": "x"}},             # an object where a row belongs
    {"version": 1, "counters": {"A": [[{"k": 1}, 5, 0, 0.0]]}},          # an object inside a key
    {"version": 1, "counters": {"A": [[[PV], 5 * KWH, 0, 0.0]]}},        # a one-part key
    {"version": 1, "counters": {"A": [[[PV, [1, 2]], 5 * KWH, "x", 0.0]]}},
    {"version": 1, "counters": {"A": {"glitches": "many", "tracks": {"x": 1}}}},
    {"version": 1, "counters": {"A": {"glitches": 2, "tracks": [[[PV], 5 * KWH, 0, 0.0], 7]}}},
    {"version": 1, "counters": {"../../etc": [GOOD_ROW], "A": [GOOD_ROW, [[PV], 1.0]]}},
    "[" * 100_000 + "]" * 100_000,                                       # 100,000-deep nesting
    '{"version": 1, "counters": {"A": ' + "[" * 50_000 + "]" * 50_000 + "}}",
])
def test_a_damaged_state_file_never_stops_start_up_or_polling(tmp_path, caplog, content):
    path = tmp_path / "state.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    caplog.set_level(logging.WARNING)
    p = poller(["101", "101.2", "101.4"], state_file=str(path))         # start-up
    assert [v for v, _ in exposed(p, 3)] == [101, 101.2, 101.4]        # every poll works
    assert 1 <= len(warnings_of(caplog)) <= 2                           # said once, per section and rows
    p.save_state()                                                      # nothing bad is saved back
    rows = json.loads(path.read_text())["counters"]["A"]["tracks"]
    assert all(isinstance(r[0], list) and len(r[0]) == 2 for r in rows)
    again = poller(["101.6"], state_file=str(path))
    assert [v for v, _ in exposed(again, 1)] == [101.6]


def test_good_rows_beside_bad_ones_are_kept(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "counters": {"A": [GOOD_ROW, [[PV], 1.0], 7]},
                                "topology": {"plants": [1, 2]}, "last_calls": "anything"}))
    caplog.set_level(logging.WARNING)
    p = poller(["150"], state_file=str(path))
    assert p.guards["A"].last((PV, ())) == 100 * KWH       # the good row survived
    assert [v for v, _ in exposed(p, 1)] == [100]          # 50 kWh at once on 10 kW: held by it
    assert len(warnings_of(caplog)) == 1                   # unknown sections ignored, silently
    assert "dropped" in warnings_of(caplog)[0].getMessage() or warnings_of(caplog)[0].fields["dropped"] == 2


def test_a_fifo_at_state_file_does_not_hang_start_up(tmp_path, caplog):
    path = tmp_path / "state.json"
    os.mkfifo(path)
    caplog.set_level(logging.WARNING)
    done = threading.Event()
    result = {}

    def start():
        result["p"] = poller(["101"], state_file=str(path))
        done.set()

    threading.Thread(target=start, daemon=True).start()
    if not done.wait(10):
        # unblock the thread stuck in open() so the test process can end
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("start-up hung on a FIFO state file")
    assert [v for v, _ in exposed(result["p"], 1)] == [101]
    assert any("not a regular file" in str(r.__dict__.get("fields", {})) for r in warnings_of(caplog))


def test_a_symlink_to_dev_zero_is_read_within_the_cap(tmp_path, caplog, monkeypatch):
    path = tmp_path / "state.json"
    os.symlink("/dev/zero", path)
    caplog.set_level(logging.WARNING)
    p = poller(["101"], state_file=str(path))
    assert [v for v, _ in exposed(p, 1)] == [101]
    assert warnings_of(caplog)


def test_a_state_file_over_the_size_cap_is_not_read(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "counters": {"A": [GOOD_ROW]}, "pad": "x" * 4096}))
    caplog.set_level(logging.WARNING)
    assert state_mod.load_state(str(path), max_bytes=2048) == {}
    assert "allowed" in str(warnings_of(caplog)[0].__dict__.get("fields"))
    assert state_mod.load_state(str(path))["counters"]["A"]


def test_a_poll_with_the_clock_30_days_ahead_does_not_freeze_counters(tmp_path):
    """One poll stamped 30 days ahead made every later rise look instantaneous: the
    device's next catch-up (two hours offline, then their production at once) was
    held back, and every rise after it, until the clock reached that date."""
    path = tmp_path / "state.json"
    offline = ["0"] * 24
    p = poller(["100", "100.2", *offline, "112.2", "113.0", "113.8"], state_file=str(path))
    assert [v for v, _ in exposed(p, 1)] == [100]
    p.test_clock.now += 30 * 86400                     # NTP steps the clock ahead for one poll...
    assert [v for v, _ in exposed(p, 1)] == [100.2]
    p.test_clock.now -= 30 * 86400                     # ...and back; then two hours offline
    assert [v for v, _ in exposed(p, len(offline))] == [100.2] * len(offline)
    assert [v for v, _ in exposed(p, 3)] == [112.2, 113.0, 113.8]     # 12 kWh in 2 h on 10 kW: possible
    p.save_state()
    saved = json.loads(path.read_text())["counters"]["A"]["tracks"]
    assert all(t is None or t <= p.test_clock.now for row in saved for t in row[4:])


def test_times_saved_ahead_of_the_present_are_not_believed(tmp_path):
    path = tmp_path / "state.json"
    ahead = [[PV, []], 100 * KWH, 0, 0.0, 4_000_000_000.0, None]      # the year 2096
    path.write_text(json.dumps({"version": 1, "counters": {"A": [ahead]}}))
    p = poller(["100.5", "101.0"], state_file=str(path))
    assert p.guards["A"]._tracks[(PV, ())].since is None


def test_a_backward_clock_step_does_not_stretch_the_auth_pause():
    """A 5 s pause after a refused token became a day without polls when the wall clock
    stepped back a day: the pause is a duration, on the monotonic clock."""
    from atess_exporter.api.client import AuthError
    from atess_exporter.live.poller import Poller
    from atess_exporter.live.store import Cache
    from atess_exporter.catalog import load_catalog
    from support import Clock, FakeClient, make_config

    answers = iter([AuthError("refused"), {"epvTotal": "100"}])
    client = FakeClient({"A": lambda: next(answers)})
    config = make_config("http://127.0.0.1:9", devices=[{"sn": "A", "type": "hps_central", "model": "HPS10KTL"}],
                         poll={"auth_backoff_seconds": 5})
    wall, mono = Clock(), Clock(1000.0)
    p = Poller(config, client, Cache(), load_catalog(), clock=wall)
    p.auth.clock = mono
    assert not p.poll_device(p.devices["A"]).up
    wall.now -= 86400                  # NTP steps the wall clock back a day
    mono.now += 6                      # while 6 s pass
    assert p.poll_device(p.devices["A"]).up
    assert len(client.calls) == 2
