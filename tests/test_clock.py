"""The API servers' clock: zones in every spelling, and the offset measured from readings."""

import logging
import time
from datetime import datetime, timezone

import pytest

from atess_exporter.outside.zones import offset_text, parse_zone
from atess_exporter.readings.clock import ServerClock, parse_wall, vote_of

NOW = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC


def wall_text(ts: float, offset_hours: float) -> str:
    """How a server in UTC+offset writes the Unix time ts."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts + offset_hours * 3600))


def offset_of(zone) -> float:
    return zone.utcoffset(datetime(2026, 1, 15)).total_seconds() / 3600


@pytest.mark.parametrize("value, hours", [
    (8, 8), ("8", 8), ("GMT+8", 8), ("UTC+08:00", 8), ("+8", 8), (-5.5, -5.5), ("-5.5", -5.5),
    ("UTC-05:30", -5.5), ("GMT -3", -3), ("utc", 0), ("GMT", 0), (0, 0), ("UTC+0530", 5.5), (5.75, 5.75),
    ("Asia/Shanghai", 8), ("Europe/Berlin", 1), ("America/New_York", -5),
    # the IANA key keeps its POSIX sign: Etc/GMT+8 is UTC-8, unlike "GMT+8"
    ("Etc/GMT+8", -8), ("Etc/GMT-8", 8),
])
def test_every_spelling_of_a_zone(value, hours):
    assert offset_of(parse_zone(value)) == hours


@pytest.mark.parametrize("value", [None, True, "", "  ", "Mars/Olympus", "+15", 99, float("nan"), "GMT+8:75",
                                   "../../etc/passwd", "x" * 100, 8.1234, [8], {"tz": 8}])
def test_what_names_no_zone(value):
    assert parse_zone(value) is None


def test_offset_text():
    assert (offset_text(28800), offset_text(-19800), offset_text(0)) == ("UTC+08:00", "UTC-05:30", "UTC")


def test_wall_time_parsing():
    assert parse_wall("2020-07-28 13:32:43") == datetime(2020, 7, 28, 13, 32, 43, tzinfo=timezone.utc).timestamp()
    for bad in (None, 17, "", "yesterday", "2020-13-01 00:00:00", "1970-01-01 00:00:00", "9999-01-01 00:00:00", "2" * 50):
        assert parse_wall(bad) is None


@pytest.mark.parametrize("age", [0, 30, 299, 599])
def test_a_fresh_reading_votes_for_its_servers_zone(age):
    for hours in (8, 0, -5, 5.5, -9.5):
        assert vote_of(parse_wall(wall_text(NOW - age, hours)), NOW) == hours * 3600


def test_old_or_impossible_readings_do_not_vote():
    assert vote_of(parse_wall(wall_text(NOW - 2 * 86400, 8)), NOW) is None    # two days old
    assert vote_of(parse_wall(wall_text(NOW - 720, 8)), NOW) is None          # 12 min past a quarter hour
    assert vote_of(parse_wall(wall_text(NOW, 15)), NOW) is None               # no zone is UTC+15


def fleet_clock(readings, now=NOW, zone=None):
    """readings: [(sn, age seconds, servers' offset hours)]; the clock after one poll of each."""
    clock = ServerClock(zone)
    for sn, age, hours in readings:
        clock.observe(sn, parse_wall(wall_text(now - age, hours)), now)
    clock.decide()
    return clock


def test_a_fleet_in_utc8_is_placed_right_whatever_the_user_zone(caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    # Ten devices, three of them really behind (an hour, three hours, two days): they must not drag it.
    readings = [(f"D{i}", 30 * i, 8) for i in range(7)] + [("OLD1", 3600, 8), ("OLD2", 3 * 3600, 8), ("OLD3", 2 * 86400, 8)]
    for user_zone in ("UTC", "America/New_York"):
        monkeypatch.setenv("TZ", user_zone)
        time.tzset()
        clock = fleet_clock(readings)
        assert clock.decision.offset == 8 * 3600 and clock.decision.agreeing == 7
        fresh = clock.place(parse_wall(wall_text(NOW - 120, 8)), NOW)
        assert fresh.at == NOW - 120
        old = clock.place(parse_wall(wall_text(NOW - 2 * 86400, 8)), NOW)
        assert old.at == NOW - 2 * 86400   # two days old stays two days old
    monkeypatch.delenv("TZ")
    time.tzset()
    found = [r for r in caplog.records if "clock found" in r.getMessage()]
    assert found and found[-1].fields["offset_seconds"] == 28800 and found[-1].fields["devices"] == 7


def test_a_fleet_in_utc():
    clock = fleet_clock([(f"D{i}", 10 + 40 * i, 0) for i in range(5)])
    assert clock.decision.offset == 0
    assert clock.place(parse_wall(wall_text(NOW - 60, 0)), NOW).at == NOW - 60


def test_a_single_device_decides_and_the_log_says_so(caplog):
    caplog.set_level(logging.INFO)
    clock = fleet_clock([("ONLY", 100, 8)])
    assert clock.decision == clock.decision.__class__(28800, 1, 1)
    assert any("one device" in r.getMessage() for r in caplog.records)


def test_a_single_device_hours_off_a_quarter_hour_decides_nothing():
    clock = fleet_clock([("ONLY", 3 * 3600 + 700, 8)])   # 11 min past a quarter hour: no vote
    assert clock.decision.offset is None
    # undecided: UTC, so the UTC+8 reading would be in the future: refused, not placed there
    placed = clock.place(parse_wall(wall_text(NOW, 8)), NOW)
    assert placed.at is None and placed.ahead == pytest.approx(8 * 3600)


def test_a_split_fleet_keeps_the_last_decision_and_warns_once(caplog):
    clock = fleet_clock([("A", 0, 8), ("B", 0, 8), ("C", 0, 8)])
    assert clock.decision.offset == 28800
    caplog.set_level(logging.INFO)
    later = NOW + 300
    # the vendor moves two servers: now 2 say UTC, 2 say UTC+8, and one says UTC+1
    for sn, hours in (("A", 0), ("B", 0), ("D", 1)):
        clock.observe(sn, parse_wall(wall_text(later, hours)), later)
    for _ in range(3):
        assert clock.decide() is False
    assert clock.decision.offset == 28800
    warnings = [r for r in caplog.records if "disagree" in r.getMessage()]
    assert len(warnings) == 1


def test_a_split_fleet_without_a_decision_stays_utc():
    clock = fleet_clock([("A", 0, 8), ("B", 0, 0)])
    assert clock.decision.offset is None and clock.offset_seconds() == 0


def test_new_evidence_changes_the_decision_and_says_so(caplog):
    clock = fleet_clock([("A", 0, 8), ("B", 60, 8), ("C", 0, 8)])
    caplog.set_level(logging.INFO)
    later = NOW + 600
    for sn in "ABC":
        clock.observe(sn, parse_wall(wall_text(later, 0)), later)
    assert clock.decide() is True and clock.decision.offset == 0
    assert [r.getMessage() for r in caplog.records if "changed" in r.getMessage()] == ["API servers' clock changed"]


def test_a_device_repeating_its_reading_keeps_its_vote():
    clock = fleet_clock([("ONLY", 0, 8)])
    text = wall_text(NOW, 8)
    for hours_later in (0.3, 1, 5, 30):   # the device stopped: the same `time` again and again
        later = NOW + hours_later * 3600
        clock.observe("ONLY", parse_wall(text), later)
        clock.decide()
        assert clock.decision.offset == 28800
        assert clock.place(parse_wall(text), later).at == NOW   # it grows old, as it should


def test_a_reading_in_the_future_is_never_placed_there(caplog):
    clock = fleet_clock([(f"D{i}", 0, 8) for i in range(4)])
    slightly = clock.place(parse_wall(wall_text(NOW + 90, 8)), NOW)
    assert slightly.at == NOW                                  # clock skew: placed at the poll
    far = clock.place(parse_wall(wall_text(NOW + 86400, 8)), NOW)
    assert far.at is None and far.ahead == pytest.approx(86400)
    caplog.set_level(logging.WARNING)
    clock.warn_ahead("D1", far.ahead)
    clock.warn_ahead("D2", far.ahead)
    assert len([r for r in caplog.records if "ahead" in r.getMessage()]) == 1


def test_an_explicit_zone_wins_but_a_contradiction_is_said(caplog):
    caplog.set_level(logging.WARNING)
    clock = fleet_clock([(f"D{i}", 0, 8) for i in range(4)], zone=parse_zone("UTC"))
    assert clock.offset_seconds() == 0
    placed = clock.place(parse_wall(wall_text(NOW, 0)), NOW)
    assert placed.at == NOW
    assert any("another zone" in r.getMessage() and r.fields["suggested"] == "UTC+08:00" for r in caplog.records)


def test_a_device_zone_overrides_the_measurement():
    clock = fleet_clock([(f"D{i}", 0, 8) for i in range(4)])
    placed = clock.place(parse_wall(wall_text(NOW - 60, -5)), NOW, zone=parse_zone("UTC-5"))
    assert placed.at == NOW - 60


def test_votes_of_devices_long_silent_expire():
    """Three devices stopped a day ago still say UTC+8; two live ones show the servers moved to UTC."""
    mono = [0.0]
    clock = ServerClock(monotonic=lambda: mono[0])
    for sn in ("OLD1", "OLD2", "OLD3"):
        clock.observe(sn, parse_wall(wall_text(NOW, 8)), NOW)
    clock.decide()
    assert clock.decision.offset == 28800
    later = NOW + 25 * 3600
    mono[0] = 25 * 3600.0
    for sn in ("LIVE1", "LIVE2"):
        clock.observe(sn, parse_wall(wall_text(later, 0)), later)
    assert clock.decide() is True and clock.decision == clock.decision.__class__(0, 2, 2)
