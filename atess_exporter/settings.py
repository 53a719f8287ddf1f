"""A device's settings, read (never written) and split into numbers and text.

The exporter only ever GETs the settings endpoint: a monitoring credential
must not be able to change a plant, so no code path here issues PUT, POST or
DELETE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import parse_number, snake_case

MAX_TEXT = 64  # a longer string is not a setting worth a label


@dataclass(frozen=True)
class Settings:
    numbers: dict[str, float] = field(default_factory=dict)   # snake_case name -> value
    texts: dict[str, str] = field(default_factory=dict)       # vendor name -> value


def split_settings(data: dict) -> Settings:
    numbers, texts = {}, {}
    for name, raw in sorted(data.items()):
        if name in ("deviceSn", "sn", "time", "updateTime"):
            continue
        number = parse_number(raw)
        key = snake_case(str(name))
        if number is not None and key:
            numbers[key] = number
        elif isinstance(raw, str) and raw.strip() and len(raw) <= MAX_TEXT:
            texts[str(name)] = raw.strip()
    return Settings(numbers, texts)
