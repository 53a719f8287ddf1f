"""The one retry policy for a call to the API: what a retry can fix, and how long to wait.

A retry can fix no answer (TransportError: refused, reset, timed out) and a
server error (HTTP 5xx). Nothing else is retried within a call: a rate-limit
answer is fixed by waiting for the device's next slot, not by calling again
sooner (live polling stretches the device's interval, a backfill stops the
device and resumes later); an auth refusal, an API error code or a malformed
answer come back the same. Live polling and backfill share this rule.

The wait before retry n (from 0) is `backoff * 2**n`, jittered over its upper
half so that devices failing together do not retry together.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable, TypeVar

from atess_exporter.api.client import AtessError, HttpError, TransportError

log = logging.getLogger(__name__)

T = TypeVar("T")


def retryable(exc: AtessError) -> bool:
    return isinstance(exc, TransportError) or (isinstance(exc, HttpError) and exc.status >= 500)


class RetryPolicy:
    def __init__(self, retries: int, backoff: float, rng: random.Random | None = None):
        self.retries = retries
        self.backoff = backoff
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        base = self.backoff * 2 ** attempt
        return base / 2 + self.rng.uniform(0, base / 2)

    def call(self, call: Callable[[], T], wait: Callable[[float], bool], fields: dict[str, Any]) -> T:
        """call(), retried by this policy; `wait(seconds)` returns True when the
        caller is stopping (the last error is raised then). `fields` name the call
        in the log line of each retry."""
        attempt = 0
        while True:
            try:
                return call()
            except AtessError as exc:
                if attempt >= self.retries or not retryable(exc):
                    raise
                delay = self.delay(attempt)
                attempt += 1
                log.info("retrying", extra={"fields": {**fields, "outcome": exc.outcome, "attempt": attempt,
                                                       "in_seconds": round(delay, 2)}})
                if wait(delay):
                    raise
