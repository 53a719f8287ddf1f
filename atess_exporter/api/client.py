"""ATESS OpenAPI client: one authorised GET, the envelope checked, typed errors.

Every failure is an AtessError whose `outcome` is a fixed, low-cardinality
word used for `atess_api_requests_total{outcome}`. Error texts name the
endpoint and the problem, never a credential: the Authorization header lives
in the session only, and request URLs carry no secret.
"""

from __future__ import annotations

import logging
import socket
import time
from contextlib import closing
from typing import Any, Callable, NamedTuple

import requests
import urllib3.exceptions

from atess_exporter import __version__
from atess_exporter.config import ApiConfig
from atess_exporter.api.transport import (BadEncoding, CallScope, DeadlineAdapter, DeadlinePassed, TooLarge, read_body, redirect_hook)
from atess_exporter.outside.text import JsonRejected, decode_text, parse_json, remember_secrets, safe_text

log = logging.getLogger(__name__)
CREDENTIALS_CHECK_SECONDS = 10.0   # how often a call looks whether a *_file credential was rotated


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
        code, msg = safe_text(code, 64), safe_text(msg, 600)  # idempotent on already-safe text
        super().__init__(f"{endpoint}: API error code {code}: {msg or 'no message'}")
        self.code = code
        self.msg = msg


class NoDataError(AtessError):
    """Success code but `data` is null or empty: the device has no reading."""
    outcome = "no_data"

    def __init__(self, message: str, code: Any = None):
        super().__init__(message)
        self.code = code


class Answer(NamedTuple):
    """A successful envelope as the API sent it: its code (0 or 200, as sent), msg and data."""
    code: Any
    msg: str
    data: Any


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


RequestObserver = Callable[[str, str, float], None]


def _transport_outcome(exc: BaseException) -> str:
    if isinstance(exc, (requests.Timeout, socket.timeout, urllib3.exceptions.TimeoutError)):
        return "timeout"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror) or "NameResolutionError" in type(cause).__name__:
            return "dns_error"
        cause = cause.__cause__ or cause.__context__ or (cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None)
    return "connection_error"


def _code(value: Any) -> Any:
    """The envelope's code as an int when it is one (a short one: int() of a
    10 MB digit string raises), else as safe text."""
    if isinstance(value, bool):
        return safe_text(value, 64)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():  # 200.0
        return int(value)
    if isinstance(value, str) and len(value) <= 18 and value.strip().lstrip("-").isdigit():
        return int(value)
    return safe_text(value, 64)


class AtessClient:
    def __init__(self, api: ApiConfig, observer: RequestObserver | None = None,
                 session: requests.Session | None = None, connections: int = 10):
        self.api = api
        self.observer = observer
        self.calls = CallScope()
        if session is None:
            session = requests.Session()
            # One kept-alive connection per worker: fewer TLS handshakes with the API.
            # The adapter gives each call one deadline for connect, headers and body.
            adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=max(connections, 10))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session
        # Redirects are followed (requests drops Authorization on a cross-host one), few, and bounded.
        self.session.max_redirects = 5
        self.session.hooks["response"].append(redirect_hook(api.max_response_bytes))
        self.session.headers.update({
            "Authorization": api.credentials.authorization().reveal(),
            "Accept-Language": api.language,
            "Accept": "application/json",
            # Only what read_body inflates itself, under the byte cap.
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"atess-exporter/{__version__}",
        })
        if api.company_type:
            self.session.headers["CompanyType"] = api.company_type
        self._credentials_checked = time.monotonic()
        self._credentials_error = ""

    def reload_credentials(self, force: bool = False) -> bool:
        """Re-read `*_file` credentials that changed on disk (checked at most every
        CREDENTIALS_CHECK_SECONDS unless forced, as before backing off on a refusal);
        True when the next call sends new ones. Never logs a value."""
        now = time.monotonic()
        if not force and now < self._credentials_checked + CREDENTIALS_CHECK_SECONDS:
            return False
        self._credentials_checked = now
        try:
            changed = self.api.credentials.reload()
        except Exception as exc:     # ConfigError: the key and the file, never the value
            if str(exc) != self._credentials_error:
                self._credentials_error = str(exc)
                log.warning("cannot re-read a credential file; keeping the credentials in use",
                            extra={"fields": {"error": str(exc)}})
            return False
        self._credentials_error = ""
        if changed:
            remember_secrets(self.api.credentials.values())
            self.session.headers["Authorization"] = self.api.credentials.authorization().reveal()
            log.info("a credential file changed; the next calls use the new credentials")
        return changed

    def close(self) -> None:
        """End the calls in flight within moments (their sockets are shut) and refuse new ones."""
        self.calls.close()
        self.session.close()

    def get(self, path: str, params: dict[str, Any], expect: type | None = None) -> Any:
        """GET base_url+path and return the envelope's `data` (of type `expect`), or raise AtessError."""
        return self.call(path, params, expect).data

    def call(self, path: str, params: dict[str, Any], expect: type | None = None) -> Answer:
        """GET base_url+path: the whole successful envelope, or raise AtessError."""
        self.reload_credentials()
        started = time.monotonic()
        outcome = "success"
        try:
            answer = self._get(path, params)
            if expect is not None and not isinstance(answer.data, expect):
                raise MalformedResponseError(f"{path}: data is {type(answer.data).__name__}, expected {expect.__name__}")
            return answer
        except AtessError as exc:
            outcome = exc.outcome
            raise
        finally:
            if self.observer:
                self.observer(path, outcome, time.monotonic() - started)

    def _get(self, path: str, params: dict[str, Any]) -> Answer:
        status, body = self._fetch(path, params)
        text = decode_text(body)
        try:
            envelope = parse_json(text)
        except JsonRejected as exc:
            if text.lstrip()[:64].startswith("<"):
                raise MalformedResponseError(f"{path}: HTML page instead of JSON (HTTP {status})", "html_response") from None
            raise MalformedResponseError(f"{path}: response is not valid JSON (HTTP {status}): {exc}", "invalid_json") from None
        return self._envelope(path, envelope)

    def _fetch(self, path: str, params: dict[str, Any]) -> tuple[int, bytes]:
        """The HTTP status and whole body, within the call's deadline and byte cap."""
        timeout = self.api.timeout_seconds
        call = self.calls.begin(timeout)
        try:
            left = max(call.remaining(), 0.001)
            resp = self.session.get(self.api.base_url + path, params=params, timeout=(left, left), stream=True)
            with closing(resp):
                if resp.status_code in (401, 403):
                    raise AuthError(f"{path}: HTTP {resp.status_code}: credentials refused; check {self.api.credentials_at}.token or app_id/app_key")
                if resp.status_code == 429:
                    raise RateLimitError(f"{path}: HTTP 429: rate limited by the API")
                if resp.status_code >= 400:
                    raise HttpError(path, resp.status_code)
                return resp.status_code, read_body(resp, self.api.max_response_bytes, call)
        except TooLarge as exc:
            raise MalformedResponseError(f"{path}: answer too large: {exc}; the cap is atess.max_response_bytes", "too_large") from None
        except BadEncoding as exc:
            raise MalformedResponseError(f"{path}: {exc}") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if self.calls.closed:
                raise TransportError(f"{path}: call ended: the exporter is shutting down", "connection_error") from None
            outcome = "timeout" if isinstance(exc, DeadlinePassed) or call.remaining() <= 0 else _transport_outcome(exc)
            reason = {"timeout": f"no answer within {timeout:g}s",
                      "dns_error": "host name does not resolve"}.get(outcome, "connection failed")
            raise TransportError(f"{path}: {reason} ({type(exc).__name__})", outcome) from None
        finally:
            self.calls.end(call)

    def _envelope(self, path: str, body: Any) -> Answer:
        if not isinstance(body, dict) or "code" not in body:
            raise MalformedResponseError(f"{path}: response is not the {{code, data, msg}} envelope")
        code, msg = _code(body.get("code")), safe_text(body.get("msg") or "")
        if code in self.api.auth_error_codes:
            raise AuthError(f"{path}: API code {code}: {msg or 'no access'}; check {self.api.credentials_at}.token or app_id/app_key")
        if code in self.api.rate_limit_codes:
            raise RateLimitError(f"{path}: API code {code}: {msg or 'rate limited'}")
        if code not in self.api.success_codes:
            raise ApiError(path, code, msg)
        data = body.get("data")
        if data is None or data == {} or data == []:
            raise NoDataError(f"{path}: success code but no data", code)
        return Answer(code, msg, data)

    def latest(self, path: str, sn: str) -> dict:
        return self.get(path, {"deviceSn": sn}, expect=dict)
