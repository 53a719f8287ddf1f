"""One window's history rows as OpenMetrics sample lines, through the live
exporter's catalog and counter rules, each stamped with the row's own time."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from datetime import time as dtime
from datetime import tzinfo

from prometheus_client.utils import floatToGoString

from atess_exporter.catalog import BASE_LABELS, Catalog, FamilyCatalog
from atess_exporter.config import DeviceConfig
from atess_exporter.outside.text import escape_label
from atess_exporter.readings.clock import in_zone, row_wall
from atess_exporter.readings.counterguard import CounterGuard, guard_samples
from atess_exporter.readings.payload import payload_samples

log = logging.getLogger("atess_exporter.backfill")  # the package's name: log lines read as before the split


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in zip(names, values)) + "}"


def _timestamp(ts: float) -> str:
    return str(int(ts)) if ts == int(ts) else f"{ts:.3f}".rstrip("0").rstrip(".")


def _local_midnight(day: date, tz: tzinfo) -> float:
    return datetime.combine(day, dtime(0, 0), tzinfo=tz).timestamp()


def render_window(catalog: Catalog, device: DeviceConfig, family: FamilyCatalog, tz: tzinfo,
                  guard: CounterGuard, rows: list, first: date, last: date) -> tuple[str, int]:
    """One window's rows as OpenMetrics sample lines, sorted by metric, series, time."""
    lo, hi = _local_midnight(first, tz), _local_midnight(last + timedelta(days=1), tz)
    by_time: dict[float, dict] = {}
    dropped = 0
    for row in rows:
        wall = row_wall(row) if isinstance(row, dict) else None
        ts = None if wall is None else in_zone(wall, tz)
        if ts is None or not lo <= ts < hi or ts in by_time:
            dropped += 1  # no usable time, outside the window, or a repeated slot
            continue
        by_time[ts] = row
    if dropped:
        log.debug("history rows dropped", extra={"fields": {"sn": device.sn, "window": f"{first}..{last}",
                                                            "dropped": dropped}})
    series: dict[tuple[str, tuple[str, ...]], list[tuple[float, float]]] = {}
    for ts in sorted(by_time):
        # the live poller's counter rules, with the row's own time
        row_samples = guard_samples(guard, catalog, payload_samples(family, by_time[ts], device.model), ts)
        for name, entries in row_samples.items():
            for labels, value in entries:
                series.setdefault((name, labels), []).append((ts, value))
    ids = (device.sn, device.model or "unknown")
    out: list[str] = []
    for name, labels in sorted(series):
        m = catalog.describe_metric(name)
        prefix = name + _labels(BASE_LABELS + m.labels, ids + labels)
        out.extend(f"{prefix} {floatToGoString(v)} {_timestamp(ts)}\n" for ts, v in series[(name, labels)])
    return "".join(out), len(by_time)
