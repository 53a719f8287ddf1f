"""The page of one device: who it is, its state and why, its last error, its latest
readings with names and units, and what its last payload carried that was not exported."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from atess_exporter.live.freshness import last_seen
from atess_exporter.live.store import DeviceSnapshot
from atess_exporter.outside.text import html_text
from atess_exporter.web.states import Verdict

if TYPE_CHECKING:
    from atess_exporter.web.status import StatusPages

MAX_READINGS = 400   # rows of readings shown (a device has ~150)

# Metric-name suffix -> (unit shown, factor from the base unit), humane units for people.
_UNITS = (("_joules_total", "kWh", 1 / 3.6e6), ("_joules", "kWh", 1 / 3.6e6), ("_watts", "kW", 1e-3),
          ("_volt_amperes", "kVA", 1e-3), ("_volts", "V", 1.0), ("_amperes", "A", 1.0), ("_hertz", "Hz", 1.0),
          ("_celsius", "°C", 1.0), ("_ratio", "%", 100.0), ("_seconds_total", "h", 1 / 3600),
          ("_seconds", "min", 1 / 60))


def humane(metric: str, value: float) -> str:
    unit, factor = next(((u, f) for suffix, u, f in _UNITS if metric.endswith(suffix)), ("", 1.0))
    value *= factor
    number = f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:,.6g}"   # 1,252,010 kWh, not 1.25201e+06
    return f"{number} {unit}".rstrip()


def render(pages: "StatusPages", dev: DeviceSnapshot, v: Verdict, now: float) -> str:
    text = pages.text
    pid, pname = dev.info.get("plant_id", ""), dev.info.get("plant_name", "")
    plant = ""
    if pid or pname:
        href = html_text("./?plant=" + quote(pid or pname, safe=""), 400)
        plant = f'<a href="{href}">{text(pname or pid)}</a>' + (f" ({text(pid)})" if pid and pname else "")
    seen = last_seen(dev)
    facts = [
        ("state", f'<span class="badge s-{v.state}">{v.state}</span> {text(v.reason)}'),
        ("type", text(dev.device_type)), ("model", text(dev.model)), ("plant", plant),
        ("datalogger", text(dev.info.get("datalog_sn", ""))), ("firmware", text(dev.info.get("firmware", ""))),
        *([("account", text(dev.info["account"]))] if dev.info.get("account") else []),
        ("last poll", text(pages_when(dev.last_attempt, now))),
        ("last good poll", text(pages_when(dev.last_success, now))),
        ("reading taken", text(pages_when(seen, now))),
        ("last error", text(dev.error) if dev.error and not dev.up else "none"),
    ]
    parts = [f'<p><a href="./">‹ all devices</a></p><h2 class="sn">{text(dev.sn)}</h2><dl class="facts">']
    parts += [f"<dt>{k}</dt><dd>{val or '—'}</dd>" for k, val in facts]
    parts.append("</dl>")
    parts.append(_readings(pages, dev))
    parts.append(_withheld(pages, dev))
    return "".join(parts)


def pages_when(ts: float | None, now: float) -> str:
    from atess_exporter.web.status import when

    return "never" if ts is None else when(ts, now)


def _readings(pages: "StatusPages", dev: DeviceSnapshot) -> str:
    rows = []
    for metric in sorted(dev.samples):
        try:
            name = pages.catalog.describe_metric(metric).help
        except KeyError:
            name = metric
        samples = dev.samples[metric]
        if metric.endswith("_state"):   # one 0/1 series per state of an enumeration: show the current one
            shown = [(labels[:-1], labels[-1]) for labels, value in samples if value == 1 and labels]
        else:
            shown = [(labels, humane(metric, value)) for labels, value in samples]
        for labels, value in shown:
            label = f" ({', '.join(labels)})" if labels else ""
            rows.append(f'<li><span class="k">{pages.text(name.split(": 1 for")[0] + label)}</span> '
                        f'<span class="v">{pages.text(value)}</span> '
                        f'<code>{pages.text(metric)}</code></li>')
    if not rows:
        return "<h3>Latest readings</h3><p>None yet.</p>"
    more = f"<p>… and {len(rows) - MAX_READINGS} more (see the metrics).</p>" if len(rows) > MAX_READINGS else ""
    return f'<h3>Latest readings ({len(rows)})</h3><ul class="readings">{"".join(rows[:MAX_READINGS])}</ul>{more}'


def _withheld(pages: "StatusPages", dev: DeviceSnapshot) -> str:
    items = [f"<li>implausible, not exported: {pages.text(w)}</li>" for w in dev.withheld]
    uncatalogued = [m for m in sorted(dev.samples) if m not in pages.catalog.metrics]
    items += [f"<li>uncatalogued, exported raw as <code>{pages.text(m)}</code></li>" for m in uncatalogued]
    if dev.unusable_fields:
        items.append(f"<li>{dev.unusable_fields} catalogued fields carried text instead of a number</li>")
    if not items:
        return "<h3>Fields not as catalogued</h3><p>None: every field was catalogued and plausible.</p>"
    return f'<h3>Fields not as catalogued</h3><ul class="notes">{"".join(items)}</ul>'
