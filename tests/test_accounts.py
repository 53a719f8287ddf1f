"""Several ATESS accounts in one exporter (`accounts:`): each listed and polled with its
own credentials, the `account` label only where more than one is configured, and a
refused credential pausing only its own account."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from atess_exporter.app import Exporter
from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS
from atess_exporter.config import ConfigError, parse_config
from atess_exporter.simulator import Simulator, demo_devices, fleet_of
from support import ROOT, free_port, http_get, parse_exposition, scrape, series, stop_process, value, wait_for

LATEST = {ops["latest"] for ops in DEFAULT_ENDPOINTS.values() if "latest" in ops}
NORTH, SOUTH = "north-token-s3cret", "south-token-s3cret"


def two_accounts(north_url: str, south_url: str, **south) -> dict:
    return {
        "atess": {"timeout_seconds": 5, "language": "de"},
        "poll": {"interval_seconds": 300, "stale_after_seconds": 1200},
        "accounts": [
            {"name": "north", "base_url": north_url, "token": NORTH},
            {"name": "south", "base_url": south_url, "token": SOUTH, **south},
        ],
        "state_file": "",
    }


# -- the config ---------------------------------------------------------------------

def test_each_account_takes_the_shared_sections_and_overrides_its_own():
    config = parse_config({
        "atess": {"base_url": "https://example.invalid", "timezone": "UTC+8"},
        "poll": {"interval_seconds": 600, "concurrency": 2},
        "discovery": {"refresh_seconds": 21600},
        "accounts": [
            {"name": "north", "token": "a"},
            {"name": "south", "app_id": "id", "app_key": "key", "timezone": "auto",
             "poll": {"concurrency": 8, "auth_backoff_seconds": 60},
             "discovery": {"exclude": {"sn": ["X1"]}},
             "devices": [{"sn": "Y1", "type": "pcs"}]},
        ],
        "state_file": "/var/lib/atess/state.json",
    })
    north, south = config.all_accounts()
    assert (north.name, north.api.timezone, north.poll.concurrency, north.devices) == ("north", "UTC+8", 2, ())
    assert north.discovery.enabled and north.discovery.refresh_seconds == 21600
    assert (south.api.timezone, south.poll.concurrency, south.poll.auth_backoff_seconds) == ("auto", 8, 60)
    assert south.poll.interval_seconds == 600 and south.api.base_url == "https://example.invalid"
    assert [d.sn for d in south.devices] == ["Y1"] and not south.discovery.enabled   # listed devices: no discovery
    assert south.discovery.exclude_sns == {"X1"} and south.discovery.refresh_seconds == 21600
    assert (north.state_file, south.state_file) == ("/var/lib/atess/state.north.json", "/var/lib/atess/state.south.json")
    assert config.for_account(south).account_label() == "south"
    assert {"a", "key"} <= set(config.secrets())


def test_one_account_in_the_list_has_no_label_and_keeps_the_state_file():
    config = parse_config({"accounts": [{"name": "only", "token": "a"}], "state_file": "/s/state.json"})
    assert config.account_label() == "" and config.state_file == "/s/state.json"
    assert parse_config({"atess": {"token": "a"}}).account_label() == ""


@pytest.mark.parametrize("data, error", [
    ({"atess": {"token": "a"}, "accounts": [{"name": "n", "token": "b"}]},
     r"^atess.token: with accounts:, each account has its own credentials; move it into its account \(accounts\[0\].token\)$"),
    ({"accounts": [{"name": "n", "token": "a"}, {"name": "n", "token": "b"}]},
     r"^accounts\[1\].name: n is used twice \(also accounts\[0\]\); give each account its own name$"),
    ({"accounts": [{"name": "North Site", "token": "a"}]}, r"^accounts\[0\].name: 'North Site' is not an account name"),
    ({"accounts": [{"token": "a"}]}, r"^accounts\[0\].name: missing; give the account a name"),
    ({"accounts": [{"name": "n"}]}, r"^accounts\[0\].token: missing credential"),
    ({"accounts": [{"name": "n", "tokn": "a"}]}, r"^accounts\[0\].tokn: unknown key; did you mean 'accounts\[0\].token'\?$"),
    ({"accounts": [{"name": "n", "token": "a", "poll": {"stale_after_seconds": 900}}]},
     r"^accounts\[0\].poll.stale_after_seconds: applies to every account; set it in the top-level poll: section"),
    ({"accounts": [{"name": "n", "token": "a", "poll": {"interval_seconds": 60}}]},
     r"^accounts\[0\].poll.interval_seconds: 60 is below the minimum 300"),
    ({"accounts": [{"name": "n", "token": "a"}], "devices": [{"sn": "A", "type": "pcs"}]},
     r"^devices: with accounts:, list each device under its account"),
    ({"accounts": [{"name": "n", "token": "a", "devices": [{"sn": "A", "type": "pcs"}]},
                   {"name": "s", "token": "b", "devices": [{"sn": "A", "type": "pcs"}]}]},
     r"^accounts\[1\].devices: A is also listed under accounts\[0\]; a device belongs to one account$"),
    ({"accounts": [{"name": "n", "token": "a", "state_file": "/s/x.json"}, {"name": "s", "token": "b", "state_file": "/s/x.json"}]},
     r"^accounts\[1\].state_file: '/s/x.json' is also accounts\[0\]'s; give each account its own state file$"),
    ({"accounts": []}, r"^accounts: must be a list of accounts"),
    ({"accounts": {"name": "n"}}, r"^accounts: must be a list of accounts"),
])
def test_account_mistakes_are_one_line_naming_the_key(data, error):
    with pytest.raises(ConfigError, match=error):
        parse_config(data)


def test_a_secret_of_either_account_never_shows_in_the_config_error():
    with pytest.raises(ConfigError) as caught:
        parse_config({"accounts": [{"name": "n", "token": "first-secret-value"},
                                   {"name": "s", "token": "second-secret", "app_id": "x"}]})
    assert "secret" not in str(caught.value) and "accounts[1]" in str(caught.value)


# -- two accounts, one exporter ------------------------------------------------------------

def test_two_accounts_are_each_discovered_and_polled_under_their_own_label():
    south_fleet = fleet_of(6, 2)
    with Simulator(demo_devices(), token=NORTH) as north, Simulator(south_fleet, token=SOUTH) as south:
        exporter = Exporter(parse_config(two_accounts(north.base_url, south.base_url)))
        snaps = exporter.run_once()
        parsed = scrape(exporter)
        calls = {"north": dict(north.calls), "south": dict(south.calls)}
    assert len(snaps) == len(demo_devices()) + 6 and all(s.up for s in snaps)
    info = series(parsed, "atess_device_info")
    owners = {dict(labels)["sn"]: dict(labels).get("account") for labels in info}
    assert owners == {**{d.sn: "north" for d in demo_devices()}, **{d.sn: "south" for d in south_fleet}}
    # only info series carry the account: readings stay {sn, model} (join on sn)
    assert all("account" not in dict(labels) for labels in series(parsed, "atess_device_up"))
    assert value(parsed, "atess_api_auth_ok", account="north") == 1
    assert value(parsed, "atess_api_auth_ok", account="south") == 1
    plants = {dict(labels)["plant_id"]: dict(labels)["account"] for labels in series(parsed, "atess_plant_info")}
    assert set(plants.values()) == {"north", "south"} and plants["PL2001"] == "south"
    assert {dict(labels)["account"] for labels in series(parsed, "atess_api_requests_total")} == {"north", "south"}
    # each account's calls went to its own API only, one latest-data call per device
    for sim, fleet in (("north", demo_devices()), ("south", south_fleet)):
        latest = {sn: n for (path, sn), n in calls[sim].items() if path in LATEST and sn}
        assert set(latest) == {d.sn for d in fleet} and set(latest.values()) == {1}


def test_a_device_two_accounts_list_is_polled_once_under_the_first():
    with Simulator(demo_devices(), token=NORTH) as north, Simulator(demo_devices(), token=SOUTH) as south:
        exporter = Exporter(parse_config(two_accounts(north.base_url, south.base_url)))
        snaps = exporter.run_once()
        text = exporter.exposition().decode()
        parsed = parse_exposition(text)
        south_latest = [key for key in south.calls if key[1]]
    assert sorted(s.sn for s in snaps) == sorted(d.sn for d in demo_devices())
    assert south_latest == []     # never polled twice: the API allows one call per device per interval
    assert {dict(labels)["account"] for labels in series(parsed, "atess_device_info")} == {"north"}
    # the shared plants and dataloggers once each, under the first account: no duplicate series
    plants = [dict(labels) for labels in series(parsed, "atess_plant_info")]
    assert len(plants) == len({d.plant_id for d in demo_devices()}) and {p["account"] for p in plants} == {"north"}
    assert len(series(parsed, "atess_plant_capacity_watts")) == len(plants)
    datalogs = [dict(labels)["datalog_sn"] for labels in series(parsed, "atess_datalog_info")]
    assert len(datalogs) == len(set(datalogs))
    names = [line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert len(names) == len(set(names)), "a series exported twice"


def test_refused_token_pauses_only_its_account_and_a_rotated_file_resumes_it(tmp_path):
    """The whole user path: the exporter process, two loopback APIs, one token wrong."""
    token_file = tmp_path / "south-token"
    token_file.write_text("a-wrong-token\n")
    config = two_accounts("http://127.0.0.1:1", "http://127.0.0.1:1")
    config["state_file"] = str(tmp_path / "state.json")
    south_fleet = fleet_of(4, 2)
    with Simulator(demo_devices(), token=NORTH) as north, Simulator(south_fleet, token=SOUTH) as south:
        config["accounts"][0]["base_url"] = north.base_url
        config["accounts"][1].update(base_url=south.base_url, token_file=str(token_file),
                                     poll={"auth_backoff_seconds": 1})
        del config["accounts"][1]["token"]
        (tmp_path / "config.yaml").write_text(json.dumps(config))
        port = free_port()
        err = (tmp_path / "stderr").open("w+")
        proc = subprocess.Popen([sys.executable, str(ROOT / "exporter.py"), "--config.file", str(tmp_path / "config.yaml"),
                                 "--web.listen-address", f"127.0.0.1:{port}", "--log.format", "json"],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
        try:
            def metrics() -> dict:
                return parse_exposition(http_get(port)[2].decode())

            def north_up_south_refused():
                parsed = metrics()
                up = series(parsed, "atess_device_up")
                return (len(up) == len(demo_devices()) and set(up.values()) == {1.0}
                        and value(parsed, "atess_api_auth_ok", account="south") == 0) and parsed

            parsed = wait_for(north_up_south_refused, "north polled while south's token is refused", procs=[proc])
            assert value(parsed, "atess_api_auth_ok", account="north") == 1
            assert not any(d.sn in {dict(k)["sn"] for k in series(parsed, "atess_device_info")} for d in south_fleet)
            status, _, page = http_get(port, "/")
            assert status == 200 and b"Account south: The ATESS API refuses the credentials" in page
            assert b"Account north" not in page
            assert (tmp_path / "state.north.json").exists()
            north_calls = sum(n for (_, sn), n in north.calls.items() if sn)

            token_file.write_text(SOUTH + "\n")     # the secret rotated in place

            def south_polled():
                up = series(metrics(), "atess_device_up")
                return len(up) == len(demo_devices()) + len(south_fleet) and set(up.values()) == {1.0}

            wait_for(south_polled, "south discovered and polled after its token file changed", procs=[proc])
            assert sum(n for (_, sn), n in north.calls.items() if sn) == north_calls   # north untouched
        finally:
            stop_process(proc)
        err.seek(0)
        lines = [json.loads(line) for line in err if line.startswith("{")]
    refused = [line for line in lines if line.get("outcome") == "auth_failed"]
    assert refused and {line.get("account") for line in refused} == {"south"}     # each line says whose
    assert all("check accounts[1].token" in line["error"] for line in refused)   # the key to fix
    assert {line.get("account") for line in lines if line["msg"] == "discovery"} == {"north", "south"}
    text = (tmp_path / "stderr").read_text()
    assert "a-wrong-token" not in text and SOUTH not in text and NORTH not in text


def test_probe_and_backfill_pick_one_account_by_name(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"accounts": [{"name": "north", "token": "a"}, {"name": "south", "token": "b"}],
                                  "state_file": ""}))
    for command in (["probe"], ["backfill", "--from", "2026-01-01"]):
        run = subprocess.run([sys.executable, str(ROOT / "exporter.py"), *command, "--config.file", str(config)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 1
        assert "the config has 2 accounts (north, south); pick one with --account NAME" in run.stderr
        run = subprocess.run([sys.executable, str(ROOT / "exporter.py"), *command, "--config.file", str(config),
                              "--account", "west"], capture_output=True, text=True, timeout=60)
        assert "--account 'west': no such account; the config has north, south" in run.stderr
    one = parse_config(json.loads(config.read_text())).one_account("south")
    assert one.api.credentials.token.reveal() == "b" and one.account_name == "south"


def test_a_device_one_account_lists_and_another_already_holds_is_polled_once(tmp_path):
    """North's saved listing holds the device from start-up; south lists it in devices: -- it
    stays north's, and south never calls for it (a second call would break the API's limit)."""
    listed = demo_devices()[0]
    with Simulator(demo_devices(), token=NORTH) as north, Simulator(fleet_of(2, 1), token=SOUTH) as other:
        config = two_accounts(north.base_url, other.base_url)
        config["state_file"] = str(tmp_path / "state.json")
        first = Exporter(parse_config(config))
        first.run_once()
        first.stop()
    assert (tmp_path / "state.north.json").exists()
    with Simulator(demo_devices(), token=NORTH) as north, Simulator(demo_devices(), token=SOUTH) as south:
        config = two_accounts(north.base_url, south.base_url,
                              devices=[{"sn": listed.sn, "type": listed.family, "model": listed.model}])
        config["state_file"] = str(tmp_path / "state.json")
        exporter = Exporter(parse_config(config))
        exporter.run_once()
        south_calls = sum(n for (path, sn), n in south.calls.items() if sn == listed.sn and path in LATEST)
        parsed = scrape(exporter)
    assert south_calls == 0
    assert {dict(k)["account"] for k in series(parsed, "atess_device_info", sn=listed.sn)} == {"north"}
