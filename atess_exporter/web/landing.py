"""The frame of the status pages (web/status.py): title, links, one stylesheet.

No script and no external asset: the stylesheet is inline and allowed by its
hash in the Content-Security-Policy server.py sends, so a strict policy blocks
nothing here (and no `style=` attribute is ever written: a hash does not cover
those). The layout wraps instead of scrolling sideways: a grid of cards that
becomes one column at 390 px, long SNs and messages broken anywhere.
"""

from __future__ import annotations

import html

from atess_exporter import __version__

STYLE = (
    "*{box-sizing:border-box}"
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;padding:.75em 1em 2em;"
    "max-width:80em;color:#1f2328;background:#fff}"
    "a{color:#0969da}code{font-size:.88em;overflow-wrap:anywhere}"
    "header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.2em 1em;border-bottom:1px solid #d0d7de;"
    "padding-bottom:.4em;margin-bottom:.8em}"
    "header h1{font-size:1.2em;margin:0}header .v{color:#57606a;font-size:.85em}"
    "header nav{display:flex;gap:1em;margin-left:auto}"
    ".banner{background:#ffebe9;border:1px solid #ff8182;border-left:6px solid #cf222e;border-radius:6px;"
    "padding:.6em .8em;margin:0 0 .7em;overflow-wrap:anywhere}"
    ".banner .said{font-weight:600}"
    ".note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5em .8em}"
    ".chips{display:flex;flex-wrap:wrap;gap:.4em;margin:.4em 0 .8em}"
    ".chip{border:1px solid #d0d7de;border-left-width:5px;border-radius:6px;padding:.15em .6em;"
    "text-decoration:none;color:inherit;white-space:nowrap}"
    ".chip.on{background:#f0f3f6;outline:2px solid #1f2328}.chip.zero{color:#8c959f}"
    ".headline{font-size:1.1em;margin:.2em 0 .3em}.headline strong{font-weight:650}"
    ".plants{margin:0 0 .8em}.plants summary{cursor:pointer;color:#57606a}"
    ".plants ul{columns:16em;padding-left:1.2em;margin:.4em 0}.plants li{break-inside:avoid}"
    ".devs{list-style:none;padding:0;margin:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(19em,1fr));"
    "gap:.5em}"
    ".dev{border:1px solid #d0d7de;border-left-width:6px;border-radius:6px;padding:.4em .6em;min-width:0}"
    ".sn{font-weight:600;overflow-wrap:anywhere}.why{overflow-wrap:anywhere}"
    ".meta{color:#57606a;font-size:.88em;overflow-wrap:anywhere}"
    ".badge{display:inline-block;font-size:.78em;font-weight:600;padding:0 .5em;border-radius:1em;color:#fff;"
    "background:#6e7781;vertical-align:.1em}"
    ".s-down{border-left-color:#cf222e}.badge.s-down{background:#cf222e}"
    ".s-lost{border-left-color:#8250df}.badge.s-lost{background:#8250df}"
    ".s-offline{border-left-color:#bc4c00}.badge.s-offline{background:#bc4c00}"
    ".s-stale{border-left-color:#9a6700}.badge.s-stale{background:#9a6700}"
    ".s-pending{border-left-color:#8c959f}.badge.s-pending{background:#6e7781}"
    ".s-up{border-left-color:#1a7f37}.badge.s-up{background:#1a7f37}"
    ".pager{display:flex;flex-wrap:wrap;gap:1em;justify-content:center;margin:1em 0}"
    "h2.sn{font-size:1.3em;margin:.2em 0 .5em}h3{font-size:1.05em;margin:1.2em 0 .4em}"
    ".facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.25em 1em;margin:0}"
    ".facts dt{color:#57606a}.facts dd{margin:0;overflow-wrap:anywhere}"
    ".readings{list-style:none;padding:0;margin:0;columns:22em;column-gap:2em}"
    ".readings li{break-inside:avoid;display:flex;flex-wrap:wrap;gap:0 .6em;justify-content:space-between;"
    "border-bottom:1px solid #eaeef2;padding:.2em 0}"
    ".readings .v{font-weight:600;font-variant-numeric:tabular-nums;margin-left:auto}"
    ".readings code{flex-basis:100%;color:#57606a;font-size:.78em}"
    ".notes li{overflow-wrap:anywhere}.ok{color:#1a7f37}.bad{color:#cf222e}"
)


def render(telemetry_path: str, body: str = "", title: str = "ATESS Exporter") -> bytes:
    """The whole page around `body` (already escaped HTML)."""
    path = html.escape(telemetry_path)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<header><h1>ATESS Exporter</h1><span class="v">version {html.escape(__version__)}</span>'
        f'<nav><a href="./">Devices</a><a href="{path}">Metrics</a><a href="healthz">Health</a></nav></header>'
        f"{body}</body></html>"
    ).encode()
