"""The landing page at `/`: what the exporter sees, per device, for a person.

Everything shown comes from the store (no API call). Every value is
HTML-escaped: SNs, models, plant names and error texts come from the API or
the config and are treated as hostile. Error texts are also scrubbed of the
configured credentials and cut short, by the rules log lines follow
(outside/text.py).
"""

from __future__ import annotations

import html
import time
from typing import Callable, Iterable

from atess_exporter import __version__
from atess_exporter.config import PollConfig
from atess_exporter.live.freshness import Window, data_age, is_online
from atess_exporter.live.store import Cache, DeviceSnapshot
from atess_exporter.outside.text import Redactor, safe_text

MAX_ROWS = 500          # a page for a person, not an export: the rest is in /metrics
MAX_ERROR_CHARS = 300

STYLE = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
         ".ok{color:#1a7f37}.bad{color:#b42318}.demo{background:#fff4ce;padding:.5em 1em;border:1px solid #e0c060}")


def _age(seconds: float) -> str:
    if seconds == float("inf"):
        return "never"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return f"{stamp} ({_age(max(0.0, now - ts))} ago)"


def _flag(value: bool, yes: str, no: str) -> str:
    return f'<span class="ok">{yes}</span>' if value else f'<span class="bad">{no}</span>'


class DeviceTable:
    """Renders the device table; passed to the HTTP server as the page's body."""

    def __init__(self, cache: Cache, poll: PollConfig, secrets: Iterable[str] = (), demo: bool = False,
                 clock: Callable[[], float] = time.time):
        self.cache = cache
        self.poll = poll
        self.redact = Redactor(secrets)
        self.demo = demo
        self.clock = clock

    def _row(self, dev: DeviceSnapshot, now: float) -> str:
        age = data_age(dev, now)
        plant = dev.info.get("plant_name") or dev.info.get("plant_id") or ""
        error = "" if dev.up or not dev.error else safe_text(self.redact.scrub(dev.error), MAX_ERROR_CHARS)
        polled = dev.last_attempt is not None
        cells = (
            html.escape(dev.sn), html.escape(dev.model), html.escape(plant),
            _flag(dev.up, "up", "down" if polled else "not polled yet"),
            _flag(is_online(dev, now, Window(), self.poll.stale_after_seconds), "online", "offline"),
            html.escape(_when(dev.last_attempt, now)), html.escape(_age(age)), html.escape(error),
        )
        return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

    def __call__(self) -> str:
        now = self.clock()
        devices = self.cache.snapshot()
        up = sum(1 for d in devices if d.up)
        parts = []
        if self.demo:
            parts.append('<p class="demo"><strong>Demo:</strong> these devices are simulated by the embedded '
                         "ATESS API simulator (<code>--demo</code>); no account is read.</p>")
        parts.append(f"<h2>Devices</h2><p>{len(devices)} devices, {up} polled OK; "
                     f"each is polled every {self.poll.interval_seconds:g} s.</p>")
        if devices:
            parts.append("<table><tr><th>SN</th><th>model</th><th>plant</th><th>last poll</th><th>reading</th>"
                         "<th>last poll at</th><th>data age</th><th>last error</th></tr>")
            parts.extend(self._row(d, now) for d in devices[:MAX_ROWS])
            parts.append("</table>")
            if len(devices) > MAX_ROWS:
                parts.append(f"<p>… and {len(devices) - MAX_ROWS} more devices (see the metrics).</p>")
        else:
            parts.append("<p>No device yet: discovery has not found any, or has not run yet.</p>")
        return "".join(parts)


def render(telemetry_path: str, body: Callable[[], str] | None = None) -> bytes:
    """The whole page: title, links to the metrics and the health check, then `body()`."""
    path = html.escape(telemetry_path)
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>ATESS Exporter</title>'
        f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head><body>'
        f"<h1>ATESS Exporter</h1><p>Version {html.escape(__version__)}</p>"
        f'<ul><li><a href="{path}">Metrics</a></li><li><a href="/healthz">Health</a></li></ul>'
        f"{body() if body else ''}</body></html>"
    ).encode()
