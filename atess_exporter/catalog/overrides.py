"""The user's corrections to the catalog, from the config, without a release.

    catalog_overrides:
      hps_central:                       # a device family
        fields:
          ppv: {unit: W}                 # the cloud sends W where the doc says kW
          loadPf: {skip: true}           # never export this field
          pac: {range: [-300000, 300000], rating: none}
          newField: {metric: atess_meter_power_watts, unit: kW}   # map an uncatalogued field
        models:
          HPS150HV:                      # one model only (exact name, any case)
            fields: {ppv1: {unit: W}}
    enums:
      runModel: mode_selection           # another table of catalog/enums.yaml,
      dgGridSelect: {0: grid, 1: generator}   # an inline table, or `none`

Every problem is a CatalogError naming the key and the fix, so `--check-config`
and start-up report it like any other config error.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from typing import Any, Mapping

from atess_exporter.catalog import (Catalog, CatalogError, FamilyCatalog, FieldMap, Variant, check_spellings,
                                    field_map, parse_states)

FIELD_KEYS = ("metric", "unit", "labels", "range", "rating", "skip")


def _hint(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise CatalogError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _field(where: str, name: str, current: FieldMap | None, spec: Any, catalog: Catalog) -> FieldMap | None:
    """The field after the override; None when it is skipped."""
    spec = _mapping(spec, where)
    for key in spec:
        if key not in FIELD_KEYS:
            raise CatalogError(f"{where}.{key}: unknown key{_hint(str(key), FIELD_KEYS)}; allowed: {', '.join(FIELD_KEYS)}")
    if "skip" in spec:
        if spec["skip"] is not True or len(spec) > 1:
            raise CatalogError(f"{where}.skip: write `skip: true` alone to leave the field out")
        return None
    if current is None and not {"metric", "unit"} <= set(spec):
        raise CatalogError(f"{where}: {name} is not catalogued for this family; give at least metric and unit")
    base: dict[str, Any] = {}
    if current is not None:
        base = {"metric": current.metric.name, "unit": current.unit, "doc": current.doc,
                "labels": dict(zip(current.metric.labels, current.label_values))}
        if current.state_metric is not None:
            base["state_metric"] = current.state_metric.name
            if current.states:
                base["states"] = {v: s for v, s in current.states}
        if current.range is not None and not {"range", "rating"} & set(spec):
            base["range"], base["rating"] = [current.range.lo, current.range.hi], current.range.rating or "none"
        if current.no_reading:
            base["no_reading"] = list(current.no_reading)
        if current.fault_table:
            base["faults"] = current.fault_table
    if "metric" in spec and spec["metric"] != base.get("metric"):
        if spec["metric"] not in catalog.metrics:
            raise CatalogError(f"{where}.metric: {spec['metric']!r} is not a catalog metric{_hint(str(spec['metric']), catalog.metrics)}")
        for key in ("labels", "state_metric", "states", "faults"):
            base.pop(key, None)
    base.update(spec)
    base["note"] = "changed by catalog_overrides in the config"
    return field_map(where, name, base, catalog.metrics, catalog.enums, catalog.faults)


def _apply_fields(where: str, fam: FamilyCatalog, fields: dict[str, FieldMap], skip: dict[str, str], spec: Any,
                  catalog: Catalog) -> tuple[dict[str, FieldMap], dict[str, str]]:
    fields, skip = dict(fields), dict(skip)
    for name, fspec in _mapping(spec, where).items():
        name = fam.canonical(str(name)) or str(name)   # `LoadPF:` corrects loadPf
        result = _field(f"{where}.{name}", name, fields.get(name), fspec, catalog)
        if result is None:
            fields.pop(name, None)
            skip[name] = "skipped by catalog_overrides"
        else:
            fields[name] = result
            skip.pop(name, None)
    return fields, skip


def _series(f: FieldMap) -> set[tuple]:
    keys = {(f.metric.name, f.label_values)}
    if f.state_metric is not None:
        keys |= {(f.state_metric.name, (s,)) for _, s in f.states}
    return keys


def _check_changed(where: str, fields: dict[str, FieldMap], before: dict[str, FieldMap]) -> None:
    """No field the config changed may feed another field's series, unless the packaged
    catalog already had the two as alternative names of one series (pac, pacToBattery)."""
    for name, f in fields.items():
        if before.get(name) is f:
            continue
        for other, g in fields.items():
            shared = _series(f) & _series(g) if other != name else set()
            if shared and not (name in before and other in before and shared <= _series(before[name]) & _series(before[other])):
                raise CatalogError(f"{where}.{name}: same series as {other}; give the fields distinct metrics or labels")


def _family(fam: FamilyCatalog, spec: Any, catalog: Catalog, where: str) -> FamilyCatalog:
    spec = _mapping(spec, where)
    for key in spec:
        if key not in ("fields", "models"):
            raise CatalogError(f"{where}.{key}: unknown key{_hint(str(key), ('fields', 'models'))}; allowed: fields, models")
    fields, skip = _apply_fields(f"{where}.fields", fam, fam.fields, fam.skip, spec.get("fields") or {}, catalog)
    _check_changed(where, fields, fam.fields)
    base = replace(fam, fields=fields, skip=skip, _views={})
    # A family-wide correction also applies where a packaged model variant maps the same field.
    family_spec = _mapping(spec.get("fields") or {}, f"{where}.fields")
    variants = []
    for v in fam.variants:
        vfields = dict(v.fields)
        for name, fspec in family_spec.items():
            name = fam.canonical(str(name)) or str(name)
            if name in vfields:
                result = _field(f"{where}.fields.{name}", str(name), vfields[name], fspec, catalog)
                if result is None:
                    del vfields[name]
                else:
                    vfields[name] = result
        variants.append(replace(v, fields=vfields))
    own: list[Variant] = []
    for model, mspec in _mapping(spec.get("models") or {}, f"{where}.models").items():
        mwhere = f"{where}.models.{model}"
        mspec = _mapping(mspec, mwhere)
        for key in mspec:
            if key != "fields":
                raise CatalogError(f"{mwhere}.{key}: unknown key; allowed: fields")
        view = base.for_model(str(model))   # the model's packaged variant, if any
        mfields, mskip = _apply_fields(f"{mwhere}.fields", fam, view.fields, view.skip, mspec.get("fields") or {}, catalog)
        _check_changed(mwhere, mfields, view.fields)
        own.append(Variant(f"model {model}", re.compile(f"^{re.escape(str(model))}$", re.IGNORECASE),
                           mfields, {k: v for k, v in mskip.items() if k not in mfields}))
    # A model's own entry is a complete view of that model: it comes first.
    corrected = replace(base, variants=tuple(own) + tuple(variants))
    check_spellings(corrected, where)
    return corrected


def _enum_states(where: str, spec: Any, catalog: Catalog) -> tuple[tuple[tuple[float, str], ...], str]:
    if spec is None or spec == "none":
        return (), ""
    if isinstance(spec, str):
        if spec not in catalog.enums:
            raise CatalogError(f"{where}: {spec!r} is not a known table{_hint(spec, catalog.enums)}; "
                               f"known: {', '.join(sorted(catalog.enums))}, or `none`, or {{value: name}}")
        return parse_states(where, catalog.enums[spec]["states"]), spec
    return parse_states(where, spec), "config"


def _enums(families: dict[str, FamilyCatalog], spec: Any, catalog: Catalog) -> dict[str, FamilyCatalog]:
    known = {f.field for fam in families.values() for _, f in fam.all_fields() if f.state_metric is not None}
    folded = {name.casefold(): name for name in known}
    out = dict(families)
    for field, table in _mapping(spec, "enums").items():
        where = f"enums.{field}"
        field = folded.get(str(field).casefold(), field)
        if field not in known:
            raise CatalogError(f"{where}: not an enumeration field{_hint(str(field), known)}; fields with state tables: {', '.join(sorted(known))}")
        states, enum = _enum_states(where, table, catalog)
        for name, fam in out.items():
            out[name] = replace(fam, fields=_with_states(fam.fields, field, states, enum), _views={},
                                variants=tuple(replace(v, fields=_with_states(v.fields, field, states, enum))
                                               for v in fam.variants))
    return out


def _with_states(fields: dict[str, FieldMap], field: str, states: Any, enum: str) -> dict[str, FieldMap]:
    """`fields` with the enumeration field's state table replaced (the others as they are)."""
    f = fields.get(field)
    if f is None or f.state_metric is None:
        return fields
    return {**fields, field: replace(f, states=states, enum=enum)}


def apply_overrides(catalog: Catalog, overrides: Mapping, enums: Mapping) -> Catalog:
    families = dict(catalog.families)
    for name, spec in _mapping(overrides, "catalog_overrides").items():
        where = f"catalog_overrides.{name}"
        if name not in families:
            raise CatalogError(f"{where}: unknown device family{_hint(str(name), families)}; known: {', '.join(families)}")
        families[name] = _family(families[name], spec, catalog, where)
    if enums:
        families = _enums(families, enums, catalog)
    return Catalog(metrics=catalog.metrics, families=families, uncatalogued=catalog.uncatalogued, enums=catalog.enums,
                   faults=catalog.faults)
