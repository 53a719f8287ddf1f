"""One refused credential pauses every call to the API, so the exporter cannot hammer it.

The pause starts at `base` seconds and doubles with each refusal, up to an
hour; the first call after the pause is the probe. The gate publishes whether
the API accepts the credentials to the store (atess_api_auth_ok reads it there).
The pause is a duration, so it runs on the monotonic clock: a wall-clock step
(NTP, a VM resumed) neither stretches a 5 s pause into a day nor cuts it short.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from atess_exporter.live.store import AccountStore, Trouble


class AuthGate:
    MAX_PAUSE = 3600.0

    def __init__(self, base: float, store: AccountStore, clock: Callable[[], float] = time.monotonic):
        self.base = base
        self.store = store
        self.clock = clock
        self._failures = 0
        self._until = 0.0
        self._lock = threading.Lock()

    @property
    def ok(self) -> bool | None:
        """None until the API has answered once."""
        return self.store.auth_ok

    def blocked(self) -> bool:
        with self._lock:
            return self.clock() < self._until

    def failed(self, message: str = "") -> float:
        """A refusal (`message`: the API's words, kept for the status page): the pause (seconds)
        from now until the next call may try again."""
        now = self.clock()
        with self._lock:
            refused = self.store.auth_refused   # since when, for a person: the wall clock (the pause is monotonic)
            self.store.auth_refused = Trouble(refused.since if refused else time.time(),
                                              message or "credentials refused")
            self.store.auth_ok = False
            if now < self._until:  # another call of the same episode: no extra doubling
                return self._until - now
            pause = min(self.base * 2 ** self._failures, max(self.MAX_PAUSE, self.base))
            self._failures += 1
            self._until = now + pause
            return pause

    def refused(self, client: object, message: str = "") -> float | None:
        """A refusal: first re-read rotated `*_file` credentials (the refusal may be the old
        token's); when they changed, no pause (None), the next call tries the new ones;
        else the pause, as failed()."""
        reload = getattr(client, "reload_credentials", None)
        if reload is not None and reload(force=True):
            return None
        return self.failed(message)

    def pause(self) -> float | None:
        """While the credentials are refused: the seconds until the next call may try them
        (0 when it may now); None while they are not refused."""
        with self._lock:
            if self.store.auth_refused is None:
                return None
            return max(self._until - self.clock(), 0.0)

    def succeeded(self) -> None:
        with self._lock:
            self.store.auth_ok, self._failures, self._until = True, 0, 0.0
            self.store.auth_refused = None
