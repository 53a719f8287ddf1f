"""An unfinished discovery walk survives a restart (issue 21).

The fake account (tests/support.py) has 3 plants on 2 pages, 3 dataloggers and
3 device families: 14 list calls. With `discovery.max_calls: 8` and one list at
a time a refresh reads 8 of them; the walk's state is saved beside the
topology and the next run continues it.
"""

import json
import logging

import pytest

from support import discovering, scrape, value

ALL = ["HPS-A", "HPS-B", "PCS-C", "TL-D"]
CAPPED = {"max_calls": 8, "concurrency": 1}


def asked(acct, since=0):
    return [(path, tuple(sorted((k, v[0]) for k, v in q.items()))) for _, path, q in acct.requests[since:]]


def first_run(acct, state, **discovery):
    exporter = discovering(acct, discovery={**CAPPED, **discovery}, state_file=str(state))
    assert exporter.poller.refresh_topology()
    assert exporter.poller.topology.unread_lists
    return exporter


def test_a_restart_adopts_what_the_walk_found_and_reads_only_the_lists_left(mocked, tmp_path):
    state = tmp_path / "state.json"
    first = first_run(mocked, state)
    part = sorted(first.poller.devices)
    assert part and part != ALL, "the budget stopped the walk part-way"
    assert len(mocked.requests) == 8

    again = discovering(mocked, discovery=CAPPED, state_file=str(state))
    assert sorted(again.poller.devices) == part, "the devices found so far are polled from the start"
    assert len(mocked.requests) == 8, "adopted without a call"
    assert again.poller.discovered.is_set()
    assert value(scrape(again), "atess_discovery_unread_lists") == first.poller.topology.unread_lists

    assert again.poller.refresh_topology()
    assert sorted(again.poller.devices) == ALL
    assert again.poller.topology.complete
    second = asked(mocked, 8)
    assert len(second) == 14 - 8, "only the lists left were read"
    assert not set(second) & set(asked(mocked)[:8]), "no list page read twice: the walk continued"


def test_a_list_stopped_between_its_pages_continues_at_its_next_page(mocked, tmp_path):
    state = tmp_path / "state.json"
    first_run(mocked, state, max_calls=1)                  # the plant list's first page only
    saved = json.loads(state.read_text())["topology"]
    assert saved["complete"] is False
    lists = sorted((job["kind"], job["of"], job["page"]) for job in saved["walk"]["lists"])
    assert lists == [("datalog", "P1", 1), ("datalog", "P2", 1), ("plant", "", 2)], "page 1 had plants 1 and 2"
    again = discovering(mocked, discovery={**CAPPED, "max_calls": 100}, state_file=str(state))
    assert again.poller.refresh_topology()
    plant_pages = [dict(q)["pageNo"] for p, q in asked(mocked) if p == "/api/v1/plant/list"]
    assert plant_pages == ["1", "2"], "page 1 before the restart, page 2 after"
    assert sorted(again.poller.devices) == ALL
    assert again.poller.topology.plant_list_calls == 2, "the walk's plant pages counted across the restart"


def test_a_finished_walk_saves_no_walk(mocked, tmp_path):
    state = tmp_path / "state.json"
    exporter = discovering(mocked, discovery={"concurrency": 1}, state_file=str(state))
    assert exporter.poller.refresh_topology()
    saved = json.loads(state.read_text())["topology"]
    assert "walk" not in saved and saved.get("complete", True)


@pytest.mark.parametrize("damage", [
    lambda w: w.update(lists="nonsense"),
    lambda w: w.update(lists=[]),
    lambda w: w.update(lists=[{"kind": "plant", "of": "", "page": 2, "size": 2, "seen": 2, "total": 3}] * 10**5),
    lambda w: w["lists"][0].update(kind="toaster"),
    lambda w: w["lists"][0].update(of="P99"),
    lambda w: w["lists"][0].update(of=["P1"]),
    lambda w: w["lists"][0].update(page=-1),
    lambda w: w["lists"][0].update(page=True),
    lambda w: w["lists"][0].update(size=10**9),
    lambda w: w["lists"][0].update(total=float("nan")),
    lambda w: w.update(families=["hps_central"]),
    lambda w: w["found"].update(devices=[{"sn": "../x", "type": "hps_central"}]),
    lambda w: w.update(found=None),
], ids=["lists-not-a-list", "no-lists", "too-many-lists", "unknown-kind", "unknown-owner", "owner-not-text",
        "page-negative", "page-bool", "size-huge", "total-nan", "other-families", "bad-found-sn", "no-found"])
def test_a_damaged_saved_walk_is_dropped_with_one_warning_and_the_part_kept(mocked, tmp_path, caplog, damage):
    state = tmp_path / "state.json"
    first = first_run(mocked, state)
    part = sorted(first.poller.devices)
    data = json.loads(state.read_text())
    damage(data["topology"]["walk"])
    state.write_text(json.dumps(data))
    caplog.set_level(logging.WARNING)
    done = len(mocked.requests)
    again = discovering(mocked, discovery={**CAPPED, "max_calls": 100}, state_file=str(state))
    warnings = [r for r in caplog.records if "saved discovery walk unusable" in r.getMessage()]
    assert len(warnings) == 1
    assert sorted(again.poller.devices) == part, "the devices saved are still polled"
    assert again.poller.refresh_topology()
    assert len(mocked.requests) - done == 14, "walked anew, from the plant list"
    assert sorted(again.poller.devices) == ALL


def test_an_unfinished_walk_saved_too_long_ago_is_walked_anew(mocked, tmp_path):
    state = tmp_path / "state.json"
    first_run(mocked, state)
    data = json.loads(state.read_text())
    assert data["topology"]["topology"]["plant_list_calls"] == 2, "the plant list took 2 pages"
    data["topology"]["saved_at"] -= 2 * 10800 + 1                   # the period of a 2-page plant list
    state.write_text(json.dumps(data))
    again = discovering(mocked, discovery=CAPPED, state_file=str(state))
    assert again.poller.devices == {}, "nothing adopted from a walk older than the listing period"


def test_a_failed_page_keeps_the_pages_read_before_it(mocked):
    reply, failed = mocked.reply, []

    def flaky(request):
        if "plant/list" in request.url and "pageNo=2" in request.url and not failed:
            failed.append(1)
            return 502, {}, "<html>bad gateway</html>"
        return reply(request)

    mocked.reply = flaky
    exporter = discovering(mocked)
    assert exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == ["HPS-A", "HPS-B", "PCS-C"], "plants 1 and 2 were on page 1"
    assert exporter.poller.refresh_topology()
    assert sorted(exporter.poller.devices) == ALL
