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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FamilyCatalog:
    name: str
    fields: dict[str, FieldMap]
    skip: dict[str, str]


@dataclass(frozen=True)
class Catalog:
    metrics: dict[str, MetricDef]
    families: dict[str, FamilyCatalog]

    def vendor_fields(self, metric: str) -> list[str]:
        out = []
        for fam in self.families.values():
            for f in fam.fields.values():
                if f.metric.name == metric:
                    out.append(f"{fam.name}.{f.field} \"{f.doc}\"" if f.doc else f"{fam.name}.{f.field}")
        return out

    def describe_metric(self, name: str) -> MetricDef:
        """The definition of any metric a payload can produce."""
        return self.metrics[name]

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


def _family(data: dict, metrics: dict[str, MetricDef]) -> FamilyCatalog:
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
        fields[field] = FieldMap(field=field, metric=metric, unit=unit, scale=UNIT_SCALE[unit],
                                 label_values=values, doc=str(spec.get("doc", "")), note=str(spec.get("note", "")))
    return FamilyCatalog(name=name, fields=fields, skip=dict(data.get("skip") or {}))


def _read(name: str) -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The packaged catalog, validated once per process."""
    metrics = _metrics(_read("metrics.yaml"))
    families = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml") and entry.name != "metrics.yaml":
            fam = _family(_read(entry.name), metrics)
            families[fam.name] = fam
    return Catalog(metrics=metrics, families=families)


def iter_field_samples(family: FamilyCatalog, payload: dict) -> Iterable[tuple[FieldMap, float]]:
    """(mapping, scaled value) for every catalogued field that carries a number."""
    for field, raw in payload.items():
        fmap = family.fields.get(field)
        if fmap is None:
            continue
        number = parse_number(raw)
        if number is not None:
            yield fmap, number * fmap.scale
