"""A bad config stops start-up with one line naming the key and the fix."""

import textwrap

import pytest

from atess_exporter import cli
from atess_exporter.config import ConfigError, load_config

GOOD = """
atess:
  base_url: http://127.0.0.1:8080
  token: ${ATESS_TEST_TOKEN}
poll:
  interval_seconds: 300
devices:
  - sn: YKD0F1022A
    type: hps_central
    model: HPS150
"""


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture(autouse=True)
def token_env(monkeypatch):
    monkeypatch.setenv("ATESS_TEST_TOKEN", "env-secret-token")


def test_good_config_loads_with_defaults(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.api.credentials.authorization().reveal() == "Basic env-secret-token"
    assert config.poll.interval_seconds == 300 and config.poll.concurrency == 4
    assert config.devices[0].sn == "YKD0F1022A" and config.devices[0].model == "HPS150"
    assert config.endpoint("hps_central", "latest") == "/api/v1/hps/data-last"
    assert "env-secret-token" not in repr(config), "the secret must not show in a repr (logs, tracebacks)"


BAD = [
    ("atess: [unclosed\n", "YAML syntax error at line"),
    (GOOD.replace("interval_seconds: 300", "interval_secs: 300"), "poll.interval_secs: unknown key; did you mean 'poll.interval_seconds'?"),
    (GOOD.replace("  token: ${ATESS_TEST_TOKEN}\n", ""), "atess.token: missing credential"),
    (GOOD.replace("token: ${ATESS_TEST_TOKEN}", "token: ${ATESS_UNSET_VARIABLE}"), "environment variable ATESS_UNSET_VARIABLE is not set"),
    (GOOD.replace("interval_seconds: 300", "interval_seconds: 60"), "poll.interval_seconds: 60 is below the minimum 300; the ATESS API allows one call per device every 5 minutes"),
    (GOOD.replace("type: hps_central", "type: hps_centrl"), "devices[0].type: unknown device type 'hps_centrl'; did you mean 'hps_central'?"),
    (GOOD.replace("interval_seconds: 300", "interval_seconds: often"), "poll.interval_seconds: must be a number"),
    (GOOD.replace("interval_seconds: 300", "interval_seconds: [300]"), "poll.interval_seconds: must be a number, got a list"),
    (GOOD.replace("base_url: http://127.0.0.1:8080", "base_url: 127.0.0.1"), "atess.base_url: '127.0.0.1' is not an http(s) URL"),
    (GOOD + "  - sn: YKD0F1022A\n    type: hps_central\n", "devices[1].sn: YKD0F1022A is listed twice"),
    (GOOD.replace("devices:", "device:"), "device: unknown key; did you mean 'devices'?"),
    (GOOD + "endpoints:\n  plant: {latest: /api/v1/plant/x}\n", "endpoints.plant.latest: unknown key; did you mean 'endpoints.plant.list'?"),
    (GOOD + "endpoints:\n  pcs: {latest: api/v1/pcs/x}\n", "endpoints.pcs.latest: 'api/v1/pcs/x' must be a path starting with '/'"),
    (GOOD + "discovery: {enabled: yes-please}\n", "discovery.enabled: must be true or false"),
    (GOOD + "shard: 3/3\n", "shard: INDEX is 0-based and must be below COUNT (3)"),
    (GOOD.replace("poll:\n  interval_seconds: 300", "poll:\n  interval_seconds: 300\n  stale_after_seconds: 900\n  max_data_age_seconds: 60"), "poll.max_data_age_seconds: 60 is below stale_after_seconds"),
    # issue 20: the first hour
    (GOOD.replace("token:", "tokn:"), "atess.tokn: unknown key; did you mean 'atess.token'?"),
    (GOOD.replace("atess:", "ates:"), "ates: unknown key; did you mean 'atess'?"),
    (GOOD.replace("  token:", "\ttoken:"), "line 4 is indented with a tab; YAML indents with spaces only: replace the tab with spaces"),
    (GOOD.replace("interval_seconds: 300", "interval_seconds: 300\n  stale_after_seconds: 200"),
     "poll.stale_after_seconds: 200 is below interval_seconds (300): every reading would turn stale before the next poll"),
    (GOOD.replace("type: hps_central", "type: hps"), "devices[0].type: unknown device type 'hps'; did you mean "
     "'hps_central' (central hybrid inverters HPS30, HPS50"),
    (GOOD.replace("type: hps_central", "type: HPS"), "or 'hps_string' (string hybrid inverters, names ending in TL or TLS: HPS30TL"),
    (GOOD + "discovery: {families: [hps]}\n", "discovery.families: unknown device family 'hps'; did you mean 'hps_central'"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_config_names_key_and_fix(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    text_of_error = str(info.value)
    assert message in text_of_error
    assert "\n" not in text_of_error
    assert "env-secret-token" not in text_of_error


def test_token_file_reads_a_docker_secret(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("file-secret-token\n")
    config = load_config(write(tmp_path, GOOD.replace("token: ${ATESS_TEST_TOKEN}", f"token_file: {secret}")))
    assert config.api.credentials.authorization().reveal() == "Basic file-secret-token"
    missing = write(tmp_path, GOOD.replace("token: ${ATESS_TEST_TOKEN}", f"token_file: {tmp_path}/absent"))
    with pytest.raises(ConfigError, match=r"atess.token_file: cannot read"):
        load_config(missing)


def test_check_config_prints_one_line_verdict_and_exit_code(tmp_path, capsys):
    assert cli.main(["--check-config", "--config.file", write(tmp_path, GOOD)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "OK (1 devices, poll every 300s)" in out
    bad = write(tmp_path, GOOD.replace("type: hps_central", "type: toaster"))
    assert cli.main(["--check-config", "--config.file", bad]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "devices[0].type: unknown device type 'toaster'" in err
    assert "Traceback" not in err


def test_start_up_with_bad_config_exits_1_without_traceback(tmp_path, capsys):
    assert cli.main(["--config.file", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert "cannot read the config file" in err and "--config.file" in err and "Traceback" not in err
