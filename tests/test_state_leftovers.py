"""A save interrupted by `kill -9` leaves a temporary file; the next start removes it."""

import os
import time

from atess_exporter.live.store import Cache
from atess_exporter.catalog import load_catalog
from atess_exporter.live.poller import Poller
from atess_exporter.live.state import TEMP_PREFIX, remove_leftovers, save_state
from support import FakeClient, make_config


def test_leftover_temp_files_are_removed_at_start(tmp_path):
    state = tmp_path / "state.json"
    assert save_state(str(state), {"counters": {}})
    old = [tmp_path / f"{TEMP_PREFIX}abc{i}" for i in range(3)]
    for path in old:
        path.write_text('{"version": 1, "coun')          # a save cut short
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / f"{TEMP_PREFIX}inflight"            # a save running right now elsewhere
    fresh.write_text("{")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("keep me")
    config = make_config("http://127.0.0.1:9", devices=[{"sn": "A", "type": "hps_central"}], state_file=str(state))
    Poller(config, FakeClient({}), Cache(), load_catalog())
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([f"{TEMP_PREFIX}inflight", "notes.txt", "state.json"])


def test_no_state_file_configured_touches_nothing(tmp_path):
    path = tmp_path / f"{TEMP_PREFIX}x"
    path.write_text("")
    os.utime(path, (0, 0))
    assert remove_leftovers("") == 0 and remove_leftovers(None) == 0
    assert path.exists()
