"""A rotated `*_file` secret is picked up without a restart (issue 19): Kubernetes and
systemd update a mounted secret in place; a refusal re-reads it before backing off."""

import logging

import pytest

from atess_exporter.api import client as client_mod
from atess_exporter.app import Exporter
from atess_exporter.config import parse_config
from atess_exporter.simulator import Simulator, demo_devices

OLD, NEW = "old-token-1111aaaa", "new-token-2222bbbb"


@pytest.fixture
def rotating(tmp_path):
    """(simulator accepting OLD, the token file holding OLD, a poller reading it, poll())."""
    path = tmp_path / "token"
    path.write_text(OLD + "\n")
    dev = demo_devices()[0]
    with Simulator(demo_devices(), token=OLD) as sim:
        exporter = Exporter(parse_config({
            "atess": {"base_url": sim.base_url, "token_file": str(path), "timeout_seconds": 5},
            "poll": {"interval_seconds": 300, "concurrency": 1},
            "devices": [{"sn": dev.sn, "type": dev.family, "model": dev.model}], "state_file": ""},
            min_interval=0.01))
        poller = exporter.poller
        yield sim, path, poller, lambda: poller.poll_device(poller.devices[dev.sn]).up


def test_a_refusal_re_reads_the_rotated_token_file_instead_of_pausing(rotating, caplog):
    caplog.set_level(logging.DEBUG)
    sim, path, poller, poll_up = rotating
    assert poll_up()
    sim._accepted_auth.clear()
    sim._accepted_auth.add(f"Basic {NEW}")
    with open(path, "w") as fh:              # in place, as a kubelet or systemd writes it
        fh.write(NEW + "\n")
    assert not poll_up()                     # the old token is refused...
    assert poll_up()                         # ...and the new one used at once
    assert not poller.auth.blocked()
    text = "\n".join(r.getMessage() + str(r.__dict__.get("fields", "")) for r in caplog.records)
    assert NEW not in text and OLD not in text


def test_a_rotated_token_file_is_picked_up_without_a_refusal(rotating, monkeypatch):
    monkeypatch.setattr(client_mod, "CREDENTIALS_CHECK_SECONDS", 0.0)
    sim, path, _, poll_up = rotating
    assert poll_up()
    sim._accepted_auth.add(f"Basic {NEW}")
    path.write_text(NEW + "\n")
    assert poll_up()
    sim._accepted_auth.discard(f"Basic {OLD}")
    assert poll_up()                         # sent the new one


def test_an_emptied_token_file_keeps_the_token_in_use_and_says_so_once(rotating, monkeypatch, caplog):
    monkeypatch.setattr(client_mod, "CREDENTIALS_CHECK_SECONDS", 0.0)
    caplog.set_level(logging.WARNING)
    _, path, _, poll_up = rotating
    path.write_text("")                      # a rotation caught half-way
    assert [poll_up() for _ in range(3)] == [True] * 3
    notes = [r for r in caplog.records if "credential file" in r.getMessage()]
    assert len(notes) == 1 and "is empty" in str(notes[0].__dict__.get("fields"))


def test_calls_ended_by_the_shutdown_are_not_warnings(caplog):
    """SIGTERM ends the calls in flight on purpose: that is an info line, not a warning."""
    import threading

    from atess_exporter.api.client import AtessClient
    from atess_exporter.catalog import load_catalog
    from atess_exporter.live.poller import Poller
    from atess_exporter.live.store import Cache
    from support import make_config
    from hostile_api import HostileServer

    def hang(conn, request, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        server.stopping.wait(10)

    caplog.set_level(logging.INFO)
    with HostileServer(hang) as server:
        config = make_config(server.base_url, devices=[{"sn": "A", "type": "hps_central"}],
                             atess={"timeout_seconds": 30}, poll={"retries": 0})
        poller = Poller(config, AtessClient(config.api), Cache(), load_catalog())
        worker = threading.Thread(target=lambda: poller.poll_device(poller.devices["A"]))
        worker.start()
        assert server.connected.wait(5)
        poller.stop()
        worker.join(10)
        assert not worker.is_alive()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
