"""The scrape side under attack (issue 19): what any client that can reach the port
may send -- Accept headers, passwords, request framing -- costs bounded memory and
time, and the real scraper keeps being answered."""

import base64
import http.client
import logging
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest
from prometheus_client.core import GaugeMetricFamily

from atess_exporter.web.webconfig import BasicAuth
from support import http_get

USER, PASSWORD = "prometheus", "right password"


class Tiny:
    def collect(self):
        fam = GaugeMetricFamily("atess_test_answer", "test", labels=("sn",))
        fam.add_metric(("A1",), 42.0)
        yield fam


@pytest.fixture
def serve(metrics_server):
    return lambda web_config=None, **kwargs: metrics_server(Tiny(), web_config, refresh=False, **kwargs)


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def raw_exchange(port, data: bytes, seconds=5.0) -> bytes:
    """Send bytes as they are; everything the server writes until it closes (or `seconds` pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(data)
        out = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                return out
            out += chunk
        raise AssertionError(f"connection not closed within {seconds}s; got {out[:300]!r}")


# -- 1. content negotiation cannot grow memory -----------------------------------------------


def test_distinct_accept_versions_do_not_each_keep_a_format(serve):
    """4,000 distinct versions took RSS from 45 MB to 1.35 GB: each was a format with its
    own cached rendering. Now they fold into the few formats the library writes."""
    server = serve()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for i in range(300):
            accept = [f"application/openmetrics-text;version=1.0.{i}",
                      f"application/openmetrics-text;version=1.{i}.0;escaping=allow-utf-8",
                      f"text/plain;version=1.0.{i};escaping=values",
                      f"application/openmetrics-text;version={i + 2}.0.0"][i % 4]
            conn.request("GET", "/metrics", headers={"Accept": accept})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and b"atess_test_answer" in body
    finally:
        conn.close()
    assert len(server.renderer.formats._by_key) <= 13
    assert len(server.renderer._states) <= 13


# -- 10. a malformed version is not an error ----------------------------------------------------


@pytest.mark.parametrize("accept", ["application/openmetrics-text;version=1.0.0x",
                                    "text/plain;version=1.0.x;escaping=allow-utf-8",
                                    "application/openmetrics-text;version=1..0",
                                    "application/openmetrics-text;version=" + "9" * 5000])
def test_a_malformed_accept_version_gets_the_default_format_and_no_log_line(serve, caplog, accept):
    caplog.set_level(logging.DEBUG)
    server = serve()
    for _ in range(3):
        status, headers, body = http_get(server.port, headers={"Accept": accept})
        assert status == 200, body
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert b"atess_test_answer" in body
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG] == []


# -- 2. a password flood does not lock the scraper out -------------------------------------------


def test_a_password_flood_does_not_lock_out_a_scraper_with_valid_credentials(serve, monkeypatch):
    """16 clients sending distinct wrong passwords as fast as they can, over a connection
    cap of 8, for 3 seconds: the real scraper (one kept-alive connection, as Prometheus
    keeps) is answered every time, quickly; the flood
    gets 401s and immediate 503s; a client never seen before gets in once it stops."""
    monkeypatch.setattr(BasicAuth, "CACHE_SIZE", 8)       # the flood's guesses overflow any cache size
    slow_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    other_hash = bcrypt.hashpw(b"other password", bcrypt.gensalt(10)).decode()
    server = serve({"basic_auth_users": {USER: slow_hash, "grafana": other_hash}}, max_connections=8)
    good = {"Authorization": basic(USER, PASSWORD)}
    scraper = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)    # kept alive, as Prometheus does
    scraper.request("GET", "/metrics", headers=good)
    assert scraper.getresponse().read() and server.auth.bcrypt_checks == 1      # verified once: cached from now on

    stop = threading.Event()
    flood_statuses: list[int] = []

    def flood(worker: int) -> None:
        n = 0
        while not stop.is_set() and n < 400:
            n += 1
            try:
                status = http_get(server.port, headers={"Authorization": basic(USER, f"guess {worker} {n}")},
                             timeout=5)[0]
            except OSError:
                status = 0
            flood_statuses.append(status)

    threads = [threading.Thread(target=flood, args=(w,), daemon=True) for w in range(16)]
    for t in threads:
        t.start()
    latencies, statuses = [], []
    flood_end = time.monotonic() + 3.0
    try:
        while time.monotonic() < flood_end:
            t0 = time.monotonic()
            try:
                scraper.request("GET", "/metrics", headers=good)
                resp = scraper.getresponse()
                resp.read()
                statuses.append(resp.status)
            except (OSError, http.client.HTTPException) as exc:
                statuses.append(repr(exc))
                scraper.close()
            latencies.append(time.monotonic() - t0)
            time.sleep(0.1)
    finally:
        stop.set()
        scraper.close()
        for t in threads:
            t.join(10)
    assert len(statuses) >= 10
    assert statuses == [200] * len(statuses)
    assert max(latencies) < 1.5, latencies
    assert 503 in flood_statuses and 401 in flood_statuses
    assert server.auth.bcrypt_checks < len(flood_statuses)     # most guesses never reached bcrypt
    t0 = time.monotonic()
    assert http_get(server.port, headers={"Authorization": basic("grafana", "other password")}, timeout=5)[0] == 200
    assert time.monotonic() - t0 < 2.0


def test_same_credentials_together_share_one_check_and_are_not_refused_busy(serve):
    server = serve({"basic_auth_users": {USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()}},
                   max_auth_checks=1)
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: http_get(server.port, headers={"Authorization": basic(USER, PASSWORD)})[0],
                                 range(20)))
    assert statuses == [200] * 20
    assert server.auth.bcrypt_checks == 1


# -- 9. timing does not tell known users from unknown ones ----------------------------------------


def test_unknown_user_costs_what_a_wrong_password_costs_at_the_users_cost():
    """At cost 12 a wrong password took 4x as long as an unknown user (a cost-10 dummy).
    Interleaved, and the fastest of each kept: the machine's load only ever adds."""
    auth = BasicAuth({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12))})
    times: dict[str, list[float]] = {USER: [], "nobody": []}
    for i in range(4):
        for user in times:
            t0 = time.perf_counter()
            assert auth.check(basic(user, f"wrong {user} {i}")) is False
            times[user].append(time.perf_counter() - t0)
    known, unknown = min(times[USER]), min(times["nobody"])
    assert 0.5 < unknown / known < 2.0, times


# -- 5. request framing ------------------------------------------------------------------------

SMUGGLED = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"


def statuses(answer: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)


def test_a_get_body_is_consumed_not_taken_for_a_second_request(serve):
    server = serve()
    request = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)) + SMUGGLED
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert statuses(raw_exchange(server.port, request + last)) == [b"200", b"200"]     # not 200, 404, 200


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
     % (len(SMUGGLED), SMUGGLED), b"501"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
     % (len(SMUGGLED), SMUGGLED), b"400"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nxxxxx" + SMUGGLED, b"400"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nxxxxx" + SMUGGLED, b"400"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Content-Length: 31\r\n\r\n" + SMUGGLED, b"400"),
    (b"GET /healthz HTTP/1.1\nHost: x\nContent-Length: 31\n\n" + SMUGGLED, b"400"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\nContent-Length: 31\r\n\r\n" + SMUGGLED, b"400"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + SMUGGLED, b"413"),
])
def test_framing_in_doubt_is_refused_and_the_connection_closed(serve, request_bytes, status):
    server = serve()
    answer = raw_exchange(server.port, request_bytes)
    assert statuses(answer) == [status]
    assert b"Connection: close" in answer


# -- headers -----------------------------------------------------------------------------------


def test_nosniff_and_csp_by_default_and_the_web_config_wins(serve):
    status, headers, body = http_get(serve().port, "/")
    assert status == 200 and b"<style>" in body
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "'sha256-" in headers["Content-Security-Policy"]           # the page's own style, nothing else
    _, headers, _ = http_get(serve({"http_server_config": {"headers": {"Content-Security-Policy": "default-src 'self'"}}}).port, "/")
    assert headers.get_all("Content-Security-Policy") == ["default-src 'self'"]
    assert headers["X-Content-Type-Options"] == "nosniff"
