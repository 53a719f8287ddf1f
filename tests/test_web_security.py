"""--web.config.file: TLS, client certificates and basic auth on /metrics (exporter-toolkit format).

Certificates are made with the openssl command into a temporary directory;
every server listens on 127.0.0.1:0.
"""

import base64
import http.client
import logging
import shutil
import socket
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest
import yaml
from prometheus_client.core import GaugeMetricFamily

from atess_exporter import cli
from atess_exporter.web.webconfig import WebConfigError, load_web_config
from support import require_tool

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "web-config.yml"
EXAMPLE_USER, EXAMPLE_PASSWORD = "prometheus", "demo-password-change-me"   # documented in the example
USER, PASSWORD = "scraper", "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()   # cost 4: fast tests


# --------------------------------------------------------------------------- certificates


# --------------------------------------------------------------------------- server and client helpers


class TinyCollector:
    def collect(self):
        g = GaugeMetricFamily("atess_test_answer", "A constant for the web security tests.")
        g.add_metric([], 42)
        yield g


def write_config(tmp_path, data, name="web-config.yml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def serve(tmp_path, metrics_server):
    """serve(web config dict or path) -> a started MetricsServer on 127.0.0.1:0 (stopped afterwards)."""
    return lambda config: metrics_server(TinyCollector(), config if isinstance(config, str) else write_config(tmp_path, config))


def client_context(pki, cert=None, key=None, max_version=None, cafile=None):
    ctx = ssl.create_default_context(cafile=cafile or pki.ca_crt)
    if cert:
        ctx.load_cert_chain(cert, key)
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def fetch(server, ctx=None, path="/metrics", auth=None, method="GET"):
    """(status, headers, body) over https when ctx is given, else plain http."""
    if ctx is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def tls_config(pki, **extra):
    return {"tls_server_config": {"cert_file": pki.server_crt, "key_file": pki.server_key, **extra}}


# --------------------------------------------------------------------------- TLS


def test_https_with_the_right_ca_serves_metrics(pki, serve):
    server = serve(tls_config(pki))
    assert server.scheme == "https"
    status, headers, body = fetch(server, client_context(pki))
    assert status == 200
    assert b"atess_test_answer 42.0" in body
    assert fetch(server, client_context(pki), path="/healthz")[0] == 200


def test_a_client_that_does_not_trust_the_ca_fails(pki, serve):
    server = serve(tls_config(pki))
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(server, client_context(pki, cafile=pki.rogue_ca_crt))


def test_plain_http_to_the_tls_port_fails_cleanly_and_others_are_still_served(pki, serve, caplog):
    caplog.set_level(logging.DEBUG, logger="atess_exporter.web")
    server = serve(tls_config(pki))
    # A connection that never sends a byte is waiting on its own thread, not in accept().
    idle = socket.create_connection(("127.0.0.1", server.port))
    try:
        status, _, body = fetch(server)                    # plain HTTP
        assert status == 400
        assert b"HTTP request to an HTTPS server" in body
        assert any("plain HTTP request on the TLS port" in r.getMessage() and r.levelno == logging.DEBUG
                   for r in caplog.records)
        with socket.create_connection(("127.0.0.1", server.port)) as junk:   # neither HTTP nor TLS
            junk.sendall(b"\x00\x01\x02\x03 not a client hello\r\n\r\n")
            junk.settimeout(10)
            try:
                reply = junk.recv(1024)          # a TLS alert or EOF; a hang would time out
            except ConnectionResetError:
                reply = b""
            assert not reply.startswith(b"HTTP/")
        assert fetch(server, client_context(pki))[0] == 200
    finally:
        idle.close()
    assert fetch(server, client_context(pki))[0] == 200


def test_min_version_tls13_refuses_a_tls12_client(pki, serve):
    server = serve(tls_config(pki, min_version="TLS13"))
    with pytest.raises(ssl.SSLError):
        fetch(server, client_context(pki, max_version=ssl.TLSVersion.TLSv1_2))
    assert fetch(server, client_context(pki))[0] == 200


def test_max_version_tls12_and_a_cipher_suite(pki, serve):
    server = serve(tls_config(pki, max_version="TLS12", cipher_suites=["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
                              curve_preferences=["CurveP256"], prefer_server_cipher_suites=True))
    ctx = client_context(pki)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/metrics")
        assert conn.getresponse().status == 200
        assert conn.sock.version() == "TLSv1.2"
        assert conn.sock.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    finally:
        conn.close()


def test_client_certificate_required(pki, serve):
    server = serve(tls_config(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=pki.ca_crt))
    with pytest.raises(OSError):           # ssl.SSLError or a reset, depending on the TLS version
        fetch(server, client_context(pki))
    with pytest.raises(OSError):
        fetch(server, client_context(pki, cert=pki.rogue_crt, key=pki.rogue_key))
    assert fetch(server, client_context(pki, cert=pki.client_crt, key=pki.client_key))[0] == 200


def test_verify_client_cert_if_given(pki, serve):
    server = serve(tls_config(pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file=pki.ca_crt))
    assert fetch(server, client_context(pki))[0] == 200
    assert fetch(server, client_context(pki, cert=pki.client_crt, key=pki.client_key))[0] == 200
    with pytest.raises(OSError):
        fetch(server, client_context(pki, cert=pki.rogue_crt, key=pki.rogue_key))


@pytest.mark.parametrize("sans, allowed", [(["other.example", "scraper.example"], True), (["other.example"], False)])
def test_client_allowed_sans(pki, serve, sans, allowed):
    server = serve(tls_config(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=pki.ca_crt,
                              client_allowed_sans=sans))
    ctx = client_context(pki, cert=pki.client_crt, key=pki.client_key)
    if allowed:
        assert fetch(server, ctx)[0] == 200
    else:
        with pytest.raises(OSError):
            fetch(server, ctx)


def test_inline_cert_key_and_client_ca(pki, serve):
    if not hasattr(__import__("os"), "memfd_create"):
        pytest.skip("inline PEM needs memfd_create (Linux)")
    server = serve({"tls_server_config": {
        "cert": Path(pki.server_crt).read_text(), "key": Path(pki.server_key).read_text(),
        "client_auth_type": "RequireAndVerifyClientCert", "client_ca": Path(pki.ca_crt).read_text()}})
    assert fetch(server, client_context(pki, cert=pki.client_crt, key=pki.client_key))[0] == 200


# --------------------------------------------------------------------------- basic auth


def test_basic_auth_over_tls(pki, serve):
    server = serve({**tls_config(pki), "basic_auth_users": {USER: HASH},
                    "http_server_config": {"headers": {"X-Frame-Options": "deny"}}})
    ctx = client_context(pki)
    status, headers, _ = fetch(server, ctx)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Basic realm="')
    assert headers["X-Frame-Options"] == "deny"
    assert fetch(server, ctx, auth=(USER, "wrong password"))[0] == 401
    assert fetch(server, ctx, auth=("nobody", PASSWORD))[0] == 401
    assert fetch(server, ctx, auth=(USER, PASSWORD + "x"))[0] == 401
    status, headers, body = fetch(server, ctx, auth=(USER, PASSWORD))
    assert status == 200 and b"atess_test_answer 42.0" in body
    assert headers["X-Frame-Options"] == "deny"
    # Every path is protected, as in exporter-toolkit: /healthz and the landing page too.
    for path in ("/healthz", "/", "/nope"):
        assert fetch(server, ctx, path=path)[0] == 401
    assert fetch(server, ctx, path="/healthz", auth=(USER, PASSWORD))[0] == 200
    assert fetch(server, ctx, method="HEAD")[0] == 401


def test_malformed_authorization_headers_are_401(serve):
    server = serve({"basic_auth_users": {USER: HASH}})
    for value in ("Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", "/metrics", headers={"Authorization": value})
            assert conn.getresponse().status == 401
        finally:
            conn.close()


def test_basic_auth_without_tls_works_and_warns(serve, caplog):
    caplog.set_level(logging.INFO, logger="atess_exporter.web")
    server = serve({"basic_auth_users": {USER: HASH}})
    assert server.scheme == "http"
    assert fetch(server)[0] == 401
    assert fetch(server, auth=(USER, PASSWORD))[0] == 200
    assert any("clear text" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_fifty_concurrent_scrapers_cost_one_bcrypt(pki, serve):
    slow_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()   # the htpasswd default cost
    server = serve({**tls_config(pki), "basic_auth_users": {USER: slow_hash}})
    ctx = client_context(pki)
    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(fetch, server, ctx, "/metrics", (USER, PASSWORD)) for _ in range(50)]
        statuses = [f.result()[0] for f in futures]
    assert statuses == [200] * 50
    assert server.auth.bcrypt_checks == 1


def test_passwords_and_hashes_never_logged(pki, serve, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    server = serve({**tls_config(pki), "basic_auth_users": {USER: HASH}})
    ctx = client_context(pki)
    fetch(server, ctx, auth=(USER, "wrong-password-value"))
    fetch(server, ctx, auth=(USER, PASSWORD))
    with pytest.raises(WebConfigError) as err:
        load_web_config(write_config(tmp_path, {"basic_auth_users": {USER: PASSWORD}}, "plain.yml"))
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    for secret in (PASSWORD, "wrong-password-value", HASH):
        assert secret not in logged
        assert secret not in str(err.value)
    assert HASH not in repr(server.web_config)


# --------------------------------------------------------------------------- promtool and the example


@pytest.mark.promtool
def test_promtool_accepts_the_example_and_generated_files(pki, tmp_path):
    promtool = require_tool("promtool")
    shutil.copy(EXAMPLE, tmp_path / "web-config.yml")
    shutil.copy(pki.server_crt, tmp_path / "server.crt")
    shutil.copy(pki.server_key, tmp_path / "server.key")
    generated = [
        write_config(tmp_path, {**tls_config(pki), "basic_auth_users": {USER: HASH}}, "tls-auth.yml"),
        write_config(tmp_path, tls_config(pki, client_auth_type="RequireAndVerifyClientCert",
                                          client_ca_file=pki.ca_crt, min_version="TLS13"), "mtls.yml"),
        write_config(tmp_path, {"basic_auth_users": {USER: HASH}, "http_server_config": {
            "http2": False, "headers": {"X-Content-Type-Options": "nosniff"}}}, "auth-only.yml"),
    ]
    for path in [str(tmp_path / "web-config.yml"), *generated]:
        result = subprocess.run([promtool, "check", "web-config", path], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        load_web_config(path)


def test_the_example_serves_with_its_demo_password(pki, serve, tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "example.yml")
    shutil.copy(pki.server_crt, tmp_path / "server.crt")
    shutil.copy(pki.server_key, tmp_path / "server.key")
    server = serve(str(tmp_path / "example.yml"))
    ctx = client_context(pki)
    assert fetch(server, ctx)[0] == 401
    status, headers, _ = fetch(server, ctx, auth=(EXAMPLE_USER, EXAMPLE_PASSWORD))
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"


# --------------------------------------------------------------------------- bad files


BAD = {
    "unknown top-level key": ("tls_config: {}\n", "tls_config"),
    "unknown tls key": ("tls_server_config: {certfile: x.crt, key_file: x.key}\n", "tls_server_config.certfile"),
    "missing cert file": ("tls_server_config: {cert_file: missing.crt, key_file: missing.key}\n",
                          "tls_server_config.cert_file"),
    "bad hash": ("basic_auth_users: {alice: not-a-bcrypt-hash}\n", "basic_auth_users.alice"),
    "bad client_auth_type": (None, "tls_server_config.client_auth_type"),
    "unverified client cert": (None, "tls_server_config.client_auth_type"),
    "client auth without CA": (None, "tls_server_config.client_ca_file"),
    "CA without client auth": (None, "tls_server_config.client_ca_file"),
    "encrypted key": (None, "tls_server_config.key_file"),
    "key does not match": (None, "tls_server_config.key_file"),
    "not a certificate": (None, "tls_server_config.cert_file"),
    "min above max": (None, "tls_server_config.min_version"),
    "unknown TLS version": (None, "tls_server_config.min_version"),
    "two curves": (None, "tls_server_config.curve_preferences"),
    "unknown cipher": (None, "tls_server_config.cipher_suites"),
    "tls options without a cert": ("tls_server_config: {min_version: TLS13}\n", "tls_server_config.min_version"),
    "header not allowed": ("http_server_config: {headers: {X-Powered-By: me}}\n",
                           "http_server_config.headers.X-Powered-By"),
    "header value": ("http_server_config: {headers: {X-Frame-Options: allow}}\n",
                     "http_server_config.headers.X-Frame-Options"),
    "http2 not a bool": ("http_server_config: {http2: yes please}\n", "http_server_config.http2"),
    "rate_limit": ("rate_limit: {interval: 1s, burst: 2}\n", "rate_limit"),
    "yaml error": ("basic_auth_users: {alice: [\n", "invalid YAML at line"),
    "duplicate key": (f"basic_auth_users:\n  alice: {HASH}\n  alice: {HASH}\n", "duplicate key 'alice'"),
    "not a mapping": ("- just a list\n", "expected a mapping of tls_server_config"),
    # the config's bounded YAML loader (outside/yamlfile.py) reads this file too
    "alias bomb": ("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
                   + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7)),
                   "aliases expand to"),
    "too deep": ("x: " + "[" * 100 + "]" * 100 + "\n", "nested too deep"),
}


def bad_text(case, pki):
    text, _ = BAD[case]
    if text is not None:
        return text
    tls = {"cert_file": pki.server_crt, "key_file": pki.server_key}
    override = {
        "bad client_auth_type": {"client_auth_type": "RequireAndVerify"},
        "unverified client cert": {"client_auth_type": "RequireAnyClientCert", "client_ca_file": pki.ca_crt},
        "client auth without CA": {"client_auth_type": "RequireAndVerifyClientCert"},
        "CA without client auth": {"client_ca_file": pki.ca_crt},
        "encrypted key": {"key_file": pki.encrypted_key},
        "key does not match": {"key_file": pki.client_key},
        "not a certificate": {"cert_file": pki.server_key},
        "min above max": {"min_version": "TLS13", "max_version": "TLS12"},
        "unknown TLS version": {"min_version": "TLS1.2"},
        "two curves": {"curve_preferences": ["X25519", "CurveP256"]},
        "unknown cipher": {"cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]},
    }[case]
    return yaml.safe_dump({"tls_server_config": {**tls, **override}})


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_web_config_is_a_one_line_error_naming_the_key(case, pki, tmp_path):
    path = write_config(tmp_path, bad_text(case, pki))
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(path)
    assert BAD[case][1] in message


def test_missing_web_config_file(tmp_path):
    with pytest.raises(WebConfigError, match="cannot read the web config file"):
        load_web_config(str(tmp_path / "absent.yml"))


def test_empty_web_config_is_plain_http(tmp_path, serve):
    server = serve(write_config(tmp_path, ""))
    assert server.scheme == "http" and server.auth is None
    assert fetch(server)[0] == 200


# --------------------------------------------------------------------------- through the command line


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    level = root.level
    yield
    root.handlers.clear()
    root.setLevel(level)


def exporter_config(tmp_path) -> str:
    return write_config(tmp_path, {
        "atess": {"base_url": "http://127.0.0.1:9", "token": "cli-test-token"},
        "state_file": "",
        "devices": [{"sn": "YKD0F1022A", "type": "hps_central"}],
    }, "config.yaml")


@pytest.mark.parametrize("case", ["bad hash", "missing cert file", "unknown top-level key", "bad client_auth_type",
                                  "absent file"])
def test_cli_bad_web_config_exits_1_without_traceback(case, pki, tmp_path, capsys, restore_logging):
    web = str(tmp_path / "absent.yml") if case == "absent file" else write_config(tmp_path, bad_text(case, pki))
    rc = cli.main(["--config.file", exporter_config(tmp_path), "--web.listen-address", "127.0.0.1:0",
                   "--web.config.file", web])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("atess-exporter:")]
    assert len(lines) == 1 and lines[0].startswith("atess-exporter: web config error: ")
    assert web in lines[0]
