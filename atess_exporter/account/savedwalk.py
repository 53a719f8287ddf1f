"""An unfinished discovery walk, kept in the state file so the next run continues it.

A walk stopped by `discovery.max_calls`/`max_pages` or by failed lists is
continued by the next refresh (account/discovery.py); saved beside the
topology, it is continued by the next run too instead of walked from zero.
What is saved: what the walk has found (as a topology) and each list still to
read: its kind, whose list it is (a plant id or a datalogger SN the walk
found; the query is rebuilt from these, never read back) and where its reading
stands (page, page size, rows seen, the list's total).

Read back, it is hostile input. Any wrong shape, a list of a plant or
datalogger the walk did not find, a walk read for other device families, or a
count over the caps drops the whole walk (SavedTopologyError): a walk missing
one of its lists would take part of the account for the whole and remove the
rest's devices.
"""

from __future__ import annotations

from typing import Any, Iterable

from atess_exporter.account.discovery import (ListJob, SavedTopologyError, Walk, topology_from_dict,
                                              topology_to_dict)
from atess_exporter.api.paging import Cursor, bounded_number
from atess_exporter.catalog.endpoints import LIST_KEY
from atess_exporter.config.model import MAX_PAGE_SIZE   # a server's own size is smaller

MAX_PAGE = 10_000_000


def walk_to_dict(walk: Walk, families: list[str]) -> dict:
    """Plain data for the state file (no row of the lists, only what the walk keeps)."""
    return {"families": list(families), "found": topology_to_dict(walk.topology(walk.todo)),
            "lists": [_list_to_dict(job) for job in walk.todo]}


def _list_to_dict(job: ListJob) -> dict:
    cursor = job.cursor
    return {"kind": job.kind, "of": "" if job.kind == "plant" else str(job.params[LIST_KEY[job.kind]]),
            "page": cursor.page, "size": cursor.size, "seen": cursor.seen, "total": cursor.total}


def walk_from_dict(data: Any, families: list[str], cap: int, known_families: Iterable[str]) -> Walk:
    """A saved walk checked as hostile input; raises SavedTopologyError on anything wrong.
    `families`: the device families this run's discovery reads; `cap`: discovery.max_devices."""
    if not isinstance(data, dict):
        raise SavedTopologyError("walk: not an object")
    if data.get("families") != list(families):
        raise SavedTopologyError("walk: read for other device families (discovery.families changed)")
    found = topology_from_dict(data.get("found"), known_families, limit=cap)
    lists = data.get("lists")
    if not isinstance(lists, list) or not lists or len(lists) > 1 + cap * (len(families) + 1):
        raise SavedTopologyError("walk: lists is not a list of a sane length")
    walk = Walk.resumed(found, cap)
    walk.todo = [_list_from_dict(row, walk, families) for row in lists]
    return walk


def _list_from_dict(row: Any, walk: Walk, families: list[str]) -> ListJob:
    if not isinstance(row, dict) or not isinstance(row.get("kind"), str) or not isinstance(row.get("of"), str):
        raise SavedTopologyError("walk: a list without kind or owner")
    kind, of = row["kind"], row["of"]
    if kind == "plant" and of == "":
        job = ListJob("plant", {})
    elif kind == "datalog" and of in walk.plants:
        job = ListJob("datalog", {LIST_KEY["datalog"]: of}, walk.plants[of])
    elif kind in families and of in walk.datalogs and walk.datalogs[of].plant_id in walk.plants:
        datalog = walk.datalogs[of]
        job = ListJob(kind, {LIST_KEY[kind]: of}, walk.plants[datalog.plant_id], datalog)
    else:
        raise SavedTopologyError("walk: a list of an unknown kind, or of a plant or datalogger the walk did not find")
    total = row.get("total")
    if total is not None and (isinstance(total, bool) or bounded_number(total) is None):
        raise SavedTopologyError("walk: a list's total is not a number")
    job.cursor = Cursor(page=_whole(row, "page", 1, MAX_PAGE), size=_whole(row, "size", 0, MAX_PAGE_SIZE),
                        seen=_whole(row, "seen", 0, MAX_PAGE * MAX_PAGE_SIZE),
                        total=None if total is None else bounded_number(total))
    return job


def _whole(row: dict, key: str, low: int, high: int) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SavedTopologyError(f"walk: a list's {key} is not a whole number in {low}..{high}")
    return value
