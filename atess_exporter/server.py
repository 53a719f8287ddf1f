"""The HTTP side: /metrics, /healthz and a landing page.

Each request is served on its own thread from the cache; nothing here calls
the ATESS API, so scrapes cost the same whatever their number.

`--web.config.file` (exporter-toolkit format, see webconfig.py and
docs/web-security.md) adds TLS and basic auth. As in exporter-toolkit, basic
auth covers every path: /metrics, /healthz and the landing page. The TLS
handshake runs on the connection's own thread, never in the accept loop, so a
slow or broken client (plain HTTP to the TLS port, wrong certificate) costs
only its own connection.
"""

from __future__ import annotations

import gzip
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CollectorRegistry

from . import __version__, landing
from .render import Renderer
from .webconfig import HANDSHAKE_TIMEOUT_SECONDS, BasicAuth, WebConfig, check_client_sans, load_web_config

log = logging.getLogger(__name__)


def parse_listen_address(address: str) -> tuple[str, int]:
    """':10036' -> ('', 10036); '127.0.0.1:0'; '[::1]:10036'."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--web.listen-address {address!r}: expected [host]:port, e.g. :10036 or 127.0.0.1:10036")
    return host.strip("[]"), int(port)


PLAIN_HTTP_ON_TLS = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128      # the default 5 drops SYNs when many scrapers connect at once

    def __init__(self, address, handler, host_is_v6: bool, web_config: WebConfig | None = None):
        if host_is_v6:
            self.address_family = socket.AF_INET6
        self.web_config = web_config
        super().__init__(address, handler)

    def process_request_thread(self, request, client_address):
        """Runs on the connection's own thread: the TLS handshake happens here, not in accept()."""
        if self.web_config is not None and self.web_config.ssl_context is not None:
            request = self._tls_handshake(request, client_address)
            if request is None:
                return
        super().process_request_thread(request, client_address)

    def _tls_handshake(self, sock: socket.socket, client_address) -> ssl.SSLSocket | None:
        config = self.web_config
        client = client_address[0]
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
            first = sock.recv(1, socket.MSG_PEEK)
            if first and b"A" <= first <= b"Z":         # "GET / HTTP/1.1" on the TLS port
                log.debug("plain HTTP request on the TLS port", extra={"fields": {"client": client}})
                self._refuse_plain_http(sock)
                return None
            tls = config.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            log.debug("connection dropped before the TLS handshake", extra={"fields": {"client": client, "err": exc}})
            self.shutdown_request(sock)
            return None
        try:
            tls.do_handshake()
            if not check_client_sans(config, tls.getpeercert()):
                log.debug("client certificate has none of client_allowed_sans", extra={"fields": {"client": client}})
                tls.close()
                return None
            tls.settimeout(None)
            return tls
        except (OSError, ValueError) as exc:     # ssl.SSLError is an OSError
            log.debug("TLS handshake failed", extra={"fields": {"client": client, "err": exc}})
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


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, listen_address: str = ":10036", telemetry_path: str = "/metrics",
                 landing_extra: Callable[[], str] | None = None, web_config_file: str | None = None):
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.landing_extra = landing_extra
        host, port = parse_listen_address(listen_address)
        # Read the web config before binding: a bad file is reported as such (WebConfigError).
        self.web_config = load_web_config(web_config_file) if web_config_file else None
        users = self.web_config.users if self.web_config else {}
        self.auth = BasicAuth(users) if users else None
        self.response_headers = dict(self.web_config.headers) if self.web_config else {}
        self.httpd = _Server((host, port), self._handler(), host_is_v6=":" in host, web_config=self.web_config)
        # Renders only what changed since the last scrape and shares the bytes
        # between concurrent scrapers (see render.py); output = generate_latest.
        self.renderer = Renderer(registry)
        self.thread: threading.Thread | None = None

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

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def landing_page(self) -> bytes:
        return landing.render(self.telemetry_path, self.landing_extra)  # per-device status: landing.py

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = f"atess-exporter/{__version__}"

            def log_message(self, fmt, *args):  # access logs only at debug
                log.debug("http request", extra={"fields": {"client": self.client_address[0], "line": fmt % args}})

            def end_headers(self):
                for name, value in server.response_headers.items():
                    self.send_header(name, value)
                super().end_headers()

            def _authorized(self, head: bool) -> bool:
                if server.auth is None or server.auth.check(self.headers.get("Authorization")):
                    return True
                log.debug("basic auth refused", extra={"fields": {"client": self.client_address[0],
                                                                  "path": self.path.split("?", 1)[0]}})
                body = b"Unauthorized\n"
                self.send_response(401)
                self.send_header("WWW-Authenticate", server.auth.challenge)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)
                return False

            def _send(self, status: int, body: bytes, content_type: str, head: bool = False) -> None:
                if "gzip" in (self.headers.get("Accept-Encoding") or "") and len(body) > 1024:
                    body = gzip.compress(body, compresslevel=1)
                    self.send_response(status)
                    self.send_header("Content-Encoding", "gzip")
                else:
                    self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_GET(self, head: bool = False):
                if not self._authorized(head):
                    return
                path = self.path.split("?", 1)[0]
                if path == server.telemetry_path:
                    try:
                        body, headers = server.renderer.render(self.headers.get("Accept"), self.headers.get("Accept-Encoding"))
                    except Exception:
                        log.exception("rendering /metrics failed")
                        self._send(500, b"error rendering metrics\n", "text/plain; charset=utf-8", head)
                        return
                    self.send_response(200)
                    for name, value in headers.items():  # already gzipped when asked: not via _send
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(body)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8", head)
                elif path == "/":
                    self._send(200, server.landing_page(), "text/html; charset=utf-8", head)
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8", head)

            def do_HEAD(self):
                self.do_GET(head=True)

        return Handler
