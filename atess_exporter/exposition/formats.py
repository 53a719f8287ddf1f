"""The one place that knows how prometheus_client writes its exposition formats.

render.py caches what the collectors emit, per device and per family, as bytes
in the format a scraper negotiated. Every byte of those comes from the
library's own encoder, called here on small pieces of the registry's output:

* ``negotiate(accept)`` is ``choose_encoder`` itself (so the same format,
  escaping and Content-Type as the library picks), keyed by the encoder's
  function and keywords (``functools.partial`` attributes);
* ``Format.header(family)`` is the encoder's output for that family with no
  samples: its ``# HELP``/``# TYPE`` (and OpenMetrics ``# UNIT``) lines;
* ``Format.device_pieces(families)`` gives one device's sample lines per
  family.

Sample lines are the one thing written here rather than by the encoder, as
the encoders spend most of a scrape on them (the OpenMetrics one escapes every
sample name character by character): for the plain case -- names and label
names in the legacy character set, escaping ``underscores`` or
``allow-utf-8``, no timestamp, exemplar or native histogram, no ``_created``
-- all three formats (text 0.0.4, text 1.0.0, OpenMetrics 1.0.0) write a
sample the same way: ``name{k="v",...} value`` with labels sorted, the value
escaped for backslash, newline and quote, and the number by the library's own
``floatToGoString``. Anything else goes through the encoder: it runs once over
the device's families and the output is cut into each family's lines.

What is assumed about the encoders, and checked on every call (a mismatch
raises FormatError and render.py falls back to the whole-registry encoder):
each sample is exactly one line, a family's header lines come before its
samples and are the lines of the empty family, and OpenMetrics ends with one
``# EOF`` line. tests/test_formats.py checks all of this, and the sample line
against the encoders on random samples, so a library upgrade that changes any
of it fails loudly there.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Iterable

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import ALLOWUTF8, DOTS, UNDERSCORES, VALUES
from prometheus_client.utils import floatToGoString

from atess_exporter.outside.text import escape_label

EOF = b"# EOF\n"


class FormatError(Exception):
    """The encoder's output does not have the shape this module relies on."""


class _Families:
    """A collector yielding fixed families (what the encoders take)."""

    __slots__ = ("families",)

    def __init__(self, families: Iterable[Metric]):
        self.families = list(families)

    def collect(self):
        return iter(self.families)


_LEGACY_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LEGACY_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_PLAIN_TYPES = ("gauge", "counter", "info", "unknown")
_OM_ONLY = ("_created", "_gsum", "_gcount")


_plain_names: dict[str, bool] = {}      # sample name -> legacy and not an OpenMetrics-only suffix
_plain_labels: dict[str, bool] = {}     # label name -> legacy


def _plain_name(name: str) -> bool:
    ok = _plain_names.get(name)
    if ok is None:
        if len(_plain_names) > 65536:
            _plain_names.clear()
        ok = _plain_names[name] = bool(_LEGACY_NAME.match(name)) and not name.endswith(_OM_ONLY)
    return ok


def _plain_label(name: str) -> bool:
    ok = _plain_labels.get(name)
    if ok is None:
        if len(_plain_labels) > 65536:
            _plain_labels.clear()
        ok = _plain_labels[name] = bool(_LEGACY_LABEL.match(name))
    return ok


def _plain_lines(family: Metric) -> bytes | None:
    """The family's sample lines as every encoder writes them in the plain case, else None."""
    if family.type not in _PLAIN_TYPES:
        return None
    out = []
    for s in family.samples:
        if (s.timestamp is not None or s.exemplar is not None or getattr(s, "native_histogram", None) is not None
                or s.value is None or not _plain_name(s.name)):
            return None
        labels = s.labels
        if labels:
            parts = []
            for k in sorted(labels):
                if not _plain_label(k):
                    return None
                parts.append(f'{k}="{escape_label(labels[k])}"')
            out.append(f"{s.name}{{{','.join(parts)}}} {floatToGoString(s.value)}\n")
        else:
            out.append(f"{s.name} {floatToGoString(s.value)}\n")
    return "".join(out).encode()


def _encoder_key(encoder: Callable) -> tuple:
    if isinstance(encoder, functools.partial):
        return (encoder.func, encoder.args, tuple(sorted(encoder.keywords.items())))
    return (encoder, (), ())


class Format:
    """One exposition format as a library encoder writes it."""

    def __init__(self, encoder: Callable[[Any], bytes]):
        self.encoder = encoder
        keywords = encoder.keywords if isinstance(encoder, functools.partial) else {}
        # Other escapings (dots, values) rewrite even legacy names: those go through the encoder.
        self.plain = keywords.get("escaping", UNDERSCORES) in (UNDERSCORES, ALLOWUTF8)
        self.trailer = b""
        probe = encoder(_Families([]))
        if probe == EOF:
            self.trailer = EOF
        elif probe != b"":
            raise FormatError(f"an empty registry encodes as {probe[:40]!r}")
        self._headers: dict[tuple, tuple[bytes, int]] = {}

    def encode(self, collector: Any) -> bytes:
        """The whole output for a collector, without the trailer."""
        out = self.encoder(collector)
        if self.trailer:
            if not out.endswith(self.trailer):
                raise FormatError("OpenMetrics output without # EOF")
            out = out[: -len(self.trailer)]
        return out

    def _header(self, family: Metric) -> tuple[bytes, int]:
        key = (family.name, family.type, family.unit, family.documentation)
        got = self._headers.get(key)
        if got is None:
            if len(self._headers) > 4096:        # HELP texts that keep changing: start over
                self._headers.clear()
            empty = Metric(family.name, family.documentation, family.type, family.unit)
            data = self.encode(_Families([empty]))
            if not data.startswith(b"# ") or not data.endswith(b"\n"):
                raise FormatError(f"unexpected header for {family.name}: {data[:60]!r}")
            got = self._headers[key] = (data, data.count(b"\n"))
        return got

    def header(self, family: Metric) -> bytes:
        """The family's header lines, exactly as the encoder writes them."""
        return self._header(family)[0]

    def device_pieces(self, families: dict[str, Metric]) -> dict[str, bytes]:
        """Each family's sample lines (one device's samples), as the encoder writes them."""
        out: dict[str, bytes] = {}
        rest: dict[str, Metric] = {}
        for key, family in families.items():
            lines = _plain_lines(family) if self.plain else None
            if lines is None:
                rest[key] = family
            else:
                out[key] = lines
        if rest:
            out.update(self._encoded_pieces(rest))
            out = {key: out[key] for key in families}
        return out

    def _encoded_pieces(self, families: dict[str, Metric]) -> dict[str, bytes]:
        """device_pieces through the encoder: its output cut at the family headers."""
        fams = list(families.values())
        lines = self.encode(_Families(fams)).split(b"\n")
        out: dict[str, bytes] = {}
        at = 0
        for key, family in zip(families, fams):
            head, count = self._header(family)
            if not lines[at].startswith(b"# HELP "):
                raise FormatError(f"no HELP line where {family.name} should start")
            at += count
            end = at + len(family.samples)
            out[key] = b"\n".join(lines[at:end]) + b"\n"
            at = end
        if at != len(lines) - 1 or lines[at] != b"":
            raise FormatError("the encoder wrote other lines than one per sample")
        return out


_VERSION = re.compile(r"^([0-9]{1,6})\.([0-9]{1,6})\.([0-9]{1,6})$")
_ESCAPINGS = (UNDERSCORES, ALLOWUTF8, DOTS, VALUES)
ACCEPT_ITEMS = 32          # Accept items looked at; a longer header's tail is ignored


def canonical_accept(accept: str | None) -> str:
    """The Accept header reduced to one of the few formats the library writes.

    choose_encoder takes the first openmetrics-text or text/plain item whose
    version it can use, and echoes that version and escaping into its
    encoder's keywords: ``version=1.0.1``, ``1.0.2``... would each be a format
    of its own, each with its own cached rendering (memory a client could
    spend without limit), and ``version=1.0.0x`` makes it raise. So the item it
    would pick is rewritten here first: a version the library treats alike
    becomes one canonical version (OpenMetrics 1.0.0 or 2.0.0, text 1.0.0), an
    unknown escaping becomes the library's default, and an item whose version
    is not three numbers is skipped, as an item the library cannot serve is.
    At most 1 + 3 x 4 formats come out of this, whatever clients send.
    """
    for item in (accept or "").split(",", ACCEPT_ITEMS)[:ACCEPT_ITEMS]:
        mime, *params = item.split(";")
        mime = mime.strip()
        if mime not in ("application/openmetrics-text", "text/plain"):
            continue
        version = escaping = None
        for param in params:
            key, sep, value = param.strip().partition("=")
            if not sep:
                continue
            if key == "version" and version is None:
                version = value
            elif key == "escaping" and escaping is None:
                escaping = value
        escaping = escaping if escaping in _ESCAPINGS else UNDERSCORES
        if not version:
            if mime == "text/plain":
                continue
            return mime                 # the library's OpenMetrics 1.0.0 default
        match = _VERSION.match(version)
        if match is None:
            continue
        major = int(match.group(1))
        if major < 1:
            continue
        if mime == "text/plain":
            return f"text/plain;version=1.0.0;escaping={escaping}"
        return f"application/openmetrics-text;version={'1.0.0' if major < 2 else '2.0.0'};escaping={escaping}"
    return ""


class Formats:
    """The formats asked for so far, by what choose_encoder returns for the
    Accept header once canonical_accept has reduced it (a bounded set)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple, Format] = {}

    def negotiate(self, accept: str | None) -> tuple[Format, str]:
        encoder, content_type = choose_encoder(canonical_accept(accept))
        key = _encoder_key(encoder)
        fmt = self._by_key.get(key)
        if fmt is None:
            fmt = self._by_key[key] = Format(encoder)
        return fmt, content_type


def registry_parts(registry: Any) -> list[Any]:
    """The collectors of a CollectorRegistry in the order its collect() walks them
    (target_info first, as a collector of its own). This reads the registry's
    private fields: the library has no public way to list them."""
    lock = getattr(registry, "_lock", None)
    if lock is None:                       # not a CollectorRegistry: one collector
        return [registry]
    with lock:
        collectors = list(registry._collector_to_names)
        target_info = registry._target_info_metric() if registry._target_info else None
    return ([_Families([target_info])] if target_info is not None else []) + collectors


def gzip_accepted(accept_encoding: str | None) -> bool:
    """True when Accept-Encoding allows gzip: listed (or ``*``) with a q-value
    above 0 (RFC 9110 12.5.3); ``gzip;q=0`` refuses it."""
    gzip_q = star_q = None
    for item in (accept_encoding or "").split(","):
        name, *params = item.split(";")
        name = name.strip().lower()
        q = 1.0
        for p in params:
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:      # also NaN
                    q = 0.0
        if name in ("gzip", "x-gzip"):
            gzip_q = q
        elif name == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0
