"""render.Renderer: the bytes of the library's encoders, in every format, from per-device pieces rendered once."""

import gzip
import threading
import time
import zlib

import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from atess_exporter.app import Exporter
from atess_exporter.live.store import DeviceSnapshot
from atess_exporter.exposition.collectors import DeviceStatusCollector, ReadingsCollector
from atess_exporter.readings.payload import payload_samples
from atess_exporter.exposition.render import Renderer
from atess_exporter.simulator import SimDevice, Simulator
from atess_exporter.simulator.physics import LATEST_BUILDERS
from support import TOKEN, Clock, make_config

NOW = 1767261600.0  # 2026-01-01 10:00:00 UTC


@pytest.fixture(autouse=True)
def steady_process_metrics(monkeypatch):
    """process_* change between two reads (CPU time, memory), so the byte-for-byte
    comparisons here run without them; they take generate_latest's path anyway."""
    from prometheus_client import ProcessCollector

    import atess_exporter.app as app
    monkeypatch.setattr(app, "ProcessCollector", lambda registry: ProcessCollector(proc="/nonexistent", registry=registry))


def device_collectors(exporter):
    return [c for c in exporter.registry._collector_to_names if isinstance(c, (DeviceStatusCollector, ReadingsCollector))]


def freeze(exporter, t: float = NOW) -> Clock:
    """One settable clock for both device collectors (set before the Renderer is made)."""
    clock = Clock(t)
    for c in device_collectors(exporter):
        c.clock = clock
    return clock


# What scrapers send. Prometheus 2.42 (captured), Prometheus 3's default, Prometheus 3 with
# scrape_protocols [PrometheusText1.0.0], the classic text format, and no Accept at all.
PROM2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
PROM3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
         "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1")
PROM3_TEXT = "text/plain;version=1.0.0;escaping=allow-utf-8"
ACCEPTS = [PROM2, PROM3, PROM3_TEXT, "text/plain;version=1.0.0", "text/plain;version=0.0.4", None,
           "application/openmetrics-text;version=1.0.0;escaping=dots"]


def assert_same(renderer, exporter, accept=None, accept_encoding=None):
    """The renderer's answer equals the library encoder choose_encoder picks, on the same registry."""
    resp = renderer.render(accept, accept_encoding)
    encoder, content_type = choose_encoder(accept)
    slow = encoder(exporter.registry)
    assert resp.headers["Content-Type"] == content_type
    fast = resp.body
    assert int(resp.headers["Content-Length"]) == len(fast)
    if resp.headers.get("Content-Encoding") == "gzip":
        single = zlib.decompressobj(31)          # one gzip member, not several concatenated
        fast = single.decompress(fast)
        assert single.eof and not single.unused_data
    if fast != slow:  # a readable diff rather than two megabytes
        import difflib
        diff = "".join(list(difflib.unified_diff(slow.decode().splitlines(True), fast.decode().splitlines(True),
                                                 "library", "render"))[:60])
        pytest.fail(f"render differs from the library ({accept!r}, {accept_encoding!r}):\n" + diff)
    return fast


def assert_all_formats(renderer, exporter):
    for accept in ACCEPTS:
        for encoding in (None, "gzip"):
            assert_same(renderer, exporter, accept, encoding)


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
            cache.account().put(prev.failed(NOW - 10, "connection refused"))
            continue
        age = {"A-stale-gauges": 7200.0, "B-offline": 1800.0, "D-failed-after-read": 120.0}.get(dev.sn, 30.0)
        payload = LATEST_BUILDERS[dev.family](dev, NOW - age)
        snap = DeviceSnapshot(sn=dev.sn, device_type=dev.family, model=dev.model, up=True,
                              last_attempt=NOW - age, last_success=NOW - age, data_time=NOW - age - 0.5,
                              samples=payload_samples(exporter.catalog.families[dev.family], payload),
                              info=prev.info, glitches=dev.sn.startswith("HPS1") * 2, unusable_fields=1)
        if dev.sn == "D-failed-after-read":
            snap = snap.failed(NOW - 5, "HTTP 500")
        cache.account().put(snap)
    return exporter


def test_demo_fleet_byte_equal_in_every_format(sim):
    exporter = Exporter(make_config(sim.base_url))
    renderer = Renderer(exporter)
    assert_all_formats(renderer, exporter)      # before any poll: info, up=0, no readings
    exporter.poller.poll_all_once()
    freeze(exporter, time.time())
    renderer = Renderer(exporter)
    assert_all_formats(renderer, exporter)
    body = assert_same(renderer, exporter, PROM2, "gzip").decode()
    assert body.endswith("# EOF\n") and body.count("# EOF") == 1
    assert "atess_pv_power_watts{" in body and "atess_api_requests_total{" in body
    assert "# UNIT atess_pv_energy_joules joules\n" in body and "atess_pv_energy_joules_total{" in body
    assert "# UNIT atess_device_data_timestamp_seconds seconds\n" in body
    assert "atess_device_info{" in body      # OpenMetrics: info samples end in _info
    text = assert_same(renderer, exporter, PROM3_TEXT).decode()
    assert "# UNIT" not in text and "# EOF" not in text


def test_mixed_fleet_with_stale_failed_and_escaped_labels():
    exporter = mixed_exporter()
    freeze(exporter)
    renderer = Renderer(exporter)
    assert_all_formats(renderer, exporter)
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
        clock.now = t
        assert_same(renderer, exporter)
        assert_same(renderer, exporter, PROM2, "gzip")
    rebuilds = renderer.rebuilds
    assert_same(renderer, exporter)
    assert renderer.rebuilds == rebuilds      # same time, same cache: the pieces are reused
    clock.now = NOW + 200                       # later, but no device crossed a threshold
    assert_same(renderer, exporter)
    assert renderer.rebuilds == rebuilds


def test_all_devices_stale_drops_the_gauge_families():
    exporter = mixed_exporter()
    clock = freeze(exporter, NOW + 10 ** 6)
    renderer = Renderer(exporter)
    body = assert_same(renderer, exporter)
    assert b"# HELP atess_pv_power_watts " not in body and b"# HELP atess_pv_energy_joules_total " in body
    clock.now = NOW
    assert b"# HELP atess_pv_power_watts " in assert_same(renderer, exporter)


def test_uncatalogued_help_grows_as_more_families_send_the_field():
    """The HELP of an uncatalogued field lists every family seen sending it: a
    header cached at first sight would go on naming only the first."""
    exporter = mixed_exporter()
    clock = freeze(exporter)
    renderer = Renderer(exporter)
    families = exporter.catalog.families
    for step, dev in enumerate(d for d in MIXED if d.family in ("hps_central", "pcs", "bcu")):
        snap = exporter.cache.get(dev.sn)
        extra = payload_samples(families[dev.family], {"zzNewSensor": 7 + step, "deviceSn": dev.sn})
        exporter.cache.account().put(DeviceSnapshot(**{**snap.__dict__, "samples": {**snap.samples, **extra}}))
        clock.now = NOW + step
        for accept in (None, PROM2):
            assert_same(renderer, exporter, accept, "gzip")
    body = assert_same(renderer, exporter).decode()
    assert "Uncatalogued vendor field hps_central.zzNewSensor, pcs.zzNewSensor, bcu.zzNewSensor" in body


def test_a_new_status_metric_reaches_every_format_without_touching_render():
    """How the lead adds a status metric: SKELETON, _families and device_families."""

    class WithExtra(DeviceStatusCollector):
        SKELETON = DeviceStatusCollector.SKELETON + ("implausible",)

        def _families(self):
            fams = super()._families()
            fams["implausible"] = Gauge_family("atess_device_implausible_fields", "test", labels=("sn", "model"))
            return fams

        def device_families(self, dev, now, window):
            fams = super().device_families(dev, now, window)
            fam = Gauge_family("atess_device_implausible_fields", "", labels=("sn", "model"))
            fam.add_metric((dev.sn, dev.model), 2.0 if dev.sn == "B-offline" else 0.0)
            fams["implausible"] = fam
            return fams

    from prometheus_client.core import GaugeMetricFamily as Gauge_family
    exporter = mixed_exporter()
    status = next(c for c in device_collectors(exporter) if isinstance(c, DeviceStatusCollector))
    exporter.registry.unregister(status)
    exporter.registry.register(WithExtra(status.cache, status.poll, status.clock))
    freeze(exporter)
    renderer = Renderer(exporter)
    assert_all_formats(renderer, exporter)
    assert b'atess_device_implausible_fields{model="PCS100",sn="B-offline"} 2.0' in assert_same(renderer, exporter, PROM2)


def test_only_the_changed_device_is_rendered_again(sim):
    exporter = Exporter(make_config(sim.base_url))
    exporter.poller.poll_all_once()
    freeze(exporter, time.time())
    renderer = Renderer(exporter)
    before = assert_same(renderer, exporter, PROM2, "gzip")
    renders = renderer.device_renders
    assert renders == 2 * len(exporter.poller.devices)      # two per-device collectors

    # Nothing changed: no device rendered, the same pieces.
    first = renderer.render(PROM2, "gzip").pieces
    assert renderer.render(PROM2, "gzip").pieces is first
    assert renderer.device_renders == renders

    device = exporter.poller.devices["PCS100A2309000058"]
    exporter.poller.poll_device(device)
    assert assert_same(renderer, exporter, PROM2, "gzip") != before
    assert renderer.device_renders == renders + 2

    sim.set_fault("HPS50A2208000315", "api_error")   # a failed poll is a new snapshot too
    exporter.poller.poll_device(exporter.poller.devices["HPS50A2208000315"])
    assert_same(renderer, exporter, PROM2, "gzip")
    assert renderer.device_renders == renders + 4


def test_devices_removed_and_added():
    exporter = mixed_exporter()
    freeze(exporter)
    renderer = Renderer(exporter)
    assert_all_formats(renderer, exporter)
    renders = renderer.device_renders
    exporter.cache.account().retain([d.sn for d in MIXED if d.family != "pcs"])
    assert_all_formats(renderer, exporter)
    assert renderer.device_renders == renders          # survivors are not re-rendered
    exporter.cache.account().put(DeviceSnapshot(sn="0-new", device_type="pbd", model="PBD250"))
    assert_same(renderer, exporter)
    assert renderer.device_renders == renders + 2      # status and readings of the new device, one format
    assert_all_formats(renderer, exporter)


def test_other_collectors_anywhere_in_the_registry():
    exporter = mixed_exporter()
    freeze(exporter)
    Gauge("zz_after_devices", "registered after the device collectors", registry=exporter.registry).set(3)
    exporter.registry.set_target_info({"instance_role": "shard-0"})
    renderer = Renderer(exporter)
    body = assert_same(renderer, exporter)
    assert body.startswith(b"# HELP target_info") and b"zz_after_devices 3.0" in body
    assert_all_formats(renderer, exporter)
    exporter.api_stats.observe("/api/v1/pcs/data-last", "success", 0.3)   # non-device metrics change each scrape
    assert_all_formats(renderer, exporter)


def test_concurrent_scrapes_share_one_rebuild_and_the_same_bytes():
    exporter = mixed_exporter()
    freeze(exporter)
    renderer = Renderer(exporter)
    start = threading.Barrier(8)
    results = [None] * 8

    def scrape(i):
        start.wait()
        results[i] = renderer.render(PROM2, "gzip")

    threads = [threading.Thread(target=scrape, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.pieces is results[0].pieces for r in results)     # one gzip, shared
    assert renderer.rebuilds == 2                                  # once per device collector
    assert gzip.decompress(results[0].body) == openmetrics.generate_latest(exporter.registry)


def test_gzip_q_values_are_honoured():
    exporter = mixed_exporter()
    freeze(exporter)
    renderer = Renderer(exporter)
    for encoding, zipped in (("gzip", True), ("gzip;q=0", False), ("gzip;q=0.0, deflate", False), ("*", True),
                             ("*;q=0", False), ("identity", False), ("br;q=1, gzip;q=0.1", True), ("GZIP", True),
                             ("*, gzip;q=0", False), ("gzip;q=abc", False)):
        resp = renderer.render(None, encoding)
        assert (resp.headers.get("Content-Encoding") == "gzip") is zipped, encoding
        assert_same(renderer, exporter, None, encoding)


def test_gzip_after_changes_still_decompresses_to_the_text():
    exporter = mixed_exporter()
    clock = freeze(exporter)
    renderer = Renderer(exporter)
    for step in range(4):
        snap = exporter.cache.get(MIXED[step].sn)
        exporter.cache.account().put(snap.failed(NOW + step, "timeout"))
        clock.now = NOW + 1000 * step          # devices cross stale_after and max_data_age too
        for accept in (None, PROM2):
            assert_same(renderer, exporter, accept, "gzip")


def test_small_body_is_not_gzipped():
    registry = CollectorRegistry()
    Gauge("tiny", "t", registry=registry).set(1)
    resp = Renderer(registry).render(None, "gzip")
    assert "Content-Encoding" not in resp.headers and resp.body == generate_latest(registry)


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
            clock.now = time.time()
            assert_same(renderer, exporter, PROM2, "gzip")
            assert renderer.device_renders - before == 2 * len(fleet)


def test_refresh_renders_polled_devices_before_the_scrape():
    exporter = mixed_exporter()
    clock = freeze(exporter)
    renderer = Renderer(exporter)
    assert_same(renderer, exporter, PROM2, "gzip")
    renderer.refresh()                                     # nothing new: nothing rendered
    renders = renderer.device_renders
    for dev in MIXED[:3]:
        exporter.cache.account().put(exporter.cache.get(dev.sn).failed(NOW + 1, "timeout"))
    clock.now = NOW + 2
    renderer.refresh()
    assert renderer.device_renders == renders + 6          # the three devices, both collectors
    assert_same(renderer, exporter, PROM2, "gzip")
    assert renderer.device_renders == renders + 6          # the scrape found them done


def test_a_warmed_format_is_rendered_before_its_first_scrape():
    exporter = mixed_exporter()
    freeze(exporter)
    renderer = Renderer(exporter)
    renderer.warm(PROM2)
    assert renderer.device_renders == 0
    renderer.refresh()
    renders = renderer.device_renders
    assert renders == 2 * len(MIXED)
    assert_same(renderer, exporter, PROM2, "gzip")
    assert renderer.device_renders == renders
