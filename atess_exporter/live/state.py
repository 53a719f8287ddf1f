"""A small JSON file that lets the counter guard's last good values survive a restart.

Written atomically (temporary file in the same directory, fsync, rename), so a
crash mid-write leaves the previous state, never a truncated one. A missing or
unreadable file is not fatal: the exporter starts fresh and says so.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from typing import Any

log = logging.getLogger(__name__)

VERSION = 1
TEMP_PREFIX = ".atess-state-"
# A temporary file lives well under a second while a save runs; one this old was
# left by a process killed mid-save (or by a start-up check) and is nobody's.
LEFTOVER_AGE_SECONDS = 60.0


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


def load_state(path: str | None) -> dict[str, Any]:
    remove_leftovers(path)
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        log.warning("state file unreadable, starting without it", extra={"fields": {"path": path, "error": str(exc)}})
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        log.warning("state file has an unknown format, starting without it", extra={"fields": {"path": path}})
        return {}
    return data


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
