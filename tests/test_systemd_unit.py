"""deploy/atess-exporter.service: a hardened unit that systemd accepts, and the config
docs/deploy.md tells users to write next to it works with what systemd hands over."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atess_exporter.config import load_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "atess-exporter.service"
INSTALLED = "/opt/atess-exporter/bin/atess-exporter"


def unit_settings() -> dict[str, list[str]]:
    """[section] key=value pairs, continuation lines joined, repeated keys kept in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    text = re.sub(r"\\\n\s*", " ", UNIT.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def test_unit_is_sandboxed_and_reads_the_token_as_a_credential():
    s = unit_settings()
    one = {k: v[-1] for k, v in s.items()}
    assert one["Service.DynamicUser"] == "yes"
    assert one["Service.StateDirectory"] == "atess-exporter"
    assert one["Service.WorkingDirectory"] == "%S/atess-exporter"
    assert one["Service.LoadCredential"] == "atess_token:/etc/atess-exporter/token"
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                       "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "SocketBindDeny": "any",
                       "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native"}.items():
        assert one[f"Service.{key}"] == value, key
    # it binds only the port it listens on
    port = re.search(r"--web\.listen-address=\S*:(\d+)", one["Service.ExecStart"]).group(1)
    assert one["Service.SocketBindAllow"] == f"tcp:{port}"
    # no secret on the command line or in the environment
    assert "token" not in one["Service.ExecStart"].lower()
    environment = [v for k, values in s.items() if k.startswith("Service.Environment") for v in values]
    assert all(re.fullmatch(r"MALLOC_ARENA_MAX=[0-9]+", v) for v in environment), environment


def installed_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's atess-exporter (verify checks it exists)."""
    exe = Path(sys.executable).parent / "atess-exporter"
    if not exe.exists():
        pytest.skip(f"{exe} not installed (pip install -e .)")
    text = UNIT.read_text()
    assert INSTALLED in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED, str(exe)))
    return copy


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (a machine without systemd); the unit is checked where it is")
    return tool


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    tool = systemd_analyze()
    res = subprocess.run([tool, "verify", str(installed_copy(tmp_path))], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr.strip() == "" and res.stdout.strip() == "", res.stdout + res.stderr


def test_systemd_analyze_security_rates_the_sandbox_ok(tmp_path):
    tool = systemd_analyze()
    res = subprocess.run([tool, "security", "--offline=yes", "--no-pager", str(installed_copy(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    if "--offline" in res.stderr and res.returncode != 0:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", res.stdout)
    assert m, res.stdout[-2000:] + res.stderr
    # systemd's scale: 0 (locked down) .. 10 (unprotected); below 2 is "OK", the best band
    assert float(m.group(1)) < 2.0, res.stdout[-3000:]


def test_the_documented_config_reads_the_credential_and_writes_state_in_the_state_directory(tmp_path, monkeypatch):
    """docs/deploy.md's config.yaml, with the directories systemd would hand over."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"## systemd.*?```yaml\n(.*?)```", doc, re.S).group(1)
    creds, state = tmp_path / "credentials", tmp_path / "state"
    creds.mkdir()
    state.mkdir()
    (creds / "atess_token").write_text("unit-token-value\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    (tmp_path / "config.yaml").write_text(block)
    config = load_config(str(tmp_path / "config.yaml"))
    assert config.api.credentials.authorization().reveal() == "Basic unit-token-value"
    assert Path(config.state_file).parent == state
    assert config.discovery.enabled


def test_the_config_can_be_checked_by_hand_as_docs_deploy_says(tmp_path):
    """Outside the service the systemd variables are unset: --check-config names the one missing and
    points at the doc; the doc's by-hand command (paths moved under tmp_path, no sudo) then says OK."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    config_text = re.search(r"## systemd.*?```yaml\n(.*?)```", doc, re.S).group(1)
    by_hand = re.search(r"### Checking the config by hand.*?```sh\n.*?```.*?```sh\n(.*?)```", doc, re.S).group(1)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.yaml").write_text(config_text)
    (etc / "token").write_text("by-hand-token\n")
    exporter = f"{sys.executable} -m atess_exporter"
    bare = subprocess.run(f"{exporter} --check-config --config.file {etc}/config.yaml", shell=True,
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert bare.returncode == 1
    assert "CREDENTIALS_DIRECTORY is not set: systemd sets it for the service only" in bare.stderr
    assert "Checking the config by hand" in bare.stderr
    script = (by_hand.replace("sudo ", "").replace("/etc/atess-exporter", str(etc))
              .replace("/opt/atess-exporter/bin/atess-exporter", exporter))
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{etc}/config.yaml: OK (every device of the account, by discovery")
