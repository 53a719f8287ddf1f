"""The rate limit: one latest-data call per device per interval, whatever the scrapes."""

import threading
import time
import urllib.request

from atess_exporter.app import Exporter
from atess_exporter.live.schedule import spread_phases
from atess_exporter.web.server import MetricsServer
from atess_exporter.simulator import Simulator, demo_devices
from support import TOKEN, make_config, parse_exposition, value, wait_for

def calls_of(sim, sn):
    return sum(n for (path, call_sn), n in list(sim.calls.items()) if call_sn == sn)


def test_scrapes_never_call_the_api():
    with Simulator(demo_devices(), token=TOKEN, min_interval_seconds=300) as sim:
        exporter = Exporter(make_config(sim.base_url))
        exporter.poller.poll_all_once()
        server = MetricsServer(exporter.registry, "127.0.0.1:0")
        server.start()
        try:
            for _ in range(25):
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
                    parsed = parse_exposition(resp.read().decode())
                for device in demo_devices():
                    assert value(parsed, "atess_device_up", sn=device.sn) == 1
        finally:
            server.stop()
        assert dict(sim.calls) == {(exporter.config.endpoint(d.family, "latest"), d.sn): 1 for d in demo_devices()}
        assert sim.rate_limit_violations == 0


def test_scheduler_keeps_each_device_at_one_call_per_interval():
    interval = 0.5
    devices = demo_devices()
    # The simulator refuses a second call within the interval (minus a margin for
    # the HTTP round trip on a loaded machine), exactly as the real API's limit would.
    with Simulator(devices, token=TOKEN, min_interval_seconds=interval * 0.7) as sim:
        exporter = Exporter(make_config(sim.base_url, poll={"interval_seconds": interval, "concurrency": 2}))
        done = threading.Event()

        def enough_calls():
            while not done.is_set():
                if all(calls_of(sim, d.sn) >= 4 for d in devices):
                    done.set()
                done.wait(0.02)

        watcher = threading.Thread(target=enough_calls)
        exporter.start()
        watcher.start()
        assert done.wait(timeout=30), f"polls did not happen: {dict(sim.calls)}"
        exporter.stop()
        watcher.join()
        assert sim.rate_limit_violations == 0
        for device in devices:
            times = [t for t, path, sn in sim.call_log if sn == device.sn]
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert min(gaps) >= interval * 0.7, (device.sn, gaps)
            assert exporter.cache.get(device.sn).up


def test_phases_spread_devices_evenly_over_the_interval():
    sns = [f"SN{i:03d}" for i in range(10)]
    phases = spread_phases(sns, 300)
    assert sorted(phases.values()) == [30.0 * i for i in range(10)]


def test_next_due_keeps_the_phase_and_never_comes_early():
    with Simulator(demo_devices(), token=TOKEN) as sim:
        exporter = Exporter(make_config(sim.base_url))
        poller = exporter.poller
        poller.scheduler.phases = {"A": 100.0}
        poller.scheduler.origin = 0.0
        # Calls are interval + margin (2 s) apart: the device's grid has a period of 302 s.
        # After the start-up sweep: the first slot on the device's phase a whole period away.
        assert poller.next_due("A", due=0.0, started=0.0) == 402.0
        # On time: the next slot on the phase...
        assert poller.next_due("A", due=402.0, started=402.0) == 704.0
        # ...unless the call started late: never two calls within interval + margin.
        assert poller.next_due("A", due=100.0, started=100.5) == 402.5
        # A poll that started late (slow API) still waits a whole interval + margin.
        assert poller.next_due("A", due=100.0, started=399.0) == 701.0
        # Spaced from the end of the previous call: the server may have seen it as late as that.
        assert poller.next_due("A", due=402.0, started=402.0, ended=403.5) == 705.5


def test_once_polls_each_device_exactly_once(sim):
    exporter = Exporter(make_config(sim.base_url))
    start = time.monotonic()
    snaps = exporter.poller.poll_all_once()
    assert time.monotonic() - start < 30
    assert [s.up for s in snaps] == [True] * len(demo_devices())
    assert sum(sim.calls.values()) == len(demo_devices())


def test_a_device_removed_and_readded_is_still_polled_once_per_interval():
    interval = 0.4
    devices = demo_devices()[:3]
    with Simulator(devices, token=TOKEN, min_interval_seconds=interval * 0.9) as sim:
        exporter = Exporter(make_config(sim.base_url, devices=devices, poll={"interval_seconds": interval}))
        poller = exporter.poller
        everyone = dict(poller.devices)
        gone = devices[0].sn
        exporter.start()
        try:
            assert wait_for(lambda: all(calls_of(sim, d.sn) >= 2 for d in devices), "every device polled twice")
            poller.apply_devices({sn: d for sn, d in everyone.items() if sn != gone})
            assert exporter.cache.get(gone) is None, "a removed device's series go away"
            poller.apply_devices(everyone)    # back before its old schedule entry came due
            before = calls_of(sim, gone)
            assert wait_for(lambda: calls_of(sim, gone) >= before + 3, "the removed device polled again")
        finally:
            exporter.stop()
        assert sim.rate_limit_violations == 0


