"""A vendor payload turned into samples through the catalog.

Shared by the live poller and the history backfill, so both produce the same
series from the same row.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from .cache import Samples
from .catalog import FamilyCatalog, iter_field_samples

TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S")


def parse_time(value: object, tz: ZoneInfo) -> float | None:
    """The vendor's plant-local 'YYYY-MM-DD HH:MM:SS' as a Unix timestamp."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=tz).timestamp()
        except ValueError:
            continue
    return None


def payload_samples(family: FamilyCatalog, payload: dict) -> Samples:
    grouped: dict[str, list] = {}
    for fmap, value in iter_field_samples(family, payload):
        grouped.setdefault(fmap.metric.name, []).append((fmap.label_values, value))
    return {name: tuple(rows) for name, rows in grouped.items()}
