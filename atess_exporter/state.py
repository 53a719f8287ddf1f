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
from typing import Any

log = logging.getLogger(__name__)

VERSION = 1


def load_state(path: str | None) -> dict[str, Any]:
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
        fd, tmp = tempfile.mkstemp(prefix=".atess-state-", dir=directory)
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
