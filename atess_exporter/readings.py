"""A vendor payload turned into samples through the catalog.

Shared by the live poller and the history backfill, so both produce the same
series from the same row.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from .cache import Samples
from .catalog import FamilyCatalog, iter_field_samples, parse_number

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
    """Every number of the payload as samples.

    Catalogued fields become their metric (scaled to base units); an
    enumeration with known states also gives one 0/1 series per state; a
    numeric field the catalog does not know becomes a gauge of its own
    (``atess_<snake_case_field>``, raw value); text, nulls and empty strings
    give nothing.
    """
    grouped: dict[str, list] = {}
    for fmap, value in iter_field_samples(family, payload):
        grouped.setdefault(fmap.metric.name, []).append((fmap.label_values, value))
        if fmap.state_metric is not None:
            raw = value / fmap.scale
            rows = grouped.setdefault(fmap.state_metric.name, [])
            rows.extend(((state,), 1.0 if raw == code else 0.0) for code, state in fmap.states)
    for field, raw in payload.items():
        if field in family.fields or field in family.skip:
            continue
        number = parse_number(raw)
        if number is None:
            continue
        name = family.uncatalogued.metric_name(family.name, field)
        if name is not None:
            grouped.setdefault(name, []).append(((), number))
    return {name: tuple(rows) for name, rows in grouped.items()}
