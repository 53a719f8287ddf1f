"""The status pages in a real browser (Debian's chromium through chromedriver, driven by selenium),
against the exporter as a user runs it (its own process, a simulated account): screenshots at
1280 px and 390 px, no horizontal overflow on a phone, problems before healthy devices, the banner
for a refused token, a device page. Skipped without chromium and chromium-driver, unless
ATESS_REQUIRE_PROMTOOL=1 (CI), where a missing browser fails.

Screenshots go to $ATESS_SCREENSHOTS when set (.ci/run prints their paths), else to the test's tmp dir.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from atess_exporter.simulator import Simulator, demo_devices
from support import require_tool, stop_process

pytestmark = pytest.mark.chromium
ROOT = Path(__file__).resolve().parent.parent
FAILING = "HPS50A2208000315"          # a demo device made to answer HTTP 500
HEALTHY = "HPS150A2312000147"
WIDTHS = {"desktop": 1280, "phone": 390}


@pytest.fixture(scope="module")
def chrome():
    chromium = require_tool("chromium")
    driver_path = require_tool("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path):
    where = Path(os.environ.get("ATESS_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def view(driver, url: str, width: int) -> None:
    """Load `url` as a device `width` CSS pixels wide (a phone's viewport at 390)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": 900 if width > 600 else 844, "deviceScaleFactor": 1, "mobile": width < 600})
    driver.get(url)


def screenshot(driver, path: Path) -> Path:
    """The whole page, not just the first screen."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return window.innerWidth")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(height, 6000), "deviceScaleFactor": 1, "mobile": width < 600})
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def overflow(driver) -> tuple[int, int]:
    return driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")


def start_exporter(tmp_path: Path, config: dict) -> tuple[subprocess.Popen, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "atess_exporter", "--config.file", str(path),
                             "--web.listen-address", "127.0.0.1:0"], cwd=tmp_path, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        match = re.search(r'msg="serving metrics" url=(http://\S+)/metrics', line)
        if match:
            return proc, match.group(1) + "/"
        assert time.monotonic() < deadline, "no 'serving metrics' line within 60 s"
    pytest.fail(f"the exporter exited (rc {proc.wait()}) before serving")


def page_when(url: str, predicate, timeout: float = 60) -> str:
    """The page's HTML once `predicate(html)` holds (the first polls have landed), bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        if predicate(text):
            return text
        assert time.monotonic() < deadline, f"the page never showed what was awaited:\n{text[:3000]}"
        time.sleep(0.2)


def base_config(sim: Simulator, token: str) -> dict:
    return {"atess": {"base_url": sim.base_url, "token": token, "timeout_seconds": 5, "timezone": "Etc/GMT-1"},
            "poll": {"retries": 0}, "state_file": ""}


def test_fleet_page_problems_first_fits_a_phone_and_has_a_device_page(chrome, tmp_path, shots):
    with Simulator(demo_devices(), token="right-token") as sim:
        sim.set_fault(FAILING, "http_500")
        proc, url = start_exporter(tmp_path, base_config(sim, "right-token"))
        try:
            page_when(url, lambda html: "<b>0</b> pending" in html and "<b>8</b> devices" in html)
            for name, width in WIDTHS.items():
                view(chrome, url, width)
                cards = chrome.find_elements("css selector", "li.dev")
                sns = [c.find_element("css selector", ".sn").text for c in cards]
                assert len(sns) == 8, sns
                assert sns[0] == FAILING, f"the failing device must come first: {sns}"
                first = cards[0]
                assert "down" in first.text and "HTTP 500 from /api/v1/hps/data-last" in first.text
                assert "up" in cards[-1].find_element("css selector", ".badge").text
                counts = chrome.find_element("css selector", "nav.chips").text
                assert "1 down" in counts and "2 offline" in counts and "5 up" in counts and "0 lost" in counts, counts
                scroll, inner = overflow(chrome)
                assert inner == width and scroll <= inner, f"{name}: page {scroll} px wide in a {inner} px window"
                screenshot(chrome, shots / f"fleet-{name}.png")
            # the device pages: identity, state and why, the last error; readings with names and units
            for name, width in WIDTHS.items():
                view(chrome, url, width)
                chrome.find_element("link text", FAILING).click()
                body = chrome.find_element("tag name", "body").text
                assert FAILING in body and "HPS50" in body and "Hill Farm (PL1002)" in body
                assert "down HTTP 500 from /api/v1/hps/data-last" in body, body
                assert overflow(chrome)[0] <= width
                view(chrome, url, width)
                chrome.find_element("link text", HEALTHY).click()
                body = chrome.find_element("tag name", "body").text
                assert HEALTHY in body and "Latest readings" in body and "PV input power" in body, body[:3000]
                assert re.search(r"\d kW\b", body) and re.search(r"\d kWh\b", body), body[:3000]
                scroll, inner = overflow(chrome)
                assert scroll <= inner, f"device page, {name}: {scroll} px wide in {inner} px"
                screenshot(chrome, shots / f"device-{name}.png")
        finally:
            stop_process(proc)
            proc.stderr.close()


def test_a_refused_token_is_a_banner_with_the_apis_own_words(chrome, tmp_path, shots):
    with Simulator(demo_devices(), token="right-token") as sim:
        config = base_config(sim, "wrong-token-1234")
        config["devices"] = [{"sn": d.sn, "type": d.family, "model": d.model} for d in demo_devices()[:4]]
        proc, url = start_exporter(tmp_path, config)
        try:
            page_when(url, lambda html: 'class="banner"' in html)
            for name, width in WIDTHS.items():
                view(chrome, url, width)
                banner = chrome.find_element("css selector", ".banner").text
                assert banner.startswith("The ATESS API refuses the credentials since "), banner
                assert re.search(r"“API code 403: no access” \(/api/v1/\S+\)\. Every poll is paused", banner, re.I), banner
                assert "/healthz stays 200" in banner, banner
                assert "wrong-token-1234" not in chrome.page_source
                scroll, inner = overflow(chrome)
                assert scroll <= inner, f"{name}: {scroll} px wide in {inner} px"
                screenshot(chrome, shots / f"refused-token-{name}.png")
            with urllib.request.urlopen(url + "healthz", timeout=10) as resp:
                assert resp.status == 200, "a token is not mended by a restart: the health check stays 200"
        finally:
            stop_process(proc)
            proc.stderr.close()


def test_ten_thousand_devices_are_paged_under_a_megabyte_and_still_fit_a_phone(chrome, tmp_path, shots):
    """The page a browser gets for 10,000 devices in 2,000 plants: paged, a small fraction of a megabyte,
    no horizontal overflow at 390 px, every page reachable by its links."""
    from atess_exporter.catalog import load_catalog
    from atess_exporter.config import PollConfig
    from atess_exporter.live.store import Cache, DeviceSnapshot
    from atess_exporter.simulator import fleet_of
    from atess_exporter.web.server import MetricsServer
    from atess_exporter.web.status import PAGE_SIZE, StatusPages
    from prometheus_client import CollectorRegistry

    now = time.time()
    store = Cache()
    for i, d in enumerate(fleet_of(10_000, 2_000)):
        store.account().put(DeviceSnapshot(sn=d.sn, device_type=d.family, model=d.model, up=i % 97 != 0, last_attempt=now - 30,
                                 last_success=now - 30, data_time=now - 60 - (i % 5) * 900,
                                 error="/api/v1/hps/data-last: HTTP 502" if i % 97 == 0 else None,
                                 info={"plant_id": d.plant_id, "plant_name": f"Site {d.plant_id[2:]}"}))
    server = MetricsServer(CollectorRegistry(), "127.0.0.1:0",
                           landing_extra=StatusPages(store, PollConfig(), load_catalog()))
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/"
        with urllib.request.urlopen(url, timeout=30) as resp:
            size = len(resp.read())
        assert size < 200_000, f"{size} bytes for the first page of 10,000 devices"
        view(chrome, url, WIDTHS["phone"])
        assert len(chrome.find_elements("css selector", "li.dev")) == PAGE_SIZE
        assert "page 1 of 100" in chrome.find_element("css selector", "nav.pager").text
        assert chrome.find_elements("css selector", "li.dev .badge")[0].text == "down"
        scroll, inner = overflow(chrome)
        assert scroll <= inner
        screenshot(chrome, shots / "fleet-10000-phone.png")
        chrome.find_element("partial link text", "next").click()
        assert "page 2 of 100" in chrome.find_element("css selector", "nav.pager").text
    finally:
        server.stop()
