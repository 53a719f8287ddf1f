"""One history window from the API: its pages (api/paging.py) called at the device's
pace, each call retried by the one retry policy (api/retry.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Iterator

from atess_exporter.api.client import AtessClient
from atess_exporter.api.paging import pages
from atess_exporter.api.retry import RetryPolicy
from atess_exporter.backfill.pacing import Pacer
from atess_exporter.catalog.endpoints import history_dates

ROWS_PER_DAY = 288  # one row per 5-minute slot
MAX_PAGES = 10_000  # per window: far above any honest window (7 days of 5-minute rows are 2,016), a bound on a dishonest one


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

    def __init__(self, client: AtessClient, date_format: str, *, page_size: int, retries: int, retry_backoff: float):
        self.client, self.date_format, self.page_size = client, date_format, page_size
        self.retry = RetryPolicy(retries, retry_backoff)

    def fetch(self, pacer: Pacer, path: str, sn: str, first: date, last: date) -> list:
        """Every row of [first 00:00:00, last 23:59:59], read by the paged-list reader
        (api/paging.py: its stop rules and page cap)."""
        window = history_dates(first, last, self.date_format)
        return list(pages(_Paced(self, pacer), path, {"deviceSn": sn, **window}, self.page_size,
                          max_pages=MAX_PAGES, fields={"sn": sn, "window": f"{first}..{last}"}))


class _Paced:
    """The client as the reader sees it for one device: each call waits for the device's
    pacer and is retried by the retry policy (api/retry.py)."""

    def __init__(self, fetcher: HistoryFetcher, pacer: Pacer):
        self.fetcher, self.pacer = fetcher, pacer

    def get(self, path: str, params: dict[str, Any]) -> Any:
        def once() -> Any:
            self.pacer.wait()
            try:
                return self.fetcher.client.get(path, params)
            finally:
                self.pacer.called()  # failed calls count against the rate limit too

        def defer(seconds: float) -> bool:
            self.pacer.defer(seconds)
            return False  # the pacer's next wait notices a stop

        return self.fetcher.retry.call(once, defer, {"sn": params.get("deviceSn"), "page": params.get("pageNo")})
