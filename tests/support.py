"""What the tests share, one copy each: a config, a fake client, reading an exposition,
a hand-moved clock, a one-device poller, waiting, ports, external tools, certificates,
the fake account, and a backfill run with the reading of the file it writes.

Test files import from here (`from support import ...`), never from each other;
conftest.py holds only fixtures and the tool markers' check.
"""

from __future__ import annotations

import calendar
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import urllib.parse
from pathlib import Path
from contextlib import contextmanager
from datetime import date
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit
from typing import Any, Callable, Iterator

import pytest
import responses
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from atess_exporter import backfill
from atess_exporter.app import Exporter
from atess_exporter.catalog import load_catalog
from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS
from atess_exporter.config import parse_config
from atess_exporter.live.poller import Poller
from atess_exporter.live.store import Cache
from atess_exporter.simulator import SimDevice, Simulator, demo_devices

TOKEN = "test-token-s3cr3t-value"

# Markers (registered in pyproject.toml) of tests that need a program from outside
# Python. For these, conftest.py skips the test without the program (fails it in CI);
# `podman` and `chromium` tests gate themselves (ATESS_REQUIRE_PODMAN, ...).
TOOL_MARKERS = {"promtool": "promtool", "prometheus": "prometheus", "amtool": "amtool"}
TOOL_PACKAGES = {"chromium": "chromium", "chromedriver": "chromium-driver"}   # Debian's, where not prometheus*


# -- config, client, exposition ---------------------------------------------------

def make_config(base_url: str, devices=None, **sections):
    """A validated Config pointing at base_url; sections override defaults."""
    devices = devices if devices is not None else demo_devices()
    data = {
        "atess": {"base_url": base_url, "token": TOKEN, "timeout_seconds": 5, **sections.pop("atess", {})},
        "poll": {"interval_seconds": 300, "concurrency": 4, **sections.pop("poll", {})},
        "devices": [{"sn": d.sn, "type": d.family, "model": d.model} if isinstance(d, SimDevice) else d for d in devices],
        "state_file": sections.pop("state_file", ""),
        **sections,
    }
    return parse_config(data, min_interval=0.01)


class FakeClient:
    """Stands in for AtessClient: `replies[sn]` is a payload, an exception, or a callable."""

    def __init__(self, replies):
        self.replies = replies
        self.calls = []

    def latest(self, path, sn):
        self.calls.append((path, sn))
        reply = self.replies[sn]
        reply = reply() if callable(reply) else reply
        if isinstance(reply, Exception):
            raise reply
        return dict(reply)


def parse_exposition(text: str) -> dict:
    """{(sample name, frozenset of label items): value} from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def series(parsed: dict, name: str, **labels) -> dict:
    """The samples of `name` whose labels include `labels`: {frozenset(labels): value}."""
    want = set(labels.items())
    return {lbls: v for (n, lbls), v in parsed.items() if n == name and want <= lbls}


def value(parsed: dict, name: str, **labels):
    found = series(parsed, name, **labels)
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return next(iter(found.values()), None)


def scrape(exporter) -> dict:
    """The exporter's /metrics body, parsed."""
    return parse_exposition(exporter.exposition().decode())


# -- time -----------------------------------------------------------------------------

class Clock:
    """A clock the test moves by hand: call it (or .time()) for now; sleep() only moves it on."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now
        self.slept = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    time = __call__

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(seconds, 0.0)
            self.slept += max(seconds, 0.0)


def wait_for(check: Callable[[], Any], what: str, seconds: float = 60.0, procs=()) -> Any:
    """check()'s first truthy result, asked every 50 ms; the test fails after `seconds`
    (or when one of `procs` exits). An OSError or a not-yet-parsable answer counts as "not yet"."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{what}: process {p.args[0]} exited with {p.returncode}")
        try:
            result = check()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.05)
    pytest.fail(f"not within {seconds:g}s: {what} (last error: {last!r})")


# -- one device's poller ---------------------------------------------------------------

PV_TOTAL = "atess_pv_energy_joules_total"
KWH = 3.6e6


def one_device_poller(readings, model: str | None = None, confirm: int = 3, state_file: str = "") -> Poller:
    """A poller of one central HPS `A` whose polls return `readings` in turn (a payload,
    or an epvTotal value); `poller.test_clock` is its clock."""
    feed = iter(readings)
    clock = Clock()
    device = {"sn": "A", "type": "hps_central", **({"model": model} if model else {})}
    config = make_config("http://127.0.0.1:9", devices=[device], poll={"counter_reset_confirm_polls": confirm},
                         state_file=state_file)

    def reply():
        payload = next(feed)
        return payload if isinstance(payload, dict) else {"epvTotal": payload}

    poller = Poller(config, FakeClient({"A": reply}), Cache(), load_catalog(), clock=clock)
    poller.test_clock = clock
    return poller


def exposed(poller, n: int, name: str = PV_TOTAL, unit: float = KWH) -> list[tuple[float | None, int]]:
    """What each of n polls, 300 s apart, exposes for `name` (None: no series) in `unit`, and the glitch count."""
    out = []
    for _ in range(n):
        snap = poller.poll_device(poller.devices["A"])
        rows = snap.samples.get(name, ())
        out.append((rows[0][1] / unit if rows else None, snap.glitches))
        poller.test_clock.now += 300
    return out


# -- loopback ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str = "/metrics", headers: dict | None = None, timeout: float = 10,
             context=None) -> tuple[int, Any, bytes]:
    """(status, headers, body) of one GET to 127.0.0.1:port (HTTPS with an ssl `context`)."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context) if context
            else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# -- programs from outside Python --------------------------------------------------------

def require_tool(name: str) -> str:
    """The program's path; skip without it on a laptop, fail in CI (ATESS_REQUIRE_PROMTOOL=1,
    .ci/run installs Debian's prometheus, prometheus-alertmanager, chromium and chromium-driver)."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("ATESS_REQUIRE_PROMTOOL") == "1":
        pytest.fail(f"{name} is required (ATESS_REQUIRE_PROMTOOL=1) but not on PATH")
    pytest.skip(f"{name} not installed (apt-get install {TOOL_PACKAGES.get(name, 'prometheus prometheus-alertmanager')})")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server the test started; kill it if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# -- certificates (openssl) ----------------------------------------------------------------

def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True)


def self_signed(d: Path, name: str, subject: str = "", *extensions: str) -> tuple[str, str]:
    """A self-signed EC certificate and key (name.crt, name.key) in d, valid 2 days."""
    addext = [arg for ext in extensions for arg in ("-addext", ext)]
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", subject or f"/CN={name}",
            *addext, cwd=d)
    return str(d / f"{name}.crt"), str(d / f"{name}.key")


def server_certificate(d: Path, name: str) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1."""
    return self_signed(d, name, "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1")


def _leaf(d: Path, name: str, ca: str, san: str, usage: str, serial: int) -> None:
    (d / f"{name}.ext").write_text(
        f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-set_serial", str(serial), "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=d)


def make_pki(d: Path) -> SimpleNamespace:
    """A CA; a server certificate for 127.0.0.1; a client certificate; a client from another CA;
    the server key encrypted. Attributes: ca_crt, ca_key, server_crt, ..., encrypted_key."""
    for ca in ("ca", "rogue-ca"):
        self_signed(d, ca, "", "basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign")
    _leaf(d, "server", "ca", "IP:127.0.0.1,DNS:localhost", "serverAuth", 1)
    _leaf(d, "client", "ca", "DNS:scraper.example", "clientAuth", 2)
    _leaf(d, "rogue", "rogue-ca", "DNS:scraper.example", "clientAuth", 3)
    openssl("pkey", "-in", "server.key", "-aes256", "-passout", "pass:secret", "-out", "server-encrypted.key", cwd=d)
    files = {f"{name.replace('-', '_')}_{ext}": str(d / f"{name}.{ext}")
             for name in ("ca", "rogue-ca", "server", "client", "rogue") for ext in ("crt", "key")}
    return SimpleNamespace(**files, encrypted_key=str(d / "server-encrypted.key"))


# A fake account behind `responses`, shared by the discovery, input-cap and invisible-text tests.
BASE = "http://127.0.0.1:9"


LIST_FAMILY = {DEFAULT_ENDPOINTS[f]["list"]: f for f in ("hps_central", "hps_string", "pcs")}


class Account:
    """A fake ATESS account behind `responses`: the documented list shapes (device lists
    keyed by dataLogSn, bare arrays; plant and datalogger lists as page objects),
    latest data, settings."""

    def __init__(self, plants, datalogs, devices, settings=None):
        self.plants, self.datalogs, self.devices = plants, datalogs, devices
        self.settings = settings or {}
        self.requests = []
        self.plant_list_broken = False

    def _page(self, rows, query):
        no, size = int(query["pageNo"][0]), int(query["pageSize"][0])
        return {"code": 0, "msg": "", "data": {"datas": rows[(no - 1) * size: no * size], "offset": (no - 1) * size,
                                               "pageNo": no, "pageSize": size, "total": len(rows)}}

    def reply(self, request):
        url = urlsplit(request.url)
        query = parse_qs(url.query)
        self.requests.append((request.method, url.path, query))
        path = url.path
        if path == "/api/v1/plant/list" and self.plant_list_broken:
            return 502, {}, "<html>bad gateway</html>"
        if path == "/api/v1/plant/list":
            body = self._page(self.plants, query)
        elif path == "/api/v1/datalog/list":
            body = self._page([d for d in self.datalogs if d["plantId"] == query["plantId"][0]], query)
        elif path in LIST_FAMILY:
            rows = [d for d in self.devices if d["family"] == LIST_FAMILY[path] and d["dataLogSn"] == query["dataLogSn"][0]]
            body = {"code": 0, "msg": "", "data": rows}
        elif path.endswith("setting"):
            body = {"code": 0, "msg": "", "data": self.settings.get(query["deviceSn"][0])}
        else:  # latest data
            now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            body = {"code": 0, "msg": "", "data": {"ppv": "2.5", "time": now}}
        return 200, {}, json.dumps(body)


def account():
    plants = [{"plantId": f"P{i}", "plantName": f"Plant {i}", "capacity": 100 * i, "country": "DE", "city": "Kiel"} for i in (1, 2, 3)]
    datalogs = [{"dataLogSn": "DL1", "plantId": "P1", "status": 1}, {"dataLogSn": "DL2", "plantId": "P2", "status": 0},
                {"dataLogSn": "DL3", "plantId": "P3"}]
    devices = [
        {"family": "hps_central", "deviceSn": "HPS-A", "deviceModel": "HPS150", "dataLogSn": "DL1", "firmwareVersion": "V1.2", "lost": False},
        {"family": "hps_central", "deviceSn": "HPS-B", "deviceModel": "HPS100", "dataLogSn": "DL1"},
        {"family": "pcs", "deviceSn": "PCS-C", "deviceModel": "PCS250", "dataLogSn": "DL2"},
        {"family": "hps_string", "deviceSn": "TL-D", "deviceModel": "HPS30TL", "dataLogSn": "DL3"},
    ]
    return Account(plants, datalogs, devices)


@contextmanager
def served(acct: Account) -> Iterator[Account]:
    """The fake account behind `responses` at BASE while the block runs."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=lambda request: acct.reply(request))
        yield acct


def discovering(acct, **sections):
    sections.setdefault("discovery", {})
    sections["discovery"] = {"enabled": True, "page_size": 2, "families": ["hps_central", "hps_string", "pcs"], **sections["discovery"]}
    return Exporter(make_config(BASE, devices=sections.pop("devices", []), **sections))


# Prometheus over HTTP, for the tests that run a real one.
ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "dashboards" / "prometheus"


def fetch(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def query(base: str, expr: str, at: float | None = None) -> list:
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode(params)
    try:
        body = json.loads(fetch(url))
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
    if body.get("status") != "success":
        raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"value": data["result"]}]
    return data["result"]


# -- backfill: its config, its run, reading the OpenMetrics file it writes -------------

HISTORY_PATH = "/api/v1/hps/data-list"
# Two plants in different zones: UTC+1 from atess.timezone, UTC-5 as a per-device override.
DEV_A = SimDevice(sn="HPSA2401000001", model="HPS50", tz_offset_hours=1.0)
DEV_B = SimDevice(sn="HPSB2402000002", model="HPS100HV", tz_offset_hours=-5.0)
ZONES = {DEV_A.sn: "Etc/GMT-1", DEV_B.sn: "Etc/GMT+5"}
DAY1, DAY2, DAY3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def write_backfill_config(tmp_path: Path, sim: Simulator, devices=(DEV_A, DEV_B)) -> str:
    data = {
        "atess": {"base_url": sim.base_url, "token": TOKEN, "timezone": "Etc/GMT-1", "timeout_seconds": 5},
        "poll": {"interval_seconds": 300, "concurrency": 4},
        "devices": [{"sn": d.sn, "type": d.family, "model": d.model,
                     **({"timezone": ZONES[d.sn]} if ZONES[d.sn] != "Etc/GMT-1" else {})} for d in devices],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def run_backfill(config: str, out: Path, *extra: str, start: date = DAY1, end: date = DAY3, **kw) -> tuple[int, str]:
    err = kw.pop("stderr", None) or io.StringIO()
    args = ["--config.file", config, "--from", start.isoformat(), "--to", end.isoformat(),
            "--output", str(out), "--call-interval", "0", "--retry-backoff", "0", *extra]
    rc = backfill.main(args, stderr=err, **kw)
    return rc, err.getvalue()


_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples_of(path: Path, strict: bool = False) -> dict[tuple[str, tuple], dict[float, float]]:
    """(sample name, labels) -> {timestamp: value}, and no (series, timestamp) twice.

    `strict` also parses the file with prometheus-client's OpenMetrics parser
    (exact but slow, ~45 us a sample) and checks both readings agree."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n# EOF\n")
    out: dict = {}
    count = 0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, value, ts = line.rsplit(" ", 2)
        name, labels = head[: head.index("{")], tuple(sorted(_LABEL.findall(head)))
        points = out.setdefault((name, labels), {})
        assert float(ts) not in points, f"{head} twice at {ts}"
        points[float(ts)] = float(value)
        count += 1
    if strict:
        parsed: dict = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                parsed.setdefault((s.name, tuple(sorted(s.labels.items()))), {})[float(s.timestamp)] = s.value
        assert parsed == out
    return out


def history_series(samples, name: str, sn: str, model: str, **labels) -> dict[float, float]:
    return samples[(name, tuple(sorted({"sn": sn, "model": model, **labels}.items())))]


def plant_utc(day: date, hour: int, minute: int, offset_hours: float) -> float:
    """Unix time of a plant-local wall-clock time."""
    return calendar.timegm((day.year, day.month, day.day, hour, minute, 0)) - offset_hours * 3600


def override_history_rows(sim: Simulator, overrides: dict[tuple[str, str], dict]) -> None:
    """Wrap the history route so some rows carry other values (as a glitching cloud sends)."""
    inner = sim.routes[HISTORY_PATH]

    def handle(s, req):
        reply = inner(s, req)
        for row in reply.envelope["data"]["datas"] if reply.envelope and reply.envelope["data"] else ():
            row.update(overrides.get((req.sn, row["time"]), {}))
        return reply

    sim.routes[HISTORY_PATH] = handle
