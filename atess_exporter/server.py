"""The HTTP side: /metrics, /healthz and a landing page.

Each request is served on its own thread from the cache; nothing here calls
the ATESS API, so scrapes cost the same whatever their number.
"""

from __future__ import annotations

import gzip
import html
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from . import __version__

log = logging.getLogger(__name__)


def parse_listen_address(address: str) -> tuple[str, int]:
    """':10036' -> ('', 10036); '127.0.0.1:0'; '[::1]:10036'."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--web.listen-address {address!r}: expected [host]:port, e.g. :10036 or 127.0.0.1:10036")
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, host_is_v6: bool):
        if host_is_v6:
            import socket
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, listen_address: str = ":10036", telemetry_path: str = "/metrics",
                 landing_extra: Callable[[], str] | None = None, web_config_file: str | None = None):
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.landing_extra = landing_extra
        host, port = parse_listen_address(listen_address)
        self.httpd = _Server((host, port), self._handler(), host_is_v6=":" in host)
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def render_metrics(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def landing_page(self) -> bytes:
        extra = self.landing_extra() if self.landing_extra else ""
        path = html.escape(self.telemetry_path)
        return (
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ATESS Exporter</title></head><body>"
            f"<h1>ATESS Exporter</h1><p>Version {html.escape(__version__)}</p>"
            f"<ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/healthz\">Health</a></li></ul>"
            f"{extra}</body></html>"
        ).encode()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = f"atess-exporter/{__version__}"

            def log_message(self, fmt, *args):  # access logs only at debug
                log.debug("http request", extra={"fields": {"client": self.client_address[0], "line": fmt % args}})

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
                path = self.path.split("?", 1)[0]
                if path == server.telemetry_path:
                    try:
                        body, ctype = server.render_metrics(self.headers.get("Accept"))
                    except Exception:
                        log.exception("rendering /metrics failed")
                        self._send(500, b"error rendering metrics\n", "text/plain; charset=utf-8", head)
                        return
                    self._send(200, body, ctype, head)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8", head)
                elif path == "/":
                    self._send(200, server.landing_page(), "text/html; charset=utf-8", head)
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8", head)

            def do_HEAD(self):
                self.do_GET(head=True)

        return Handler
