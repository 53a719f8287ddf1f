"""SIGINT and SIGTERM, honoured whichever thread the kernel hands them to.

The kernel gives a process-wide signal to any thread that does not block it.
CPython runs the Python handler in the main thread only, at its next bytecode:
when the signal lands on a worker thread while the main thread sleeps in a lock
(`threading.Event.wait()` without a timeout), the handler waits for a wake-up
that never comes, and Ctrl-C is ignored (issue 20: 6 times in 29 right after
start). So the main thread waits in select() on signal.set_wakeup_fd(): the C
handler writes the signal number there from whatever thread caught it, and the
main thread wakes up and runs the handler. The handler only sets an attribute:
taking a lock in a handler (Event.set) can deadlock against the main thread's
own hold of that lock.
"""

from __future__ import annotations

import select
import signal
import socket

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Installed from the main thread; `received` is the first stop signal's number."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
        self.received: int | None = None
        self._read, self._write = socket.socketpair()
        for end in (self._read, self._write):
            end.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.received is None:
            self.received = signum

    def is_set(self) -> bool:
        return self.received is not None

    def wait(self) -> int:
        """Block until a stop signal has been handled; returns its number."""
        while self.received is None:
            # A backstop timeout only: the wake-up byte ends the select at once.
            select.select([self._read], [], [], 1.0)
            try:
                while self._read.recv(512):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
        return self.received

    def close(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._read.close()
        self._write.close()
