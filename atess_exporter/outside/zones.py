"""Time zones as people and the vendor's platform write them.

The platform's plant rows carry zones as fixed offsets in several spellings
(`8`, `"8"`, `"GMT+8"`, `"UTC+08:00"`, `"+8"`, `-5.5`); people write IANA names
(`Europe/Berlin`). All of them mean what a person reading them would think:
"GMT+8" is UTC+8. Only the IANA `Etc/GMT+8` key keeps its POSIX sign (UTC-8),
because that is what the key means in the tz database; it is never produced
from an offset here.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_OFFSET_HOURS = 14.0       # UTC-12 .. UTC+14 are the zones in use; a little slack both ways
_IANA = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,3}$")
# "+8", "-5.5", "8", "GMT+8", "UTC+08:00", "UTC-0530", "GMT +8", "UTC" (offset 0)
_OFFSET = re.compile(r"^(?:(?:UTC|GMT|Z)\s*)?(?:([+-])?\s*(\d{1,2})(?:(?::?(\d{2}))|(?:\.(\d{1,2})))?)?$", re.IGNORECASE)


def fixed_zone(offset_seconds: float) -> timezone:
    """A fixed-offset zone; named "UTC" at 0, "UTC+08:00" otherwise."""
    return timezone(timedelta(seconds=offset_seconds))


def offset_text(offset_seconds: float) -> str:
    """28800 -> "UTC+08:00", -19800 -> "UTC-05:30", 0 -> "UTC"."""
    seconds = int(round(offset_seconds))
    if seconds == 0:
        return "UTC"
    sign = "+" if seconds > 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    return f"UTC{sign}{hours:02d}:{rest // 60:02d}"


def _offset_hours(value: float) -> timezone | None:
    if not math.isfinite(value) or abs(value) > MAX_OFFSET_HOURS:
        return None
    seconds = round(value * 3600)
    if seconds % 60:
        return None  # offsets are whole minutes (in practice quarter hours)
    return fixed_zone(seconds)


def parse_zone(value: object) -> tzinfo | None:
    """The zone a config value or plant row means, or None when it names none.

    Numbers are hours east of UTC (8, -5.5); texts are offsets with or without
    "UTC"/"GMT" (either means UTC, never the POSIX sign), or IANA names.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return _offset_hours(float(value))
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    text = value.strip()
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes, fraction = match.groups()
        if hours is None:
            return fixed_zone(0)  # "UTC", "GMT", "Z"
        total = int(hours) + (int(minutes) / 60 if minutes else 0.0)
        if fraction:
            total = float(f"{hours}.{fraction}")
        if minutes and int(minutes) >= 60:
            return None
        return _offset_hours(-total if sign == "-" else total)
    if not _IANA.match(text) or ".." in text:
        return None
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def zone_name(zone: tzinfo) -> str:
    """What to call a zone in a log line or label: its IANA key, or "UTC+08:00"."""
    key = getattr(zone, "key", None)
    if key:
        return key
    offset = zone.utcoffset(None)
    return offset_text(offset.total_seconds() if offset is not None else 0)
