"""The landing page at `/`: per-device status a person can read, escaped, without secrets."""

from __future__ import annotations

import re
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from atess_exporter.web import landing
from atess_exporter.app import Exporter
from atess_exporter.live.store import Cache, DeviceSnapshot
from atess_exporter.cli import demo_config
from atess_exporter.config import PollConfig
from atess_exporter.web.landing import DeviceTable
from atess_exporter.web.server import MetricsServer
from atess_exporter.simulator import Simulator, demo_devices

SECRET = "tok-5ecret-value-123"
NOW = 1_750_000_000.0


def get_page(status: DeviceTable, telemetry_path: str = "/metrics") -> str:
    server = MetricsServer(CollectorRegistry(), "127.0.0.1:0", telemetry_path, landing_extra=status)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "text/html; charset=utf-8"
            return resp.read().decode()
    finally:
        server.stop()


def hostile_cache() -> Cache:
    cache = Cache()
    cache.put(DeviceSnapshot(
        sn="<script>alert(1)</script>", device_type="hps_central", model='HPS"><img src=x onerror=alert(2)>',
        up=False, last_attempt=NOW - 30, last_success=NOW - 900, data_time=NOW - 1000,
        error=f"HTTP 500: <b>upstream</b> said Authorization: Basic {SECRET} & more",
        info={"plant_name": "<iframe src=//evil>"}))
    cache.put(DeviceSnapshot(sn="GOOD1", device_type="pcs", model="PCS100", up=True, last_attempt=NOW - 5,
                             last_success=NOW - 5, data_time=NOW - 65, info={"plant_id": "PL1"}))
    return cache


def test_hostile_sn_model_plant_and_error_are_escaped_and_secrets_scrubbed():
    page = get_page(DeviceTable(hostile_cache(), PollConfig(), secrets=[SECRET], clock=lambda: NOW))
    for raw in ("<script>", "<img ", "<iframe", "<b>upstream"):
        assert raw not in page, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "HPS&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;iframe src=//evil&gt;" in page
    assert SECRET not in page and "&lt;redacted&gt;" in page
    # the only tags are the page's own
    assert set(re.findall(r"<(\w+)", page)) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p",
                                                 "ul", "li", "a", "table", "tr", "th", "td", "span", "strong", "code"}


def test_each_device_shows_status_last_poll_data_age_and_error():
    page = get_page(DeviceTable(hostile_cache(), PollConfig(stale_after_seconds=900), clock=lambda: NOW))
    rows = {re.sub("<[^>]+>", "|", r).split("|")[2]: r for r in re.findall(r"<tr><td>.*?</tr>", page)}
    good = rows["GOOD1"]
    assert "PCS100" in good and "PL1" in good and ">up<" in good and ">online<" in good
    assert "(5 s ago)" in good and "<td>65 s</td>" in good and "<td></td></tr>" in good  # no error while up
    bad = rows["&lt;script&gt;alert(1)&lt;/script&gt;"]
    assert ">down<" in bad and ">offline<" in bad and "<td>16 min</td>" in bad and "HTTP 500" in bad
    assert "2 devices, 1 polled OK" in page


def test_links_and_an_escaped_telemetry_path():
    page = get_page(DeviceTable(Cache(), PollConfig()), telemetry_path='/m"x')
    assert '<a href="/m&quot;x">Metrics</a>' in page and '<a href="/healthz">Health</a>' in page
    assert "No device yet" in page


def test_demo_says_so_and_lists_every_simulated_device():
    with Simulator(demo_devices(), token="demo-token") as sim:
        exporter = Exporter(demo_config(sim.base_url))
        exporter.poller.run_once()
        demo_page = get_page(DeviceTable(exporter.cache, exporter.config.poll, demo=True))
        real_page = get_page(DeviceTable(exporter.cache, exporter.config.poll, demo=False))
    assert "Demo:" in demo_page and "simulated" in demo_page
    assert "Demo:" not in real_page and "simulated" not in real_page
    for dev in demo_devices():
        assert f"<td>{dev.sn}</td><td>{dev.model}</td>" in demo_page
    assert "Harbour Depot" in demo_page and "Hill Farm" in demo_page
    assert demo_page.count(">up<") == len(demo_devices())
    assert "demo-token" not in demo_page


def test_row_count_is_bounded():
    cache = Cache()
    for i in range(landing.MAX_ROWS + 3):
        cache.put(DeviceSnapshot(sn=f"SN{i:05d}", device_type="pcs", model="PCS100"))
    page = get_page(DeviceTable(cache, PollConfig()))
    assert page.count("<tr><td>") == landing.MAX_ROWS and "and 3 more devices" in page
    assert "not polled yet" in page and "never" in page


@pytest.mark.parametrize("path", ["/", "/?x=<script>"])
def test_page_without_status_still_serves_links(path):
    server = MetricsServer(CollectorRegistry(), "127.0.0.1:0")
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as resp:
            body = resp.read().decode()
    finally:
        server.stop()
    assert '<a href="/metrics">Metrics</a>' in body and "<script>" not in body
