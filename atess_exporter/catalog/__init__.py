"""The field catalog: vendor field -> Prometheus metric, kept as data.

`metrics.yaml` defines each metric once (type, help, extra labels); one YAML
file per device family maps that family's vendor fields onto those metrics
with the vendor's unit. The same catalog feeds the live collector and the
history backfill, so both emit identical names, labels and scaling.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from dataclasses import dataclass, field as dc_field
from importlib import resources
from typing import Any, Iterable

import yaml

# Vendor unit -> factor to the Prometheus base unit.
UNIT_SCALE: dict[str, float] = {
    "W": 1.0, "kW": 1e3,
    "Wh": 3600.0, "kWh": 3.6e6,
    "VA": 1.0, "kVA": 1e3, "var": 1.0, "kvar": 1e3,
    "V": 1.0, "A": 1.0, "Hz": 1.0, "C": 1.0,
    "percent": 0.01,
    "s": 1.0, "min": 60.0, "h": 3600.0,
    "1": 1.0,
}

BASE_LABELS = ("sn", "model")
_NAME = re.compile(r"^atess_[a-z][a-z0-9_]*$")
_STATE = re.compile(r"^[a-z][a-z0-9_]*$")

# Name suffixes a gauge must not end in (promtool: counters, histograms, summaries, info).
RESERVED_SUFFIXES = ("_total", "_info", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum")
# Name parts promtool's lint rejects: abbreviated units, metric types, non-base units.
_ABBREVIATIONS = frozenset({"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"})
_TYPE_WORDS = ("gauge", "counter", "histogram", "summary", "untyped")
_NON_BASE_UNITS = ("minutes", "hours", "days", "weeks", "kelvins", "fahrenheit", "rankine", "inches",
                   "yards", "miles", "bits", "calories", "pounds", "ounces")
_BASE_UNITS = ("amperes", "bytes", "celsius", "grams", "joules", "kelvin", "meters", "metres", "seconds", "volts")
# Names the exporter itself uses (collector.py, instrumentation.py): a vendor
# field must not land there, so such generated names get "atess_vendor_".
_OWN_NAMES = ("atess_device", "atess_exporter", "atess_api", "atess_lifetime_glitches", "atess_poll",
              "atess_scrape", "atess_backfill", "atess_state")
_UNIT_PREFIXES = ("pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi",
                  "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi")


class CatalogError(Exception):
    """The packaged catalog is inconsistent (a bug in the data, caught by tests)."""


@dataclass(frozen=True)
class MetricDef:
    name: str               # as exposed; counters end in _total
    type: str               # gauge | counter
    help: str
    labels: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        """The name prometheus-client wants: counters without _total."""
        return self.name[: -len("_total")] if self.type == "counter" else self.name


@dataclass(frozen=True)
class FieldMap:
    field: str
    metric: MetricDef
    unit: str
    scale: float
    label_values: tuple[str, ...]
    doc: str = ""
    note: str = ""
    # Enumerations with known meanings: (raw value, state name) pairs, emitted
    # as one 0/1 series per state on state_metric (label "state").
    states: tuple[tuple[float, str], ...] = ()
    state_metric: MetricDef | None = None


class Uncatalogued:
    """Gauges for numeric vendor fields the catalog does not know, made on first sight.

    A field gets ``atess_<snake_case_field>``; the same field name shares one
    gauge across families. A name that would clash with a catalogued metric,
    with another field's generated name, end in a reserved suffix (``_total``,
    ``_count``...) or trip promtool's lint is changed so the exposition stays
    valid. Thread-safe: polls of several devices may meet new fields at once.
    """

    def __init__(self, catalogued: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._catalogued = frozenset(catalogued)
        self._by_field: dict[str, str] = {}            # vendor field -> metric name
        self._sources: dict[str, list[str]] = {}       # metric name -> ["family.field", ...]

    def metric_name(self, family: str, field: str) -> str | None:
        """The gauge for ``family.field`` (registering it), or None when the
        field name has no usable characters."""
        with self._lock:
            name = self._by_field.get(field)
            if name is None:
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
        base = generated_name(field)
        if base is None:
            return None
        if base in self._catalogued or base.endswith(RESERVED_SUFFIXES):
            base += "_value"
        name, n = base, 1
        while name in self._catalogued or name in self._sources:
            n += 1
            name = f"{base}{n}"
        return name

    def get(self, name: str) -> MetricDef | None:
        with self._lock:
            sources = list(self._sources.get(name, ()))
        if not sources:
            return None
        return MetricDef(name=name, type="gauge", labels=(),
                         help=f"Uncatalogued vendor field {', '.join(sources)}: the raw value as sent, unit unknown")

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._sources)


def generated_name(field: str) -> str | None:
    """``atess_<snake_case(field)>``, with parts promtool's lint rejects (``_h``,
    ``_ms``, ``_gauge``, ``_minutes``...) glued to a neighbouring part."""
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
    name = "atess_" + "_".join(parts)
    if any(name == own or name.startswith(own + "_") for own in _OWN_NAMES):
        name = "atess_vendor_" + name[len("atess_"):]
    return name


def _lint_bad(part: str) -> bool:
    if part in _ABBREVIATIONS or part in _TYPE_WORDS:
        return True
    if part.startswith(_NON_BASE_UNITS):
        return True
    return any(part.startswith(p + u) for p in _UNIT_PREFIXES for u in _BASE_UNITS)


@dataclass(frozen=True)
class FamilyCatalog:
    name: str
    fields: dict[str, FieldMap]
    skip: dict[str, str]
    # Shared with the Catalog: where payload_samples registers uncatalogued fields.
    uncatalogued: Uncatalogued = dc_field(default_factory=Uncatalogued, compare=False, repr=False)


@dataclass(frozen=True)
class Catalog:
    metrics: dict[str, MetricDef]
    families: dict[str, FamilyCatalog]
    uncatalogued: Uncatalogued = dc_field(default_factory=Uncatalogued, compare=False, repr=False)

    @functools.cached_property
    def _vendor_index(self) -> dict[str, list[str]]:
        """metric -> the vendor fields feeding it, built once: HELP texts are asked per scrape."""
        out: dict[str, list[str]] = {}
        for fam in self.families.values():
            for f in fam.fields.values():
                out.setdefault(f.metric.name, []).append(
                    f"{fam.name}.{f.field} \"{f.doc}\"" if f.doc else f"{fam.name}.{f.field}")
                if f.state_metric is not None:
                    out.setdefault(f.state_metric.name, []).append(f"{fam.name}.{f.field} (1 for the current state)")
        return out

    def vendor_fields(self, metric: str) -> list[str]:
        return list(self._vendor_index.get(metric, ()))

    def describe_metric(self, name: str) -> MetricDef:
        """The definition of any metric a payload can produce: catalogued, or a
        gauge made for an uncatalogued field. KeyError for anything else."""
        m = self.metrics.get(name)
        if m is None:
            m = self.uncatalogued.get(name)
        if m is None:
            raise KeyError(name)
        return m

    def help_text(self, metric: str, interval_seconds: float) -> str:
        """HELP: what it is, which vendor fields feed it, and that it is cached."""
        m = self.describe_metric(metric)
        fields = self.vendor_fields(metric)
        source = f" Vendor field {', '.join(fields)}." if fields else ""
        return f"{m.help}.{source} Cached from the last poll (every {interval_seconds:g}s per device)."


def parse_number(value: Any) -> float | None:
    """A vendor value as a float, or None when it carries no number.

    The API sends numbers as JSON numbers and as strings ("12.5"); nulls,
    empty strings and text occur and mean "no reading".
    """
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def snake_case(name: str) -> str:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text)
    return text.strip("_").lower()


def _metrics(data: dict) -> dict[str, MetricDef]:
    out = {}
    for name, spec in data.items():
        if not _NAME.match(name):
            raise CatalogError(f"metric {name}: name must match {_NAME.pattern}")
        kind = spec.get("type")
        if kind not in ("gauge", "counter"):
            raise CatalogError(f"metric {name}: type must be gauge or counter")
        if (kind == "counter") != name.endswith("_total"):
            raise CatalogError(f"metric {name}: only counters, and every counter, end in _total")
        labels = tuple(spec.get("labels", ()))
        if "type" in labels or set(labels) & set(BASE_LABELS):
            raise CatalogError(f"metric {name}: label names {labels} clash with reserved ones")
        out[name] = MetricDef(name=name, type=kind, help=str(spec["help"]).rstrip("."), labels=labels)
    return out


def _family(data: dict, metrics: dict[str, MetricDef], uncatalogued: Uncatalogued) -> FamilyCatalog:
    name = data["family"]
    fields: dict[str, FieldMap] = {}
    taken: dict[tuple, str] = {}
    for field, spec in data.get("fields", {}).items():
        metric = metrics.get(spec.get("metric"))
        if metric is None:
            raise CatalogError(f"{name}.{field}: metric {spec.get('metric')!r} is not in metrics.yaml")
        unit = str(spec.get("unit", "1"))
        if unit not in UNIT_SCALE:
            raise CatalogError(f"{name}.{field}: unit {unit!r} is not one of {sorted(UNIT_SCALE)}")
        labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
        if set(labels) != set(metric.labels):
            raise CatalogError(f"{name}.{field}: labels {sorted(labels)} differ from {metric.name}'s {list(metric.labels)}")
        values = tuple(labels[k] for k in metric.labels)
        key = (metric.name, values)
        if key in taken:
            raise CatalogError(f"{name}.{field}: same series as {taken[key]}")
        taken[key] = field
        states, state_metric = _states(name, field, spec, metrics, taken)
        fields[field] = FieldMap(field=field, metric=metric, unit=unit, scale=UNIT_SCALE[unit],
                                 label_values=values, doc=str(spec.get("doc", "")), note=str(spec.get("note", "")),
                                 states=states, state_metric=state_metric)
    skip = dict(data.get("skip") or {})
    both = sorted(set(skip) & set(fields))
    if both:
        raise CatalogError(f"{name}: {both} are both mapped and skipped")
    return FamilyCatalog(name=name, fields=fields, skip=skip, uncatalogued=uncatalogued)


def _states(family: str, field: str, spec: dict, metrics: dict[str, MetricDef],
            taken: dict[tuple, str]) -> tuple[tuple[tuple[float, str], ...], MetricDef | None]:
    """An enumeration's `states: {value: state_name}` and its `state_metric`."""
    raw = spec.get("states")
    if raw is None:
        if "state_metric" in spec:
            raise CatalogError(f"{family}.{field}: state_metric without states")
        return (), None
    where = f"{family}.{field}"
    metric = metrics.get(spec.get("state_metric"))
    if metric is None:
        raise CatalogError(f"{where}: states need a state_metric from metrics.yaml, got {spec.get('state_metric')!r}")
    if metric.type != "gauge" or metric.labels != ("state",):
        raise CatalogError(f"{where}: state_metric {metric.name} must be a gauge with the single label state")
    if not isinstance(raw, dict) or not raw:
        raise CatalogError(f"{where}: states must map values to state names")
    out = []
    for value, state in raw.items():
        number = parse_number(value)
        if number is None or isinstance(value, bool):
            raise CatalogError(f"{where}: state value {value!r} is not a number")
        if not isinstance(state, str) or not _STATE.match(state):
            raise CatalogError(f"{where}: state name {state!r} must be snake_case")
        key = (metric.name, (state,))
        if key in taken:
            raise CatalogError(f"{where}: state {state} repeated (also {taken[key]})")
        taken[key] = field
        out.append((number, state))
    return tuple(out), metric


def _read(name: str) -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The packaged catalog, validated once per process."""
    metrics = _metrics(_read("metrics.yaml"))
    uncatalogued = Uncatalogued(metrics)
    families = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml") and entry.name != "metrics.yaml":
            fam = _family(_read(entry.name), metrics, uncatalogued)
            if fam.name in families:
                raise CatalogError(f"{entry.name}: family {fam.name} defined twice")
            families[fam.name] = fam
    return Catalog(metrics=metrics, families=families, uncatalogued=uncatalogued)


def iter_field_samples(family: FamilyCatalog, payload: dict) -> Iterable[tuple[FieldMap, float]]:
    """(mapping, scaled value) for every catalogued field that carries a number."""
    for field, raw in payload.items():
        fmap = family.fields.get(field)
        if fmap is None:
            continue
        number = parse_number(raw)
        if number is not None:
            yield fmap, number * fmap.scale
