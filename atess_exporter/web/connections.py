"""The listening side of the HTTP server: connections, their limits and TLS.

Each connection is served on its own thread (the TLS handshake too, never in
the accept loop). What keeps idle, slow and half-open clients from taking the
exporter down:

* a cap on open connections, below the process' file-descriptor limit so the
  poller always has descriptors for its API calls; a new connection over the
  cap closes the one that has waited longest for its request (idle keep-alive,
  or a request still arriving), never one being answered nor one that passed
  basic auth (it keeps its IDLE_SECONDS): a flood of idle connections or wrong
  passwords cannot lock out a scraper on its kept-alive connection;
* deadlines that cover a whole phase, not one read: IDLE_SECONDS for a
  connection to start a request, HEADER_SECONDS for the request line, headers
  (and the TLS handshake) to arrive in full once started: a client dripping a
  byte at a time is closed all the same;
* an accept loop that backs off when the process is out of descriptors
  instead of spinning;
* a client that resets or times out is one debug line, never a traceback.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
import ssl
import threading
import time
from http.server import ThreadingHTTPServer

from atess_exporter.web.webconfig import HANDSHAKE_TIMEOUT_SECONDS, WebConfig, check_client_sans

log = logging.getLogger(__name__)

IDLE_SECONDS = 120.0          # to start a request (first one, or the next on a kept-alive connection)
HEADER_SECONDS = min(10.0, HANDSHAKE_TIMEOUT_SECONDS)   # request line and headers (or TLS handshake), in full
WRITE_SECONDS = 60.0          # per write of the answer to a client that does not read
MAX_CONNECTIONS = 1024

PLAIN_HTTP_ON_TLS = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")


def connection_cap(limit: int | None = None) -> int:
    """MAX_CONNECTIONS, or half the descriptors the process may open if fewer."""
    if limit is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
    return max(8, min(MAX_CONNECTIONS, limit // 2))


class _Conn:
    __slots__ = ("sock", "busy", "since", "deadline", "trusted")   # sock: the socket on this descriptor now

    def __init__(self, sock: socket.socket, now: float):
        self.sock = sock
        self.busy = False
        self.trusted = False
        self.since = now
        self.deadline = now + HEADER_SECONDS


class Connections:
    """The open client connections, their phase and deadline."""

    def __init__(self, cap: int):
        self.cap = cap
        self._lock = threading.Lock()
        self._open: dict[int, _Conn] = {}      # by file descriptor
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, sock: socket.socket) -> bool:
        """Register a new connection, closing the longest-waiting one when at the cap.
        False when every open connection is being answered (the new one is refused)."""
        now = time.monotonic()
        with self._lock:
            if len(self._open) >= self.cap:
                waiting = [c for c in self._open.values() if not c.busy and not c.trusted]
                if not waiting:
                    return False
                victim = min(waiting, key=lambda c: c.since)
                self._drop(victim)
                self.evicted += 1
            self._open[sock.fileno()] = _Conn(sock, now)
            return True

    def _drop(self, conn: _Conn) -> None:
        self._open.pop(conn.sock.fileno(), None)
        try:
            # The raw socket's shutdown (not SSLSocket's): wakes the thread blocked on it.
            socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def phase(self, sock: socket.socket, busy: bool, seconds: float = 0.0) -> None:
        """Mark a connection waiting (for at most ``seconds``) or being answered."""
        now = time.monotonic()
        with self._lock:
            conn = self._open.get(sock.fileno())
            if conn is not None:
                conn.sock, conn.busy, conn.since, conn.deadline = sock, busy, now, now + seconds

    def trust(self, sock: socket.socket) -> None:
        """The connection passed basic auth: never evicted for a newcomer."""
        with self._lock:
            conn = self._open.get(sock.fileno())
            if conn is not None:
                conn.trusted = True

    def forget(self, fd: int) -> None:
        """Before the descriptor is closed (and its number reused)."""
        with self._lock:
            self._open.pop(fd, None)

    def close_all(self) -> None:
        with self._lock:
            for conn in list(self._open.values()):
                self._drop(conn)

    def sweep(self) -> None:
        """Close connections past their deadline (a request dripping in byte by byte)."""
        now = time.monotonic()
        with self._lock:
            for conn in [c for c in self._open.values() if not c.busy and c.deadline < now]:
                self._drop(conn)


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128      # the default 5 drops SYNs when many scrapers connect at once

    def __init__(self, address, handler, host_is_v6: bool, web_config: WebConfig | None = None,
                 max_connections: int | None = None):
        if host_is_v6:
            self.address_family = socket.AF_INET6
        self.web_config = web_config
        self.connections = Connections(max_connections or connection_cap())
        self._starved_until = 0.0
        super().__init__(address, handler)

    def get_request(self):
        try:
            sock, addr = super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                now = time.monotonic()
                if now >= self._starved_until:
                    log.warning("out of file descriptors: new connections wait", extra={"fields": {"err": exc}})
                    self._starved_until = now + 60
                time.sleep(0.05)         # not a busy loop on a listening socket that stays readable
            raise
        self.connections.sweep()
        if not self.connections.admit(sock):
            log.debug("connection refused: every connection is being answered", extra={"fields": {"client": addr[0]}})
            sock.close()
            raise OSError("connection cap reached")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock, addr

    def service_actions(self) -> None:
        self.connections.sweep()

    def shutdown_request(self, request) -> None:
        self.connections.forget(request.fileno())
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """One line for a client that went away or stalled; no traceback on stderr."""
        import sys
        exc = sys.exc_info()[1]
        quiet = isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError, OSError))
        (log.debug if quiet else log.warning)("connection ended by an error", extra={"fields": {
            "client": client_address[0] if client_address else "", "port": client_address[1] if client_address else "",
            "err": f"{type(exc).__name__}: {exc}"}})

    def process_request_thread(self, request, client_address):
        """Runs on the connection's own thread: the TLS handshake happens here, not in accept()."""
        fd = request.fileno()
        try:
            if self.web_config is not None and self.web_config.ssl_context is not None:
                request = self._tls_handshake(request, client_address)
                if request is None:
                    return
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.connections.forget(fd)
            if request is not None:
                self.shutdown_request(request)

    def _tls_handshake(self, sock: socket.socket, client_address) -> ssl.SSLSocket | None:
        config = self.web_config
        assert config is not None and config.ssl_context is not None   # a handshake only on a TLS port
        client = client_address[0]
        try:
            sock.settimeout(HEADER_SECONDS)
            first = sock.recv(1, socket.MSG_PEEK)
            if first and b"A" <= first <= b"Z":         # "GET / HTTP/1.1" on the TLS port
                log.debug("plain HTTP request on the TLS port", extra={"fields": {"client": client}})
                self.connections.forget(sock.fileno())
                self._refuse_plain_http(sock)
                return None
            tls = config.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            self.connections.phase(tls, busy=False, seconds=HEADER_SECONDS)
        except OSError as exc:
            log.debug("connection dropped before the TLS handshake", extra={"fields": {"client": client, "err": exc}})
            self.connections.forget(sock.fileno())
            super().shutdown_request(sock)
            return None
        try:
            tls.do_handshake()
            if not check_client_sans(config, tls.getpeercert()):
                log.debug("client certificate has none of client_allowed_sans", extra={"fields": {"client": client}})
                self.connections.forget(tls.fileno())
                tls.close()
                return None
            return tls
        except (OSError, ValueError) as exc:     # ssl.SSLError is an OSError
            log.debug("TLS handshake failed", extra={"fields": {"client": client, "err": exc}})
            self.connections.forget(tls.fileno())
            tls.close()
            return None

    @staticmethod
    def _refuse_plain_http(sock: socket.socket) -> None:
        """Answer 400 as Go's net/http does, then drain so close() does not reset the reply away."""
        try:
            sock.sendall(PLAIN_HTTP_ON_TLS)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(1.0)
            for _ in range(64):
                if not sock.recv(4096):
                    break
        except OSError:
            pass
        finally:
            sock.close()
