"""A device's settings, read (never written) and split into numbers and text.

The exporter only ever GETs the settings endpoint: a monitoring credential
must not be able to change a plant, so no code path here issues PUT, POST or
DELETE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from atess_exporter.catalog import parse_number
from atess_exporter.catalog.naming import RESERVED_SUFFIXES, generated_name
from atess_exporter.outside.text import label_text

MAX_TEXT = 64  # a longer string is not a setting worth a label


@dataclass(frozen=True)
class DeviceSettings:
    numbers: dict[str, tuple[str, float]] = field(default_factory=dict)  # metric name -> (vendor name, value)
    texts: dict[str, str] = field(default_factory=dict)       # vendor name -> value
    dropped: int = 0                                           # keys over max_keys, not kept


def read_device_settings(data: dict, max_keys: int = 500) -> DeviceSettings:
    """Numbers and texts of at most max_keys keys (in name order): a settings answer of
    100,000 keys must not become 100,000 series per device."""
    numbers, texts = {}, {}
    names = sorted((k for k in data if isinstance(k, str) and k not in ("deviceSn", "sn", "time", "updateTime")))
    dropped = max(0, len(names) - max_keys)
    for name in names[:max_keys]:
        raw = data[name]
        number = parse_number(raw)
        metric = setting_metric_name(str(name)) if number is not None else None
        if metric and number is not None:
            numbers[metric] = (str(name), number)
        elif isinstance(raw, str) and label_text(raw) and len(raw) <= MAX_TEXT:
            texts[str(name)] = label_text(raw)
    return DeviceSettings(numbers, texts, dropped)


def setting_metric_name(vendor_name: str) -> str | None:
    """atess_setting_<snake_case>, through the catalog's naming rules for uncatalogued
    fields (promtool-safe parts, no reserved suffix); None when nothing usable is left."""
    name = generated_name(f"setting_{vendor_name}")
    if name is None or name == "atess_setting":
        return None
    return name + "_value" if name.endswith(RESERVED_SUFFIXES) else name
