"""One history window from the API: the paged calls, their retries, and the rules
that end the paging, with any server's answer bounded."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any, Iterator

from atess_exporter.catalog.endpoints import history_dates
from atess_exporter.api.client import (AtessClient, HttpError, MalformedResponseError, NoDataError, RateLimitError, TransportError)
from atess_exporter.backfill.pacing import Pacer

log = logging.getLogger("atess_exporter.backfill")  # the package's name: log lines read as before the split

ROWS_PER_DAY = 288  # one row per 5-minute slot
MAX_PAGES = 10_000  # a server that never sends a short page must not loop forever


def windows(start: date, end: date, days: int) -> Iterator[tuple[date, date]]:
    """Consecutive [first, last] day ranges (both inclusive) covering start..end."""
    day = start
    while day <= end:
        last = min(day + timedelta(days=days - 1), end)
        yield day, last
        day = last + timedelta(days=1)


def calls_for_rows(rows: int, page_size: int) -> int:
    """Pages needed for `rows`: the last page must be short, so an exact multiple costs one empty page."""
    return rows // page_size + 1


class HistoryFetcher:
    """The history calls of one run; the `Pacer` passed in is the device's, so the
    rate limit holds per device while devices run in parallel."""

    def __init__(self, client: AtessClient, date_format: str, *, page_size: int, call_interval: float,
                 retries: int, retry_backoff: float):
        self.client, self.date_format, self.page_size = client, date_format, page_size
        self.call_interval, self.retries, self.retry_backoff = call_interval, retries, retry_backoff

    def call(self, pacer: Pacer, path: str, params: dict) -> Any:
        """One history page, retried on transient errors; None when the API has no data."""
        attempt = 0
        while True:
            pacer.wait()
            try:
                return self.client.get(path, params)
            except NoDataError:
                return None
            except (TransportError, RateLimitError, MalformedResponseError, HttpError) as exc:
                error = exc  # transient, perhaps: decided below
            finally:
                pacer.called()  # failed calls count against the rate limit too
            if isinstance(error, HttpError) and error.status < 500 or attempt >= self.retries:
                raise error
            delay = self.retry_backoff * (2 ** attempt)
            attempt += 1
            log.info("history call failed, retrying", extra={"fields": {
                "sn": params.get("deviceSn"), "page": params.get("pageNo"), "outcome": error.outcome,
                "attempt": attempt, "retry_in_seconds": max(delay, self.call_interval)}})
            pacer.defer(delay)

    def fetch(self, pacer: Pacer, path: str, sn: str, first: date, last: date) -> list:
        """Every row of [first 00:00:00, last 23:59:59]: pages from 1 until `total`, a short
        page, or a page identical to the previous one (a server ignoring pageNo)."""
        rows: list = []
        previous = None
        window = history_dates(first, last, self.date_format)
        for page in range(1, MAX_PAGES + 1):
            data = self.call(pacer, path, {"deviceSn": sn, **window, "pageNo": page, "pageSize": self.page_size})
            if data is None:
                datas: Any = []
            elif isinstance(data, dict):
                datas = data.get("datas")
            else:
                datas = data
            if datas is None:
                datas = []
            if not isinstance(datas, list):
                raise MalformedResponseError(f"{path}: data.datas is {type(datas).__name__}, expected a list")
            if datas and datas == previous:
                return rows  # the same page again: the server ignores pageNo
            previous = datas
            rows.extend(datas)
            total = data.get("total") if isinstance(data, dict) else None
            if isinstance(total, int) and not isinstance(total, bool) and 0 <= total <= len(rows) and datas:
                return rows
            if len(datas) < self.page_size:
                if isinstance(total, int) and not isinstance(total, bool) and total > len(rows):
                    log.warning("history has fewer rows than the API's total; the API may cap pageSize, "
                                "try a smaller --page-size", extra={"fields": {
                                    "sn": sn, "window": f"{first}..{last}", "rows": len(rows), "total": total}})
                return rows
        raise MalformedResponseError(f"{path}: more than {MAX_PAGES} pages for {sn} {first}..{last}")
