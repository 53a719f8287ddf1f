"""HTTP for untrusted peers: one total deadline per call, capped bytes, and a way out on shutdown.

`requests` bounds each socket read, not a call: a server that drips one byte
per second keeps a call alive for ever. Here every socket of the session is
wrapped so that each recv/send first sets its timeout to what is left of the
*call's* deadline (kept per thread, since a thread makes one call at a time),
and fails once nothing is left — connect, TLS, headers and body alike.

Bodies are read as a stream and inflated here, not by urllib3, so that both
the bytes on the wire and the bytes after decompression stop at a cap before
they are held in memory (a 1 MB gzip answer can inflate to 1 GB).

`CallScope.close()` shuts every socket of the calls in flight, so a stopping
exporter does not wait for a slow API.
"""

from __future__ import annotations

import math
import socket
import threading
import time
import zlib
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

CHUNK = 64 * 1024

_current = threading.local()  # .call: the _Call this thread is making, if any


class TooLarge(Exception):
    """The body passed the byte cap (on the wire or inflated)."""


class DeadlinePassed(socket.timeout):
    """The call's total deadline has passed."""


class BadEncoding(Exception):
    """A Content-Encoding we did not ask for, or a corrupt compressed stream."""


class _Call:
    __slots__ = ("deadline", "sockets")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.sockets: set[socket.socket] = set()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _arm(raw: socket.socket) -> None:
    """Before a blocking socket operation: the call's remaining time becomes the timeout."""
    call = getattr(_current, "call", None)
    if call is None:
        return
    call.sockets.add(raw)
    left = call.remaining()
    if left <= 0:
        raise DeadlinePassed("the call's deadline has passed")
    raw.settimeout(left)  # also resets what a kept-alive socket kept from its previous call


class _DeadlineSocket:
    """A socket (plain or TLS) whose reads and writes respect the call's deadline."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        _arm(self._sock)
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        _arm(self._sock)
        return self._sock.recv(bufsize, flags)

    def sendall(self, data, flags: int = 0) -> None:
        _arm(self._sock)
        return self._sock.sendall(data, flags)

    def send(self, data, flags: int = 0) -> int:
        _arm(self._sock)
        return self._sock.send(data, flags)

    def makefile(self, mode: str = "r", buffering: int | None = None, **_: Any):
        # http.client reads the response through makefile("rb"): route it through us.
        import io

        raw = socket.SocketIO(self, "rb" if "r" in mode else "wb")  # type: ignore[arg-type]
        self._sock._io_refs += 1  # type: ignore[attr-defined]  # as socket.makefile does
        if "r" in mode:
            return io.BufferedReader(raw, buffering or io.DEFAULT_BUFFER_SIZE)
        return io.BufferedWriter(raw, buffering or io.DEFAULT_BUFFER_SIZE)


class _DeadlineMixin:
    sock: Any   # the connection's socket, as urllib3's connection classes keep it

    def _new_conn(self):
        sock = super()._new_conn()
        call = getattr(_current, "call", None)
        if call is not None:
            call.sockets.add(sock)  # a TLS handshake in progress can be shut down too
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self.sock is not None and not isinstance(self.sock, _DeadlineSocket):
            self.sock = _DeadlineSocket(self.sock)


class _HTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections honour the per-call deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **kwargs: Any):
        manager = super().proxy_manager_for(proxy, **kwargs)
        if hasattr(manager, "pool_classes_by_scheme") and not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


class CallScope:
    """Tracks the calls in flight so that shutdown can end them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self.closed = False

    def begin(self, seconds: float) -> _Call:
        call = _Call(time.monotonic() + seconds)
        with self._lock:
            if self.closed:
                call.deadline = -math.inf
            self._calls.add(call)
        _current.call = call
        return call

    def end(self, call: _Call) -> None:
        _current.call = None
        with self._lock:
            self._calls.discard(call)

    def close(self) -> None:
        """End every call in flight: their sockets are shut, their deadlines passed."""
        with self._lock:
            self.closed = True
            calls = list(self._calls)
        for call in calls:
            call.deadline = -math.inf
            for sock in list(call.sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
                except OSError:
                    pass


class _Inflater:
    """gzip (several members allowed) or deflate (zlib-wrapped or raw), never past `cap` bytes."""

    def __init__(self, encoding: str, cap: int):
        if encoding not in ("gzip", "deflate"):
            raise BadEncoding(f"unexpected Content-Encoding {encoding[:40]!r}")
        self.encoding, self.cap = encoding, cap
        self.out = bytearray()
        self._started = False
        self._obj = self._new()

    def _new(self, raw: bool = False):
        if self.encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        try:
            self._feed(data)
        except zlib.error:
            if self.encoding == "deflate" and not self._started and not self.out:
                # some servers send raw deflate without the zlib header
                self._started, self._obj = True, self._new(raw=True)
                try:
                    self._feed(data)
                    return
                except zlib.error:
                    pass
            raise BadEncoding(f"corrupt {self.encoding} stream") from None
        self._started = True

    def _feed(self, data: bytes) -> None:
        while data:
            # max_length: never inflate more than one byte past the cap
            self.out += self._obj.decompress(data, self.cap - len(self.out) + 1)
            if len(self.out) > self.cap:
                raise TooLarge(f"more than {self.cap} bytes after decompression")
            data = self._obj.unconsumed_tail
            if not data and self._obj.eof and self._obj.unused_data:  # another gzip member
                data, self._obj = self._obj.unused_data, self._new()


def redirect_hook(cap: int):
    """A requests response hook: a redirect's body is read here, under the cap, because
    requests would otherwise read (and inflate) it whole before following the redirect."""

    def hook(resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if resp.is_redirect and resp._content is False:
            resp._content = read_body(resp, cap, getattr(_current, "call", None))
            resp._content_consumed = True
        return resp

    return hook


def read_body(resp: requests.Response, cap: int, call: _Call | None = None) -> bytes:
    """The whole body, inflated, or TooLarge once either count passes `cap`.

    The wire count is the body after de-chunking; the deadline is enforced by
    the sockets (and checked here too, for sessions without DeadlineAdapter).
    """
    length = resp.headers.get("Content-Length", "")
    if length.strip().isdigit() and len(length) < 20 and int(length) > cap:
        raise TooLarge(f"Content-Length {int(length)} bytes")
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    inflater = None if encoding in ("", "identity") else _Inflater(encoding, cap)
    wire = 0
    out = bytearray()
    while True:
        if call is not None and call.remaining() <= 0:
            raise DeadlinePassed("the call's deadline has passed")
        chunk = resp.raw.read(CHUNK, decode_content=False)
        if not chunk:
            break
        wire += len(chunk)
        if wire > cap:
            raise TooLarge(f"more than {cap} bytes on the wire")
        if inflater is None:
            out += chunk
        else:
            inflater.feed(chunk)
    return bytes(inflater.out if inflater is not None else out)
