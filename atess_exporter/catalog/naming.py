"""Metric names made from vendor field names, promtool-safe and never colliding.

Uncatalogued fields get the reserved prefix ``atess_vendor_``: no catalogued
metric and none of the exporter's own families starts with it, so a payload
field named like one of ours (``deviceUp``, ``plantCapacityWatts``,
``settingFooBar``) can never produce a duplicate family.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Iterable

UNCATALOGUED_PREFIX = "atess_vendor_"

# Name suffixes a gauge must not end in (promtool: counters, histograms, summaries, info).
RESERVED_SUFFIXES = ("_total", "_info", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum")
# Name parts promtool's lint rejects: abbreviated units, metric types, non-base units.
_ABBREVIATIONS = frozenset({"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"})
_TYPE_WORDS = ("gauge", "counter", "histogram", "summary", "untyped")
_NON_BASE_UNITS = ("minutes", "hours", "days", "weeks", "kelvins", "fahrenheit", "rankine", "inches",
                   "yards", "miles", "bits", "calories", "pounds", "ounces")
_BASE_UNITS = ("amperes", "bytes", "celsius", "grams", "joules", "kelvin", "meters", "metres", "seconds", "volts")
_UNIT_PREFIXES = ("pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi",
                  "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi")
MAX_FIELD_NAME = 64   # a longer vendor name is not a field worth a metric


@dataclass(frozen=True)
class UncataloguedDef:
    name: str
    help: str
    type: str = "gauge"
    labels: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return self.name


def snake_case(name: str) -> str:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text)
    return text.strip("_").lower()


def generated_name(field: str, prefix: str = "atess_") -> str | None:
    """``<prefix><snake_case(field)>``, with parts promtool's lint rejects (``_h``,
    ``_ms``, ``_gauge``, ``_minutes``...) glued to a neighbouring part."""
    if not isinstance(field, str) or len(field) > MAX_FIELD_NAME:
        return None
    parts = [p for p in snake_case(field).split("_") if p]
    if not parts:
        return None
    i = 0
    while i < len(parts):
        if _lint_bad(parts[i]):
            if i > 0:
                parts[i - 1] += parts.pop(i)
                continue
            if len(parts) > 1:
                parts[0] += parts.pop(1)
            else:
                parts[0] += "value"
            continue  # re-check the glued part
        i += 1
    return prefix + "_".join(parts)


def _lint_bad(part: str) -> bool:
    if part in _ABBREVIATIONS or part in _TYPE_WORDS:
        return True
    if part.startswith(_NON_BASE_UNITS):
        return True
    return any(part.startswith(p + u) for p in _UNIT_PREFIXES for u in _BASE_UNITS)


class Uncatalogued:
    """Gauges for numeric vendor fields the catalog does not know, made on first sight.

    A field gets ``atess_vendor_<snake_case_field>``; the same field name shares
    one gauge across families. A name ending in a reserved suffix (``_total``,
    ``_count``...) gets ``_value``; two fields with the same snake case get
    numbered names. Thread-safe: polls of several devices may meet new fields
    at once. At most MAX_NAMES names are ever made, so a hostile API cannot
    grow the registry without bound.
    """

    MAX_NAMES = 2000

    def __init__(self, catalogued: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._catalogued = frozenset(catalogued)
        self._by_field: dict[str, str] = {}            # vendor field -> metric name
        self._sources: dict[str, list[str]] = {}       # metric name -> ["family.field", ...]

    def left(self) -> int:
        """Names that can still be made."""
        with self._lock:
            return self.MAX_NAMES - len(self._by_field)

    def metric_name(self, family: str, field: str, new: bool = True) -> str | None:
        """The gauge for ``family.field`` (registering it unless ``new`` is False), or
        None when the field name has no usable characters, or a new name is not allowed
        (``new`` False, or the name budget spent)."""
        with self._lock:
            name = self._by_field.get(field)
            if name is None:
                if not new or len(self._by_field) >= self.MAX_NAMES:
                    return None
                name = self._new_name(field)
                if name is None:
                    return None
                self._by_field[field] = name
                self._sources[name] = []
            source = f"{family}.{field}"
            if source not in self._sources[name]:
                self._sources[name].append(source)
            return name

    def _new_name(self, field: str) -> str | None:
        base = generated_name(field, UNCATALOGUED_PREFIX)
        if base is None:
            return None
        if base.endswith(RESERVED_SUFFIXES):
            base += "_value"
        name, n = base, 1
        while name in self._catalogued or name in self._sources:
            n += 1
            name = f"{base}{n}"
        return name

    def get(self, name: str) -> UncataloguedDef | None:
        with self._lock:
            sources = list(self._sources.get(name, ()))
        if not sources:
            return None
        return UncataloguedDef(name=name, help=f"Uncatalogued vendor field {', '.join(sources)}: the raw value as sent, unit unknown")
