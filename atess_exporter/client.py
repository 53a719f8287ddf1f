"""ATESS OpenAPI client: one authorised GET, the envelope checked, typed errors.

Every failure is an AtessError whose `outcome` is a fixed, low-cardinality
word used for `atess_api_requests_total{outcome}`. Error texts name the
endpoint and the problem, never a credential: the Authorization header lives
in the session only, and request URLs carry no secret.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .config import ApiConfig


class AtessError(Exception):
    outcome = "error"


class AuthError(AtessError):
    """The API refused the credentials (HTTP 401/403 or an auth envelope code)."""
    outcome = "auth_failed"


class RateLimitError(AtessError):
    """The API says we call too often (HTTP 429 or a rate-limit envelope code)."""
    outcome = "rate_limited"


class ApiError(AtessError):
    """The envelope's `code` is not a success code."""
    outcome = "api_error"

    def __init__(self, endpoint: str, code: Any, msg: str):
        super().__init__(f"{endpoint}: API error code {code}: {msg or 'no message'}")
        self.code = code
        self.msg = msg


class NoDataError(AtessError):
    """Success code but `data` is null or empty: the device has no reading."""
    outcome = "no_data"


class HttpError(AtessError):
    outcome = "http_error"

    def __init__(self, endpoint: str, status: int):
        super().__init__(f"{endpoint}: HTTP {status}")
        self.status = status
        if status >= 500:
            self.outcome = "http_5xx"


class TransportError(AtessError):
    """No HTTP answer at all: refused, unresolvable, timed out, reset."""
    outcome = "connection_error"

    def __init__(self, message: str, outcome: str):
        super().__init__(message)
        self.outcome = outcome


class MalformedResponseError(AtessError):
    """An answer that is not the documented JSON envelope."""
    outcome = "invalid_response"

    def __init__(self, message: str, outcome: str = "invalid_response"):
        super().__init__(message)
        self.outcome = outcome


OUTCOMES = ("success", "auth_failed", "rate_limited", "api_error", "no_data", "http_error", "http_5xx",
            "timeout", "connection_error", "dns_error", "html_response", "invalid_json", "invalid_response")

RequestObserver = Callable[[str, str, float], None]


def _transport_outcome(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timeout"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror) or "NameResolutionError" in type(cause).__name__:
            return "dns_error"
        cause = cause.__cause__ or cause.__context__ or (cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None)
    return "connection_error"


class AtessClient:
    def __init__(self, api: ApiConfig, observer: RequestObserver | None = None,
                 session: requests.Session | None = None, connections: int = 10):
        self.api = api
        self.observer = observer
        if session is None:
            session = requests.Session()
            # One kept-alive connection per worker: fewer TLS handshakes with the API.
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(connections, 10))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session
        self.session.headers.update({
            "Authorization": api.credentials.authorization().reveal(),
            "Accept-Language": api.language,
            "Accept": "application/json",
            "User-Agent": f"atess-exporter/{__version__}",
        })
        if api.company_type:
            self.session.headers["CompanyType"] = api.company_type

    def get(self, path: str, params: dict[str, Any], expect: type | None = None) -> Any:
        """GET base_url+path and return the envelope's `data` (of type `expect`), or raise AtessError."""
        started = time.monotonic()
        outcome = "success"
        try:
            data = self._get(path, params)
            if expect is not None and not isinstance(data, expect):
                raise MalformedResponseError(f"{path}: data is {type(data).__name__}, expected {expect.__name__}")
            return data
        except AtessError as exc:
            outcome = exc.outcome
            raise
        finally:
            if self.observer:
                self.observer(path, outcome, time.monotonic() - started)

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            resp = self.session.get(self.api.base_url + path, params=params, timeout=self.api.timeout_seconds)
        except requests.RequestException as exc:
            outcome = _transport_outcome(exc)
            reason = {"timeout": f"no answer within {self.api.timeout_seconds:g}s",
                      "dns_error": "host name does not resolve"}.get(outcome, "connection failed")
            raise TransportError(f"{path}: {reason} ({type(exc).__name__})", outcome) from None
        if resp.status_code in (401, 403):
            raise AuthError(f"{path}: HTTP {resp.status_code}: credentials refused; check atess.token or app_id/app_key")
        if resp.status_code == 429:
            raise RateLimitError(f"{path}: HTTP 429: rate limited by the API")
        if resp.status_code >= 400:
            raise HttpError(path, resp.status_code)
        try:
            body = resp.json()
        except (ValueError, json.JSONDecodeError):
            text = resp.text.lstrip()[:64].lower()
            if text.startswith("<"):
                raise MalformedResponseError(f"{path}: HTML page instead of JSON (HTTP {resp.status_code})", "html_response") from None
            raise MalformedResponseError(f"{path}: response is not valid JSON (HTTP {resp.status_code})", "invalid_json") from None
        if not isinstance(body, dict) or "code" not in body:
            raise MalformedResponseError(f"{path}: response is not the {{code, data, msg}} envelope")
        code, msg = body.get("code"), str(body.get("msg") or "")[:200]
        if isinstance(code, str) and code.strip().lstrip("-").isdigit():
            code = int(code)
        if code in self.api.auth_error_codes:
            raise AuthError(f"{path}: API code {code}: {msg or 'no access'}; check atess.token or app_id/app_key")
        if code in self.api.rate_limit_codes:
            raise RateLimitError(f"{path}: API code {code}: {msg or 'rate limited'}")
        if code not in self.api.success_codes:
            raise ApiError(path, code, msg)
        data = body.get("data")
        if data is None or data == {} or data == []:
            raise NoDataError(f"{path}: success code but no data")
        return data

    def latest(self, path: str, sn: str) -> dict:
        return self.get(path, {"deviceSn": sn}, expect=dict)
