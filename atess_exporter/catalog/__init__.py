"""The field catalog: vendor field -> Prometheus metric, kept as data.

`metrics.yaml` defines each metric once (type, help, extra labels, physical
range); one YAML file per device family maps that family's vendor fields onto
those metrics with the vendor's unit; `enums.yaml` holds the value tables of
the enumerations. A family may `inherit:` another's fields (the string HPS,
PCS, PBD and BMS payloads share the central HPS's names) and carry `models:`
variants whose fields mean something else on some models (HPS100HV/HPS150HV).
The same catalog, with the user's `catalog_overrides:` applied, feeds the live
collector and the history backfill, so both emit identical names and scaling.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field as dc_field, replace
from importlib import resources
from typing import Any, Iterable, Mapping

from atess_exporter.outside.yamlfile import load_yaml
from atess_exporter.catalog.naming import UNCATALOGUED_PREFIX, Uncatalogued, UncataloguedDef
from atess_exporter.catalog.ranges import Range, default_range, parse_range

# Vendor unit -> factor to the Prometheus base unit.
UNIT_SCALE: dict[str, float] = {
    "W": 1.0, "kW": 1e3,
    "Wh": 3600.0, "kWh": 3.6e6,
    "VA": 1.0, "kVA": 1e3, "var": 1.0, "kvar": 1e3,
    "V": 1.0, "mV": 1e-3, "A": 1.0, "Hz": 1.0, "C": 1.0, "kohm": 1e3,
    "percent": 0.01,
    "s": 1.0, "min": 60.0, "h": 3600.0,
    "1": 1.0,
}

BASE_LABELS = ("sn", "model")
_NAME = re.compile(r"^atess_[a-z][a-z0-9_]*$")
_STATE = re.compile(r"^[a-z][a-z0-9_]*$")

# Payload fields that are never measurements, in every family (recorded data,
# docs/api.md): flags, identifiers, bus addresses, the datalogger's SN.
NOT_MEASUREMENTS: dict[str, str] = {
    "lost": "the cloud's 'device lost contact' flag: drives atess_device_online",
    "again": "flag, not a measurement", "withTime": "flag, not a measurement",
    "id": "identifier", "address": "bus address", "alias": "text", "deviceNo": "identifier",
    "systemNo": "identifier (System ID sign)", "dataLogSn": "identity of the datalogger",
    "datalogSn": "identity of the datalogger", "plantId": "identifier", "deviceSn": "identity: becomes the sn label",
    "time": "reading timestamp: becomes atess_device_data_timestamp_seconds",
    "recordTime": "history rows: older spelling of time", "updateTime": "timestamp of the list row",
}


class CatalogError(Exception):
    """The catalog is inconsistent: a bug in the packaged data, or a bad `catalog_overrides:` entry."""


@dataclass(frozen=True)
class MetricDef:
    name: str               # as exposed; counters end in _total
    type: str               # gauge | counter
    help: str
    labels: tuple[str, ...] = ()
    range: Range = dc_field(default_factory=lambda: default_range(""), compare=False)

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
    # Enumerations with a value table: (raw value, state name) pairs, emitted
    # as one 0/1 series per state on state_metric (label "state").
    states: tuple[tuple[float, str], ...] = ()
    state_metric: MetricDef | None = None
    enum: str = ""              # the enums.yaml table the states come from
    low_byte_field: str = ""    # a packed word: the low byte belongs to this field
    range: Range | None = None  # this field's own range (catalog_overrides), else the metric's
    # Values that mean "no reading" (an absent sensor read as 0xFFFF...): no sample, not implausible.
    no_reading: tuple[float, ...] = ()
    # A fault word: (bit of the raw value, fault name) for each named bit, emitted on fault_metric
    # (labels word, fault) while set; fault_table is the faults.yaml table they come from.
    faults: tuple[tuple[int, str], ...] = ()
    fault_metric: MetricDef | None = None
    fault_table: str = ""

    @property
    def plausible(self) -> Range:
        return self.range or self.metric.range


@dataclass(frozen=True)
class Variant:
    """Fields that mean something else on the models `match` names."""
    name: str
    match: re.Pattern
    fields: dict[str, FieldMap]
    skip: dict[str, str]
    detect: tuple[str, ...] = ()   # fields whose numbers reveal this variant when the model is unknown


@dataclass(frozen=True)
class FamilyCatalog:
    name: str
    fields: dict[str, FieldMap]
    skip: dict[str, str]
    uncatalogued: Uncatalogued = dc_field(default_factory=Uncatalogued, compare=False, repr=False)
    variants: tuple[Variant, ...] = ()
    variant: str = ""    # the variant this view is, "" for the family's base
    aliases: dict[str, str] = dc_field(default_factory=dict)   # another name -> the catalogued field (loadIa -> loadIu)
    _views: dict = dc_field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def _spellings(self) -> dict[str, str]:
        """Letter-case-folded name -> the catalogued spelling: fields (of every variant),
        skipped names and aliases. Built once per family view."""
        out: dict[str, str] = {}
        for name in self.skip:
            out.setdefault(name.casefold(), name)
        for _, f in self.all_fields():
            out[f.field.casefold()] = f.field   # a mapped field outranks a skipped one
        for alias, target in self.aliases.items():
            out.setdefault(alias.casefold(), target)
        return out

    def canonical(self, name: str) -> str | None:
        """The catalogued spelling of a payload name, or None when the catalog does not know it.

        The platform's servers spell one field in several letter cases (``eChargeToday``,
        ``echargeToday``): a name matching a catalogued one except for case is that
        field, as is an alias (``loadIa`` is ``loadIu``)."""
        if name in self.fields or name in self.skip:
            return name
        return self._spellings.get(name.casefold()) if isinstance(name, str) else None

    def normalise(self, payload: Mapping) -> Mapping:
        """The payload under the catalogued spellings, each field once.

        When one payload carries a field under two spellings, the catalogued spelling
        wins if it holds a number; otherwise the first spelling, in payload order,
        that holds one; with no number anywhere, the catalogued spelling's value (or
        the first). Unknown names pass through unchanged."""
        out: dict = {}
        renamed = False
        for name, raw in payload.items():
            key = self.canonical(name) if isinstance(name, str) else None
            if key is None:
                out.setdefault(name, raw)
                continue
            if key != name:
                renamed = True
            if key not in out:
                out[key] = raw
            elif name == key:   # the catalogued spelling comes after another one
                if parse_number(raw) is not None or parse_number(out[key]) is None:
                    out[key] = raw
            elif parse_number(out[key]) is None and parse_number(raw) is not None:
                out[key] = raw
        return out if renamed else payload

    def variant_for(self, model: str | None, payload: Mapping | None = None) -> Variant | None:
        for v in self.variants:
            if model and v.match.search(model):
                return v
        if (not model or model == "unknown") and payload is not None:
            for v in self.variants:
                if v.detect and all(parse_number(payload.get(f)) is not None for f in v.detect):
                    return v
        return None

    def for_model(self, model: str | None, payload: Mapping | None = None) -> "FamilyCatalog":
        """This family as it reads a device of `model` (the model's variant applied)."""
        v = self.variant_for(model, payload)
        return self if v is None else self._view(v.name)

    def _view(self, name: str) -> "FamilyCatalog":
        view = self._views.get(name)
        if view is None:  # a race only builds the same view twice
            v = next(v for v in self.variants if v.name == name)
            fields = {k: f for k, f in self.fields.items() if k not in v.skip}
            fields.update(v.fields)
            skip = {**{k: s for k, s in self.skip.items() if k not in v.fields}, **v.skip}
            view = self._views[name] = replace(self, fields=fields, skip=skip, variants=(), variant=name, _views={})
        return view

    def all_fields(self) -> Iterable[tuple[str, FieldMap]]:
        """(variant name or "", mapping) for the base and every variant."""
        for f in self.fields.values():
            yield "", f
        for v in self.variants:
            for f in v.fields.values():
                yield v.name, f


@dataclass(frozen=True)
class Catalog:
    metrics: dict[str, MetricDef]
    families: dict[str, FamilyCatalog]
    uncatalogued: Uncatalogued = dc_field(default_factory=Uncatalogued, compare=False, repr=False)
    enums: dict[str, dict] = dc_field(default_factory=dict, compare=False, repr=False)
    faults: dict[str, dict] = dc_field(default_factory=dict, compare=False, repr=False)

    def field_sources(self) -> Iterable[tuple[FamilyCatalog, str, FieldMap]]:
        """(family, variant, field) for every mapping, an inherited field once: as the
        central HPS field every family shares."""
        central = self.families.get("hps_central")
        for fam in self.families.values():
            for variant, f in fam.all_fields():
                if fam is not central and central is not None and central.fields.get(f.field) is f:
                    continue
                yield fam, variant, f

    @functools.cached_property
    def _vendor_index(self) -> dict[str, list[str]]:
        """metric -> the vendor fields feeding it, built once: HELP texts are asked per scrape."""
        out: dict[str, list[str]] = {}
        for fam, variant, f in self.field_sources():
            where = f"{fam.name}.{f.field}" + (f" ({variant} models)" if variant else "")
            text = f"{where} \"{f.doc}\"" if f.doc else where
            if text not in out.setdefault(f.metric.name, []):
                out[f.metric.name].append(text)
            if f.state_metric is not None:
                line = f"{where} (1 for the current state)"
                if line not in out.setdefault(f.state_metric.name, []):
                    out[f.state_metric.name].append(line)
            if f.fault_metric is not None:
                line = f"{where} (1 per named bit set, table {f.fault_table})"
                if line not in out.setdefault(f.fault_metric.name, []):
                    out[f.fault_metric.name].append(line)
        central = self.families.get("hps_central")
        for fam in self.families.values():
            for alias, target in fam.aliases.items():
                aliased = fam.fields.get(target)
                if aliased is None or (fam is not central and central is not None and central.aliases.get(alias) == target):
                    continue
                line = f"{fam.name}.{alias} (another name of {target})"
                if line not in out.setdefault(aliased.metric.name, []):
                    out[aliased.metric.name].append(line)
        return out

    def vendor_fields(self, metric: str) -> list[str]:
        return list(self._vendor_index.get(metric, ()))

    def describe_metric(self, name: str) -> MetricDef | UncataloguedDef:
        """The definition of any metric a payload can produce: catalogued, or a
        gauge made for an uncatalogued field. KeyError for anything else."""
        m = self.metrics.get(name)
        if m is not None:
            return m
        u = self.uncatalogued.get(name)
        if u is None:
            raise KeyError(name)
        return u

    def help_text(self, metric: str, interval_seconds: float | None) -> str:
        """HELP: what it is, which vendor fields feed it, and where the samples come
        from: the live exporter's cache (every `interval_seconds`), or with None the
        device's history (the backfill)."""
        m = self.describe_metric(metric)
        fields = self.vendor_fields(metric)
        source = f" Vendor field {', '.join(fields)}." if fields else ""
        if interval_seconds is None:
            return f"{m.help}.{source} Imported from the device's history (the API's 5-minute rows, each at its own time) by atess-exporter backfill."
        return f"{m.help}.{source} Cached from the last poll (every {interval_seconds:g}s per device)."

    def with_overrides(self, overrides: Mapping | None, enums: Mapping | None = None) -> "Catalog":
        """This catalog with the user's `catalog_overrides:` and `enums:` applied
        (CatalogError names the key and the problem)."""
        if not overrides and not enums:
            return self
        from atess_exporter.catalog.overrides import apply_overrides
        return apply_overrides(self, overrides or {}, enums or {})


def parse_number(value: Any) -> float | None:
    """A vendor value as a float, or None when it carries no number.

    The API sends numbers as JSON numbers and as strings ("12.5"); nulls,
    empty strings, text, booleans (flags, not measurements) and nested objects
    mean "no reading".
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _metrics(data: dict) -> dict[str, MetricDef]:
    out = {}
    for name, spec in data.items():
        if not _NAME.match(name):
            raise CatalogError(f"metric {name}: name must match {_NAME.pattern}")
        if name.startswith(UNCATALOGUED_PREFIX):
            raise CatalogError(f"metric {name}: {UNCATALOGUED_PREFIX} is reserved for uncatalogued fields")
        kind = spec.get("type")
        if kind not in ("gauge", "counter"):
            raise CatalogError(f"metric {name}: type must be gauge or counter")
        if (kind == "counter") != name.endswith("_total"):
            raise CatalogError(f"metric {name}: only counters, and every counter, end in _total")
        labels = tuple(spec.get("labels", ()))
        if "type" in labels or set(labels) & set(BASE_LABELS):
            raise CatalogError(f"metric {name}: label names {labels} clash with reserved ones")
        try:
            rng = parse_range(spec.get("range"), spec.get("rating"), f"metric {name}", default_range(name))
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        out[name] = MetricDef(name=name, type=kind, help=str(spec["help"]).rstrip("."), labels=labels, range=rng)
    return out


def field_map(where: str, field: str, spec: Mapping, metrics: dict[str, MetricDef], enums: Mapping[str, dict],
              faults: Mapping[str, dict] | None = None) -> FieldMap:
    """One `field: {metric, unit, labels, doc, note, enum, state_metric, low_byte, range, rating,
    no_reading, faults}` entry."""
    if not isinstance(spec, Mapping):
        raise CatalogError(f"{where}: expected a mapping like {{metric: ..., unit: ...}}")
    metric = metrics.get(str(spec.get("metric")))
    if metric is None:
        raise CatalogError(f"{where}: metric {spec.get('metric')!r} is not in the catalog (atess-exporter --list-metrics)")
    unit = str(spec.get("unit", "1"))
    if unit not in UNIT_SCALE:
        raise CatalogError(f"{where}: unit {unit!r} is not one of {sorted(UNIT_SCALE)}")
    labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    if set(labels) != set(metric.labels):
        raise CatalogError(f"{where}: labels {sorted(labels)} differ from {metric.name}'s {list(metric.labels)}")
    states, state_metric, enum = _states(where, spec, metrics, enums)
    rng = None
    if "range" in spec or "rating" in spec:
        try:
            rng = parse_range(spec.get("range"), spec.get("rating"), where, metric.range)
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
    no_reading = spec.get("no_reading") or ()
    sentinels = [parse_number(v) for v in no_reading] if isinstance(no_reading, (list, tuple)) else [None]
    if any(v is None for v in sentinels):
        raise CatalogError(f"{where}: no_reading must be a list of numbers")
    bits, table = _fault_bits(where, spec, labels, faults or {})
    return FieldMap(field=field, metric=metric, unit=unit, scale=UNIT_SCALE[unit],
                    label_values=tuple(labels[k] for k in metric.labels), doc=str(spec.get("doc", "")),
                    note=str(spec.get("note", "")), states=states, state_metric=state_metric, enum=enum,
                    low_byte_field=str(spec.get("low_byte", "")), range=rng,
                    no_reading=tuple(v for v in sentinels if v is not None), faults=bits,
                    fault_metric=metrics.get(FAULT_METRIC) if bits else None, fault_table=table)


FAULT_METRIC = "atess_fault_active"


def _fault_bits(where: str, spec: Mapping, labels: Mapping[str, str],
                faults: Mapping[str, dict]) -> tuple[tuple[tuple[int, str], ...], str]:
    """A fault word's named bits from faults.yaml: D0..D7 are the high byte's bits 0..7 and
    D8..D15 the low byte's (the protocol counts after swapping the bytes)."""
    table = str(spec.get("faults") or "")
    if not table:
        return (), ""
    if table not in faults:
        raise CatalogError(f"{where}: faults {table!r} is not one of {sorted(faults)}")
    word = labels.get("word")
    names = (faults[table].get("words") or {}).get(int(word) if word and word.isdigit() else word) or {}
    out = []
    for bit, name in names.items():
        n = int(str(bit).lstrip("D"))
        if not 0 <= n <= 15 or not _STATE.match(str(name)):
            raise CatalogError(f"{where}: faults {table} word {word}: bad bit {bit}: {name}")
        out.append(((n + 8) % 16, str(name)))
    return tuple(out), table


def _states(where: str, spec: Mapping, metrics: dict[str, MetricDef],
            enums: Mapping[str, dict]) -> tuple[tuple[tuple[float, str], ...], MetricDef | None, str]:
    """An enumeration's table (`enum: <enums.yaml table>` or inline `states:`) and its `state_metric`."""
    raw, enum = spec.get("states"), str(spec.get("enum") or "")
    if enum:
        if enum not in enums:
            raise CatalogError(f"{where}: enum {enum!r} is not one of {sorted(enums)}")
        raw = enums[enum]["states"]
    if raw is None and "state_metric" not in spec:
        return (), None, ""
    metric = metrics.get(str(spec.get("state_metric")))
    if metric is None:
        raise CatalogError(f"{where}: states need a state_metric from metrics.yaml, got {spec.get('state_metric')!r}")
    if metric.type != "gauge" or metric.labels != ("state",):
        raise CatalogError(f"{where}: state_metric {metric.name} must be a gauge with the single label state")
    # A state metric without a table: states only once the config's `enums:` gives one.
    return (parse_states(where, raw) if raw is not None else ()), metric, enum


def parse_states(where: str, raw: Any) -> tuple[tuple[float, str], ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise CatalogError(f"{where}: states must map values to state names")
    out, seen = [], set()
    for value, state in raw.items():
        number = parse_number(value)
        if number is None:
            raise CatalogError(f"{where}: state value {value!r} is not a number")
        if not isinstance(state, str) or not _STATE.match(state) or len(state) > 64:
            raise CatalogError(f"{where}: state name {state!r} must be snake_case")
        if state in seen:
            raise CatalogError(f"{where}: state {state} repeated")
        seen.add(state)
        out.append((number, state))
    return tuple(out)


def _check_series(where: str, fields: Iterable[FieldMap]) -> None:
    """No two fields of one payload may feed the same series."""
    taken: dict[tuple, str] = {}
    for f in fields:
        keys = [(f.metric.name, f.label_values)]
        keys += [(f.state_metric.name, (s,)) for _, s in f.states] if f.state_metric else []
        for key in keys:
            if key in taken and taken[key] != f.field:
                raise CatalogError(f"{where}.{f.field}: same series as {taken[key]}")
            taken[key] = f.field


def _family(data: dict, metrics: dict[str, MetricDef], uncatalogued: Uncatalogued, enums: Mapping[str, dict],
            families: Mapping[str, FamilyCatalog], faults: Mapping[str, dict]) -> FamilyCatalog:
    name = data["family"]
    fields: dict[str, FieldMap] = {}
    skip: dict[str, str] = dict(NOT_MEASUREMENTS)
    parent = data.get("inherit")
    if parent:
        if parent not in families:
            raise CatalogError(f"{name}: inherits {parent!r}, which is not loaded before it")
        fields.update(families[parent].fields)
        skip.update(families[parent].skip)
    own = {str(k): field_map(f"{name}.{k}", str(k), spec, metrics, enums, faults)
           for k, spec in (data.get("fields") or {}).items()}
    # An own field may feed the same series as an inherited one under another
    # name (pacToBattery beside pac): they are alternative names, and
    # a payload carrying both gives the series once (readings.payload_samples).
    _check_series(name, own.values())
    fields.update(own)
    skip.update({str(k): str(v) for k, v in (data.get("skip") or {}).items()})
    for k in own:
        skip.pop(k, None)
    both = sorted(set(skip) & set(fields))
    if both:
        raise CatalogError(f"{name}: {both} are both mapped and skipped")
    if not parent:
        _check_series(name, fields.values())
    variants = []
    for vspec in data.get("models") or ():
        vname = str(vspec["name"])
        vfields = {str(k): field_map(f"{name}.models.{vname}.{k}", str(k), spec, metrics, enums, faults)
                   for k, spec in (vspec.get("fields") or {}).items()}
        vskip = {str(k): str(v) for k, v in (vspec.get("skip") or {}).items()}
        merged = {k: f for k, f in fields.items() if k not in vskip and k not in vfields}
        merged.update(vfields)
        _check_series(f"{name}.models.{vname}", merged.values())
        variants.append(Variant(vname, re.compile(str(vspec["match"]), re.IGNORECASE), vfields, vskip,
                                tuple(vspec.get("detect") or ())))
    aliases = dict(families[parent].aliases) if parent else {}
    aliases.update({str(k): str(v) for k, v in (data.get("aliases") or {}).items()})
    fam = FamilyCatalog(name=name, fields=fields, skip=skip, uncatalogued=uncatalogued, variants=tuple(variants),
                        aliases=aliases)
    check_spellings(fam, name)
    return fam


def check_spellings(fam: FamilyCatalog, where: str) -> None:
    """A name differing from another only in letter case is the same field (FamilyCatalog.canonical),
    so the catalog must not map two such names, and an alias must name a mapped field."""
    seen: dict[str, str] = {}
    for _, f in fam.all_fields():
        other = seen.setdefault(f.field.casefold(), f.field)
        if other != f.field:
            raise CatalogError(f"{where}: {other} and {f.field} differ only in letter case; the catalog "
                               "reads every spelling of a name as one field, so map it once")
    for alias, target in fam.aliases.items():
        if target not in seen.values() and target not in fam.skip:   # skipping loadIu skips loadIa
            raise CatalogError(f"{where}.aliases.{alias}: {target} is not a mapped field")
        if alias.casefold() in seen:
            raise CatalogError(f"{where}.aliases.{alias}: already a mapped field")


def _read(name: str) -> Any:
    """A catalog file of the package, through the one bounded YAML loader (a duplicate key is refused)."""
    return load_yaml(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


FAMILY_FILES = ("hps_central", "hps_string", "pcs", "pbd", "bcu", "mbms")  # parents before children


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The packaged catalog, validated once per process."""
    metrics = _metrics(_read("metrics.yaml"))
    enums = _read("enums.yaml")
    for table, spec in enums.items():
        parse_states(f"enums.yaml {table}", spec.get("states"))
    faults = _read("faults.yaml")
    uncatalogued = Uncatalogued(metrics)
    families: dict[str, FamilyCatalog] = {}
    for stem in FAMILY_FILES:
        fam = _family(_read(f"{stem}.yaml"), metrics, uncatalogued, enums, families, faults)
        if fam.name in families:
            raise CatalogError(f"{stem}.yaml: family {fam.name} defined twice")
        families[fam.name] = fam
    return Catalog(metrics=metrics, families=families, uncatalogued=uncatalogued, enums=enums, faults=faults)

