"""What a new user meets in the first hour: a config with only credentials finds the
whole account, and the start-up line reports the devices actually found."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atess_exporter.app import Exporter
from atess_exporter.config import ConfigError, load_config, parse_config
from atess_exporter.simulator import Simulator, demo_devices
from support import TOKEN, stop_process

ROOT = Path(__file__).resolve().parent.parent


def test_credentials_alone_discover_every_device_of_the_account():
    with Simulator(demo_devices(), token=TOKEN) as sim:
        config = parse_config({"atess": {"base_url": sim.base_url, "token": TOKEN, "timeout_seconds": 5},
                               "state_file": ""})
        assert config.discovery.enabled and config.devices == ()
        exporter = Exporter(config)
        snaps = exporter.poller.run_once()
    assert sorted(s.sn for s in snaps) == sorted(d.sn for d in demo_devices())
    assert all(s.up for s in snaps)


def test_listed_devices_alone_do_not_turn_discovery_on():
    config = parse_config({"atess": {"token": "t"}, "devices": [{"sn": "YKD0F1022A", "type": "hps_central"}]})
    assert not config.discovery.enabled


def test_discovery_switched_off_without_devices_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"^devices: no device configured and discovery disabled; .*discovery.enabled: false"):
        parse_config({"atess": {"token": "t"}, "discovery": {"enabled": False}})


def test_example_config_needs_only_the_token(monkeypatch):
    monkeypatch.setenv("ATESS_TOKEN", "example-token")
    config = load_config(str(ROOT / "config.yaml"))
    assert config.discovery.enabled and config.devices == ()
    text = (ROOT / "config.yaml").read_text()
    # discovery is shown first, an explicit SN list second (commented out)
    assert text.index("discovery") < text.index("# devices:")


def test_start_up_line_comes_after_the_first_discovery_with_the_real_count(tmp_path):
    """`serving metrics devices=N` is logged once discovery has found the account (the demo: 8)."""
    err = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen([sys.executable, str(ROOT / "exporter.py"), "--demo", "--log.format", "json",
                             "--web.listen-address", "127.0.0.1:0"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 30
        lines: list[dict] = []
        while time.monotonic() < deadline and not any(r.get("msg") == "serving metrics" for r in lines):
            assert proc.poll() is None, "exporter exited"
            time.sleep(0.1)
            err.seek(0)
            lines = [json.loads(ln) for ln in err.read().splitlines() if ln.startswith("{")]
        messages = [r["msg"] for r in lines]
        assert "serving metrics" in messages, messages
        serving = lines[messages.index("serving metrics")]
        assert "discovery" in messages[:messages.index("serving metrics")]
        assert int(serving["devices"]) == len(demo_devices()) and str(serving["discovery"]) in ("True", "true")
    finally:
        stop_process(proc)
        err.close()
