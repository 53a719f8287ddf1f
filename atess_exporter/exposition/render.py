"""The /metrics body in every format a scraper negotiates, from pieces kept per device.

``generate_latest`` (or the OpenMetrics encoder) rebuilds every line on every
scrape, although a device's data changes once per poll interval. Here the
collectors of collectors.py that are PerDeviceCollectors give one part per
device (the families holding that device's samples, decided by their rules);
this module keeps each part as bytes in each format asked for, per family and
device, and splices them:

* a device's part is asked again only when its snapshot is replaced (the
  cache names those: Cache.changed_since) or the clock leaves the Window its
  collector gave with it; its bytes come from formats.py (headers from the
  library's encoder, sample lines as every encoder writes them);
* each family's lines are kept in segments.py's columns: segments of SEGMENT
  devices, joined once, each compressed once on its own; a changed device
  re-joins and re-compresses one small segment per family it changed, and
  refresh() does that between scrapes, so a scrape mostly assembles;
* the answer is the list of pieces (with a gzip header and CRC around the
  cached deflate when gzipped), written to the socket as they are;
* other collectors (API counters, build info, process metrics...) go through
  the encoder on every scrape: they are small.

The output equals the library encoder's for the same registry and clock, for
every format (tests/test_render.py). Nothing here knows the collectors' rules.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from atess_exporter.live.store import DeviceSnapshot
from atess_exporter.exposition.collectors import PerDeviceCollector, family_order
from atess_exporter.live.freshness import Window
from atess_exporter.exposition.formats import Format, FormatError, Formats, gzip_accepted, registry_parts
from atess_exporter.exposition.segments import EOF_SEG, Column, Seg, gzip_pieces

log = logging.getLogger(__name__)

GZIP_MIN_BYTES = 1024       # smaller bodies are sent as they are
IDLE_FORMAT_SECONDS = 900   # a format nobody asked for this long is dropped (its memory freed)
MAX_SHAPES = 1024           # distinct family sets shared between devices, per collector and format

class _DeviceState:
    """One PerDeviceCollector's output in one format, kept per device and family."""

    def __init__(self, renderer: "Renderer", collector: PerDeviceCollector, fmt: Format):
        self.r = renderer
        self.c = collector
        self.fmt = fmt
        self.snaps: list[DeviceSnapshot] = []
        self.where: dict[str, int] = {}               # sn -> position
        self.windows: list[tuple[float, float]] = []
        self.keys: list[tuple[str, ...]] = []         # the families each device has lines in
        self._shapes: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.columns: dict[str, Column] = {}
        self.headers: dict[bytes, Seg] = {}
        self.version: int | None = None
        self.span = (0.0, -1.0)                       # clock span where no device's output flips (empty: none)
        self.units: list[Seg] = []
        self.stale = True                             # units to be assembled again
        self.fresh: list[Seg] = []                   # segments made since the last assembly

    def build(self) -> list[Seg]:
        """This collector's pieces for the cache's current state (the same list while valid)."""
        self.update()
        if self.stale:
            self.units = self._assemble()
            self.stale = False
            self.fresh = []
        return self.units

    def update(self) -> None:
        """Render the devices whose output changed since the last update, and only those."""
        now = self.c.clock()
        version = self.c.cache.version     # read before the snapshots: a newer state tagged older only updates again
        lo, hi = self.span
        in_span = lo < now <= hi
        if version == self.version and in_span:
            return
        changed = self.c.cache.changed_since(self.version) if in_span and self.version is not None else None
        if changed is not None and all(sn in self.where for sn in changed):
            for sn in changed:
                i = self.where[sn]
                dev = self.c.cache.get(sn)
                if dev is None:                        # removed meanwhile: the next update resets
                    self.version = None
                    return
                changes: dict[str, dict[int, bytes]] = {}
                if dev is not self.snaps[i]:
                    self._render(i, dev, now, changes)
                    self._apply(changes)
        else:
            self._update_all(now)
        self.version = version
        if changed is None:             # a full pass: the span may grow again
            self.span = (max((w[0] for w in self.windows), default=-math.inf),
                         min((w[1] for w in self.windows), default=math.inf))
        self.stale = True

    def _update_all(self, now: float) -> None:
        devices = self.c.cache.snapshot()
        self.r.rebuilds += 1
        if [d.sn for d in devices] != [d.sn for d in self.snaps]:
            self._reset(devices, now)
            return
        changes: dict[str, dict[int, bytes]] = {}
        for i, dev in enumerate(devices):
            wlo, whi = self.windows[i]
            if dev is not self.snaps[i] or not wlo < now <= whi:
                self._render(i, dev, now, changes)
        self._apply(changes)

    def _apply(self, changes: dict[str, dict[int, bytes]]) -> None:
        for key, items in changes.items():
            col = self.columns.get(key)
            if col is None:
                col = self.columns[key] = Column(len(self.snaps))
            col.update(items, self.fresh)
            if not col.filled:
                del self.columns[key]

    def _render(self, i: int, dev: DeviceSnapshot, now: float, changes: dict[str, dict[int, bytes]]) -> None:
        self.r.device_renders += 1
        window = Window()
        pieces = self.fmt.device_pieces(self.c.device_families(dev, now, window))
        old = self.keys[i] if i < len(self.keys) else ()
        for key, piece in pieces.items():
            col = self.columns.get(key)
            if col is None or col.piece(i) != piece:
                changes.setdefault(key, {})[i] = piece
        for key in old:
            if key not in pieces:
                changes.setdefault(key, {})[i] = b""
        shape = tuple(pieces)
        if len(self._shapes) >= MAX_SHAPES and shape not in self._shapes:
            self._shapes.clear()        # payloads whose field sets keep varying: share less, never grow
        self.keys[i] = self._shapes.setdefault(shape, shape)   # devices of one kind share one tuple
        self.snaps[i] = dev
        self.windows[i] = (window.lo, window.hi)
        # A narrower window than the span's: the span shrinks now (it only grows on a full pass).
        self.span = (max(self.span[0], window.lo), min(self.span[1], window.hi))

    def _reset(self, devices: list[DeviceSnapshot], now: float) -> None:
        """Devices came or went: positions move, so the columns start anew
        (the lines of unchanged devices are carried over, not rendered again)."""
        old = self.where
        old_snaps, old_windows, old_keys, old_columns = self.snaps, self.windows, self.keys, self.columns
        n = len(devices)
        self.snaps, self.windows, self.keys, self.columns = list(devices), [(0.0, -1.0)] * n, [()] * n, {}
        self.where = {dev.sn: i for i, dev in enumerate(devices)}
        self.span = (-math.inf, math.inf)
        changes: dict[str, dict[int, bytes]] = {}
        for i, dev in enumerate(devices):
            j = old.get(dev.sn)
            if j is not None and old_snaps[j] is dev and old_windows[j][0] < now <= old_windows[j][1]:
                for key in old_keys[j]:
                    changes.setdefault(key, {})[i] = old_columns[key].piece(j)
                self.keys[i], self.windows[i] = old_keys[j], old_windows[j]
            else:
                self._render(i, dev, now, changes)
        self._apply(changes)

    def _assemble(self) -> list[Seg]:
        units: list[Seg] = []
        headers: dict[bytes, Seg] = {}
        for key in family_order(self.c, self.columns):
            data = self.fmt.header(self.c.template(key))
            seg = headers[data] = self.headers.get(data) or Seg(data)
            units.append(seg)
            col = self.columns.get(key)
            if col is not None:
                units.extend(seg for seg in col.segs if seg.data)
        self.headers = headers
        return units


class _Chain:
    """The metrics of several collectors in order, as one collector."""

    def __init__(self, collectors: list[Any]):
        self.collectors = collectors

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


class Response:
    """A /metrics answer: the body as a list of pieces (write them in order), and headers."""

    __slots__ = ("pieces", "headers", "length")

    def __init__(self, pieces: list[bytes], headers: dict[str, str]):
        self.pieces = pieces
        self.length = sum(map(len, pieces))
        self.headers = dict(headers, **{"Content-Length": str(self.length)})

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)


class _FormatState:
    """Everything kept for one negotiated format."""

    def __init__(self, fmt: Format):
        self.fmt = fmt
        self.devices: dict[int, _DeviceState] = {}     # id(collector) -> state
        self.slow: dict[int, Seg] = {}                # position -> last output of a run of other collectors
        self.units: list[Seg] = []
        self.gzip: tuple[list[Seg], list[bytes]] | None = None
        self.used = time.monotonic()


class Renderer:
    """Renders a registry like the library's encoders, reusing what did not change.

    ``Renderer(exporter)`` (or ``Renderer(registry)``). Thread-safe: one lock
    around rendering, so concurrent scrapes of the same state share one
    rebuild and get the same pieces.
    """

    def __init__(self, exporter_or_registry: Any):
        self.registry = getattr(exporter_or_registry, "registry", exporter_or_registry)
        self.formats = Formats()
        self._lock = threading.Lock()
        self._states: dict[Format, _FormatState] = {}
        self._broken: set[Format] = set()
        self._last_length: tuple[list | None, int] = (None, 0)
        # Counters for tests and benchmarks.
        self.device_renders = 0   # device parts rendered
        self.rebuilds = 0         # device states re-assembled
        self.scrapes = 0

    # -- public -------------------------------------------------------------------

    def render(self, accept: str | None = None, accept_encoding: str | None = None) -> Response:
        """The /metrics answer for these request headers.

        The format is the library's choice for ``accept`` (choose_encoder);
        gzip (level 1) when ``accept_encoding`` allows it (q-values honoured)
        and the body is over GZIP_MIN_BYTES. Headers: Content-Type,
        Content-Length and, when gzipped, Content-Encoding.
        """
        fmt, content_type = self.formats.negotiate(accept)
        want_gzip = gzip_accepted(accept_encoding)
        with self._lock:
            self.scrapes += 1
            units = self._units(fmt)
            headers = {"Content-Type": content_type}
            length = self._length(units)
            if not want_gzip or length <= GZIP_MIN_BYTES:
                return Response([u.data for u in units], headers)
            headers["Content-Encoding"] = "gzip"
            state = self._states.get(fmt)
            if state is not None and state.gzip is not None and state.gzip[0] is units:
                return Response(state.gzip[1], headers)
            pieces = gzip_pieces(units, length)
            if state is not None:
                state.gzip = (units, pieces)
            return Response(pieces, headers)

    def refresh(self) -> None:
        """Bring every format asked for lately up to date with the cache (and its
        gzip segments, if it was asked gzipped), so the next scrape finds the
        devices polled meanwhile already rendered. Run between scrapes
        (MetricsServer does, every REFRESH_SECONDS)."""
        with self._lock:
            for fmt, state in list(self._states.items()):
                if fmt in self._broken:
                    continue
                if not state.devices:              # warmed, never scraped yet: build it all once
                    try:
                        self._fast_units(fmt, touch=False)
                    except FormatError:
                        continue
                for dstate in state.devices.values():
                    try:
                        dstate.update()
                    except FormatError:
                        break                      # the next scrape falls back and says so
                    if state.gzip is not None:
                        for seg in dstate.fresh:
                            seg.deflated()
                    dstate.fresh = []

    def warm(self, accept: str, gzipped: bool = True, keep_seconds: float = IDLE_FORMAT_SECONDS) -> None:
        """Have refresh() render this format ahead of its first scrape (dropped
        after keep_seconds if nobody asks for it)."""
        fmt, _ = self.formats.negotiate(accept)
        with self._lock:
            state = self._states.get(fmt)
            if state is None:
                state = self._states[fmt] = _FormatState(fmt)
                state.used = time.monotonic() - IDLE_FORMAT_SECONDS + keep_seconds
            if gzipped and state.gzip is None:
                state.gzip = ([], [])

    def render_text(self) -> bytes:
        """Exactly ``generate_latest(registry)``."""
        return self.render(None, None).body

    # -- internals ------------------------------------------------------------------

    def _length(self, units: list[Seg]) -> int:
        if self._last_length[0] is not units:
            self._last_length = (units, sum([len(u.data) for u in units]))
        return self._last_length[1]

    def _units(self, fmt: Format) -> list[Seg]:
        if fmt not in self._broken:
            try:
                return self._fast_units(fmt)
            except FormatError as exc:
                self._broken.add(fmt)
                self._states.pop(fmt, None)
                log.warning("fast /metrics path disabled for this format, using the library's encoder",
                            extra={"fields": {"err": str(exc)}})
        return [Seg(fmt.encoder(self.registry))]

    def _fast_units(self, fmt: Format, touch: bool = True) -> list[Seg]:
        now = time.monotonic()
        for other in [f for f, s in self._states.items() if now - s.used > IDLE_FORMAT_SECONDS]:
            del self._states[other]
        state = self._states.get(fmt)
        if state is None:
            state = self._states[fmt] = _FormatState(fmt)
        if touch:
            state.used = now
        units: list[Seg] = []
        run: list[Any] = []
        position = 0
        seen: set[int] = set()

        def flush_run() -> None:
            nonlocal position
            if run:
                data = fmt.encode(_Chain(list(run)))
                last = state.slow.get(position)
                seg = last if last is not None and last.data == data else Seg(data)
                state.slow[position] = seg
                if data:
                    units.append(seg)
                run.clear()
                position += 1

        for collector in registry_parts(self.registry):
            if not isinstance(collector, PerDeviceCollector):
                run.append(collector)
                continue
            flush_run()
            dstate = state.devices.get(id(collector))
            if dstate is None or dstate.c is not collector:
                dstate = state.devices[id(collector)] = _DeviceState(self, collector, fmt)
            seen.add(id(collector))
            units.extend(dstate.build())
        flush_run()
        for gone in [k for k in state.devices if k not in seen]:
            del state.devices[gone]
        if fmt.trailer:
            units.append(EOF_SEG)
        last = state.units
        if len(last) == len(units) and all(a is b for a, b in zip(last, units)):
            return last
        state.units = units
        return units
