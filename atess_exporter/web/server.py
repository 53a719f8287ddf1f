"""The HTTP side: /metrics, /healthz and a landing page.

Each connection is served on its own thread from the cache; nothing here
calls the ATESS API, so scrapes cost the same whatever their number.
web/connections.py bounds connections (a cap below the descriptor limit, deadlines
for idle and slow clients) and runs the TLS handshake on the connection's
thread.

`--web.config.file` (exporter-toolkit format, see webconfig.py and
docs/web-security.md) adds TLS and basic auth. As in exporter-toolkit, basic
auth covers every path: /metrics, /healthz and the landing page.

An answer is written as its pieces (status line and headers first, then the
body's cached segments) with sendmsg, in one system call for a small answer,
on a socket with TCP_NODELAY: no join of a large body, no wait on the
client's delayed ACK.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler
from typing import Callable, cast

from prometheus_client import CollectorRegistry

from atess_exporter import __version__
from atess_exporter.web import connections
from atess_exporter.web import landing
from atess_exporter.exposition.formats import gzip_accepted
from atess_exporter.web.connections import HTTPServer
from atess_exporter.exposition.render import Renderer
from atess_exporter.web.webconfig import BUSY, BasicAuth, load_web_config

log = logging.getLogger(__name__)

# What Prometheus 2 and 3 ask for by default (OpenMetrics, gzip): rendered from start-up on,
# so the first scrape of a large fleet does not pay for every device at once; the one
# nobody asks for within WARM_KEEP_SECONDS is dropped.
WARM_KEEP_SECONDS = 180.0
WARM_ACCEPTS = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
                "text/plain;version=0.0.4;q=0.2,*/*;q=0.1")
REFRESH_SECONDS = 0.5       # how often devices polled meanwhile are rendered ahead of the next scrape
IOV_MAX = 1024              # buffers per sendmsg (Linux UIO_MAXIOV)
TLS_CHUNK = 256 * 1024      # TLS has no sendmsg: pieces are grouped into writes of about this size
MAX_BODY = 8192             # a request body (meaningless on GET/HEAD) read and dropped; larger: 413, closed
# Sent on every answer unless the web config's http_server_config.headers sets them: the
# landing page needs nothing but its own inline style (allowed by its hash).
_STYLE_HASH = base64.b64encode(hashlib.sha256(landing.STYLE.encode()).digest()).decode()
DEFAULT_HEADERS = {"X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
                                              "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"}


class _LineRecorder:
    """The header lines http.client reads, kept to check their framing."""

    def __init__(self, rfile):
        self.rfile = rfile
        self.lines: list[bytes] = []

    def readline(self, size: int = -1) -> bytes:
        line = self.rfile.readline(size)
        self.lines.append(line)
        return line


def framing_error(raw_requestline: bytes, header_lines: list[bytes], headers) -> tuple[int, str] | None:
    """Why a request's framing is in doubt, as (status, reason), or None.

    A body parsed as the next request is a desync behind a proxy (one request
    in, two answers out), so the rules are strict: CRLF line ends only, no
    obsolete line folding, no Transfer-Encoding (nobody sends a GET body
    chunked), at most one Content-Length of digits, and a body no larger than
    MAX_BODY (which the caller reads and drops)."""
    if not raw_requestline.endswith(b"\r\n") or any(not line.endswith(b"\r\n") for line in header_lines if line):
        return 400, "bare LF line ends"
    if any(line[:1] in (b" ", b"\t") for line in header_lines):
        return 400, "obsolete header line folding"
    if headers.get_all("Transfer-Encoding"):
        return (400, "Content-Length with Transfer-Encoding") if headers.get_all("Content-Length") else \
            (501, "Transfer-Encoding not supported")
    lengths = headers.get_all("Content-Length") or []
    if len(lengths) > 1:
        return 400, "more than one Content-Length"
    if lengths:
        value = lengths[0].strip()
        if not value.isdigit() or not value.isascii():
            return 400, "bad Content-Length"
        if int(value) > MAX_BODY:
            return 413, "request body too large"
    return None


def parse_listen_address(address: str) -> tuple[str, int]:
    """':10036' -> ('', 10036); '127.0.0.1:0'; '[::1]:10036'."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--web.listen-address {address!r}: expected [host]:port, e.g. :10036 or 127.0.0.1:10036")
    return host.strip("[]"), int(port)


def send_pieces(sock: socket.socket, pieces: list[bytes]) -> None:
    """Write the pieces in order, without joining them (sendmsg; grouped writes over TLS)."""
    if isinstance(sock, ssl.SSLSocket):
        group: list[bytes] = []
        size = 0
        for piece in pieces:
            group.append(piece)
            size += len(piece)
            if size >= TLS_CHUNK:
                sock.sendall(b"".join(group))
                group, size = [], 0
        if group:
            sock.sendall(b"".join(group))
        return
    queue: list[bytes | memoryview[int]] = (cast("list[bytes | memoryview[int]]", pieces) if all(pieces)
                                             else [p for p in pieces if p])
    at = 0
    while at < len(queue):
        batch = queue[at:at + IOV_MAX]
        sent = sock.sendmsg(batch)
        if sent == sum(map(len, batch)):
            at += len(batch)
            continue
        if queue is pieces:
            queue = list(pieces)              # the caller's list is shared: cut a copy
        while sent:                           # drop what went out; keep the rest of a piece cut short
            n = len(queue[at])
            if sent >= n:
                sent -= n
                at += 1
            else:
                queue[at] = memoryview(queue[at])[sent:]
                sent = 0


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, listen_address: str = ":10036", telemetry_path: str = "/metrics",
                 landing_extra: Callable[[], str] | None = None, web_config_file: str | None = None,
                 max_connections: int | None = None, max_auth_checks: int = BasicAuth.MAX_CHECKS):
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.landing_extra = landing_extra
        host, port = parse_listen_address(listen_address)
        # Read the web config before binding: a bad file is reported as such (WebConfigError).
        self.web_config = load_web_config(web_config_file) if web_config_file else None
        users = self.web_config.users if self.web_config else {}
        self.auth = BasicAuth(users, max_auth_checks) if users else None
        configured = dict(self.web_config.headers) if self.web_config else {}
        lower = {name.lower() for name in configured}
        self.response_headers = {k: v for k, v in DEFAULT_HEADERS.items() if k.lower() not in lower} | configured
        self.httpd = HTTPServer((host, port), self._handler(), host_is_v6=":" in host, web_config=self.web_config,
                                max_connections=max_connections)
        # Renders only what changed since the last scrape and shares the bytes
        # between concurrent scrapers (see exposition/render.py); output = the library's encoders.
        self.renderer = Renderer(registry)
        self.thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.refresh_seconds: float | None = REFRESH_SECONDS    # None: render only when scraped
        self.warm_accepts: tuple[str, ...] = WARM_ACCEPTS

    @property
    def scheme(self) -> str:
        return "https" if self.web_config is not None and self.web_config.tls else "http"

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        if self.web_config is not None:
            wc = self.web_config
            log.info("web config loaded", extra={"fields": {
                "file": wc.path, "tls": wc.tls, "client_auth_type": wc.client_auth_type if wc.tls else "",
                "basic_auth_users": len(wc.users), "headers": ",".join(wc.headers)}})
            for note in wc.warnings:
                log.warning(note, extra={"fields": {"file": wc.path}})
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)
        self.thread.start()
        if self.refresh_seconds:
            for accept in self.warm_accepts:
                self.renderer.warm(accept, keep_seconds=WARM_KEEP_SECONDS)
            threading.Thread(target=self._refresh_loop, name="render", daemon=True).start()

    def _refresh_loop(self) -> None:
        """Render devices as they are polled, not when Prometheus asks: a scrape then
        only assembles (exposition/render.py). A failure here costs speed, not correctness."""
        while not self._stopping.wait(self.refresh_seconds):
            try:
                self.renderer.refresh()
            except Exception as exc:
                log.warning("rendering ahead of scrapes failed", extra={"fields": {"err": f"{type(exc).__name__}: {exc}"}})
                self._stopping.wait(60)

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.connections.close_all()

    def landing_page(self) -> bytes:
        return landing.render(self.telemetry_path, self.landing_extra)  # per-device status: landing.py

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            server: HTTPServer          # the connection-keeping server this handler is made for
            raw_requestline: bytes      # set by handle_one_request
            protocol_version = "HTTP/1.1"
            server_version = f"atess-exporter/{__version__}"

            def version_string(self) -> str:      # the default adds the Python version
                return self.server_version

            def log_message(self, fmt, *args):  # access logs only at debug
                log.debug("http request", extra={"fields": {"client": self.client_address[0], "line": fmt % args}})

            served = 0

            def handle_one_request(self):
                """Wait for a request (HEADER_SECONDS on a new connection, IDLE_SECONDS on a
                kept-alive one), then give it HEADER_SECONDS to arrive in full."""
                conns, sock = self.server.connections, self.connection
                wait = connections.IDLE_SECONDS if self.served else connections.HEADER_SECONDS
                self.served += 1
                conns.phase(sock, busy=False, seconds=wait)
                sock.settimeout(wait)
                try:
                    if not self.rfile.peek(1):
                        self.close_connection = True
                        return
                except (OSError, ValueError):
                    self.close_connection = True
                    return
                conns.phase(sock, busy=False, seconds=connections.HEADER_SECONDS)
                sock.settimeout(connections.HEADER_SECONDS)
                super().handle_one_request()

            def parse_request(self) -> bool:
                """The library's parsing, then the framing checks of framing_error; a body
                (at most MAX_BODY) is read and dropped so it is never taken for a request."""
                real = self.rfile
                recorder = _LineRecorder(real)
                self.rfile = cast(io.BufferedIOBase, recorder)   # parse_request only calls readline
                try:
                    ok = super().parse_request()
                finally:
                    self.rfile = real
                if not ok:
                    return False
                doubt = framing_error(self.raw_requestline, recorder.lines, self.headers)
                if doubt is not None:
                    self.send_error(doubt[0], doubt[1])      # says Connection: close, and closes
                    return False
                length = int(self.headers.get("Content-Length") or 0)
                if length and len(self.rfile.read(length)) != length:
                    self.close_connection = True
                    return False
                return True

            def end_headers(self):    # answers the library writes itself (400, 414, 501...)
                for name, value in server.response_headers.items():
                    self.send_header(name, value)
                super().end_headers()

            def _respond(self, status: int, headers: dict[str, str], pieces: list[bytes], head: bool) -> None:
                lines = [f"{self.protocol_version} {status} {self.responses[status][0]}",
                         f"Server: {self.version_string()}", f"Date: {self.date_time_string()}"]
                lines += [f"{k}: {v}" for k, v in headers.items()]
                lines += [f"{k}: {v}" for k, v in server.response_headers.items()]
                if self.close_connection:
                    lines.append("Connection: close")
                self.log_request(status, headers.get("Content-Length", "-"))
                send_pieces(self.connection, [("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")] + ([] if head else pieces))

            def _send(self, status: int, body: bytes, content_type: str, head: bool = False, extra: dict | None = None) -> None:
                headers = {"Content-Type": content_type}
                if gzip_accepted(self.headers.get("Accept-Encoding")) and len(body) > 1024:
                    body = gzip.compress(body, compresslevel=1)
                    headers["Content-Encoding"] = "gzip"
                headers["Content-Length"] = str(len(body))
                headers.update(extra or {})
                self._respond(status, headers, [body], head)

            def _authorized(self, head: bool) -> bool:
                if server.auth is None:
                    return True
                verdict = server.auth.check(self.headers.get("Authorization"))
                if verdict:
                    self.server.connections.trust(self.connection)
                    return True
                if verdict is BUSY:       # more unverified passwords than checks allowed at once
                    self.close_connection = True
                    self._send(503, b"too many authentication checks at once, retry\n", "text/plain; charset=utf-8",
                               head, {"Retry-After": "1"})
                    return False
                log.debug("basic auth refused", extra={"fields": {"client": self.client_address[0],
                                                                  "path": self.path.split("?", 1)[0]}})
                self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8", head,
                           {"WWW-Authenticate": server.auth.challenge})
                return False

            def do_GET(self, head: bool = False):
                self.server.connections.phase(self.connection, busy=True)
                self.connection.settimeout(connections.WRITE_SECONDS)
                if not self._authorized(head):
                    return
                path = self.path.split("?", 1)[0]
                if path == server.telemetry_path:
                    try:
                        resp = server.renderer.render(self.headers.get("Accept"), self.headers.get("Accept-Encoding"))
                    except Exception as exc:
                        log.error("rendering /metrics failed", extra={"fields": {"err": f"{type(exc).__name__}: {exc}"}})
                        self._send(500, b"error rendering metrics\n", "text/plain; charset=utf-8", head)
                        return
                    self._respond(200, resp.headers, resp.pieces, head)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8", head)
                elif path == "/":
                    self._send(200, server.landing_page(), "text/html; charset=utf-8", head)
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8", head)

            def do_HEAD(self):
                self.do_GET(head=True)

        return Handler
