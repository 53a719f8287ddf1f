"""A bad config stops start-up with one line naming the key and the fix; configs that
cannot work (hostile YAML, absurd numbers, unreadable secrets) are refused at start and
by --check-config: one line, file, key, fix."""

import os
import textwrap
import time

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


BASE = """\
atess:
  base_url: http://127.0.0.1:9
  token: t0ken-value
devices:
  - {sn: SN1, type: hps_central}
"""


def write(tmp_path, text=None, data=None, name="config.yaml", state=True):
    """The config file: `text` dedented (BASE by default), or raw `data` bytes; a
    state_file in tmp_path unless the text names one (or state=False)."""
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    else:
        text = textwrap.dedent(text) if text is not None else BASE
        if state and "state_file" not in text:
            text += f"state_file: {tmp_path / 'state.json'}\n"
        path.write_text(text, encoding="utf-8")
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
]


@pytest.mark.parametrize("text,message", BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_config_names_key_and_fix(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    text_of_error = str(info.value)
    assert message in text_of_error
    assert "\n" not in text_of_error
    assert "env-secret-token" not in text_of_error


@pytest.mark.parametrize("text,line", [(GOOD, "token: ${ATESS_TEST_TOKEN}"), (BASE, "token: t0ken-value")],
                         ids=["token-from-env", "inline-token"])
def test_token_file_reads_a_docker_secret(tmp_path, text, line):
    """A token_file (a Docker secret, written with a trailing newline) replaces the token;
    the newline is not part of it. A missing file is a one-line error."""
    secret = tmp_path / "token"
    secret.write_text("file-secret-token\n")
    config = load_config(write(tmp_path, text.replace(line, f"token_file: {secret}")))
    assert config.api.credentials.authorization().reveal() == "Basic file-secret-token"
    missing = write(tmp_path, text.replace(line, f"token_file: {tmp_path}/absent"))
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


# -- configs that cannot work -------------------------------------------------------

def refused(path, *needles, capsys=None):
    """The config is refused by load_config and by --check-config, in one short line."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - started < 10
    text = str(info.value)
    assert "\n" not in text and len(text) < 700, text[:300]
    assert path in text, "the error names the file"
    for needle in needles:
        assert needle in text, text
    if capsys is not None:
        capsys.readouterr()
        assert cli.main(["--check-config", "--config.file", path]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err[:500]
    return text


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "'1e400'", "'nan'"])
def test_non_finite_numbers_are_refused(tmp_path, capsys, value):
    refused(write(tmp_path, BASE + f"poll: {{interval_seconds: {value}}}\n"), "poll.interval_seconds", "finite",
            capsys=capsys)


@pytest.mark.parametrize("key,value,bound", [
    ("poll.concurrency", 100000000, "256"),
    ("poll.interval_seconds", 10 ** 30, "86400"),
    ("poll.retries", 1000, "10"),
    ("poll.counter_reset_confirm_polls", 10 ** 400, "100"),
    ("atess.timeout_seconds", 1e6, "300"),
], ids=["concurrency", "interval", "retries", "confirm_polls", "timeout"])
def test_absurd_numbers_are_refused_with_the_bound(tmp_path, capsys, key, value, bound):
    section, name = key.split(".")
    text = BASE.replace("atess:\n", f"atess:\n  {name}: {value}\n") if section == "atess" else BASE + f"{section}: {{{name}: {value}}}\n"
    refused(write(tmp_path, text), key, bound, capsys=capsys)


def test_a_billion_laughs_is_refused_quickly(tmp_path, capsys):
    lol = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for n in "bcdefghi":
        lol += f"{n}: &{n} [" + ",".join(["*" + prev] * 9) + "]\n"
        prev = n
    refused(write(tmp_path, BASE + "x-laughs:\n" + "".join("  " + line + "\n" for line in lol.splitlines())),
            "aliases", capsys=capsys)


@pytest.mark.parametrize("style", ["flow", "block", "moderate"])
def test_yaml_nested_3000_deep_is_refused(tmp_path, capsys, style):
    if style == "flow":
        deep = "x: " + "[" * 3000 + "]" * 3000 + "\n"
    elif style == "block":   # one space per level: 1,500 levels in ~1 MB
        deep = "".join(" " * i + f"k{i}:\n" for i in range(1500)) + " " * 1500 + "v\n"
    else:                    # below libyaml's own limit of 1000: ours applies
        deep = "x: " + "[" * 100 + "]" * 100 + "\n"
    refused(write(tmp_path, BASE + deep), "nested too deep", capsys=capsys)


def test_duplicate_keys_are_refused(tmp_path, capsys):
    text = refused(write(tmp_path, BASE + "poll:\n  interval_seconds: 600\n  interval_seconds: 300\n"),
                   "given twice", capsys=capsys)
    assert "line" in text


def test_a_binary_or_utf16_config_file_is_refused_naming_the_file(tmp_path, capsys):
    refused(write(tmp_path, data=b"\x7fELF\x02\x01\x01\x00" + os.urandom(64)), "UTF-8", capsys=capsys)
    refused(write(tmp_path, data=BASE.encode("utf-16")), "UTF-8", capsys=capsys)
    refused(write(tmp_path, data=BASE.encode() + b"# caf\xe9\n"), "UTF-8", "line 6", capsys=capsys)


def test_a_huge_config_file_is_refused_without_reading_it_all(tmp_path, capsys):
    refused(write(tmp_path, BASE + "#" + "x" * (5 << 20) + "\n"), "larger than", capsys=capsys)


def test_a_huge_integer_or_value_gives_a_short_error(tmp_path, capsys):
    refused(write(tmp_path, BASE + "poll: {retries: " + "9" * 5000 + "}\n"), capsys=capsys)
    refused(write(tmp_path, BASE.replace("sn: SN1", "sn: '" + "x" * 5000 + "'")), "devices[0].sn", capsys=capsys)


def test_a_secret_file_must_be_a_small_regular_text_file(tmp_path, capsys):
    text = refused(write(tmp_path, BASE.replace("token: t0ken-value", "token_file: /dev/zero")),
                   "atess.token_file", "not a regular file", capsys=capsys)
    big = tmp_path / "big"
    big.write_bytes(b"a" * (1 << 20))
    refused(write(tmp_path, BASE.replace("token: t0ken-value", f"token_file: {big}")), "larger than", capsys=capsys)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfet\x00o\x00k\x00")
    refused(write(tmp_path, BASE.replace("token: t0ken-value", f"token_file: {binary}")), "UTF-8", capsys=capsys)
    assert "t0ken" not in text


@pytest.mark.parametrize("token,problem", [("s3cret\n", "control character"), ("s3cret\rx", "control character"),
                                           ("s3cr\u20act", "HTTP headers")])
def test_secrets_with_control_or_non_latin1_characters_are_refused_without_showing_them(
        tmp_path, capsys, monkeypatch, token, problem):
    monkeypatch.setenv("HARDEN_TOKEN", token)
    text = refused(write(tmp_path, BASE.replace("token: t0ken-value", "token: ${HARDEN_TOKEN}")),
                   "atess.token", problem, capsys=capsys)
    assert "s3cr" not in text


def test_header_values_are_checked_too(tmp_path, capsys):
    refused(write(tmp_path, BASE.replace("atess:\n", "atess:\n  language: \"de\\r\\nX-Evil: 1\"\n")),
            "atess.language", "control character", capsys=capsys)


def test_env_defaults_work_as_in_shells(tmp_path, monkeypatch):
    monkeypatch.delenv("HARDEN_UNSET", raising=False)
    monkeypatch.setenv("HARDEN_EMPTY", "")
    monkeypatch.setenv("HARDEN_SET", "600")
    text = BASE.replace("token: t0ken-value", "token: ${HARDEN_UNSET:-fallback-token}") + \
        "poll: {interval_seconds: '${HARDEN_SET:-900}', stale_after_seconds: '${HARDEN_EMPTY:-1000}', " \
        "max_data_age_seconds: '${HARDEN_EMPTY-5}9000'}\n"
    config = load_config(write(tmp_path, text))
    assert config.api.credentials.authorization().reveal() == "Basic fallback-token"
    assert config.poll.interval_seconds == 600
    assert config.poll.stale_after_seconds == 1000     # :- also replaces an empty value
    assert config.poll.max_data_age_seconds == 9000    # - replaces only an unset one


def test_env_unset_without_default_is_still_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HARDEN_UNSET", raising=False)
    refused(write(tmp_path, BASE.replace("token: t0ken-value", "token: ${HARDEN_UNSET}")),
            "HARDEN_UNSET is not set", ":-")


def test_an_unwritable_state_file_is_refused_at_start_and_by_check_config(tmp_path, capsys):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    refused(write(tmp_path, BASE + f"state_file: {blocker / 'state.json'}\n"), "state_file", "writable",
            capsys=capsys)
    refused(write(tmp_path, BASE + f"state_file: {tmp_path / 'missing-dir' / 'state.json'}\n"), "state_file",
            capsys=capsys)
    refused(write(tmp_path, BASE + f"state_file: {tmp_path}\n"), "state_file", "directory", capsys=capsys)
    # and the check leaves nothing behind
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".atess-state")]


def test_a_writable_state_file_passes_check_config(tmp_path, capsys):
    assert cli.main(["--check-config", "--config.file", write(tmp_path)]) == 0
    assert "OK" in capsys.readouterr().out
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".atess-state")]


def test_merge_keys_for_many_devices_are_not_mistaken_for_an_alias_bomb(tmp_path):
    base = "x-base: &base {type: hps_central, model: HPS150, timezone: UTC, plant_id: p1, plant_name: Plant}\n"
    devices = "".join(f"  - {{<<: *base, sn: SN{i}}}\n" for i in range(1000))
    text = BASE.replace("devices:\n  - {sn: SN1, type: hps_central}\n", "devices:\n" + devices)
    with pytest.raises(ConfigError, match="x-base: unknown key"):   # got past the YAML limits
        load_config(write(tmp_path, base + text))
