"""The status pages (`/`, `/device?sn=`): what an operator reads in five seconds, escaped, without
secrets, paged, under a strict Content-Security-Policy. The same pages in a real browser:
tests/test_status_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from atess_exporter.account.discovery import Datalog, Topology
from atess_exporter.app import Exporter
from atess_exporter.catalog import load_catalog
from atess_exporter.cli import demo_config
from atess_exporter.config import PollConfig, parse_config
from atess_exporter.live.store import Cache, DeviceSnapshot, PollStats, Trouble
from atess_exporter.simulator import Simulator, demo_devices
from atess_exporter.web import landing
from atess_exporter.web.server import MetricsServer
from atess_exporter.web.status import PAGE_SIZE, StatusPages

SECRET = "tok-5ecret-value-123"
NOW = 1_750_000_000.0
OWN_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "nav", "p", "ul", "li", "a",
            "span", "strong", "b", "code", "div", "details", "summary", "dl", "dt", "dd"}


def fetch(pages: StatusPages | None, path: str = "/", telemetry_path: str = "/metrics") -> tuple[int, dict, str]:
    server = MetricsServer(CollectorRegistry(), "127.0.0.1:0", telemetry_path, landing_extra=pages)
    server.start()
    try:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()
    finally:
        server.stop()


def page(pages: StatusPages, path: str = "/") -> str:
    status, headers, body = fetch(pages, path)
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    return body


def pages_for(store: Cache, secrets=(), demo=False, **poll) -> StatusPages:
    return StatusPages(store, PollConfig(**poll), load_catalog(), secrets=secrets, demo=demo, clock=lambda: NOW)


def cards(html: str) -> list[tuple[str, str, str]]:
    """(state, SN, reason) of each device card, in page order."""
    return re.findall(r'<li class="dev s-(\w+)">.*?class="sn"[^>]*>(.*?)</a>.*?<div class="why">(.*?)</div>', html)


def snap(sn: str, **kw) -> DeviceSnapshot:
    base = dict(device_type="hps_central", model="HPS150", up=True, last_attempt=NOW - 20, last_success=NOW - 20,
                data_time=NOW - 65, info={"plant_id": "PL1", "plant_name": "Harbour Depot", "datalog_sn": "DL1"})
    return DeviceSnapshot(sn=sn, **{**base, **kw})


def fleet_store() -> Cache:
    store = Cache()
    store.account().put(snap("A-UP"))
    store.account().put(snap("B-DOWN", up=False, error="/api/v1/hps/data-last: HTTP 500"))
    store.account().put(snap("C-LOST", lost=True, data_time=NOW - 180))
    store.account().put(snap("D-STALE", data_time=NOW - 3 * 3600 - 60))
    store.account().put(snap("E-PENDING", up=False, last_attempt=None, last_success=None, data_time=None,
                   info={"plant_id": "PL2", "plant_name": "Hill Farm"}))
    store.account().put(snap("F-OFFLINE", info={"plant_id": "PL2", "plant_name": "Hill Farm", "datalog_sn": "DL9"}))
    store.account().topology = Topology(datalogs=(Datalog("DL1", "PL1", online=True), Datalog("DL9", "PL2", online=False)))
    return store


# -- at a glance ------------------------------------------------------------------------------

def test_problems_first_each_with_its_reason_in_words_and_counts_by_state():
    html = page(pages_for(fleet_store()))
    assert cards(html) == [
        ("down", "B-DOWN", "HTTP 500 from /api/v1/hps/data-last"),
        ("lost", "C-LOST", "the cloud marks it lost; reading 3 min old"),
        ("offline", "F-OFFLINE", "its datalogger DL9 is offline; reading 65 s old"),
        ("stale", "D-STALE", "reading 3 h old (stale after 15 min)"),
        ("pending", "E-PENDING", "not polled yet"),
        ("up", "A-UP", "reading 65 s old"),
    ]
    chips = dict((name, int(n)) for n, name in re.findall(r'class="chip[^"]*"[^>]*><b>(\d+)</b> (\w+)</a>', html))
    assert chips == {"devices": 6, "down": 1, "lost": 1, "offline": 1, "stale": 1, "pending": 1, "up": 1}
    assert "4 of 6 devices need attention:</strong> 1 down, 1 lost, 1 offline, 1 stale." in html


def test_filter_by_plant_and_state_with_plain_links():
    pages = pages_for(fleet_store())
    html = page(pages, "/?plant=PL2")
    assert [sn for _, sn, _ in cards(html)] == ["F-OFFLINE", "E-PENDING"]
    assert "Plant <strong>Hill Farm</strong> (2 of 6 devices)" in html and 'href="./">all plants</a>' in html
    assert [sn for _, sn, _ in cards(page(pages, "/?state=down"))] == ["B-DOWN"]
    assert [sn for _, sn, _ in cards(page(pages, "/?state=up&plant=PL2"))] == []
    overview = page(pages)
    assert '<a href="./?plant=PL1">Harbour Depot</a> <span class="bad">3 of 4 with problems</span>' in overview
    assert '<details class="plants" open>' in overview
    assert 'href="./?plant=PL2&amp;state=down"' in html, "the state chips keep the plant"


def test_ten_thousand_devices_are_paged_and_far_below_a_megabyte():
    store = Cache()
    for i in range(10_000):
        store.account().put(snap(f"SN{i:06d}", up=i % 101 != 0, error="/api/v1/pcs/data-last: HTTP 502",
                       info={"plant_id": f"PL{i % 2000}", "plant_name": f"Site {i % 2000}"}))
    pages = pages_for(store)
    status, _, first = fetch(pages)
    assert status == 200 and len(first.encode()) < 200_000, len(first.encode())
    assert len(cards(first)) == PAGE_SIZE and "page 1 of 100 (10000 devices)" in first
    assert all(state == "down" for state, _, _ in cards(first)[:100]), "the 100 failing devices fill page 1"
    last = page(pages, "/?page=100")
    assert "page 100 of 100" in last and cards(last)[-1][1] == max(f"SN{i:06d}" for i in range(10_000) if i % 101)
    for hostile in ("/?page=abc", "/?page=-5", "/?page=99999999999999999999", "/?state=<b>", "/?" + "a=1&" * 600):
        status, _, body = fetch(pages, hostile)
        assert status == 200 and "<b>&lt;" not in body and len(cards(body)) == PAGE_SIZE, hostile


# -- what stops everything ---------------------------------------------------------------------

def test_banner_for_refused_credentials_since_when_and_the_apis_own_words_scrubbed():
    store = fleet_store()
    store.account().auth_ok = False
    store.account().auth_refused = Trouble(NOW - 720, f"/api/v1/plant/list: API code 403: token {SECRET} <b>expired</b>; "
                                            "check atess.token or app_id/app_key")
    html = page(pages_for(store, secrets=[SECRET]))
    [banner] = re.findall(r'<div class="banner">(.*?)</div>', html)
    assert banner.startswith("<strong>The ATESS API refuses the credentials</strong> since 2025-06-15 14:54 UTC (12 min ago): "
                             '<span class="said">“API code 403: token &lt;redacted&gt; &lt;b&gt;expired&lt;/b&gt;”</span>')
    assert "(<code>/api/v1/plant/list</code>)" in banner and "/healthz</code> stays 200" in banner
    assert SECRET not in html and "<b>expired" not in html


def test_banners_for_failing_discovery_and_polling_behind_schedule():
    store = fleet_store()
    store.account().discovery_failed = Trouble(NOW - 7200, "/api/v1/plant/list: HTTP 502")
    store.account().poll_stats = PollStats(concurrency=64, latency_seconds=0.8, sweep_seconds=900.0, overdue=37, behind=12)
    html = page(pages_for(store, interval_seconds=300))
    banners = re.findall(r'<div class="banner">(.*?)</div>', html)
    assert banners[0].startswith("<strong>Discovery fails</strong> since 2025-06-15 13:06 UTC (2 h ago): "
                                  '<span class="said">“HTTP 502”</span> (<code>/api/v1/plant/list</code>)')
    assert "The 6 devices found before are still polled." in banners[0]
    assert banners[1] == ("<strong>Polling is behind schedule:</strong> 37 devices are more than one interval "
                          "(5 min) late; the last sweep of every device took 15 min; 12 devices do not fit into "
                          "one interval at 0.8 s a poll with 64 polls at once. Raise <code>poll.max_concurrency</code>, "
                          "or split the devices over replicas (<code>--shard</code>).")
    store.account().poll_stats = PollStats(concurrency=4, latency_seconds=0.2, sweep_seconds=290.0)   # keeping up again
    store.account().discovery_failed = None
    assert 'class="banner"' not in page(pages_for(store, interval_seconds=300))


def test_a_wrong_token_against_the_simulator_shows_the_banner_and_healthz_stays_200():
    """The whole path: the poller meets a refusal, the store holds it, the page says it; /healthz
    (the container's health check) stays 200, since a restart does not mend a token."""
    with Simulator(demo_devices(), token="the-right-token") as sim:
        config = parse_config({"atess": {"base_url": sim.base_url, "token": SECRET, "timeout_seconds": 5},
                               "state_file": ""})
        exporter = Exporter(config)
        exporter.poller.run_once()
        pages = StatusPages(exporter.cache, config.poll, exporter.catalog, secrets=[SECRET])
        status, _, html = fetch(pages)
        healthz = fetch(pages, "/healthz")
    assert status == 200 and "The ATESS API refuses the credentials</strong> since " in html
    assert "No device yet" in html and SECRET not in html
    assert healthz[0] == 200 and healthz[2] == "ok\n"
    assert exporter.cache.account().auth_ok is False


# -- one device --------------------------------------------------------------------------------

def test_device_page_identity_state_readings_and_what_was_not_exported():
    with Simulator(demo_devices(), token="demo-token") as sim:
        sim.set_fault("HPS150A2312000147", "fields", fields={"ppv": "99999", "mysteryGauge": "7.5"})
        exporter = Exporter(demo_config(sim.base_url))
        exporter.poller.run_once()
        pages = StatusPages(exporter.cache, exporter.config.poll, exporter.catalog)
        html = page(pages, "/device?sn=HPS150A2312000147")
    assert '<h2 class="sn">HPS150A2312000147</h2>' in html
    for fact in ("<dt>type</dt><dd>hps_central</dd>", "<dt>model</dt><dd>HPS150</dd>",
                 '<a href="./?plant=PL1001">Harbour Depot</a> (PL1001)', "<dt>datalogger</dt><dd>DL1001A</dd>",
                 "<dt>last error</dt><dd>none</dd>", '<span class="badge s-up">up</span>'):
        assert fact in html, fact
    assert re.search(r'Battery state of charge</span> <span class="v">\d+(\.\d+)? %</span>', html)
    assert re.search(r'Lifetime PV generation energy</span> <span class="v">[\d,.]+ kWh</span>', html)
    assert "implausible, not exported: ppv=99999 outside" in html
    assert re.search(r"uncatalogued, exported raw as <code>atess_vendor_\w*mystery\w*</code>", html, re.I)


def test_device_page_of_a_failing_device_and_of_an_unknown_sn():
    pages = pages_for(fleet_store(), secrets=[SECRET])
    html = page(pages, "/device?sn=B-DOWN")
    assert '<span class="badge s-down">down</span> HTTP 500 from /api/v1/hps/data-last' in html
    assert "<dt>last error</dt><dd>/api/v1/hps/data-last: HTTP 500</dd>" in html
    status, _, body = fetch(pages, "/device?sn=%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 404 and "No device <strong>&lt;script&gt;alert(1)&lt;/script&gt;</strong> here." in body
    assert fetch(pages, "/device")[0] == 404


# -- hostile text, strict CSP ------------------------------------------------------------------

def hostile_store() -> Cache:
    store = Cache()
    store.account().put(DeviceSnapshot(
        sn="<script>alert(1)</script>", device_type="hps_central", model='HPS"><img src=x onerror=alert(2)>',
        up=False, last_attempt=NOW - 30, last_success=NOW - 900, data_time=NOW - 1000,
        error=f"HTTP 500: <b>upstream</b> said Authorization: Basic {SECRET} & more",
        info={"plant_name": "<iframe src=//evil>", "plant_id": '"><svg onload=alert(3)>'}))
    return store


@pytest.mark.parametrize("path", ["/", "/device?sn=%3Cscript%3Ealert(1)%3C%2Fscript%3E"])
def test_hostile_sn_model_plant_and_error_are_escaped_and_secrets_scrubbed(path):
    html = page(pages_for(hostile_store(), secrets=[SECRET]), path)
    for raw in ("<script>", "<img ", "<iframe", "<b>upstream", "<svg"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "HPS&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert SECRET not in html and "&lt;redacted&gt;" in html
    assert set(re.findall(r"<(\w+)", html)) <= OWN_TAGS
    assert " style=" not in html and "<script" not in html


def test_a_strict_content_security_policy_allows_exactly_the_pages_stylesheet():
    status, headers, html = fetch(pages_for(fleet_store()))
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "script-src" not in csp
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp
    assert style == landing.STYLE and "url(" not in style and "@import" not in style, "no external asset"
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external link or asset"


def test_demo_says_so_and_lists_every_simulated_device():
    with Simulator(demo_devices(), token="demo-token") as sim:
        exporter = Exporter(demo_config(sim.base_url))
        exporter.poller.run_once()
        demo_page = page(StatusPages(exporter.cache, exporter.config.poll, exporter.catalog, demo=True))
        real_page = page(StatusPages(exporter.cache, exporter.config.poll, exporter.catalog))
    assert "Demo:" in demo_page and "simulated" in demo_page
    assert "Demo:" not in real_page and "simulated" not in real_page
    assert sorted(sn for _, sn, _ in cards(demo_page)) == sorted(d.sn for d in demo_devices())
    assert "Harbour Depot" in demo_page and "Hill Farm" in demo_page
    assert "demo-token" not in demo_page


def test_links_and_an_escaped_telemetry_path():
    status, _, html = fetch(pages_for(Cache()), telemetry_path='/m"x')
    assert '<a href="/m&quot;x">Metrics</a>' in html and '<a href="healthz">Health</a>' in html
    assert "No device yet" in html


@pytest.mark.parametrize("path", ["/", "/?x=<script>", "/device?sn=x"])
def test_page_without_status_still_serves_links(path):
    status, _, body = fetch(None, path)
    assert status == 200 and '<a href="/metrics">Metrics</a>' in body and "<script>" not in body


def test_polling_behind_schedule_shows_as_a_banner_beside_the_schedules_metrics():
    """Eight devices each answering in 0.4 s through one worker, due every second: the schedule
    measures that it does not keep up, the store holds it, and the banner says it in words."""
    with Simulator(demo_devices(), token="demo-token") as sim:
        for dev in demo_devices():
            sim.set_fault(dev.sn, "delay", seconds=0.4)
        config = parse_config({"atess": {"base_url": sim.base_url, "token": "demo-token", "timeout_seconds": 5},
                               "poll": {"interval_seconds": 1, "concurrency": 1, "max_concurrency": 1,
                                        "stale_after_seconds": 60},
                               "discovery": {"enabled": False}, "state_file": "",
                               "devices": [{"sn": d.sn, "type": d.family} for d in demo_devices()]}, min_interval=0.5)
        exporter = Exporter(config)
        pages = StatusPages(exporter.cache, config.poll, exporter.catalog)
        exporter.start()
        try:
            deadline = time.monotonic() + 60
            while not ((stats := exporter.cache.account().poll_stats) and (stats.overdue or stats.behind)):
                assert time.monotonic() < deadline, f"the schedule never measured falling behind: {stats}"
                time.sleep(0.1)
            html = page(pages)
        finally:
            exporter.stop()
    assert "<strong>Polling is behind schedule:</strong> " in html
    assert "Raise <code>poll.max_concurrency</code>" in html
