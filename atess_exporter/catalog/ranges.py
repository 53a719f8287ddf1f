"""Physical ranges: what a metric's value can possibly be, in base units.

A value outside its range is withheld (never clamped) and counted in
``atess_device_implausible_fields``: a cell voltage of 65.526 V (a placeholder
where no BMS is attached), a power factor of 100 (a percentage on another
scale) or a power 1,000 times the model's rating (W sent where the doc says kW)
must not reach a dashboard as if it were a reading.

Every metric gets a range from the first rule below that matches its name;
metrics.yaml may give its own (``range: [lo, hi]``, ``rating: k``). ``rating: k``
also bounds |value| by k times the device's rated power in watts (models.py)
when the model states one: watts, volt-amperes, and joules per day.
"""

from __future__ import annotations

import math
import re
from typing import Any
from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float
    rating: float | None = None    # |value| <= rating * rated power (W, or J per day)

    def allows(self, value: float, rated_watts: float | None) -> bool:
        if not (self.lo <= value <= self.hi):
            return False
        if self.rating is not None and rated_watts:
            return abs(value) <= self.rating * rated_watts
        return True

    def describe(self, rated_watts: float | None = None) -> str:
        text = f"[{self.lo:g}, {self.hi:g}]"
        if self.rating is not None and rated_watts:
            text += f" and |value| <= {self.rating:g} x {rated_watts:g}"
        return text


# (name pattern, range); first match wins. Site-level flows (grid, meter, load,
# generator, bypass) may exceed the device's rating, so they get a wider factor.
_RULES: tuple[tuple[str, Range], ...] = (
    (r"_cell_voltage_volts$", Range(0.0, 5.0)),
    (r"_(soc|soh)_ratio$|_ratio$", Range(0.0, 1.0)),
    (r"power_factor$", Range(-1.0, 1.0)),
    (r"^atess_(meter|load|bypass|generator|non_critical|grid)_.*_(watts|volt_amperes)$", Range(-1e7, 1e7, rating=10.0)),
    (r"_(watts|volt_amperes)$", Range(-1e7, 1e7, rating=3.0)),
    (r"_today_joules$", Range(0.0, 1e13, rating=10.0 * DAY)),
    (r"_joules_total$", Range(0.0, 1e17)),
    (r"_volts$", Range(-2000.0, 2000.0)),
    (r"_amperes$", Range(-20000.0, 20000.0)),
    (r"_celsius$", Range(-60.0, 200.0)),
    (r"_hertz$", Range(0.0, 100.0)),
    (r"_today_seconds$", Range(0.0, DAY * 1.05)),
    (r"_seconds_total$", Range(0.0, 1e10)),
    (r"_seconds$", Range(0.0, 1e10)),
    (r"_number$", Range(0.0, 65535.0)),
    (r".*", Range(-1.0, 65535.0)),  # enumerations, codes, counts
)


def default_range(metric: str) -> Range:
    for pattern, rng in _RULES:
        if re.search(pattern, metric):
            return rng
    raise AssertionError("the last rule matches everything")


def parse_range(spec: object, rating: Any, where: str, fallback: Range) -> Range:
    """A range from YAML (`range: [lo, hi]`, `rating: k`); ValueError names the problem."""
    lo, hi = fallback.lo, fallback.hi
    if spec is not None:
        if not isinstance(spec, (list, tuple)) or len(spec) != 2:
            raise ValueError(f"{where}: range must be [low, high]")
        try:
            lo, hi = float(spec[0]), float(spec[1])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: range must be two numbers, got {spec!r:.60}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"{where}: range must be finite with low <= high, got [{lo:g}, {hi:g}]")
    factor = fallback.rating
    if rating is not None:
        if rating is False or rating == "none":
            factor = None
        else:
            try:
                factor = float(rating)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: rating must be a positive number or none") from None
            if not (math.isfinite(factor) and factor > 0):
                raise ValueError(f"{where}: rating must be a positive number or none")
    return Range(lo, hi, factor)
