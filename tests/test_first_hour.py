"""What a new user meets in the first hour: a config with only credentials finds the
whole account, and the start-up line reports the devices actually found."""

from __future__ import annotations

import json
import re
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


# -- README "Try your config against the simulator", verbatim ------------------------------------

def readme_blocks(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    return [block for block in section.split("```sh\n")[1:]]


def test_readme_try_your_config_steps_work_verbatim(tmp_path):
    """The two terminals of the README, run as written (the console script from this venv on PATH):
    simulate 100 devices in 20 plants, then check, poll once and probe the written config."""
    server_block, client_block = (b.split("```", 1)[0] for b in readme_blocks("### Try your config against the simulator"))
    [server_cmd] = server_block.strip().splitlines()
    assert server_cmd == "atess-exporter simulate --devices 100 --plants 20 --write-config try.yaml"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    server = subprocess.Popen(["bash", "-c", f"exec {server_cmd}"], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        printed = []
        for line in server.stdout:          # readiness: the line saying the config was written
            printed.append(line)
            if line.startswith("wrote try.yaml"):
                break
        assert printed and printed[-1].startswith("wrote try.yaml"), ("".join(printed), server.stderr.read())
        assert printed[0].startswith("simulated ATESS cloud: 100 devices in 20 plants")
        assert printed[2].split() == ["token:", "demo-token"]
        outputs = []
        for cmd in client_block.strip().splitlines():
            res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=240)
            assert res.returncode == 0, (cmd, res.stdout[-2000:], res.stderr[-2000:])
            outputs.append(res.stdout)
        check, count, probe = outputs
        assert check.startswith("try.yaml: OK (every device of the account, by discovery")
        assert count.strip() == "100"
        assert "endpoints answered" in probe and "failed" not in probe
    finally:
        stop_process(server)
        server.stdout.close()
        server.stderr.close()
    assert server.returncode == 0, "simulate ends cleanly on SIGTERM"


def test_readme_type_table_is_the_catalogs():
    from atess_exporter.catalog import load_catalog
    from atess_exporter.catalog.models import FAMILY_MODELS

    text = (ROOT / "README.md").read_text().split("### Which `type` is my device?", 1)[1]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|$", text.split("\n\n", 3)[2], re.M))
    assert rows.pop("type") == "models" and rows == FAMILY_MODELS
    assert set(FAMILY_MODELS) == set(load_catalog().families)


def test_a_device_configured_as_the_wrong_hps_type_is_named_and_polled_as_the_right_one(caplog):
    """An HPS30TL listed as hps_central: its first poll gets "not found" (code 400) on the central path,
    tries the other families' paths once, logs the type that answered, and is up within that poll;
    the next poll goes straight to the string path."""
    sn = "HPS30TL2405000021"
    with Simulator(demo_devices(), token=TOKEN) as sim:
        config = parse_config({"atess": {"base_url": sim.base_url, "token": TOKEN, "timeout_seconds": 5},
                               "devices": [{"sn": sn, "type": "hps_central", "model": "HPS30TL"}], "state_file": ""})
        exporter = Exporter(config)
        with caplog.at_level("WARNING", logger="atess_exporter"):
            [snap] = exporter.poller.run_once()
        assert snap.up and snap.device_type == "hps_string" and snap.samples
        [record] = [r for r in caplog.records if r.getMessage() == "device answers as another type; polling it there"]
        assert record.fields["sn"] == sn and record.fields["configured"] == "hps_central"
        assert record.fields["answered_as"] == "hps_string"
        assert not [r for r in caplog.records if r.getMessage() == "poll failed"]
        central, string = "/api/v1/hps/data-last", "/api/v1/hps/data-last-small"
        assert sim.calls[(central, sn)] == 1 and sim.calls[(string, sn)] == 1
        [snap] = exporter.poller.run_once()
        assert snap.up and sim.calls[(central, sn)] == 1 and sim.calls[(string, sn)] == 2
        assert exporter.poller.devices[sn].type == "hps_string"


def test_a_device_no_family_knows_is_tried_once_and_reported_as_failed(caplog):
    with Simulator(demo_devices(), token=TOKEN) as sim:
        config = parse_config({"atess": {"base_url": sim.base_url, "token": TOKEN, "timeout_seconds": 5},
                               "devices": [{"sn": "NOSUCH0001", "type": "hps_central"}], "state_file": ""})
        exporter = Exporter(config)
        [snap] = exporter.poller.run_once()
        calls_after_first = sum(sim.calls.values())
        [snap] = exporter.poller.run_once()
    assert not snap.up and "not found" in snap.error
    assert sum(sim.calls.values()) == calls_after_first + 1, "the other paths are tried once, not every poll"
