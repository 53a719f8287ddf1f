"""Everything that grows with what the cloud sends has a cap (issue 19): a counter of what
was dropped, and one warning naming the setting to raise."""

import logging
import random

from prometheus_client import CollectorRegistry

from atess_exporter.catalog import load_catalog
from atess_exporter.config import parse_config  # noqa: F401  (the settings below go through it)
from atess_exporter.exposition.collectors import ReadingsCollector
from atess_exporter.exposition.render import Renderer
from atess_exporter.live.store import Cache, DeviceSnapshot
from support import discovering, make_config, scrape, series, value


SHAPES_CAP = 1024       # render.MAX_SHAPES, as documented


def warnings_naming(caplog, setting):
    return [r for r in caplog.records if r.levelno == logging.WARNING and setting in r.getMessage()]


def test_a_device_list_of_100000_rows_adopts_at_most_max_devices(mocked, caplog):
    caplog.set_level(logging.WARNING)
    mocked.devices += [{"family": "hps_central", "deviceSn": f"FLOOD{i:06d}", "deviceModel": "HPS150",
                        "dataLogSn": "DL1"} for i in range(100_000)]
    exporter = discovering(mocked, discovery={"max_devices": 50})
    assert exporter.poller.refresh_topology()
    assert len(exporter.poller.devices) == 50
    parsed = scrape(exporter)
    assert value(parsed, "atess_exporter_input_dropped_total", limit="discovery.max_devices") == 100_004 - 50
    assert len(warnings_naming(caplog, "discovery.max_devices")) == 1
    assert exporter.poller.refresh_topology()                   # the next refresh: counted, not warned again
    assert len(warnings_naming(caplog, "discovery.max_devices")) == 1


def test_the_default_device_cap_holds_without_any_setting(mocked):
    mocked.devices += [{"family": "hps_central", "deviceSn": f"FLOOD{i:06d}", "deviceModel": "HPS150",
                        "dataLogSn": "DL1"} for i in range(100_000)]
    exporter = discovering(mocked, discovery={"page_size": 1000})
    assert exporter.poller.refresh_topology()
    assert len(exporter.poller.devices) == 20000


def test_a_settings_answer_of_100000_keys_keeps_max_keys(mocked, caplog):
    caplog.set_level(logging.WARNING)
    mocked.settings = {"HPS-A": {f"flood{i:06d}": i for i in range(100_000)}}
    exporter = discovering(mocked, settings={"enabled": True})      # the default cap: 500
    exporter.poller.refresh_topology()
    exporter.poller.poll_settings(exporter.poller.devices["HPS-A"])
    parsed = scrape(exporter)
    settings_series = [k for k in parsed if k[0].startswith("atess_setting_")]
    assert len(settings_series) == 500
    assert value(parsed, "atess_exporter_input_dropped_total", limit="settings.max_keys") == 100_000 - 500
    assert len(warnings_naming(caplog, "settings.max_keys")) == 1


def test_the_renderers_shapes_stay_bounded_when_field_sets_vary():
    catalog = load_catalog()
    gauges = sorted(n for n, m in catalog.metrics.items() if m.type == "gauge" and not m.labels)[:24]
    assert len(gauges) == 24
    cache = Cache()
    config = make_config("http://127.0.0.1:9", devices=[{"sn": "A", "type": "hps_central"}])
    registry = CollectorRegistry()
    collector = ReadingsCollector(cache, catalog, config.poll, clock=lambda: 1.0)
    registry.register(collector)
    renderer = Renderer(registry)
    rng = random.Random(7)
    for i in range(SHAPES_CAP + 500):
        names = rng.sample(gauges, 12)
        cache.account().put(DeviceSnapshot("A", "hps_central", "HPS150", up=True, last_attempt=1.0, last_success=1.0,
                                 samples={n: (((), float(i)),) for n in names}, changed_at=1.0))
        body = renderer.render().body
        assert f"{names[0]}{{model=\"HPS150\",sn=\"A\"}} {float(i)}".encode() in body
    state = next(iter(renderer._states.values())).devices[id(collector)]
    assert len(state._shapes) <= SHAPES_CAP


def test_a_text_setting_that_keeps_changing_stops_starting_new_series(mocked, caplog):
    caplog.set_level(logging.WARNING)
    exporter = discovering(mocked, settings={"enabled": True})
    exporter.poller.refresh_topology()
    values_seen = set()
    for i in range(8):                                  # eight hourly reads; the clock is sent as text
        mocked.settings = {"HPS-A": {"deviceClock": f"2026-12-05 {i:02d}:00:00", "workMode": "Load First"}}
        exporter.poller.poll_settings(exporter.poller.devices["HPS-A"])
        for labels in series(scrape(exporter), "atess_setting_info", setting="deviceClock"):
            values_seen.add(dict(labels)["value"])
    assert len(values_seen) <= 3                        # not one series per read
    assert not series(scrape(exporter), "atess_setting_info", setting="deviceClock")
    assert series(scrape(exporter), "atess_setting_info", setting="workMode")    # a steady text stays
    assert len([r for r in caplog.records if "keeps changing" in r.getMessage()]) == 1


def test_one_hostile_answer_cannot_spend_the_uncatalogued_name_budget(caplog):
    """2,000 uncatalogued names were the whole budget; a few answers of odd fields (256 names
    each) took them all, and a real new field later got no gauge, silently."""
    from atess_exporter.catalog import load_catalog
    from atess_exporter.live.poller import Poller
    from support import FakeClient

    caplog.set_level(logging.WARNING)
    answers = iter([{"ppv": "1", **{f"junk{k}x{i:04d}": str(i) for i in range(256)}} for k in range(12)]
                   + [{"ppv": "1", "newRealField": "42.5"}])
    config = make_config("http://127.0.0.1:9", devices=[{"sn": "A", "type": "hps_central"}])
    p = Poller(config, FakeClient({"A": lambda: next(answers)}), Cache(), load_catalog())
    for _ in range(12):                 # 3,072 odd fields: more than the whole budget
        p.poll_device(p.devices["A"])
    snap = p.poll_device(p.devices["A"])
    assert snap.samples.get("atess_vendor_new_real_field") == (((), 42.5),)
    assert len([r for r in caplog.records if "uncatalogued fields not exported" in r.getMessage()]) == 1
