"""The one reader of a paged list: the account's lists (discovery) and a device's history (backfill).

A list answers a bare array (the whole list: the vendor documents bare arrays
for the device lists, which have no paging) or a page object
`{datas, total, pageNo, pageSize, offset}` (`records` and `list` accepted for
`datas`; `datas: null` is an empty page). Pages are asked from pageNo 1 and
the list ends at the first of:

- no data (the API's success code without data): an empty list;
- a bare array;
- a page shorter than pageSize (logged when it falls short of `total`: the API
  may cap pageSize);
- `total` rows read (a finite number in [0, 1e7]; anything else is ignored);
- a page identical to the previous one: the server ignores pageNo.

A list that has not ended after `max_pages` pages, or a caller whose call
budget runs out, raises MalformedResponseError: a list read in part is never
taken for the whole (discovery would drop devices, a backfill would write a
window with a hole).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator, Protocol

from atess_exporter.api.client import MalformedResponseError, NoDataError

log = logging.getLogger(__name__)

MAX_PAGES = 50       # per list, for callers that name no cap of their own
MAX_TOTAL = 1e7


class Getter(Protocol):
    def get(self, path: str, params: dict[str, Any]) -> Any: ...


class CallBudget:
    """Calls a caller may still make across its lists: a misbehaving API cannot make it flood."""

    def __init__(self, max_calls: int, exhausted: str):
        self.left = max_calls
        self.exhausted = exhausted   # the error's text after the path: what stopped and the knob to turn

    def take(self, path: str) -> None:
        if self.left <= 0:
            raise MalformedResponseError(f"{path}: {self.exhausted}")
        self.left -= 1


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


def pages(client: Getter, path: str, params: dict[str, Any], page_size: int, budget: CallBudget | None = None,
          max_pages: int = MAX_PAGES, cap_hint: str = "", fields: dict[str, Any] | None = None) -> Iterator[Any]:
    """Every row of a list, over as many pages as it honestly has (see the module's rules).
    `cap_hint` ends the page-cap error (the knob to turn); `fields` name the list in log lines."""
    previous: list | None = None
    seen = 0
    for page in range(1, max_pages + 1):
        if budget is not None:
            budget.take(path)
        try:
            data = client.get(path, {**params, "pageNo": page, "pageSize": page_size})
        except NoDataError:
            return
        rows, total = rows_of(path, data)
        if rows and rows == previous:
            return
        previous = rows
        yield from rows
        seen += len(rows)
        if isinstance(data, list) or (total is not None and seen >= total):
            return
        if len(rows) < page_size:
            if total is not None and total > seen:
                log.warning("a list ended short of its total; the API may cap pageSize: try a smaller page size",
                            extra={"fields": {**(fields or {}), "path": path, "rows": seen, "total": round(total)}})
            return
    raise MalformedResponseError(f"{path}: the list did not end within {max_pages} pages{cap_hint}")
