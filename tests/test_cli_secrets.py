"""The command line end to end, and the secret that must never show."""

import base64
import logging

import pytest
import yaml

from atess_exporter import cli
from atess_exporter.simulator import Simulator, demo_devices
from support import TOKEN, parse_exposition, value

APP_ID, APP_KEY = "app-id-7f3c9e", "app-key-secret-91b2d4"
SECRETS = (TOKEN, APP_KEY, base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode())


def config_file(tmp_path, base_url, credentials):
    data = {
        "atess": {"base_url": base_url, "timeout_seconds": 2, **credentials},
        "poll": {"retry_backoff_seconds": 0.001},
        "state_file": str(tmp_path / "state.json"),
        "devices": [{"sn": d.sn, "type": d.family, "model": d.model} for d in demo_devices()],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    logging.getLogger().handlers.clear()


def test_once_prints_the_exposition_and_exits_0(tmp_path, capsys):
    with Simulator(demo_devices(), token=TOKEN) as sim:
        rc = cli.main(["--once", "--config.file", config_file(tmp_path, sim.base_url, {"token": TOKEN})])
    out = capsys.readouterr().out
    assert rc == 0
    parsed = parse_exposition(out)
    assert all(value(parsed, "atess_device_up", sn=d.sn) == 1 for d in demo_devices())


def test_once_exits_1_when_every_device_failed(tmp_path, capsys):
    with Simulator(demo_devices(), token="another-token") as sim:
        rc = cli.main(["--once", "--config.file", config_file(tmp_path, sim.base_url, {"token": TOKEN})])
    assert rc == 1
    assert value(parse_exposition(capsys.readouterr().out), "atess_api_auth_ok") == 0


@pytest.mark.parametrize("credentials", [{"token": TOKEN}, {"app_id": APP_ID, "app_key": APP_KEY}], ids=["token", "app_id"])
def test_no_secret_in_logs_output_or_errors_at_debug(tmp_path, capsys, credentials):
    """Every fault path at debug level, in both log formats: the secret never appears."""
    accepting = dict(token=TOKEN, app_id=APP_ID, app_key=APP_KEY)
    for sim_credentials in (accepting, dict(token="refuses-everyone")):
        with Simulator(demo_devices(), **sim_credentials) as sim:
            path = config_file(tmp_path, sim.base_url, credentials)
            sim.set_fault(demo_devices()[1].sn, "http_500")
            sim.set_fault(demo_devices()[2].sn, "invalid_json")
            for fmt in ("logfmt", "json"):
                cli.main(["--once", "--log.level", "debug", "--log.format", fmt, "--config.file", path])
                cli.main(["--check-config", "--config.file", path])
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(path).read().replace("timeout_seconds: 2", "timeout_seconds: fast"))
    assert "timeout_seconds: fast" in bad.read_text()
    cli.main(["--check-config", "--config.file", str(bad)])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    # the fault paths did log, at debug and above, in both formats
    assert "level=error" in text and '"level": "error"' in text
    assert "level=debug" in text and '"level": "debug"' in text
    assert "outcome=http_5xx" in text and "outcome=invalid_json" in text and "No access" in text
    for secret in SECRETS:
        assert secret not in text
