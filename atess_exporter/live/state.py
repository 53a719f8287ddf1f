"""A small JSON file that lets the counter guard's last good values survive a restart.

Written atomically (temporary file in the same directory, fsync, rename), so a
crash mid-write leaves the previous state, never a truncated one. A missing or
unreadable file is not fatal: the exporter starts fresh and says so.

Read back, the file is untrusted input like any other (planted, damaged, or
written by another version): only a regular file is read (a FIFO or a device
is refused without blocking), at most MAX_STATE_BYTES of it, nested at most
MAX_DEPTH deep. Its sections ("counters", and the ones other parts or other
versions add) are validated one by one, entry by entry, by their readers
through ``section()``: a bad entry is dropped with one warning per section,
and a section this version does not know is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import time
from typing import Any, Callable

from atess_exporter.outside.text import parse_json

log = logging.getLogger(__name__)

VERSION = 1
TEMP_PREFIX = ".atess-state-"
# A temporary file lives well under a second while a save runs; one this old was
# left by a process killed mid-save (or by a start-up check) and is nobody's.
LEFTOVER_AGE_SECONDS = 60.0
MAX_STATE_BYTES = 64 * 1024 * 1024   # ~10,000 devices' counters; a larger file is refused (state_file_max_bytes)
MAX_DEPTH = 16                       # the sections nest 5 deep; a deeper file was not written by us


def remove_leftovers(path: str | None, now: float | None = None) -> int:
    """Delete the temporary files an interrupted save left beside the state file."""
    if not path:
        return 0
    directory = os.path.dirname(os.path.abspath(path))
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > LEFTOVER_AGE_SECONDS:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    if removed:
        log.info("removed leftover temporary state files", extra={"fields": {"directory": directory, "files": removed}})
    return removed


def _read_bounded(path: str, max_bytes: int) -> bytes:
    """The file's bytes: a regular file (symlinks followed) of at most max_bytes; never blocks."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{info.st_size} bytes, more than the {max_bytes} allowed (state_file_max_bytes)")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise ValueError(f"more than the {max_bytes} bytes allowed (state_file_max_bytes)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_state(path: str | None, max_bytes: int = MAX_STATE_BYTES) -> dict[str, Any]:
    remove_leftovers(path)
    if not path or not os.path.lexists(path):
        return {}
    try:
        data = parse_json(_read_bounded(path, max_bytes).decode("utf-8"), MAX_DEPTH)
    except (OSError, ValueError) as exc:         # JsonRejected is a ValueError
        log.warning("state file unreadable, starting without it", extra={"fields": {"path": path, "error": str(exc)}})
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        log.warning("state file has an unknown format, starting without it", extra={"fields": {"path": path}})
        return {}
    return data


def section(state: dict[str, Any], name: str, entry: Callable[[str, Any], Any], path: str | None = None) -> dict[str, Any]:
    """One section of the state: a mapping of key -> entry, each entry passed through
    `entry(key, value)` (which returns the validated value or raises ValueError/TypeError).
    A section of the wrong shape counts as empty; bad entries are dropped, with one
    warning for the section."""
    raw = state.get(name)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        log.warning("state file section has the wrong shape, ignoring it", extra={"fields": {
            "path": path or "", "section": name, "expected": "object", "got": type(raw).__name__}})
        return {}
    out: dict[str, Any] = {}
    dropped = 0
    for key, value in raw.items():
        try:
            out[key] = entry(key, value)
        except (TypeError, ValueError, OverflowError):
            dropped += 1
    if dropped:
        log.warning("state file entries damaged, dropped", extra={"fields": {
            "path": path or "", "section": name, "dropped": dropped, "kept": len(out)}})
    return out


def save_state(path: str | None, data: dict[str, Any]) -> bool:
    if not path:
        return False
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": VERSION, **data}, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        log.warning("cannot write the state file", extra={"fields": {"path": path, "error": str(exc)}})
        return False
    return True
