"""A fast /metrics renderer: the same bytes as ``generate_latest``, less work.

``prometheus_client.generate_latest`` rebuilds every sample line on every
scrape: for 1,000 devices that is ~130,000 lines formatted again although a
device's data changes once per poll interval. Here:

* each device's sample lines are formatted once per snapshot (snapshots are
  immutable and replaced whole, so the snapshot object identifies the
  content), per metric family, as UTF-8 bytes;
* a scrape concatenates those cached chunks under each family header (one
  ``bytes.join`` in C); only families and devices that changed are touched;
* while nothing changed (same ``Cache.version``, same online/fresh state of
  every device, same tiny non-device metrics) the previous body and its gzip
  are returned as they are, so the cost of a scrape does not depend on the
  number of scrapers;
* the small non-device collectors (API request counters and histogram, build
  info, auth) go through ``generate_latest`` on every scrape.

Only the classic text format (0.0.4, what ``choose_encoder`` picks for
Prometheus' default Accept header and whenever OpenMetrics is not asked for)
takes this path; OpenMetrics and the escaping-negotiated text formats stay on
``choose_encoder``'s encoders.

The output must equal ``generate_latest(registry)`` byte for byte for the same
cache and clock (tests/test_render.py checks it). The staleness rules mirror
collector.py: a device's reading gauges are left out once ``data_age`` exceeds
``max_data_age_seconds`` (lifetime counters stay), and ``atess_device_online``
is 1 while ``data_age <= stale_after_seconds``. A collector this module does
not recognise (or whose families changed shape) is rendered by
``generate_latest`` like the non-device ones, so a change in collector.py can
make this slower but not wrong -- except in the replicated rules above, which
the tests pin.
"""

from __future__ import annotations

import gzip
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable

from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics import exposition as _om
from prometheus_client.utils import floatToGoString

from .cache import Cache, DeviceSnapshot
from .collector import INFO_LABELS, DeviceStatusCollector, ReadingsCollector, data_age

GZIP_MIN_BYTES = 1024       # as server.py: smaller bodies are sent as they are
GZIP_LEVEL = 1              # as server.py
SEGMENT = 64                # devices per pre-joined (and pre-compressed) piece of a family

# The keys DeviceStatusCollector._families() returns, in its order; any other
# shape sends that collector to the slow path.
_STATUS_KEYS = ("info", "up", "online", "attempt", "success", "data", "unusable", "glitches")
_SUFFIX = {"counter": "_total", "info": "_info"}


class _Families:
    """A collector-like object yielding fixed metric families (for generate_latest)."""

    def __init__(self, families: Iterable[Any]):
        self._families = list(families)

    def collect(self):
        return iter(self._families)


class _Chain:
    """The metrics of several collectors in order, as one collector."""

    def __init__(self, collectors: list[Any], target_info: Any = None):
        self.collectors = collectors
        self.target_info = target_info

    def collect(self):
        if self.target_info is not None:
            yield self.target_info
        for collector in self.collectors:
            yield from collector.collect()


class _Seg:
    """A piece of the body and, once asked for, its raw-deflate compression.

    Each piece is compressed on its own and ends with a sync flush (byte
    aligned, not final), so pieces concatenate into one valid deflate stream
    (as pigz does): a gzip of the body costs the pieces that changed, not the
    whole body. The result is one ordinary gzip member.
    """

    __slots__ = ("data", "_z")

    def __init__(self, data: bytes):
        self.data = data
        self._z: bytes | None = None

    def deflated(self) -> bytes:
        if self._z is None:
            c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
            self._z = c.compress(self.data) + c.flush(zlib.Z_SYNC_FLUSH)
        return self._z


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"   # no name, mtime 0, fastest, unknown OS
_DEFLATE_END = b"\x03\x00"                                          # an empty final block


def _gzip_of(units: list[_Seg], body: bytes) -> bytes:
    """gzip of ``body`` (the concatenation of ``units``) from the units' cached deflate."""
    return b"".join([_GZIP_HEADER, *(u.deflated() for u in units), _DEFLATE_END,
                     struct.pack("<II", zlib.crc32(body), len(body) & 0xFFFFFFFF)])


def _escape_value(v: str) -> str:
    # openmetrics._escape(v, ALLOWUTF8, False): label values always allow UTF-8.
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _Shape:
    """How one metric family's samples are named and labelled."""

    __slots__ = ("sample_name", "labelnames", "header", "counter")

    def __init__(self, family: Any):
        self.sample_name = _om.escape_metric_name(family.name + _SUFFIX.get(family.type, ""), _om.UNDERSCORES)
        self.labelnames = tuple(family._labelnames)
        # HELP and TYPE exactly as generate_latest writes them: render the empty family.
        self.header = _Seg(generate_latest(_Families([family])))
        self.counter = family.type == "counter"

    def line(self, values: tuple, value: float) -> str:
        """generate_latest's sample_line for a sample added with add_metric(values, value)."""
        labels = dict(zip(self.labelnames, values))
        if labels:
            labelstr = "{" + ",".join(
                f'{_om.escape_label_name(k, _om.UNDERSCORES)}="{_escape_value(v)}"' for k, v in sorted(labels.items())
            ) + "}"
        else:
            labelstr = ""
        return f"{self.sample_name}{labelstr} {floatToGoString(value)}\n"


@dataclass
class _DeviceChunks:
    """One snapshot's lines, rendered once."""

    snapshot: DeviceSnapshot
    status: dict[str, bytes]                  # status key -> its line (b"" when the collector adds none)
    online: tuple[bytes, bytes]               # atess_device_online line when offline / online
    readings: dict[str, bytes]                # metric name -> the device's lines of that family
    seen: float | None                        # what data_age measures from


@dataclass
class _Built:
    """What the last scrape assembled, and when it stays valid."""

    version: int
    units: list[_Seg]
    # Bounds of validity in time (see _still_valid).
    guards: list[tuple[float, float, bool]] = field(default_factory=list)


class _DevicePart:
    """The output of one DeviceStatusCollector and one ReadingsCollector sharing a cache.

    Keeps one column per family (status keys, then reading metric names) with
    one entry per device in SN order, pre-joined in segments of SEGMENT
    devices: a device that changed costs a few list assignments and the
    re-join of one segment per family it appears in.
    """

    def __init__(self, renderer: "Renderer", status: DeviceStatusCollector | None, readings: ReadingsCollector | None):
        self.r = renderer
        self.status = status
        self.readings = readings
        self.cache: Cache = (status or readings).cache
        self.stale_after = status.poll.stale_after_seconds if status else None
        self.max_age = readings.max_data_age if readings else None
        self.status_shapes: dict[str, _Shape] = {}
        if status is not None:
            self.status_shapes = {k: _Shape(f) for k, f in status._families().items()}
        self.reading_shapes: dict[str, _Shape] = {}
        self.chunks: dict[str, _DeviceChunks] = {}
        self.sns: list[str] | None = None
        self.state: list[tuple[bool, bool]] = []
        self.cols: dict[tuple[str, str], list[bytes]] = {}     # ("s", status key) / ("r", metric name)
        self.segs: dict[tuple[str, str], list[_Seg | None]] = {}
        self.nonempty: dict[str, int] = {}                    # reading name -> devices with lines
        self.dirty: set[tuple[tuple[str, str], int]] = set()
        self.built: _Built | None = None

    # -- rules replicated from collector.py ---------------------------------

    def _online(self, age: float) -> bool:
        return self.stale_after is not None and age <= self.stale_after

    def _fresh(self, age: float) -> bool:
        return self.max_age is not None and age <= self.max_age

    def _reading_shape(self, name: str) -> _Shape:
        shape = self.reading_shapes.get(name)
        if shape is None:
            shape = self.reading_shapes[name] = _Shape(self.readings._family(name))
        return shape

    def _render_device(self, dev: DeviceSnapshot) -> _DeviceChunks:
        self.r.device_renders += 1
        ids = (dev.sn, dev.model)
        status: dict[str, bytes] = {}
        online = (b"", b"")
        if self.status is not None:
            sh = self.status_shapes
            status["info"] = sh["info"].line((dev.sn, dev.model, dev.device_type) + tuple(dev.info.get(k, "") for k in INFO_LABELS[3:]), 1).encode()
            status["up"] = sh["up"].line(ids, 1.0 if dev.up else 0.0).encode()
            online = (sh["online"].line(ids, 0.0).encode(), sh["online"].line(ids, 1.0).encode())
            for key, value in (("attempt", dev.last_attempt), ("success", dev.last_success), ("data", dev.data_time)):
                status[key] = sh[key].line(ids, value).encode() if value is not None else b""
            status["unusable"] = sh["unusable"].line(ids, float(dev.unusable_fields)).encode() if dev.last_success is not None else b""
            status["glitches"] = sh["glitches"].line(ids, float(dev.glitches)).encode()
        readings: dict[str, bytes] = {}
        if self.readings is not None:
            for name, rows in dev.samples.items():
                shape = self._reading_shape(name)
                readings[name] = "".join(shape.line(ids + labels, value) for labels, value in rows).encode()
        seen = dev.data_time if dev.data_time is not None else dev.last_success
        return _DeviceChunks(dev, status, online, readings, seen)

    # -- columns ---------------------------------------------------------------

    def _column(self, key: tuple[str, str]) -> list[bytes]:
        col = self.cols.get(key)
        if col is None:
            n = len(self.sns)
            col = self.cols[key] = [b""] * n
            self.segs[key] = [None] * -(-n // SEGMENT)
            self.dirty.update((key, j) for j in range(len(self.segs[key])))
            if key[0] == "r":
                self.nonempty[key[1]] = 0
        return col

    def _set(self, key: tuple[str, str], i: int, chunk: bytes) -> None:
        col = self._column(key)
        old = col[i]
        if old is chunk:
            return
        col[i] = chunk
        self.dirty.add((key, i // SEGMENT))
        if key[0] == "r":
            self.nonempty[key[1]] += (chunk != b"") - (old != b"")

    def _place(self, i: int, chunks: _DeviceChunks, state: tuple[bool, bool], previous: _DeviceChunks | None) -> None:
        online, fresh = state
        for key in self.status_shapes:
            self._set(("s", key), i, chunks.online[online] if key == "online" else chunks.status[key])
        if self.readings is None:
            return
        names = set(chunks.readings)
        if previous is not None:
            names |= previous.readings.keys()
        for name in names:
            chunk = chunks.readings.get(name, b"")
            if chunk and not fresh and not self._reading_shape(name).counter:
                chunk = b""
            self._set(("r", name), i, chunk)

    def _still_valid(self, built: _Built, now: float) -> bool:
        """True while every device's online and fresh state is what it was.

        Both are monotone in time for a fixed reading time, so it is enough to
        check, per rule, the device that would flip first going forward (the
        oldest reading still counted) and going backward (the newest reading
        not counted). Devices never read never flip.
        """
        for seen, limit, was in built.guards:
            age = max(0.0, now - seen)
            if (age <= limit) != was:
                return False
        return True

    def build(self) -> list[_Seg]:
        """This part's pieces for the cache's current state (the same list while valid)."""
        now = (self.status or self.readings).clock()
        version = self.cache.version      # read before the snapshot: a newer state tagged older only rebuilds again
        built = self.built
        if built is not None and built.version == version and self._still_valid(built, now):
            return built.units
        devices = self.cache.snapshot()
        self.r.rebuilds += 1
        states = [(self._online(a), self._fresh(a)) for a in (data_age(d, now) for d in devices)]
        sns = [d.sn for d in devices]
        if sns != self.sns:
            # Devices came or went: positions move, so start the columns anew
            # (the chunks of unchanged snapshots are reused).
            keep = set(sns)
            self.chunks = {sn: c for sn, c in self.chunks.items() if sn in keep}
            self.sns = sns
            self.cols, self.segs, self.nonempty, self.dirty = {}, {}, {}, set()
            for key in self.status_shapes:
                self._column(("s", key))
            for i, dev in enumerate(devices):
                chunks = self.chunks.get(dev.sn)
                if chunks is None or chunks.snapshot is not dev:
                    chunks = self.chunks[dev.sn] = self._render_device(dev)
                self._place(i, chunks, states[i], None)
        else:
            for i, dev in enumerate(devices):
                chunks = self.chunks[dev.sn]
                if chunks.snapshot is not dev:
                    new = self.chunks[dev.sn] = self._render_device(dev)
                    self._place(i, new, states[i], chunks)
                elif states[i] != self.state[i]:
                    self._place(i, chunks, states[i], chunks)
        self.state = states
        for name in [n for n, count in self.nonempty.items() if not count]:
            key = ("r", name)                 # no device has lines of it any more
            del self.cols[key], self.segs[key], self.nonempty[name]
        for key, j in self.dirty:
            if key in self.cols:
                self.segs[key][j] = _Seg(b"".join(self.cols[key][j * SEGMENT:(j + 1) * SEGMENT]))
        self.dirty = set()
        units: list[_Seg] = []
        for key, shape in self.status_shapes.items():
            units.append(shape.header)
            units.extend(seg for seg in self.segs[("s", key)] if seg.data)
        for name in sorted(self.nonempty):
            units.append(self.reading_shapes[name].header)
            units.extend(seg for seg in self.segs[("r", name)] if seg.data)
        self.built = _Built(version, units, guards=self._guards(devices, states))
        return units

    def _guards(self, devices: list[DeviceSnapshot], states: list[tuple[bool, bool]]) -> list[tuple[float, float, bool]]:
        guards = []
        seen = [self.chunks[d.sn].seen for d in devices]
        for idx, limit in ((0, self.stale_after), (1, self.max_age)):
            if limit is None:
                continue
            counted = [t for t, st in zip(seen, states) if st[idx] and t is not None]
            dropped = [t for t, st in zip(seen, states) if not st[idx] and t is not None]
            if counted:
                guards.append((min(counted), limit, True))
            if dropped:
                guards.append((max(dropped), limit, False))
        return guards


class Renderer:
    """Renders an Exporter's registry like ``generate_latest``, reusing what did not change.

    ``Renderer(exporter)`` (or ``Renderer(registry)``). Thread-safe: one lock
    around rendering, so concurrent scrapes of the same state share one
    rebuild and get the same bytes object.
    """

    def __init__(self, exporter_or_registry: Any):
        self.registry = getattr(exporter_or_registry, "registry", exporter_or_registry)
        self._lock = threading.Lock()
        self._layout_key: tuple | None = None
        self._segments: list[Any] = []
        self._last: tuple[list, bytes, list[_Seg]] | None = None   # (pieces, body, units)
        self._gzipped: tuple[bytes, bytes] | None = None  # (body, gzip of body)
        # Counters for tests and benchmarks.
        self.device_renders = 0   # device snapshots formatted
        self.rebuilds = 0         # device parts re-assembled
        self.scrapes = 0

    # -- public -------------------------------------------------------------------

    def render_text(self) -> bytes:
        """Exactly ``generate_latest(registry)``, from cached chunks."""
        with self._lock:
            return self._render_locked()

    def render(self, accept: str | None = None, accept_encoding: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The /metrics answer for these request headers: (body, response headers).

        Picks the format like ``choose_encoder`` (OpenMetrics and negotiated
        escaping go through the library), and gzips like server.py (level 1,
        bodies over 1 KiB, when Accept-Encoding mentions gzip). The headers hold
        Content-Type, and Content-Encoding when gzipped; add Content-Length.
        """
        encoder, content_type = choose_encoder(accept)
        want_gzip = "gzip" in (accept_encoding or "")
        if encoder is not generate_latest:          # OpenMetrics etc.: the library's path
            body = encoder(self.registry)
            headers = {"Content-Type": content_type}
            if want_gzip and len(body) > GZIP_MIN_BYTES:
                body = gzip.compress(body, compresslevel=GZIP_LEVEL)
                headers["Content-Encoding"] = "gzip"
            return body, headers
        with self._lock:
            body = self._render_locked()
            headers = {"Content-Type": content_type}
            if want_gzip and len(body) > GZIP_MIN_BYTES:
                if self._gzipped is None or self._gzipped[0] is not body:
                    self._gzipped = (body, _gzip_of(self._last[2], body))
                body = self._gzipped[1]
                headers["Content-Encoding"] = "gzip"
        return body, headers

    # -- internals ------------------------------------------------------------------

    def _layout(self) -> list[Any]:
        """Segments in registry order: a _DevicePart for the device collectors,
        a _Chain (rendered by generate_latest) for each run of everything else."""
        reg = self.registry
        with reg._lock:
            collectors = tuple(reg._collector_to_names)
            target_info = reg._target_info_metric() if reg._target_info else None
        if collectors != self._layout_key:
            self._segments = self._plan(collectors)
            self._layout_key = collectors
        head = self._segments[0] if self._segments else None
        if isinstance(head, _Chain) and head.collectors == [] and head.target_info is not None:
            self._segments = self._segments[1:]
        if target_info is not None:
            self._segments = [_Chain([], target_info)] + self._segments
        return self._segments

    def _plan(self, collectors: tuple) -> list[Any]:
        segments: list[Any] = []
        slow: list[Any] = []
        for c in collectors:
            fast = (type(c) is DeviceStatusCollector and tuple(c._families()) == _STATUS_KEYS) or type(c) is ReadingsCollector
            if not fast:
                slow.append(c)
                continue
            if slow:
                segments.append(_Chain(slow))
                slow = []
            # A DeviceStatusCollector followed by a ReadingsCollector on the same
            # cache and clock (as app.py registers them) share one part.
            prev = segments[-1] if segments else None
            if (isinstance(prev, _DevicePart) and type(c) is ReadingsCollector and prev.readings is None
                    and prev.status is not None and prev.cache is c.cache and prev.status.clock is c.clock):
                prev.readings = c
                prev.max_age = c.max_data_age
                continue
            if type(c) is DeviceStatusCollector:
                segments.append(_DevicePart(self, c, None))
            else:
                segments.append(_DevicePart(self, None, c))
        if slow:
            segments.append(_Chain(slow))
        return segments

    def _render_locked(self) -> bytes:
        self.scrapes += 1
        pieces = [generate_latest(seg) if isinstance(seg, _Chain) else seg.build() for seg in self._layout()]
        last = self._last
        if last is not None and len(last[0]) == len(pieces) and all(a is b or a == b for a, b in zip(last[0], pieces)):
            return last[1]
        units: list[_Seg] = []
        for piece in pieces:
            if isinstance(piece, list):
                units.extend(piece)
            elif piece:
                units.append(_Seg(piece))
        body = b"".join([u.data for u in units])
        self._last = (pieces, body, units)
        return body
