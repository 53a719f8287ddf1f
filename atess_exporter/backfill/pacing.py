"""Time and the terminal: the per-device call spacing, the progress line, and the
log stream that keeps log lines from landing in the middle of that line."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, TextIO

Clock = Callable[[], float]
Sleep = Callable[[float], Any]


class Stopped(Exception):
    """The run is being interrupted; a worker leaves at the next safe point."""


class Pacer:
    """Spaces one device's calls: the next call starts no sooner than
    `interval` after the previous one ended (the end, so the server, which
    sees the call somewhere in between, never sees two closer than that)."""

    def __init__(self, interval: float, clock: Clock, sleep: Sleep, stop: threading.Event):
        self.interval, self.clock, self.sleep, self.stop = interval, clock, sleep, stop
        self.next_at: float | None = None

    def wait(self) -> None:
        while True:
            if self.stop.is_set():
                raise Stopped
            if self.next_at is None:
                return
            remaining = self.next_at - self.clock()
            if remaining <= 0:
                return
            self.sleep(remaining)

    def called(self) -> None:
        self.next_at = self.clock() + self.interval

    def defer(self, seconds: float) -> None:
        at = self.clock() + seconds
        self.next_at = at if self.next_at is None else max(self.next_at, at)


class Progress:
    """One line, redrawn in place on a TTY; nothing otherwise (the summary is separate)."""

    def __init__(self, stream: TextIO, live: bool, devices: int, days: int, done_days: int, rows: int):
        self.stream, self.live = stream, live
        self.devices, self.days = devices, days
        self.done_devices, self.done_days, self.rows, self.failed = 0, done_days, rows, 0
        self.visible = False
        self._lock = threading.Lock()
        self._drawn_at = 0.0

    def advance(self, days: int = 0, rows: int = 0, device_done: bool = False, failed: bool = False) -> None:
        with self._lock:
            self.done_days += days
            self.rows += rows
            self.done_devices += device_done
            self.failed += failed
            self._draw(force=device_done or failed)

    def line(self) -> str:
        fail = f", {self.failed} failed" if self.failed else ""
        return (f"backfill: devices {self.done_devices}/{self.devices}, days {self.done_days}/{self.days}, "
                f"rows {self.rows}{fail}")

    def _draw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        self.stream.write("\r\x1b[K" + self.line())
        self.stream.flush()
        self.visible = True

    def draw(self) -> None:
        with self._lock:
            self._draw(force=True)

    def clear(self) -> None:
        """Erase the line (before a log line or the summary)."""
        if self.visible:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.visible = False


class LogStream:
    """stderr for log records: the progress line is erased first, redrawn on the next update."""

    def __init__(self, stream: TextIO, progress: Progress):
        self.stream, self.progress = stream, progress

    def write(self, text: str) -> int:
        with self.progress._lock:
            self.progress.clear()
            return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

