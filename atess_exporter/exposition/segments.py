"""Pieces of a /metrics body, each compressed once: the storage render.py splices.

A segment is a piece of the body and, once asked for, its raw-deflate
compression. Pieces compressed on their own, each ending in a sync flush (byte
aligned, not final), concatenate into one valid deflate stream (pigz's
technique), so a gzip answer costs the pieces that changed, not the body.
A Column keeps one family's lines for every device in segments of SEGMENT
devices, joined once, with each device's end offset: the text is held once.
"""

from __future__ import annotations

import struct
import zlib
from array import array

from atess_exporter.exposition.formats import EOF

GZIP_LEVEL = 1
SEGMENT = 16                # devices per joined (and compressed) piece of a family

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"   # no name, mtime 0, fastest, unknown OS
_DEFLATE_END = b"\x03\x00"                                          # an empty final block


class Seg:
    """A piece of the body and, once asked for, its raw-deflate compression.

    Pieces compressed on their own, each ending in a sync flush (byte aligned,
    not final), concatenate into one valid deflate stream.
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


EMPTY = Seg(b"")
EOF_SEG = Seg(EOF)


class Column:
    """One family's lines for every device (SN order), in segments of SEGMENT devices.

    A segment holds its devices' lines joined, and ``ends`` each device's end
    offset in it; a device's own lines are a slice.
    """

    __slots__ = ("segs", "ends", "filled")

    def __init__(self, n: int):
        count = -(-n // SEGMENT)
        self.segs: list[Seg] = [EMPTY] * count
        self.ends: list[array | None] = [None] * count
        self.filled = 0                                # devices with lines

    def piece(self, i: int) -> bytes:
        j, k = divmod(i, SEGMENT)
        ends = self.ends[j]
        if ends is None:
            return b""
        return self.segs[j].data[ends[k - 1] if k else 0:ends[k]]

    def update(self, changes: dict[int, bytes], fresh: list[Seg]) -> None:
        """Put each device's new lines in place; the segments made are added to ``fresh``."""
        by_seg: dict[int, list[tuple[int, bytes]]] = {}
        for i, piece in changes.items():
            by_seg.setdefault(i // SEGMENT, []).append((i % SEGMENT, piece))
        for j, items in by_seg.items():
            data, ends = self.segs[j].data, self.ends[j]
            if ends is not None and len(items) == 1:
                # The usual case, one device: splice its lines in, shift the later ends.
                k, piece = items[0]
                start, end = (ends[k - 1] if k else 0), ends[k]
                self.filled += bool(piece) - (end > start)
                joined = b"".join((data[:start], piece, data[end:]))
                if not joined:
                    self.segs[j], self.ends[j] = EMPTY, None
                    continue
                offsets = array("I", ends)
                delta = len(piece) - (end - start)
                if delta:
                    for x in range(k, SEGMENT):
                        offsets[x] += delta
                seg = self.segs[j] = Seg(joined)
                self.ends[j] = offsets
                fresh.append(seg)
                continue
            if ends is None:
                pieces = [b""] * SEGMENT
            else:
                pieces = [data[ends[k - 1] if k else 0:ends[k]] for k in range(SEGMENT)]
            for k, piece in items:
                self.filled += bool(piece) - bool(pieces[k])
                pieces[k] = piece
            joined = b"".join(pieces)
            if not joined:
                self.segs[j], self.ends[j] = EMPTY, None
                continue
            offsets, at = array("I"), 0
            for piece in pieces:
                at += len(piece)
                offsets.append(at)
            seg = self.segs[j] = Seg(joined)
            self.ends[j] = offsets
            fresh.append(seg)



def gzip_pieces(units: list[Seg], length: int) -> list[bytes]:
    """One gzip member of the units' concatenation, from their cached deflate."""
    crc = 0
    crc32 = zlib.crc32
    pieces = [_GZIP_HEADER]
    append = pieces.append
    for u in units:
        crc = crc32(u.data, crc)
        z = u._z
        append(z if z is not None else u.deflated())
    pieces += [_DEFLATE_END, struct.pack("<II", crc, length & 0xFFFFFFFF)]
    return pieces

