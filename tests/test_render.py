"""render.Renderer: the bytes of generate_latest, from per-device chunks rendered once."""

import gzip
import threading
import time
import zlib

import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from atess_exporter.app import Exporter
from atess_exporter.cache import DeviceSnapshot
from atess_exporter.collector import DeviceStatusCollector, ReadingsCollector
from atess_exporter.readings import payload_samples
from atess_exporter.render import Renderer
from atess_exporter.simulator import SimDevice, Simulator
from atess_exporter.simulator.physics import LATEST_BUILDERS
from conftest import TOKEN, make_config

NOW = 1767261600.0  # 2026-01-01 10:00:00 UTC


@pytest.fixture(autouse=True)
def steady_process_metrics(monkeypatch):
    """process_* change between two reads (CPU time, memory), so the byte-for-byte
    comparisons here run without them; they take generate_latest's path anyway."""
    from prometheus_client import ProcessCollector

    import atess_exporter.app as app
    monkeypatch.setattr(app, "ProcessCollector", lambda registry: ProcessCollector(proc="/nonexistent", registry=registry))


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def device_collectors(exporter):
    return [c for c in exporter.registry._collector_to_names if isinstance(c, (DeviceStatusCollector, ReadingsCollector))]


def freeze(exporter, t: float = NOW) -> Clock:
    """One settable clock for both device collectors (set before the Renderer is made)."""
    clock = Clock(t)
    for c in device_collectors(exporter):
        c.clock = clock
    return clock


def assert_same(renderer, exporter):
    fast = renderer.render_text()
    slow = generate_latest(exporter.registry)
    if fast != slow:  # a readable diff rather than two megabytes
        import difflib
        diff = "".join(list(difflib.unified_diff(slow.decode().splitlines(True), fast.decode().splitlines(True),
                                                 "generate_latest", "render"))[:60])
        pytest.fail("render differs from generate_latest:\n" + diff)
    return fast


MIXED = [
    SimDevice(sn="HPS150A2312000147", model="HPS150"),
    SimDevice(sn="HPS100HV2403000082", model="HPS100HV"),
    SimDevice(sn="HPS30TL2405000021", family="hps_string", model="HPS30TL"),
    SimDevice(sn="PCS100A2309000058", family="pcs", model="PCS100"),
    SimDevice(sn="PBD250A2310000112", family="pbd", model="PBD250"),
    SimDevice(sn="BCU2311000204", family="bcu", model="BCU"),
    SimDevice(sn="MBMS2311000031", family="mbms", model="MBMS"),
    SimDevice(sn="A-stale-gauges", model="HPS50"),      # past max_data_age: gauges withdrawn
    SimDevice(sn="B-offline", family="pcs", model="PCS100"),  # past stale_after only
    SimDevice(sn="C-never-read", model="HPS50"),        # configured, never answered
    SimDevice(sn="D-failed-after-read", family="bcu", model="BCU"),
]


def mixed_exporter(base_url: str = "http://127.0.0.1:9"):
    """An exporter whose cache holds MIXED with hand-made ages, info labels that need escaping."""
    devices = [{"sn": d.sn, "type": d.family, "model": d.model} for d in MIXED]
    devices[0]["plant_name"] = 'Plant "North"\\roof\nblock ü'
    devices[0]["plant_id"] = "4711"
    exporter = Exporter(make_config(base_url, devices=devices, poll={"stale_after_seconds": 900, "max_data_age_seconds": 3600}))
    cache = exporter.cache
    for dev in MIXED:
        prev = cache.get(dev.sn)
        if dev.sn == "C-never-read":
            cache.put(prev.failed(NOW - 10, "connection refused"))
            continue
        age = {"A-stale-gauges": 7200.0, "B-offline": 1800.0, "D-failed-after-read": 120.0}.get(dev.sn, 30.0)
        payload = LATEST_BUILDERS[dev.family](dev, NOW - age)
        snap = DeviceSnapshot(sn=dev.sn, device_type=dev.family, model=dev.model, up=True,
                              last_attempt=NOW - age, last_success=NOW - age, data_time=NOW - age - 0.5,
                              samples=payload_samples(exporter.catalog.families[dev.family], payload),
                              info=prev.info, glitches=dev.sn.startswith("HPS1") * 2, unusable_fields=1)
        if dev.sn == "D-failed-after-read":
            snap = snap.failed(NOW - 5, "HTTP 500")
        cache.put(snap)
    return exporter


def test_demo_fleet_byte_equal_to_generate_latest(sim):
    exporter = Exporter(make_config(sim.base_url))
    renderer = Renderer(exporter)
    assert_same(renderer, exporter)           # before any poll: info, up=0, no readings
    exporter.poller.poll_all_once()
    freeze(exporter, time.time())
    renderer = Renderer(exporter)
    body = assert_same(renderer, exporter)
    assert b"atess_pv_power_watts{" in body and b"atess_api_requests_total{" in body


def test_mixed_fleet_with_stale_failed_and_escaped_labels():
    exporter = mixed_exporter()
    freeze(exporter)
    renderer = Renderer(exporter)
    body = assert_same(renderer, exporter).decode()
    # The cases are really there: gauges of A withdrawn, its counters kept; B offline; label escaping.
    assert 'atess_pv_power_watts{model="HPS50",sn="A-stale-gauges"}' not in body
    assert 'atess_pv_energy_joules_total{model="HPS50",sn="A-stale-gauges"}' in body
    assert 'atess_device_online{model="PCS100",sn="B-offline"} 0.0' in body
    assert 'plant_name="Plant \\"North\\"\\\\roof\\nblock ü"' in body
    assert 'atess_device_up{model="BCU",sn="D-failed-after-read"} 0.0' in body


def test_clock_moving_across_thresholds_both_ways():
    exporter = mixed_exporter()
    clock = freeze(exporter)
    renderer = Renderer(exporter)
    for t in (NOW, NOW + 1, NOW + 869.5, NOW + 870, NOW + 3569.5, NOW + 870.5, NOW + 871, NOW + 3000, NOW + 3570.5, NOW + 3571,
              NOW + 10 ** 6, NOW, NOW - 10 ** 6, NOW + 100):
        clock.t = t
        assert_same(renderer, exporter)
    rebuilds = renderer.rebuilds
    assert_same(renderer, exporter)
    assert renderer.rebuilds == rebuilds      # same time, same cache: the body is reused
    clock.t = NOW + 200                       # later, but no device crossed a threshold
    assert_same(renderer, exporter)
    assert renderer.rebuilds == rebuilds


def test_all_devices_stale_drops_the_gauge_families():
    exporter = mixed_exporter()
    clock = freeze(exporter, NOW + 10 ** 6)
    renderer = Renderer(exporter)
    body = assert_same(renderer, exporter)
    assert b"# HELP atess_pv_power_watts " not in body and b"# HELP atess_pv_energy_joules_total " in body
    clock.t = NOW
    assert b"# HELP atess_pv_power_watts " in assert_same(renderer, exporter)


def test_only_the_changed_device_is_rendered_again(sim):
    exporter = Exporter(make_config(sim.base_url))
    exporter.poller.poll_all_once()
    freeze(exporter, time.time())
    renderer = Renderer(exporter)
    before = assert_same(renderer, exporter)
    renders, rebuilds = renderer.device_renders, renderer.rebuilds
    assert renders == len(exporter.poller.devices)

    # Nothing changed: no device rendered, nothing rebuilt, the same object.
    assert renderer.render_text() is before
    assert (renderer.device_renders, renderer.rebuilds) == (renders, rebuilds)

    device = exporter.poller.devices["PCS100A2309000058"]
    exporter.poller.poll_device(device)
    assert_same(renderer, exporter)
    assert renderer.device_renders == renders + 1
    assert renderer.rebuilds == rebuilds + 1

    sim.set_fault("HPS50A2208000315", "api_error")   # a failed poll is a new snapshot too
    exporter.poller.poll_device(exporter.poller.devices["HPS50A2208000315"])
    assert_same(renderer, exporter)
    assert renderer.device_renders == renders + 2


def test_devices_removed_and_added():
    exporter = mixed_exporter()
    freeze(exporter)
    renderer = Renderer(exporter)
    assert_same(renderer, exporter)
    renders = renderer.device_renders
    exporter.cache.retain([d.sn for d in MIXED if d.family != "pcs"])
    assert_same(renderer, exporter)
    assert renderer.device_renders == renders          # survivors are not re-rendered
    exporter.cache.put(DeviceSnapshot(sn="0-new", device_type="pbd", model="PBD250"))
    assert_same(renderer, exporter)
    assert renderer.device_renders == renders + 1


def test_other_collectors_anywhere_in_the_registry():
    exporter = mixed_exporter()
    freeze(exporter)
    Gauge("zz_after_devices", "registered after the device collectors", registry=exporter.registry).set(3)
    exporter.registry.set_target_info({"instance_role": "shard-0"})
    renderer = Renderer(exporter)
    body = assert_same(renderer, exporter)
    assert body.startswith(b"# HELP target_info") and b"zz_after_devices 3.0" in body
    exporter.api_stats.observe("/api/v1/pcs/data-last", "success", 0.3)   # non-device metrics change each scrape
    assert_same(renderer, exporter)


def test_concurrent_scrapes_share_one_rebuild_and_the_same_bytes():
    exporter = mixed_exporter()
    freeze(exporter)
    renderer = Renderer(exporter)
    start = threading.Barrier(8)
    results = [None] * 8

    def scrape(i):
        start.wait()
        results[i] = renderer.render(None, "gzip")

    threads = [threading.Thread(target=scrape, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bodies = [body for body, _ in results]
    assert all(b is bodies[0] for b in bodies)         # one gzip, shared
    assert renderer.rebuilds == 1
    assert gzip.decompress(bodies[0]) == generate_latest(exporter.registry)


def test_render_headers_gzip_and_openmetrics_fallback():
    exporter = mixed_exporter()
    freeze(exporter)
    renderer = Renderer(exporter)
    prom_default = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
    plain, headers = renderer.render("text/plain;version=0.0.4", None)
    assert headers == {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
    assert plain == generate_latest(exporter.registry)
    zipped, headers = renderer.render("text/plain;version=0.0.4", "gzip, deflate")
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == plain
    single = zlib.decompressobj(31)          # one gzip member, not several concatenated
    assert single.decompress(zipped) == plain and single.eof and not single.unused_data
    om, headers = renderer.render(prom_default, None)
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert om == openmetrics.generate_latest(exporter.registry, version="1.0.0")


def test_gzip_after_changes_still_decompresses_to_the_text():
    exporter = mixed_exporter()
    clock = freeze(exporter)
    renderer = Renderer(exporter)
    for step in range(4):
        snap = exporter.cache.get(MIXED[step].sn)
        exporter.cache.put(snap.failed(NOW + step, "timeout"))
        clock.t = NOW + 1000 * step          # devices cross stale_after and max_data_age too
        zipped, headers = renderer.render(None, "gzip")
        assert headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(zipped) == generate_latest(exporter.registry)


def test_small_body_is_not_gzipped():
    registry = CollectorRegistry()
    Gauge("tiny", "t", registry=registry).set(1)
    body, headers = Renderer(registry).render(None, "gzip")
    assert "Content-Encoding" not in headers and body == generate_latest(registry)


def test_live_simulator_polls_keep_equality():
    """Several poll rounds through HTTP, a scrape between each: always equal, renders == polls."""
    fleet = MIXED[:7]
    with Simulator(fleet, token=TOKEN) as sim:
        exporter = Exporter(make_config(sim.base_url, devices=fleet))
        clock = freeze(exporter, time.time())
        renderer = Renderer(exporter)
        for _ in range(3):
            before = renderer.device_renders
            exporter.poller.poll_all_once()
            clock.t = time.time()
            assert_same(renderer, exporter)
            assert renderer.device_renders - before == len(fleet)
