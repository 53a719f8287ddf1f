"""The client against hostile peers on loopback: slow, huge, deep, malformed answers.

Each test bounds its own time: the hostile server gives up after ~10 s, so on a
client without the protection the test fails instead of hanging.
"""

import json
import logging
import signal
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest

from atess_exporter.app import Exporter
from atess_exporter.api.client import ApiError, AtessClient, MalformedResponseError, TransportError
from atess_exporter.config import parse_config
from atess_exporter.exposition.render import Renderer
from hostile_api import HostileServer, envelope, gzip_bomb, query, read_request, response
from support import TOKEN, make_config, parse_exposition, value

PATH = "/api/v1/hps/data-last"
GOOD = {"ppv": "12.5", "time": "2024-05-01 12:00:00"}


def client(base_url, observed=None, **atess):
    config = parse_config({"atess": {"base_url": base_url, "token": TOKEN, **atess},
                           "devices": [{"sn": "SN1", "type": "hps_central"}], "state_file": ""})
    return AtessClient(config.api, observer=(lambda *a: observed.append(a)) if observed is not None else None)



def call_with_peak_memory(c):
    """(the call's exception, peak bytes Python allocated during it)."""
    tracemalloc.start()
    try:
        exc, _ = timed_call(c)
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

def timed_call(c, sn="SN1"):
    started = time.monotonic()
    try:
        return c.latest(PATH, sn), time.monotonic() - started
    except Exception as exc:
        return exc, time.monotonic() - started


# -- time -----------------------------------------------------------------------------


def test_a_body_dripping_one_byte_at_a_time_ends_at_the_total_deadline():
    body = envelope({"ppv": "1" * 2000})

    def drip_body(conn, request, server):
        head = response(body)[: -len(body)]
        conn.sendall(head)
        server.drip(conn, body, every=0.05)  # each read succeeds: a per-read timeout never fires

    observed = []
    with HostileServer(drip_body) as server:
        exc, took = timed_call(client(server.base_url, observed, timeout_seconds=1))
    assert isinstance(exc, TransportError) and exc.outcome == "timeout", exc
    assert took < 2.5, f"one call held {took:.1f}s with timeout_seconds 1"
    assert observed[0][1] == "timeout"


def test_headers_dripping_one_byte_at_a_time_end_at_the_total_deadline():
    def drip_headers(conn, request, server):
        server.drip(conn, response(envelope(GOOD)), every=0.05)

    with HostileServer(drip_headers) as server:
        exc, took = timed_call(client(server.base_url, timeout_seconds=1))
    assert isinstance(exc, TransportError) and exc.outcome == "timeout", exc
    assert took < 2.5


def test_close_ends_a_call_in_flight_within_moments():
    def hang(conn, request, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        server.stopping.wait(10)

    with HostileServer(hang) as server:
        c = client(server.base_url, timeout_seconds=30)
        result = {}
        worker = threading.Thread(target=lambda: result.update(r=timed_call(c)))
        worker.start()
        assert server.connected.wait(5)
        closed_at = time.monotonic()
        c.close()
        worker.join(5)
        assert not worker.is_alive(), "the call outlived close() by 5 s"
        exc, _ = result["r"]
        assert isinstance(exc, TransportError) and "shutting down" in str(exc)
        assert time.monotonic() - closed_at < 3
        exc, took = timed_call(c)   # and a closed client makes no new call
        assert isinstance(exc, TransportError) and took < 1


def _config_file(tmp_path, base_url, timeout):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({
        "atess": {"base_url": base_url, "token": TOKEN, "timeout_seconds": timeout},
        "poll": {"concurrency": 2, "retries": 0},
        "devices": [{"sn": "SN1", "type": "hps_central"}, {"sn": "SN2", "type": "hps_central"}],
        "state_file": str(tmp_path / "state.json"),
    }))
    return path


def test_sigterm_ends_the_exporter_with_calls_in_flight(tmp_path):
    def hang(conn, request, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        server.drip(conn, b"{" * 100, every=0.5, limit=30)

    with HostileServer(hang) as server:
        cfg = _config_file(tmp_path, server.base_url, 60)
        proc = subprocess.Popen([sys.executable, "-m", "atess_exporter", "--config.file", str(cfg),
                                 "--web.listen-address", "127.0.0.1:0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert server.connected.wait(20), "the exporter never called the API"
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert took < 6, f"SIGTERM took {took:.1f}s with calls in flight"
    assert proc.returncode == 0, "a clean exit, not death by the signal"
    assert (tmp_path / "state.json").exists(), "state was saved on the way out"


# -- bytes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb():
    return gzip_bomb(256 << 20)   # 256 MiB of zeros in ~260 KB


def test_a_gzip_bomb_is_refused_as_too_large_without_inflating_it(bomb):
    def serve(conn, request, server):
        conn.sendall(response(bomb, headers={"Content-Encoding": "gzip"}))

    observed = []
    with HostileServer(serve) as server:
        exc, peak = call_with_peak_memory(client(server.base_url, observed, timeout_seconds=10))
    assert isinstance(exc, MalformedResponseError) and exc.outcome == "too_large", exc
    assert observed[0][1] == "too_large"
    assert peak < 48 << 20, f"peak {peak >> 20} MiB while refusing a bomb (cap 16 MiB)"


def test_a_body_larger_than_the_cap_on_the_wire_is_too_large_even_without_length():
    def serve(conn, request, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        chunk = b" " * 65536
        for _ in range(64):        # 4 MiB of whitespace, no Content-Length
            if server.stopping.is_set():
                return
            conn.sendall(chunk)

    with HostileServer(serve) as server:
        exc, _ = timed_call(client(server.base_url, max_response_bytes=1 << 20))
    assert isinstance(exc, MalformedResponseError) and exc.outcome == "too_large", exc


def test_compressed_answers_within_the_cap_are_read():
    import gzip
    import zlib

    body = envelope(GOOD)
    for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body)),
                           ("deflate", zlib.compress(body)[2:-4])):   # raw deflate, as some servers send
        reply = response(data, headers={"Content-Encoding": encoding})
        with HostileServer(lambda conn, req, srv, reply=reply: conn.sendall(reply)) as server:
            assert client(server.base_url).latest(PATH, "SN1") == GOOD, encoding


# -- depth and text -------------------------------------------------------------------


def test_json_nested_1000_deep_is_invalid_json_not_a_recursion_error():
    body = b'{"code": 0, "msg": "", "data": {"a": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    observed = []
    with HostileServer(lambda conn, req, srv: conn.sendall(response(body))) as server:
        exc, _ = timed_call(client(server.base_url, observed))
    assert isinstance(exc, MalformedResponseError) and exc.outcome == "invalid_json", repr(exc)
    assert "deep" in str(exc)
    assert observed[0][1] == "invalid_json"


def test_brackets_inside_strings_do_not_count_as_nesting():
    data = {"name": "[" * 500 + "{" * 500, "ppv": "1"}
    with HostileServer(lambda conn, req, srv: conn.sendall(response(envelope(data)))) as server:
        assert client(server.base_url).latest(PATH, "SN1") == data


def test_a_lone_surrogate_in_a_field_name_or_value_becomes_valid_utf8():
    body = b'{"code": 0, "msg": "", "data": {"\\ud800x": "1", "plantName": "a\\udc00b", "ok": "\\ud83d\\ude00"}}'
    with HostileServer(lambda conn, req, srv: conn.sendall(response(body))) as server:
        data = client(server.base_url).latest(PATH, "SN1")
    for key, val in data.items():
        key.encode("utf-8"), val.encode("utf-8")   # raises on a lone surrogate
    assert data == {"\ufffdx": "1", "plantName": "a\ufffdb", "ok": "\U0001F600"}


def test_one_device_with_a_surrogate_field_leaves_metrics_working_for_all():
    bad = b'{"code": 0, "msg": "", "data": {"\\ud800x": "5", "ppv": "3", "time": "2024-05-01 12:00:00"}}'

    def serve(conn, request, server):
        conn.sendall(response(bad if query(request)["deviceSn"] == "BAD1" else envelope(GOOD)))

    with HostileServer(serve) as server:
        exporter = Exporter(make_config(server.base_url, devices=[{"sn": "BAD1", "type": "hps_central"},
                                                                   {"sn": "GOOD1", "type": "hps_central"}]))
        exporter.poller.poll_all_once()
        served = Renderer(exporter.registry).render_text()   # what the /metrics handler sends
        parsed = parse_exposition(served.decode("utf-8"))
        library = parse_exposition(exporter.exposition().decode("utf-8"))
    # process_* moves between the two renderings (CPU time); the rest must be identical.
    steady = lambda p: {k: v for k, v in p.items() if not k[0].startswith("process_")}
    assert steady(library) == steady(parsed)
    assert value(parsed, "atess_device_up", sn="GOOD1") == 1
    assert value(parsed, "atess_device_up", sn="BAD1") == 1


def test_a_10mb_code_and_control_characters_in_msg_never_reach_a_log_line_raw(caplog):
    body = json.dumps({"code": "9" * (10 << 20), "data": None, "msg": "boom\r\x1b[31mred\x1b[0m" + "m" * 5000}).encode()
    with HostileServer(lambda conn, req, srv: conn.sendall(response(body))) as server:
        exporter = Exporter(make_config(server.base_url, devices=[{"sn": "SN1", "type": "hps_central"}],
                                        atess={"max_response_bytes": 32 << 20}, poll={"retries": 0}))
        with caplog.at_level(logging.INFO):
            exporter.poller.poll_all_once()
    [failure] = [r for r in caplog.records if r.getMessage() == "poll failed"]
    error = failure.fields["error"]
    assert len(error) < 1300, len(error)
    assert "\x1b" not in error and "\r" not in error
    assert "\\x1b" in error and "\\r" in error, "the characters are shown escaped"


def test_api_error_text_is_escaped_and_bounded():
    body = json.dumps({"code": "E\x1b" * 1000, "data": None, "msg": "line1\nline2\x07"}).encode()
    with HostileServer(lambda conn, req, srv: conn.sendall(response(body))) as server:
        exc, _ = timed_call(client(server.base_url))
    assert isinstance(exc, ApiError)
    assert "\n" not in str(exc) and "\x1b" not in str(exc) and "\x07" not in str(exc)
    assert len(str(exc)) < 1300


def test_bounded_calls_still_succeed_and_reuse_the_connection():
    answers = []

    def keepalive(conn, request, server):
        while True:
            body = envelope(GOOD)
            conn.sendall(response(body, headers={"Connection": "keep-alive"}))
            answers.append(1)
            if read_request(conn) is None:
                return

    with HostileServer(keepalive) as server:
        c = client(server.base_url, timeout_seconds=2)
        for _ in range(3):
            assert c.latest(PATH, "SN1") == GOOD
    assert len(answers) == 3 and len(server.threads) == 1, "one kept-alive connection served all calls"


@pytest.mark.parametrize("text", ['"\\' * (1 << 20), "[" * (1 << 20), '"' * (1 << 21), "[" * 900 + "]" * 900],
                         ids=["escaped-quotes", "open-brackets", "quotes", "900-deep"])
def test_adversarial_json_is_refused_in_linear_time(text):
    from atess_exporter.outside.text import JsonRejected, parse_json

    started = time.monotonic()
    with pytest.raises(JsonRejected):
        parse_json(text)
    assert time.monotonic() - started < 5, "a quadratic scan would take minutes here"


def test_a_redirect_carrying_a_gzip_bomb_is_not_inflated(bomb):
    def serve(conn, request, server):
        if b"GET /next" in request:
            conn.sendall(response(envelope(GOOD)))
        else:
            conn.sendall(response(bomb, status="302 Found",
                                  headers={"Content-Encoding": "gzip", "Location": server.base_url + "/next"}))

    with HostileServer(serve) as server:
        exc, peak = call_with_peak_memory(client(server.base_url, timeout_seconds=10))
    assert isinstance(exc, MalformedResponseError) and exc.outcome == "too_large", exc
    assert peak < 48 << 20, f"peak {peak >> 20} MiB"


def test_a_plain_redirect_is_followed():
    def serve(conn, request, server):
        if b"GET /next" in request:
            conn.sendall(response(envelope(GOOD)))
        else:
            conn.sendall(response(b"moved", status="301 Moved Permanently", headers={"Location": server.base_url + "/next"}))

    with HostileServer(serve) as server:
        assert client(server.base_url).latest(PATH, "SN1") == GOOD
