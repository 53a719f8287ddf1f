"""The one reader of a paged list: the account's lists (discovery) and a device's history (backfill).

A list answers a bare array (the whole list: the vendor documents bare arrays
for the device lists, which have no paging) or a page object
`{datas, total, pageNo, pageSize, offset}` (`records` and `list` accepted for
`datas`; `datas: null` is an empty page). Pages are asked from pageNo 1 and
the list ends at the first of:

- no data (the API's success code without data): an empty list;
- a bare array;
- `total` rows read (a finite number in [0, 1e7]; anything else is ignored);
- an empty page, or a page identical to the previous one: the server ignores pageNo;
- without a `total`, a page shorter than the server's page size.

A page shorter than asked while `total` says more is a server capping
pageSize: the reader goes on at the server's size (its page object's
`pageSize`, else the rows it sent), never takes it for the end. A list that
still ends short of its total says so in one log line.

A list stops after `max_pages` pages, or as many as its `total` promises (up to
100 x max_pages), or when the caller's call budget runs out. `read_pages`
leaves such a list's Cursor where it stopped (discovery continues it on its next
refresh); `pages` raises MalformedResponseError instead: a list read in part is
never taken for the whole (a backfill would write a window with a hole).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

from atess_exporter.api.client import MalformedResponseError, NoDataError

log = logging.getLogger(__name__)

MAX_PAGES = 50       # per list, for callers that name no cap of their own
MAX_TOTAL = 1e7


class Getter(Protocol):
    def get(self, path: str, params: dict[str, Any]) -> Any: ...


class CallBudget:
    """Calls a caller may still make across its lists (its threads share it): a misbehaving
    API cannot make it flood. `max_calls` None: no cap beyond each list's own."""

    def __init__(self, max_calls: int | None, exhausted: str):
        self.left = max_calls
        self.exhausted = exhausted   # the error's text after the path: what stopped and the knob to turn
        self._lock = threading.Lock()

    def try_take(self) -> bool:
        with self._lock:
            if self.left is None:
                return True
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def take(self, path: str) -> None:
        if not self.try_take():
            raise MalformedResponseError(f"{path}: {self.exhausted}")


def bounded_number(value: Any) -> float | None:
    """A finite number in [0, 1e7] (a list's total, a plant's kW), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and 0 <= number <= MAX_TOTAL else None


def rows_of(path: str, data: Any) -> tuple[list, float | None]:
    """(rows, total) from a bare array or a page object."""
    if isinstance(data, list):
        return data, None
    if isinstance(data, dict):
        for key in ("datas", "records", "list"):
            if key in data:
                rows = data[key]
                if rows is None:
                    rows = []
                if isinstance(rows, list):
                    return rows, bounded_number(data.get("total"))
                raise MalformedResponseError(f"{path}: data.{key} is {type(rows).__name__}, expected a list")
    raise MalformedResponseError(f"{path}: list answer is neither an array nor a page object with datas")


def _said_size(data: Any, asked: int) -> int | None:
    """The server's own `pageSize` when it is smaller than the one asked."""
    said = data.get("pageSize") if isinstance(data, dict) else None
    if isinstance(said, int) and not isinstance(said, bool) and 0 < said < asked:
        return said
    return None


@dataclass
class Cursor:
    """Where one list's reading stands: the next page, at which size, and why it stopped."""

    page: int = 1
    size: int = 0                 # the page size to ask; 0: the caller's
    seen: int = 0
    pages_read: int = 0           # in the current read_pages call
    total: float | None = None    # what the list's last page said
    previous: list | None = None
    done: bool = False
    capped: str = ""              # "pages" or "calls" when a cap stopped it


def _page_limit(cursor: Cursor, max_pages: int) -> int:
    """Pages one read of a list may take: max_pages, or as many as its `total` promises
    (up to 100 x max_pages, so a lying total cannot turn one list into a flood)."""
    if cursor.total is None or cursor.done:
        return max_pages
    promised = cursor.pages_read + math.ceil(max(cursor.total - cursor.seen, 0) / cursor.size)
    return min(max(max_pages, promised), 100 * max_pages)


def read_pages(client: Getter, path: str, params: dict[str, Any], cursor: Cursor, page_size: int,
               max_pages: int = MAX_PAGES, budget: CallBudget | None = None,
               before_call: Callable[[], Any] | None = None, fields: dict[str, Any] | None = None) -> Iterator[Any]:
    """The list's rows from the cursor on (see the module's rules). A cap leaves `cursor.capped`
    set and the cursor on the next page; an AtessError leaves it on the failed page, so a later
    call continues there. `before_call` runs before each call (a pacer)."""
    cursor.size = cursor.size or page_size
    cursor.pages_read = 0
    cursor.capped = ""
    while not cursor.done:
        if cursor.pages_read >= _page_limit(cursor, max_pages):
            cursor.capped = "pages"
            return
        if budget is not None and not budget.try_take():
            cursor.capped = "calls"
            return
        if before_call is not None:
            before_call()
        try:
            data = client.get(path, {**params, "pageNo": cursor.page, "pageSize": cursor.size})
        except NoDataError:
            cursor.done = True
            return
        cursor.pages_read += 1
        rows, total = rows_of(path, data)
        cursor.total = total
        if not rows or rows == cursor.previous:
            cursor.done = True
            break
        cursor.previous = rows
        said = _said_size(data, cursor.size)
        cursor.seen += len(rows)
        cursor.page += 1
        yield from rows
        if isinstance(data, list):
            cursor.done = True
        elif total is not None:
            cursor.done = cursor.seen >= total
            if not cursor.done and len(rows) < cursor.size:
                # the server caps pageSize: page at its size from here (page N of size s starts at (N-1)*s)
                served = said or len(rows)
                cursor.page, cursor.size = cursor.seen // served + 1, served
        elif said is not None and len(rows) == said:
            cursor.page, cursor.size = cursor.seen // said + 1, said
        else:
            cursor.done = len(rows) < cursor.size
    if cursor.total is not None and cursor.total > cursor.seen:
        log.warning("a list ended short of its total; the API may cap pageSize: try a smaller page size",
                    extra={"fields": {**(fields or {}), "path": path, "rows": cursor.seen, "total": round(cursor.total)}})


def pages(client: Getter, path: str, params: dict[str, Any], page_size: int, budget: CallBudget | None = None,
          max_pages: int = MAX_PAGES, cap_hint: str = "", fields: dict[str, Any] | None = None) -> Iterator[Any]:
    """Every row of a list, over as many pages as it honestly has (see the module's rules); a
    list stopped by a cap raises MalformedResponseError. `cap_hint` ends the page-cap error (the
    knob to turn); `fields` name the list in log lines."""
    cursor = Cursor()
    yield from read_pages(client, path, params, cursor, page_size, max_pages, budget, fields=fields)
    if cursor.capped == "calls":
        raise MalformedResponseError(f"{path}: {budget.exhausted if budget else 'call budget spent'}")
    if cursor.capped == "pages":
        raise MalformedResponseError(f"{path}: the list did not end within {max_pages} pages{cap_hint}")
