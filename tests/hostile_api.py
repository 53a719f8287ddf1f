"""A loopback HTTP peer that misbehaves on purpose: drips, bombs, hangs.

`HostileServer(handler)` listens on 127.0.0.1 (ephemeral port) and runs
`handler(conn, request_bytes, server)` in a thread per connection. Handlers
must return once `server.stopping` is set (use `server.drip`), so leaving the
`with` block ends every thread within moments.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from urllib.parse import parse_qs, urlsplit


class HostileServer:
    def __init__(self, handler):
        self.handler = handler
        self.stopping = threading.Event()
        self.connected = threading.Event()   # a client has sent a request
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._accept.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()  # wake accept()
        except OSError:
            pass
        self._accept.join(5)
        self.sock.close()
        for t in self.threads:
            t.join(5)

    def _serve(self):
        while not self.stopping.is_set():
            conn, _ = self.sock.accept()
            if self.stopping.is_set():
                conn.close()
                return
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _one(self, conn):
        with conn:
            conn.settimeout(10)
            try:
                request = read_request(conn)
                if request is None:
                    return
                self.connected.set()
                self.handler(conn, request, self)
            except OSError:
                pass

    def drip(self, conn, data: bytes, every: float = 0.05, limit: float = 10.0) -> None:
        """Send `data` one byte at a time; stops at `limit` seconds or when the server stops."""
        end = time.monotonic() + limit
        for i in range(len(data)):
            if self.stopping.wait(every) or time.monotonic() > end:
                return
            conn.sendall(data[i:i + 1])


def read_request(conn: socket.socket) -> bytes | None:
    """One request's line and headers, or None when the client hung up first."""
    request = b""
    while b"\r\n\r\n" not in request:
        data = conn.recv(65536)
        if not data:
            return None
        request += data
    return request


def query(request: bytes) -> dict[str, str]:
    target = request.split(b" ", 2)[1].decode()
    return {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}


def response(body: bytes, status: str = "200 OK", headers: dict | None = None) -> bytes:
    head = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode() + body


def envelope(data=None, code=0, msg="ok") -> bytes:
    return json.dumps({"code": code, "data": data, "msg": msg}).encode()


def gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of `inflated` zero bytes (about 1000:1)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [comp.compress(block) for _ in range(inflated >> 20)]
    parts.append(comp.flush())
    data = b"".join(parts)
    return data
