"""`atess-exporter healthcheck`: the exporter's own listen address and web config, TLS and basic auth.

The container test (test_container.py) runs the same check inside the image; these
run everywhere, against servers on 127.0.0.1:0.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml
from prometheus_client import CollectorRegistry

from atess_exporter import healthcheck
from atess_exporter.healthcheck import Unhealthy, check, exporter_args, settings
from atess_exporter.web.server import MetricsServer
from support import free_port, server_certificate

USER, PASSWORD = "prometheus", "health check password"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def web_config(tmp_path: Path, tls: bool = True, users: bool = True, name: str = "web.yml", cert_name: str = "server") -> str:
    data = {}
    if tls:
        cert, key = server_certificate(tmp_path, cert_name)
        data["tls_server_config"] = {"cert_file": Path(cert).name, "key_file": Path(key).name}   # relative: as the toolkit
    if users:
        data["basic_auth_users"] = {USER: HASH}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def serve():
    servers = []

    def start(web_config_file=None) -> str:
        server = MetricsServer(CollectorRegistry(), "127.0.0.1:0", web_config_file=web_config_file)
        server.start()
        servers.append(server)
        return f"127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def test_plain_http_healthy_then_down(serve):
    address = serve()
    assert "answered 200" in check(address, None, 5, environ={})
    with pytest.raises(Unhealthy, match="Connection refused|ConnectionRefused"):
        check(f"127.0.0.1:{free_port()}", None, 5, environ={})


def test_tls_and_basic_auth_without_credentials_counts_the_challenge(serve, tmp_path):
    web = web_config(tmp_path)
    address = serve(web)
    verdict = check(address, web, 5, environ={})
    assert verdict.startswith("healthy: https://127.0.0.1:") and "401" in verdict


def test_tls_and_basic_auth_with_credentials_logs_in(serve, tmp_path):
    web = web_config(tmp_path)
    address = serve(web)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    env = {"ATESS_HEALTHCHECK_USERNAME": USER, "ATESS_HEALTHCHECK_PASSWORD_FILE": str(password_file)}
    assert "answered 200" in check(address, web, 5, environ=env)
    assert "answered 200" in check(address, web, 5, environ={"ATESS_HEALTHCHECK_USERNAME": USER,
                                                             "ATESS_HEALTHCHECK_PASSWORD": PASSWORD})
    with pytest.raises(Unhealthy, match="answered 401"):     # a wrong password is a broken check, not "alive"
        check(address, web, 5, environ={"ATESS_HEALTHCHECK_USERNAME": USER, "ATESS_HEALTHCHECK_PASSWORD": "wrong"})


def test_plain_http_to_a_tls_exporter_is_unhealthy(serve, tmp_path):
    web = web_config(tmp_path, users=False)
    address = serve(web)
    assert "answered 200" in check(address, web, 5, environ={})
    with pytest.raises(Unhealthy):
        check(address, None, 5, environ={})


def test_another_certificate_is_unhealthy_and_gets_no_password(serve, tmp_path):
    served = web_config(tmp_path, name="served.yml", cert_name="served")
    expected = web_config(tmp_path, name="expected.yml", cert_name="expected")
    address = serve(served)
    with pytest.raises(Unhealthy, match="certificate is not the one in"):
        check(address, expected, 5, environ={"ATESS_HEALTHCHECK_USERNAME": USER, "ATESS_HEALTHCHECK_PASSWORD": PASSWORD})


def test_bad_web_config_is_unhealthy_with_the_reason(tmp_path):
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users: {prometheus: not-a-bcrypt-hash}\n")
    with pytest.raises(Unhealthy, match="web config error: .*basic_auth_users"):
        check("127.0.0.1:1", str(bad), 5, environ={})


# ------------------------------------------------------------------ whose settings


@pytest.mark.parametrize("argv, expected", [
    (["/opt/venv/bin/python", "/opt/venv/bin/atess-exporter", "--demo"], ["--demo"]),
    (["python3", "exporter.py", "--web.listen-address", ":1"], ["--web.listen-address", ":1"]),
    (["python", "-m", "atess_exporter"], []),
    (["/opt/venv/bin/python", "/opt/venv/bin/atess-exporter", "healthcheck"], None),
    (["/opt/venv/bin/python", "/opt/venv/bin/atess-exporter", "backfill", "--from", "2024-01-01"], None),
    (["/usr/bin/python3", "-m", "http.server", "atess-exporter"], None),
    (["/sbin/init"], None),
])
def test_exporter_args_from_a_command_line(argv, expected):
    assert exporter_args(argv) == expected


def fake_proc(root: Path, pid: int, argv: list[str], env: dict[str, str]) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))


def no_flags() -> argparse.Namespace:
    return healthcheck.build_parser().parse_args([])


def test_settings_are_the_running_exporters_own(tmp_path):
    """PID 1 runs `atess-exporter --demo --web.listen-address :9999` with ATESS_WEB_CONFIG_FILE set."""
    fake_proc(tmp_path, 1, ["/opt/venv/bin/python", "/opt/venv/bin/atess-exporter", "--demo",
                            "--web.listen-address", ":9999"],
              {"ATESS_WEB_CONFIG_FILE": "/etc/web.yml", "ATESS_WEB_LISTEN_ADDRESS": ":1111", "PATH": "/bin"})
    listen, web, source = settings(no_flags(), environ={}, proc=str(tmp_path))
    assert (listen, web) == (":9999", "/etc/web.yml")      # the flag beats its variable, as in the exporter
    assert "process 1" in source
    flags = healthcheck.build_parser().parse_args(["--web.listen-address", "127.0.0.1:2"])
    assert settings(flags, environ={}, proc=str(tmp_path))[:2] == ("127.0.0.1:2", "/etc/web.yml")


def test_settings_without_an_exporter_process_are_the_environment(tmp_path):
    fake_proc(tmp_path, 1, ["/sbin/init"], {})
    fake_proc(tmp_path, 40, ["/opt/venv/bin/python", "/opt/venv/bin/atess-exporter", "healthcheck"], {})
    env = {"ATESS_WEB_LISTEN_ADDRESS": "127.0.0.1:7777"}
    assert settings(no_flags(), environ=env, proc=str(tmp_path))[:2] == ("127.0.0.1:7777", None)


def test_cli_exit_codes(serve):
    address = serve()
    argv = [sys.executable, "-m", "atess_exporter", "healthcheck", "--web.listen-address", address, "--web.config.file", ""]
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "healthy" in ok.stdout
    argv[5] = f"127.0.0.1:{free_port()}"
    down = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1
    assert down.stderr.startswith("atess-exporter healthcheck: unhealthy: http://127.0.0.1:")
