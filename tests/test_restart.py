"""A restart resumes each device's schedule instead of calling everything at once (issue 21).

The fake refuses (HTTP 429) any latest-data call within the interval of the
device's previous call, as the API's "once every 5 minutes" does when enforced
to the millisecond. The interval is scaled down to seconds.
"""

import json

from atess_exporter.app import Exporter
from atess_exporter.live import lastcalls
from atess_exporter.simulator.fleet import FleetAccount
from support import make_config, parse_exposition, series, wait_for

INTERVAL = 5.0


def config(fake, state_file):
    devices = [{"sn": sn, "type": fake.family_of[sn]} for sn in fake.sns]
    return make_config(fake.url, devices=devices, state_file=str(state_file),
                       poll={"interval_seconds": INTERVAL, "concurrency": 16})


def test_a_restarted_exporter_is_never_refused_and_reports_no_device_down_while_it_waits(tmp_path):
    state = tmp_path / "state.json"
    with FleetAccount(plants=100, devices_per_datalog=10, enforce_interval=INTERVAL) as fake:   # 1,000 devices
        first = Exporter(config(fake, state))
        first.start()
        try:
            wait_for(lambda: fake.stats()["devices_called"] == 1000, "every device called", 3 * INTERVAL)
        finally:
            first.stop()   # saves the state file: counters and each device's last call
        assert len(json.loads(state.read_text())[lastcalls.SECTION]) == 1000

        second = Exporter(config(fake, state))
        second.start()
        try:
            parsed = parse_exposition(second.exposition().decode())
            assert not [v for v in series(parsed, "atess_device_up").values() if v == 0], \
                "a device waiting for its first poll is pending, not down"
            wait_for(lambda: sum(d.up for d in second.cache.snapshot()) == 1000, "every device up again", 3 * INTERVAL)
            second.poller.scheduler.publish()
            parsed = parse_exposition(second.exposition().decode())
        finally:
            second.stop()
    assert fake.refused == 0, "no call inside a device's interval across the restart"
    assert all(len(t) >= 2 for t in fake.device_calls.values()), "each device called by both exporters"
    assert sum(1 for v in series(parsed, "atess_device_up").values() if v == 1) == 1000


def test_saved_call_times_are_checked_against_the_present():
    now = 1_000_000.0
    raw = {"OK1": now - 100, "FUTURE": now + 86400, "OLD": now - 10_000, "bad sn\n": now, "NAN": float("nan"),
           "TRUE": True, "TEXT": "yesterday"}
    waits = lastcalls.load({lastcalls.SECTION: raw}, now, 302)
    assert waits == {"OK1": 202, "FUTURE": 302}, \
        "a time in the future waits one whole interval; an old one needs no wait; junk is ignored"
    assert lastcalls.load({lastcalls.SECTION: ["not", "a", "mapping"]}, now, 302) == {}
    assert lastcalls.load({}, now, 302) == {}
