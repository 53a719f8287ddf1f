"""The exporter's own view of the API: requests by outcome and their latency."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram


class ApiStats:
    """atess_api_requests_total{endpoint,outcome}
    atess_api_request_duration_seconds{endpoint} (histogram)

    `endpoint` is the API path (a handful per family), never a device SN. With several
    accounts both carry `account` too (observer(name) gives each account's client its own).
    """

    def __init__(self, registry: CollectorRegistry, accounts: bool = False):
        extra = ("account",) if accounts else ()
        self.requests = Counter("atess_api_requests", "ATESS API requests made by the exporter, by path and outcome",
                                ("endpoint", "outcome") + extra, registry=registry)
        self.duration = Histogram("atess_api_request_duration_seconds", "Duration of ATESS API requests, by path",
                                  ("endpoint",) + extra, registry=registry,
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30))

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        self.requests.labels(endpoint, outcome).inc()
        self.duration.labels(endpoint).observe(seconds)

    def observer(self, account: str = "") -> Callable[[str, str, float], None]:
        """What one account's client reports its calls to ("": no account label)."""
        if not account:
            return self.observe

        def observe(endpoint: str, outcome: str, seconds: float) -> None:
            self.requests.labels(endpoint, outcome, account).inc()
            self.duration.labels(endpoint, account).observe(seconds)
        return observe
