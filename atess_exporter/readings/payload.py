"""A vendor payload turned into samples through the catalog.

Shared by the live poller and the history backfill, so both produce the same
series from the same row: the device's model picks its catalog variant
(HPS100HV/HPS150HV), a packed word is split, values outside their physical
range are withheld, and flags and identifiers never become gauges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from atess_exporter.catalog import FamilyCatalog, FieldMap, parse_number
from atess_exporter.catalog.models import rated_power_watts

# metric name -> ((label values after sn/model, value), ...)
Samples = dict[str, tuple[tuple[tuple[str, ...], float], ...]]

MAX_UNCATALOGUED = 256           # uncatalogued numbers exported per payload
NEW_NAMES_SHARE = 4              # one payload may make at most 1/4 of the uncatalogued names left:
                                 # no hostile answer spends the budget (Uncatalogued.MAX_NAMES) alone


@dataclass(frozen=True)
class Implausible:
    field: str
    value: float
    allowed: str


@dataclass(frozen=True)
class Reading:
    samples: Samples
    implausible: tuple[Implausible, ...] = ()
    unusable: int = 0            # catalogued fields carrying text or a flag instead of a number
    catalogued: int = 0          # payload fields the catalog (for this model) maps
    uncatalogued: int = 0        # numeric payload fields it does not know (exported up to MAX_UNCATALOGUED)
    lost: bool | None = None     # the cloud's own "lost contact" flag, when sent
    variant: str = ""            # the catalog variant used ("hv"), "" for the family's base
    kilo_suspects: tuple[str, ...] = ()   # kW fields whose value looks like W (1,000x too large)
    rated_watts: float | None = None      # the rating the values were checked against
    uncatalogued_fields: tuple[str, ...] = ()   # their names, as sent
    uncatalogued_dropped: int = 0   # of those, not exported: no name left for them (or no usable name)


def _split_packed(family: FamilyCatalog, payload: Mapping) -> Mapping:
    """A packed status word (bmsStatus above 255): high byte to the field, low byte
    to its `low_byte` partner."""
    out = None
    for name, fmap in family.fields.items():
        if not fmap.low_byte_field:
            continue
        number = parse_number(payload.get(name))
        if number is not None and number > 255 and number == int(number) and number < 65536:
            out = dict(payload) if out is None else out
            out[name], out[fmap.low_byte_field] = int(number) >> 8, int(number) & 0xFF
    return payload if out is None else out


def rating_of(payload: Mapping) -> float | None:
    """The rated power the payload itself states (`normalPower`, W), if credible."""
    number = parse_number(payload.get("normalPower"))
    return number if number is not None and 100.0 <= number <= 1e8 else None


def read_payload(family: FamilyCatalog, payload: Mapping, model: str | None = None,
                 rated_watts: float | None = None) -> Reading:
    """Every number of the payload as samples, with what was withheld and why.

    Catalogued fields become their metric (scaled to base units) unless the value
    is a known "no reading" placeholder or outside the metric's range (judged
    against the rating the payload states, else `rated_watts` from the device
    lists, else the model name's); an enumeration with a table also gives one
    0/1 series per state; a numeric field the catalog does not know becomes an
    ``atess_vendor_*`` gauge (raw value); text, flags, identifiers, nulls and
    nested objects give nothing.
    """
    payload = family.normalise(payload)   # every spelling of a catalogued field is that field
    fam = family.for_model(model, payload)
    payload = _split_packed(fam, payload)
    rated = rating_of(payload) or rated_watts or rated_power_watts(model)
    grouped: dict[str, list] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    implausible: list[Implausible] = []
    unusable = 0
    suspects: list[str] = []
    for name, raw in payload.items():
        fmap: FieldMap | None = fam.fields.get(name)
        if fmap is None:
            continue
        number = parse_number(raw)
        if number is None:
            if raw not in (None, "") and not isinstance(raw, (dict, list)):
                unusable += 1
            continue
        key = (fmap.metric.name, fmap.label_values)
        if key in seen or number in fmap.no_reading:
            continue  # another name of a field this payload already gave, or an absent sensor
        value = number * fmap.scale
        if not fmap.plausible.allows(value, rated):
            implausible.append(Implausible(name, number, fmap.plausible.describe(rated)))
            if fmap.unit == "kW" and rated and fmap.plausible.allows(value / 1000.0, rated):
                suspects.append(name)
            continue
        seen.add(key)
        grouped.setdefault(fmap.metric.name, []).append((fmap.label_values, value))
        if fmap.state_metric is not None and fmap.states:
            rows = grouped.setdefault(fmap.state_metric.name, [])
            rows.extend(((state,), 1.0 if number == code else 0.0) for code, state in fmap.states)
        if fmap.fault_metric is not None and number == int(number):
            word = int(number)
            rows = grouped.setdefault(fmap.fault_metric.name, [])
            rows.extend((fmap.label_values + (name,), 1.0) for bit, name in fmap.faults if word >> bit & 1)
    extra = made = refused = 0
    allowance = fam.uncatalogued.left() // NEW_NAMES_SHARE
    names: list[str] = []
    for name, raw in payload.items():
        if name in fam.fields or name in fam.skip or isinstance(raw, bool):
            continue
        number = parse_number(raw)
        if number is None:
            continue
        extra += 1
        if extra > MAX_UNCATALOGUED:
            continue  # one device's odd payload must not flood the exposition
        names.append(name)
        metric = fam.uncatalogued.metric_name(fam.name, name, new=False)
        if metric is None and made < allowance:
            metric = fam.uncatalogued.metric_name(fam.name, name)
            made += metric is not None
        if metric is None:
            refused += 1
            continue
        grouped.setdefault(metric, []).append(((), number))
    lost = payload.get("lost")
    return Reading(samples={name: tuple(rows) for name, rows in grouped.items() if rows},
                   implausible=tuple(implausible), unusable=unusable,
                   catalogued=sum(1 for name in payload if name in fam.fields), uncatalogued=extra,
                   lost=lost if isinstance(lost, bool) else None, variant=fam.variant,
                   kilo_suspects=tuple(suspects), rated_watts=rated, uncatalogued_fields=tuple(names),
                   uncatalogued_dropped=refused)


def payload_samples(family: FamilyCatalog, payload: Mapping, model: str | None = None,
                    rated_watts: float | None = None) -> Samples:
    """Just the samples of read_payload (backfill, tests, benchmarks)."""
    return read_payload(family, payload, model, rated_watts).samples
