"""HTTP side of the simulated ATESS cloud OpenAPI (stdlib http.server, loopback only).

Faithful to the vendor doc and recorded data (docs/api.md); ``dialect="platform"``
answers as the vendor's servers do instead (simulator/platform.py):
  * ``GET /api/v1/hps/data-last?deviceSn=SN``, ``Authorization`` header;
  * envelope ``{"code", "data", "msg"}`` with HTTP 200 even for API errors;
    codes from the doc's table: 400 not found, 403 no access, 500 fail; success
    is ``0`` (the doc's example) or ``200`` (the doc's table), selectable.

Assumptions (the doc is silent), each a choice the exporter must survive:
  * ``time`` is plant-local by default; ``clock_utc_offset_hours=8`` writes it in
    the servers' zone instead, as the platform family does (PLATFORM.md 1);
  * a refused ``Authorization`` gets HTTP 200 + code 403 (whether the real
    server also uses HTTP 401 is unknown);
  * exceeding "once every 5 minutes" gets HTTP 429 + code 429
    "request too frequent" (the real answer is undocumented);
  * unknown paths get an nginx-like HTML 404, as the web server in front would.

The routing table ``Simulator.routes`` maps a path to a handler
``handler(sim, request) -> Reply``; families and endpoints are added there.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS
from atess_exporter.simulator import platform
from atess_exporter.simulator.device import SimDevice
from atess_exporter.simulator.physics import LATEST_BUILDERS, SLOT_SECONDS

HOST = "127.0.0.1"
MSG_OK = "operate successfully"
FAULT_KINDS = frozenset({
    "http_500", "http_429", "html", "invalid_json", "api_error",
    "data_null", "delay", "auth", "fields",
})


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]  # first value of each parameter
    headers: Mapping[str, str] | Message   # the handler's headers: case-insensitive lookups
    body: bytes = b""

    @property
    def sn(self) -> str | None:
        return self.query.get("deviceSn") or None


@dataclass
class Reply:
    """What a handler answers. ``envelope`` is encoded as JSON by the dispatcher
    (after any "fields" fault is merged into its ``data``); otherwise ``body``
    is sent as is. ``latest`` marks ``data`` as a device's latest reading, kept
    in ``Simulator.last_payload``."""

    status: int = 200
    envelope: dict[str, Any] | None = None
    body: bytes = b""
    content_type: str = "text/html"
    latest: bool = False


def slot_start_utc(device: SimDevice, now: float) -> float:
    """Unix time at which the device's current 5-minute reading started (slots are
    plant-local, so a half-hour zone shifts them)."""
    shift = device.tz_offset_hours * 3600.0
    return math.floor((now + shift) / SLOT_SECONDS) * SLOT_SECONDS - shift


def html_page(status: int, title: str) -> bytes:
    return (
        f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


Handler = Callable[["Simulator", Request], Reply]


def latest_handler(family: str) -> Handler:
    """Handler of a "latest real-time data" endpoint for one device family."""

    def handle(sim: Simulator, req: Request) -> Reply:
        if req.method != "GET":
            return Reply(405, body=html_page(405, "Not Allowed"))
        sn = req.sn
        if sn is None:
            return sim.error(400, "deviceSn must not be empty")
        dev = sim.devices.get(sn)
        if dev is None or dev.family != family:
            return sim.error(400, "not found")
        now = sim.clock()
        data = LATEST_BUILDERS[family](dev, now)
        if sim.clock_utc_offset_hours is not None:
            data = {**data, "time": sim.render_time(slot_start_utc(dev, now))}
        if sim.dialect == "platform":
            data = platform.speak(family, dev, data)
        if dev.lost:
            # The cloud keeps the last reading and flags the device (recorded data).
            data = {**data, "lost": True, "status": -1}
        return Reply(envelope=sim.envelope_dict(data), latest=True)

    return handle


from atess_exporter.simulator.history import history_handler  # noqa: E402 - history imports this module lazily, no cycle

from atess_exporter.simulator.account import account_routes  # noqa: E402 - plants, dataloggers, device lists, settings

DEFAULT_ROUTES: dict[str, Handler] = {
    **account_routes(),
    # Latest data and history of every family at the default paths (endpoints.py
    # says which are documented and which assumed).
    **{ops["latest"]: latest_handler(family) for family, ops in DEFAULT_ENDPOINTS.items() if "latest" in ops},
    **{ops["history"]: history_handler(family) for family, ops in DEFAULT_ENDPOINTS.items() if "history" in ops},
}


@dataclass
class _Fault:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


class Simulator:
    """A simulated ATESS cloud serving ``devices`` on 127.0.0.1."""

    def __init__(
        self,
        devices: Iterable[SimDevice],
        token: str | None = "demo-token",
        app_id: str | None = None,
        app_key: str | None = None,
        success_code: int = 0,
        min_interval_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        dialect: str = "documented",
        clock_utc_offset_hours: float | None = None,
    ) -> None:
        if (app_id is None) != (app_key is None):
            raise ValueError("app_id and app_key go together")
        if dialect not in platform.DIALECTS:
            raise ValueError(f"dialect must be one of {platform.DIALECTS}, not {dialect!r}")
        # "documented": the vendor doc's names and shapes; "platform": as the vendor's servers
        # send them (simulator/platform.py, PLATFORM.md).
        self.dialect = dialect
        self.devices: dict[str, SimDevice] = {d.sn: d for d in devices}
        self.success_code = success_code
        self.min_interval_seconds = min_interval_seconds
        self.clock = clock
        # None: `time` is plant-local (the vendor doc's reading); a number: the
        # servers write every `time` in UTC+that, whatever the plant (PLATFORM.md 1).
        # The platform dialect's servers are at UTC+8 unless told otherwise.
        if clock_utc_offset_hours is None and dialect == "platform":
            clock_utc_offset_hours = platform.PLATFORM_CLOCK_UTC_OFFSET_HOURS
        self.clock_utc_offset_hours = clock_utc_offset_hours
        self.routes: dict[str, Handler] = dict(DEFAULT_ROUTES)
        self._accepted_auth: set[str] = set()
        if token is not None:
            self._accepted_auth.add(f"Basic {token}")
        if app_id is not None:
            cred = base64.b64encode(f"{app_id}:{app_key}".encode()).decode()
            self._accepted_auth.add(f"Basic {cred}")

        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, str | None]] = Counter()
        self.call_log: list[tuple[float, str, str | None]] = []
        self.rate_limit_violations = 0
        self.last_payload: dict[str, dict[str, Any]] = {}
        self._last_accepted: dict[tuple[str, str | None], float] = {}
        self._faults: dict[str, _Fault] = {}
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self, port: int = 0) -> str:
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        httpd = _Server((HOST, port), _RequestHandler)
        httpd.sim = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name="atess-simulator", daemon=True,
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # releases "delay" faults in progress
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("simulator not started")
        return f"http://{HOST}:{self._httpd.server_address[1]}"

    def __enter__(self) -> Simulator:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls -----------------------------------------------------
    def set_fault(self, sn: str, kind: str, **params: Any) -> None:
        """Make every request for ``sn`` fail as ``kind`` until cleared."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        if kind == "delay" and "seconds" not in params:
            raise ValueError("fault 'delay' needs seconds=")
        if kind == "fields" and not isinstance(params.get("fields"), dict):
            raise ValueError("fault 'fields' needs fields={...}")
        with self._lock:
            self._faults[sn] = _Fault(kind, dict(params))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_counters(self) -> None:
        """Forget calls, call log, violations and the rate limiter's memory."""
        with self._lock:
            self.calls.clear()
            self.call_log.clear()
            self.rate_limit_violations = 0
            self._last_accepted.clear()

    # -- helpers for handlers ----------------------------------------------
    def render_time(self, unix: float) -> str:
        """A Unix time as the servers write it ('YYYY-MM-DD HH:MM:SS' in their zone)."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix + (self.clock_utc_offset_hours or 0.0) * 3600.0))

    def envelope_dict(self, data: Any, code: int | None = None, msg: str = MSG_OK) -> dict[str, Any]:
        return {"code": self.success_code if code is None else code, "data": data, "msg": msg}

    def error(self, code: int, msg: str, status: int = 200) -> Reply:
        return Reply(status, envelope={"code": code, "data": None, "msg": msg})

    # -- dispatch ------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        """Answer one request; independent of HTTP so it is testable alone."""
        sn = req.sn
        with self._lock:
            self.calls[(req.path, sn)] += 1
            self.call_log.append((self.clock(), req.path, sn))
            fault = self._faults.get(sn) if sn is not None else None

        handler = self.routes.get(req.path)
        if handler is None:
            return Reply(404, body=html_page(404, "Not Found"))
        if self._accepted_auth and req.headers.get("Authorization") not in self._accepted_auth:
            return self.error(403, "No access")

        overrides: dict[str, Any] | None = None
        if fault is not None:
            if fault.kind == "delay":
                self._stopping.wait(float(fault.params["seconds"]))
            elif fault.kind == "fields":
                overrides = fault.params["fields"]
            else:
                return self._fault_reply(fault.kind, sn)

        if self.min_interval_seconds is not None:
            # per device and endpoint; account-level lists (no SN) per query
            key = (req.path, sn if sn is not None else "&".join(f"{k}={v}" for k, v in sorted(req.query.items())))
            with self._lock:
                now = self.clock()
                last = self._last_accepted.get(key)
                # Measured from the last *accepted* call, so a client that keeps
                # retrying too early stays refused (assumption).
                if last is not None and now - last < self.min_interval_seconds:
                    self.rate_limit_violations += 1
                    return self.error(429, "request too frequent", status=429)
                self._last_accepted[key] = now

        reply = handler(self, req)
        env = reply.envelope
        if env is not None and isinstance(env.get("data"), dict):
            if overrides:
                env["data"] = {**env["data"], **overrides}
            if reply.latest and sn is not None:
                with self._lock:
                    self.last_payload[sn] = env["data"]
        return reply

    def _fault_reply(self, kind: str, sn: str | None) -> Reply:
        if kind == "http_500":
            return Reply(500, body=html_page(500, "Internal Server Error"))
        if kind == "http_429":
            return self.error(429, "request too frequent", status=429)
        if kind == "html":
            # What a captive portal or maintenance page in front of the API sends.
            return Reply(200, body=(
                b"<!DOCTYPE html><html><head><title>System maintenance</title></head>"
                b"<body><h1>The system is under maintenance</h1></body></html>"
            ))
        if kind == "invalid_json":
            sample = self.envelope_dict({"deviceSn": sn, "ppv": 12.5, "epvTotal": 1234.5})
            full = json.dumps(sample, separators=(",", ":"))
            return Reply(200, body=full[: len(full) // 2].encode(), content_type="application/json")
        if kind == "api_error":
            return self.error(500, "fail")
        if kind == "data_null":
            return Reply(envelope=self.envelope_dict(None))
        if kind == "auth":
            return self.error(403, "No access")
        raise AssertionError(kind)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connections when many workers call at once
    sim: Simulator


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so stop() really ends the service
    # (a kept-alive connection would outlive shutdown()).
    protocol_version = "HTTP/1.0"
    server: _Server

    def version_string(self) -> str:
        return "nginx"

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        req = Request(self.command, parts.path, query, self.headers, body)
        reply = self.server.sim.handle(req)
        if reply.envelope is not None:
            payload = json.dumps(reply.envelope, ensure_ascii=False, separators=(",", ":")).encode()
            ctype = "application/json;charset=UTF-8"
        else:
            payload, ctype = reply.body, reply.content_type
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout during a "delay" fault)

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test and demo output clean
