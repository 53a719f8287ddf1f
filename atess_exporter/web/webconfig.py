"""The exporter-toolkit web configuration (`--web.config.file`): TLS and basic auth.

The file format is the one every official Prometheus exporter reads
(prometheus/exporter-toolkit, docs/web-configuration.md), so the same file
passes `promtool check web-config`. The reader is strict: an unknown key, a
wrong type, a missing or unreadable file, a bad bcrypt hash or a security
setting Python's `ssl` module cannot honour stops start-up with a
WebConfigError whose text is one line naming the key and the fix. Nothing is
silently ignored except `http2: true`, which only asks for a transport
(HTTP/2) this server does not speak; clients then negotiate HTTP/1.1.

Differences from exporter-toolkit, all refused at start-up rather than
approximated:
  * client_auth_type RequestClientCert and RequireAnyClientCert: Python's ssl
    module cannot ask for a client certificate without verifying it.
  * VerifyClientCertIfGiven / RequireAndVerifyClientCert need client_ca_file
    (or client_ca); Go would fall back to the system roots, which would let
    any publicly issued certificate in.
  * curve_preferences takes a single curve (Python's ssl sets one group).
  * cipher_suites takes the TLS 1.0-1.2 suites only; TLS 1.3 suites are not
    configurable (Go ignores them too).
  * tls_server_config options without a certificate (TLS off) are an error.
  * rate_limit is not implemented.
Relative paths are resolved against the web config file's directory, as the
toolkit does. The file is read once at start-up (no reload).
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import ssl
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import bcrypt

from atess_exporter.outside.yamlfile import YamlRefused, load_yaml_file

CERT_BEGIN = "-----BEGIN CERTIFICATE-----"
HTPASSWD_HINT = "generate one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
TLS_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
            "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
            "curve_preferences")
HTTP_KEYS = ("http2", "headers")

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
                     "RequireAndVerifyClientCert")
VERIFY_MODES = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

# Go's crypto/tls names (tls.CipherSuites(), the secure list the toolkit accepts) -> OpenSSL names.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",      # older Go spelling
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",  # older Go spelling
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}

# exporter-toolkit's allow-list of response headers, with the values it accepts (None: any).
HEADERS = {"Strict-Transport-Security": None, "X-Content-Type-Options": ("nosniff",),
           "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": None, "Content-Security-Policy": None}

# $2a$/$2b$/$2y$, two-digit cost, 22 characters of salt + 31 of hash in bcrypt's base64 alphabet.
BCRYPT_RE = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")

HANDSHAKE_TIMEOUT_SECONDS = 10.0


class WebConfigError(ValueError):
    """A web configuration problem, phrased for the user on one line: file, key, problem, fix."""


@dataclass(frozen=True)
class WebConfig:
    path: str
    ssl_context: ssl.SSLContext | None = None          # None: plain HTTP
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    users: dict[str, bytes] = field(default_factory=dict, repr=False)   # username -> bcrypt hash
    warnings: tuple[str, ...] = ()
    certificate: bytes | None = None    # DER of the server certificate (the healthcheck pins it)

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None


# --------------------------------------------------------------------------- reading


class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))

    def fail(self, key: str, problem: str) -> WebConfigError:
        text = f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}"
        return WebConfigError(" ".join(text.split()))

    def mapping(self, value: Any, key: str, known: tuple[str, ...]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            if not key:
                raise self.fail("", f"expected a mapping of {', '.join(known[:3])}, got {_kind(value)}")
            raise self.fail(key, f"expected a mapping, got {_kind(value)}")
        for k in value:
            if not isinstance(k, str) or k not in known:
                near = difflib.get_close_matches(str(k), known, n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"known keys: {', '.join(known)}"
                where = f"{key}.{k}" if key else str(k)
                raise self.fail(where, f"unknown key; {hint}")
        return value

    def string(self, section: dict, key: str, prefix: str) -> str:
        value = section.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(f"{prefix}.{key}", f"expected a string, got {_kind(value)}")
        return value

    def string_list(self, section: dict, key: str, prefix: str) -> list[str]:
        value = section.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{prefix}.{key}", "expected a list of strings")
        return value

    def boolean(self, section: dict, key: str, prefix: str, default: bool) -> bool:
        value = section.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{prefix}.{key}", f"expected true or false, got {_kind(value)}")
        return value

    def resolve(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.dir, path)

    def read_pem(self, key: str, path: str, marker: str, what: str, text: bool = False) -> str:
        """The PEM file's full path (its text when `text`), refused unless it holds `marker`."""
        full = self.resolve(path)
        try:
            with open(full, encoding="ascii", errors="replace") as fh:
                pem = fh.read()
        except OSError as exc:
            raise self.fail(key, f"cannot read {full}: {exc.strerror or exc}; fix the path or the file's permissions") from None
        if marker not in pem:
            raise self.fail(key, f"{full} holds no PEM {what} (no '{marker}' line)")
        return pem if text else full


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def load_web_config(path: str) -> WebConfig:
    """Read and validate the file; build the TLS context. Raises WebConfigError."""
    r = _Reader(path)
    try:
        data = load_yaml_file(path)
    except OSError as exc:
        raise r.fail("", f"cannot read the web config file: {exc.strerror or exc}; fix --web.config.file") from None
    except YamlRefused as exc:
        raise r.fail("", f"invalid YAML{exc.where}: {exc.problem}" if exc.problem else str(exc)) from None
    top = r.mapping(data, "", TOP_KEYS)
    if "rate_limit" in top:
        raise r.fail("rate_limit", "not supported by atess-exporter; remove it (rate-limit in a reverse proxy)")

    notes: list[str] = []
    headers, http_notes = _http(r, r.mapping(top.get("http_server_config"), "http_server_config", HTTP_KEYS))
    notes += http_notes
    users = _users(r, top.get("basic_auth_users"))
    tls = r.mapping(top.get("tls_server_config"), "tls_server_config", TLS_KEYS)
    context, client_auth, sans, certificate = _tls(r, tls, notes)
    if users and context is None:
        notes.append("basic_auth_users without tls_server_config: passwords cross the network in clear text")
    return WebConfig(path=path, ssl_context=context, client_auth_type=client_auth, client_allowed_sans=sans,
                     headers=headers, users=users, warnings=tuple(notes), certificate=certificate)


def _http(r: _Reader, http: dict) -> tuple[dict[str, str], list[str]]:
    notes = []
    if r.boolean(http, "http2", "http_server_config", default=False):
        notes.append("http_server_config.http2: HTTP/2 is not supported; clients negotiate HTTP/1.1 instead")
    raw = http.get("headers")
    if raw is None:
        return {}, notes
    if not isinstance(raw, dict):
        raise r.fail("http_server_config.headers", f"expected a mapping, got {_kind(raw)}")
    headers = {}
    for name, value in raw.items():
        key = f"http_server_config.headers.{name}"
        if name not in HEADERS:
            raise r.fail(key, f"this header can not be configured; allowed: {', '.join(HEADERS)}")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise r.fail(key, "expected a one-line string")
        allowed = HEADERS[name]
        if allowed and value not in allowed:
            raise r.fail(key, f"invalid value; expected one of: {', '.join(allowed)}")
        if value:
            headers[name] = value
    return headers, notes


def _users(r: _Reader, raw: Any) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise r.fail("basic_auth_users", f"expected a mapping of username to bcrypt hash, got {_kind(raw)}")
    users = {}
    for name, hashed in raw.items():
        name = str(name)
        key = f"basic_auth_users.{name}"
        if not name or ":" in name:
            raise r.fail(key, "a username can not be empty or contain ':'")
        m = BCRYPT_RE.match(hashed) if isinstance(hashed, str) else None
        if not m or not 4 <= int(m.group(1)) <= 31:
            # Never echo the value: it may be a plain-text password pasted by mistake.
            raise r.fail(key, f"not a bcrypt hash ($2y$/$2b$/$2a$, cost 04-31, 60 characters); {HTPASSWD_HINT}")
        users[name] = hashed.encode("ascii")
    return users


def _tls(r: _Reader, tls: dict, notes: list[str]) -> tuple[ssl.SSLContext | None, str, tuple[str, ...], bytes | None]:
    p = "tls_server_config"
    s = {k: r.string(tls, k, p) for k in ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
                                          "client_ca_file", "min_version", "max_version")}
    sans = tuple(r.string_list(tls, "client_allowed_sans", p))
    suites = r.string_list(tls, "cipher_suites", p)
    curves = r.string_list(tls, "curve_preferences", p)
    prefer_server = r.boolean(tls, "prefer_server_cipher_suites", p, default=True)

    enabled = any(s[k] for k in ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
                                 "client_ca_file"))
    if not enabled:
        if tls:
            first = next(iter(tls))
            raise r.fail(f"{p}.{first}", "TLS is off because no certificate is configured; add cert_file and "
                                         "key_file, or remove tls_server_config")
        return None, "NoClientCert", (), None

    for inline, filed in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if s[inline] and s[filed]:
            raise r.fail(f"{p}.{inline}", f"set either {inline} (inline PEM) or {filed}, not both")
    if not s["cert"] and not s["cert_file"]:
        raise r.fail(f"{p}.cert_file", "missing: TLS needs the server certificate (PEM)")
    if not s["key"] and not s["key_file"]:
        raise r.fail(f"{p}.key_file", "missing: TLS needs the server's private key (PEM)")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(r, ctx, s["min_version"], s["max_version"], notes)
    certificate = _load_cert(r, ctx, s)

    client_auth = s["client_auth_type"] or "NoClientCert"
    if client_auth == "RequireClientCert":   # the toolkit's backwards-compatible alias
        client_auth = "RequireAnyClientCert"
    if client_auth not in CLIENT_AUTH_TYPES:
        raise r.fail(f"{p}.client_auth_type",
                     f"unknown value {client_auth!r}; use one of {', '.join(CLIENT_AUTH_TYPES)}")
    if client_auth not in VERIFY_MODES:
        raise r.fail(f"{p}.client_auth_type", f"{client_auth} (an unverified client certificate) is not possible with "
                                              "Python's ssl module; use RequireAndVerifyClientCert with client_ca_file")
    has_ca = bool(s["client_ca"] or s["client_ca_file"])
    if client_auth == "NoClientCert" and has_ca:
        raise r.fail(f"{p}.client_ca_file", "client CAs are configured but client_auth_type is NoClientCert; "
                                            "set client_auth_type: RequireAndVerifyClientCert")
    if client_auth != "NoClientCert" and not has_ca:
        raise r.fail(f"{p}.client_ca_file", f"missing: client_auth_type {client_auth} needs the CA that signs "
                                            "client certificates")
    if has_ca:
        _load_client_ca(r, ctx, s)
    ctx.verify_mode = VERIFY_MODES[client_auth]
    if sans and client_auth != "RequireAndVerifyClientCert":
        raise r.fail(f"{p}.client_allowed_sans", "requires client_auth_type: RequireAndVerifyClientCert")

    _ciphers(r, ctx, suites)
    if curves:
        if len(curves) > 1:
            raise r.fail(f"{p}.curve_preferences", "Python's ssl module can set only one curve; list one of "
                                                   f"{', '.join(CURVES)}")
        if curves[0] not in CURVES:
            raise r.fail(f"{p}.curve_preferences", f"unknown curve {curves[0]!r}; use one of {', '.join(CURVES)}")
        try:
            ctx.set_ecdh_curve(CURVES[curves[0]])
        except (ValueError, ssl.SSLError) as exc:
            raise r.fail(f"{p}.curve_preferences", f"{curves[0]} is not available in this OpenSSL ({exc})") from None
    if prefer_server:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx, client_auth, sans, certificate


def _versions(r: _Reader, ctx: ssl.SSLContext, low: str, high: str, notes: list[str]) -> None:
    p = "tls_server_config"
    for key, value in (("min_version", low), ("max_version", high)):
        if value and value not in TLS_VERSIONS:
            raise r.fail(f"{p}.{key}", f"unknown TLS version {value!r}; use one of {', '.join(TLS_VERSIONS)}")
    low_v, high_v = TLS_VERSIONS[low or "TLS12"], TLS_VERSIONS[high or "TLS13"]
    if low_v > high_v:
        raise r.fail(f"{p}.min_version", f"{low or 'TLS12'} is above max_version {high or 'TLS13'}")
    with warnings.catch_warnings():          # TLSv1/TLSv1_1 are deprecated in Python's ssl module
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version, ctx.maximum_version = low_v, high_v
    if low_v < ssl.TLSVersion.TLSv1_2:
        notes.append(f"tls_server_config.min_version {low}: OpenSSL's security level may still refuse "
                     "TLS 1.0/1.1 handshakes")


def _memfd(r: _Reader, key: str, text: str, fds: list[int]) -> str:
    """A PEM held in an anonymous in-memory file (never on disk), for ssl.load_cert_chain."""
    if not hasattr(os, "memfd_create"):
        raise r.fail(key, f"inline PEM needs Linux (memfd_create); use {key.rsplit('.', 1)[1]}_file")
    try:
        fd = os.memfd_create("atess-" + key.rsplit(".", 1)[1])
        fds.append(fd)
        os.write(fd, text.encode())
    except OSError as exc:
        raise r.fail(key, f"cannot hold the inline PEM in memory ({exc}); use {key.rsplit('.', 1)[1]}_file") from None
    return f"/proc/self/fd/{fd}"


def _load_cert(r: _Reader, ctx: ssl.SSLContext, s: dict) -> bytes:
    """Load the server's certificate and key into ctx; the certificate's DER."""
    p = "tls_server_config"
    fds: list[int] = []
    try:
        if s["cert_file"]:
            cert_key, cert_path = f"{p}.cert_file", r.read_pem(f"{p}.cert_file", s["cert_file"],
                                                               "-----BEGIN CERTIFICATE-----", "certificate")
        else:
            cert_key = f"{p}.cert"
            if "-----BEGIN CERTIFICATE-----" not in s["cert"]:
                raise r.fail(cert_key, "holds no PEM certificate")
            cert_path = _memfd(r, cert_key, s["cert"], fds)
        key_key = f"{p}.key_file" if s["key_file"] else f"{p}.key"
        if s["key_file"]:
            key_path = r.read_pem(key_key, s["key_file"], "PRIVATE KEY-----", "private key")
        else:
            if "PRIVATE KEY-----" not in s["key"]:
                raise r.fail(key_key, "holds no PEM private key")
            key_path = _memfd(r, key_key, s["key"], fds)
        asked = []

        def no_passphrase():   # never let OpenSSL prompt on the terminal
            asked.append(True)
            return b""

        try:
            ctx.load_cert_chain(cert_path, key_path, password=no_passphrase)
        except ssl.SSLError as exc:
            if asked:
                raise r.fail(key_key, "the private key is encrypted and the format has no passphrase; "
                                              "decrypt it with: openssl pkey -in KEY -out KEY.plain") from None
            reason = exc.reason or str(exc)
            if reason == "KEY_VALUES_MISMATCH":
                raise r.fail(key_key, "the private key does not match the certificate") from None
            raise r.fail(cert_key, f"cannot load the certificate and key ({reason}); check both are PEM") from None
        except OSError as exc:     # the file vanished or changed between the checks above and now
            raise r.fail(cert_key, f"cannot load the certificate and key ({exc.strerror or exc})") from None
        return _first_certificate(s["cert"] or r.read_pem(cert_key, s["cert_file"], CERT_BEGIN, "certificate", text=True))
    finally:
        for fd in fds:
            os.close(fd)


def _first_certificate(pem: str) -> bytes:
    end = "-----END CERTIFICATE-----"
    start = pem.index(CERT_BEGIN)
    return ssl.PEM_cert_to_DER_cert(pem[start:pem.index(end, start) + len(end)])


def _load_client_ca(r: _Reader, ctx: ssl.SSLContext, s: dict) -> None:
    p = "tls_server_config"
    try:
        if s["client_ca_file"]:
            key = f"{p}.client_ca_file"
            ctx.load_verify_locations(cafile=r.read_pem(key, s["client_ca_file"], "-----BEGIN CERTIFICATE-----",
                                                        "CA certificate"))
        else:
            key = f"{p}.client_ca"
            if "-----BEGIN CERTIFICATE-----" not in s["client_ca"]:
                raise r.fail(key, "holds no PEM CA certificate")
            ctx.load_verify_locations(cadata=s["client_ca"])
    except ssl.SSLError as exc:
        raise r.fail(key, f"cannot load the CA certificates ({exc.reason or exc})") from None


def _ciphers(r: _Reader, ctx: ssl.SSLContext, suites: list[str]) -> None:
    if not suites:
        return
    key = "tls_server_config.cipher_suites"
    names = []
    for suite in suites:
        if suite in TLS13_SUITES:
            raise r.fail(key, f"{suite} is a TLS 1.3 suite; TLS 1.3 suites are not configurable (Go ignores them "
                              "too), remove it")
        if suite not in CIPHER_SUITES:
            near = difflib.get_close_matches(suite, CIPHER_SUITES, n=1)
            raise r.fail(key, f"unknown cipher suite {suite!r}" + (f"; did you mean {near[0]}?" if near else ""))
        names.append(CIPHER_SUITES[suite])
    try:
        ctx.set_ciphers(":".join(names))
    except ssl.SSLError:
        raise r.fail(key, "none of these suites is available in this OpenSSL") from None


# --------------------------------------------------------------------------- serving


def check_client_sans(config: WebConfig, peer_cert: dict | None) -> bool:
    """client_allowed_sans: does the verified client certificate carry one of the allowed SANs?"""
    if not config.client_allowed_sans:
        return True
    allowed = {_normal_san(v) for v in config.client_allowed_sans}
    for kind, value in (peer_cert or {}).get("subjectAltName", ()):
        if kind in ("DNS", "email", "URI", "IP Address") and _normal_san(value) in allowed:
            return True
    return False


def _normal_san(value: str) -> str:
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


BUSY = None                 # BasicAuth.check: too many checks running, refuse cheaply for now


class BasicAuth:
    """basic_auth_users checks, cached like exporter-toolkit's, bounded under a flood.

    bcrypt costs ~70 ms per check at cost 10, by design, so unauthenticated
    work is what a password flood spends. Here:

    * at most ``max_checks`` bcrypt checks run at once; a request that would
      need one more gets BUSY at once (the server answers 503, costing
      nothing), instead of queueing and holding its connection;
    * a verified (user, hash, password) is kept in an LRU of its own, keyed by
      an HMAC under a per-process random key (nothing in memory an attacker
      could crack offline); wrong passwords go to another, so no number of
      wrong guesses evicts a scraper's verified credentials: a client with
      valid cached credentials is answered without bcrypt under any flood;
    * the same credentials arriving together wait for the one check already
      running (fifty scrapers cost one bcrypt, and no slot each);
    * unknown users are checked against a dummy hash of the users' own cost,
      so timing does not reveal which usernames exist.
    """

    CACHE_SIZE = 256
    MAX_CHECKS = 2          # concurrent bcrypt checks (--web.max-auth-checks)
    REALM = "atess-exporter"
    # bcrypt of a random throw-away password, cost 10 (the htpasswd default).
    DUMMY_HASH = b"$2b$10$nvo34nblCHfn0.Qlk9BJme7W5hfbeBAdKOSPNbylUp4WnfncdHS.S"

    def __init__(self, users: dict[str, bytes], max_checks: int = MAX_CHECKS):
        self.users = [(name.encode(), hashed) for name, hashed in users.items()]
        self.dummy_hash = self._dummy_hash(self.users)
        self._key = secrets.token_bytes(32)
        self._good: OrderedDict[bytes, bool] = OrderedDict()
        self._bad: OrderedDict[bytes, bool] = OrderedDict()
        self._lock = threading.Lock()
        self._running: dict[bytes, threading.Event] = {}
        self._slots = max(1, max_checks)
        self.max_checks = self._slots
        self.bcrypt_checks = 0          # how many times bcrypt actually ran (tests, debugging)
        self.refused_busy = 0           # requests answered BUSY

    @classmethod
    def _dummy_hash(cls, users: list[tuple[bytes, bytes]]) -> bytes:
        """A dummy hash of the cost most users have (the highest among equals)."""
        costs = [int(hashed[4:6]) for _, hashed in users if hashed[4:6].isdigit()]
        cost = max(costs, key=lambda c: (costs.count(c), c)) if costs else 10
        if cost == 10:
            return cls.DUMMY_HASH
        return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))

    @property
    def challenge(self) -> str:
        return f'Basic realm="{self.REALM}", charset="UTF-8"'

    def check(self, authorization: str | None) -> bool | None:
        """True (let in), False (401) or BUSY (None: too many checks running, 503)."""
        credentials = self._parse(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed, known = self.dummy_hash, False
        for name, candidate in self.users:      # no early exit: same work whichever user matches
            if hmac.compare_digest(name, user):
                hashed, known = candidate, True
        key = hmac.new(self._key, b"\0".join((user, hashed, password)), hashlib.sha256).digest()
        with self._lock:
            ok = self._cached(key)
            if ok is None:
                running = self._running.get(key)
                if running is None:
                    if not self._slots:
                        self.refused_busy += 1
                        return BUSY
                    self._slots -= 1
                    running = self._running[key] = threading.Event()
                    mine = True
                else:
                    mine = False
        if ok is not None:
            return ok and known
        assert running is not None   # set above whenever ok is None
        if not mine:                            # the same credentials are being checked: share the outcome
            running.wait(60)
            with self._lock:
                ok = self._cached(key)
            return BUSY if ok is None else ok and known
        try:
            self.bcrypt_checks += 1
            try:
                # bcrypt reads only the first 72 bytes (as Go and htpasswd do); bcrypt>=5 refuses more.
                ok = bcrypt.checkpw(password[:72], hashed)
            except ValueError:
                ok = False
        finally:
            with self._lock:
                if ok is not None:
                    cache = self._good if ok else self._bad
                    cache[key] = ok
                    while len(cache) > self.CACHE_SIZE:
                        cache.popitem(last=False)
                del self._running[key]
                self._slots += 1
            running.set()
        return ok and known

    def _cached(self, key: bytes) -> bool | None:
        """Under self._lock."""
        for cache in (self._good, self._bad):
            ok = cache.get(key)
            if ok is not None:
                cache.move_to_end(key)
                return ok
        return None

    @staticmethod
    def _parse(authorization: str | None) -> tuple[bytes, bytes] | None:
        if not authorization:
            return None
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            return None
        user, sep, password = decoded.partition(b":")
        return (user, password) if sep else None
