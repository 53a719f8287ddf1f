"""/metrics under 50 concurrent scrapers while polls replace the cache."""

import itertools
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from atess_exporter.app import Exporter
from atess_exporter.web.server import MetricsServer
from support import FakeClient, make_config, parse_exposition, value

SNS = [f"SN{i:02d}" for i in range(8)]
SCRAPERS, SCRAPES_EACH = 50, 6


def test_fifty_scrapers_never_see_a_device_torn_between_two_polls():
    counter = itertools.count(1)
    lock = threading.Lock()

    def reading():
        # Every field of one poll carries the same number k, so a scrape that
        # mixed two polls of one device would show two different ks.
        with lock:
            k = next(counter)
        return {"ppv": str(k), "vbat": k, "capacity": k % 100, "epvTotal": str(k)}

    config = make_config("http://127.0.0.1:9", devices=[{"sn": sn, "type": "hps_central"} for sn in SNS],
                         poll={"concurrency": 4})
    exporter = Exporter(config)
    exporter.poller.client = FakeClient({sn: reading for sn in SNS})
    exporter.poller.poll_all_once()
    server = MetricsServer(exporter.registry, "127.0.0.1:0")
    server.start()
    stop = threading.Event()

    def keep_polling():
        while not stop.is_set():
            exporter.poller.poll_all_once()

    def scraper(_):
        seen_k = {}
        for _ in range(SCRAPES_EACH):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=30) as resp:
                assert resp.status == 200
                parsed = parse_exposition(resp.read().decode())
            for sn in SNS:
                k = value(parsed, "atess_battery_voltage_volts", sn=sn)
                assert value(parsed, "atess_pv_power_watts", sn=sn) == k * 1000
                assert value(parsed, "atess_pv_energy_joules_total", sn=sn) == k * 3.6e6
                assert value(parsed, "atess_battery_soc_ratio", sn=sn) == pytest.approx((k % 100) / 100)
                assert k >= seen_k.get(sn, 0), "a later scrape went back to an older poll"
                seen_k[sn] = k
        return seen_k

    poller = threading.Thread(target=keep_polling)
    poller.start()
    try:
        with ThreadPoolExecutor(SCRAPERS) as pool:
            results = list(pool.map(scraper, range(SCRAPERS)))
    finally:
        stop.set()
        poller.join()
        server.stop()
    assert len(results) == SCRAPERS
    polls = len(exporter.poller.client.calls)
    assert polls > 2 * len(SNS), "the cache was not being replaced while scraped"
