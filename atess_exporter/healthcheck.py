"""`atess-exporter healthcheck`: is the exporter answering? The container's HEALTHCHECK.

It asks GET /healthz at the exporter's own listen address, with the exporter's
own web config, so it follows the exporter wherever `--web.listen-address`,
`--web.config.file` or their ATESS_* variables put it. The settings come, in
this order, from:
  1. the flags given to `healthcheck` itself;
  2. the running exporter's command line: PID 1 when that is the exporter (a
     container), else the one atess-exporter process of this user, parsed by
     the exporter's own parser with that process's ATESS_* variables;
  3. this process's ATESS_* variables and the defaults.

TLS (the web config has a certificate): the connection goes to loopback, where
the server's certificate names no host we dial, so instead of a hostname check
the certificate the server presents must be the web config's own (pinned);
anything else is unhealthy and no password is sent.

Basic auth: the web config holds only bcrypt hashes. With
ATESS_HEALTHCHECK_USERNAME and ATESS_HEALTHCHECK_PASSWORD_FILE (or
ATESS_HEALTHCHECK_PASSWORD) the check logs in and needs 200. Without them, the
exporter's 401 with its Basic challenge counts as healthy: /healthz says only
that the HTTP server answers, and a 401 from the same server says as much.
A client certificate (client_auth_type RequireAndVerifyClientCert) cannot be
presented; such a setup needs an HTTP check from outside instead.

Exit 0 when healthy, 1 when not; one line says which and why.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import ssl
import sys
from typing import Mapping, cast


MAX_CMDLINE_BYTES = 64 * 1024
MAX_BODY_BYTES = 4096


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atess-exporter healthcheck",
        description="Ask the running exporter's /healthz, over TLS and basic auth when its web config says so. "
                    "Without flags, the listen address and web config are the running exporter's own "
                    "(read from its command line and ATESS_* variables). Exit 0 healthy, 1 not.",
        epilog="Basic auth: set ATESS_HEALTHCHECK_USERNAME and ATESS_HEALTHCHECK_PASSWORD_FILE (or "
               "ATESS_HEALTHCHECK_PASSWORD) to log in; without them the exporter's 401 challenge counts as alive.")
    p.add_argument("--web.listen-address", dest="listen_address", default=None, metavar="[HOST]:PORT",
                   help="the exporter's listen address (default: the running exporter's)")
    p.add_argument("--web.config.file", dest="web_config_file", default=None, metavar="PATH",
                   help="the exporter's web config (default: the running exporter's)")
    p.add_argument("--timeout", type=float, default=4.0, metavar="SECONDS", help="give up after (default: %(default)g)")
    return p


# ---------------------------------------------------------------- the exporter's own settings

def exporter_args(argv: list[str]) -> list[str] | None:
    """The exporter's flags from a process's argv, or None when it is no exporter server."""
    from atess_exporter.cli import SUBCOMMANDS

    for i, arg in enumerate(argv[:3]):
        if os.path.basename(arg) in ("atess-exporter", "exporter.py"):
            rest = argv[i + 1:]
        elif arg == "-m" and argv[i + 1:i + 2] == ["atess_exporter"]:
            rest = argv[i + 2:]
        else:
            continue
        return None if rest[:1] and rest[0] in SUBCOMMANDS else rest
    return None


def _read(path: str) -> list[str]:
    with open(path, "rb") as fh:
        raw = fh.read(MAX_CMDLINE_BYTES)
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def find_exporter(proc: str = "/proc") -> tuple[int, list[str], dict[str, str]] | None:
    """(pid, flags, ATESS_* environment) of the exporter: PID 1 if it is one, else the only one of this user."""
    def inspect(pid: int) -> tuple[int, list[str], dict[str, str]] | None:
        try:
            args = exporter_args(_read(f"{proc}/{pid}/cmdline"))
        except OSError:
            return None
        if args is None:
            return None
        try:
            env = dict(item.split("=", 1) for item in _read(f"{proc}/{pid}/environ") if "=" in item)
            env = {k: v for k, v in env.items() if k.startswith("ATESS_")}
        except OSError:     # another user's process: ours is the same container's environment
            env = {k: v for k, v in os.environ.items() if k.startswith("ATESS_")}
        return pid, args, env

    first = inspect(1)
    if first is not None:
        return first
    found = []
    try:
        pids = [int(name) for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return None
    for pid in sorted(pids):
        if pid in (1, os.getpid()):
            continue
        try:
            if os.stat(f"{proc}/{pid}").st_uid != os.getuid():
                continue
        except OSError:
            continue
        hit = inspect(pid)
        if hit is not None:
            found.append(hit)
    return found[0] if len(found) == 1 else None


def settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
             proc: str = "/proc") -> tuple[str, str | None, str]:
    """(listen address, web config file, where they came from)."""
    from atess_exporter.cli import build_parser as exporter_parser

    environ = os.environ if environ is None else environ
    source = "ATESS_* environment and defaults"
    given = args.listen_address is not None and args.web_config_file is not None
    exporter = None if given else find_exporter(proc)
    parser_env: Mapping[str, str] = environ
    flags: list[str] = []
    if exporter is not None:
        pid, flags, parser_env = exporter
        source = f"the command line of exporter process {pid}"
    own, _ = exporter_parser(parser_env).parse_known_args(flags)
    listen = args.listen_address if args.listen_address is not None else own.listen_address
    web = args.web_config_file if args.web_config_file is not None else own.web_config_file
    if args.listen_address is not None or args.web_config_file is not None:
        source = "healthcheck flags" if exporter is None else f"healthcheck flags and {source}"
    return listen, web or None, source


# ---------------------------------------------------------------- the check

class Unhealthy(Exception):
    pass


def _credentials(environ: Mapping[str, str]) -> tuple[str, str] | None:
    user = environ.get("ATESS_HEALTHCHECK_USERNAME")
    if not user:
        return None
    path = environ.get("ATESS_HEALTHCHECK_PASSWORD_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return user, fh.read().rstrip("\r\n")
        except OSError as exc:
            raise Unhealthy(f"cannot read ATESS_HEALTHCHECK_PASSWORD_FILE {path}: {exc.strerror or exc}") from None
    password = environ.get("ATESS_HEALTHCHECK_PASSWORD")
    if password is None:
        raise Unhealthy("ATESS_HEALTHCHECK_USERNAME is set without ATESS_HEALTHCHECK_PASSWORD_FILE or _PASSWORD")
    return user, password


def check(listen_address: str, web_config_file: str | None, timeout: float,
          environ: Mapping[str, str] | None = None) -> str:
    """The verdict as one line; raises Unhealthy."""
    from atess_exporter.web.server import parse_listen_address
    from atess_exporter.web.webconfig import WebConfigError, load_web_config

    environ = os.environ if environ is None else environ
    try:
        host, port = parse_listen_address(listen_address)
    except ValueError as exc:
        raise Unhealthy(str(exc)) from None
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    tls = False
    users = False
    pinned: bytes | None = None
    if web_config_file:
        try:
            web = load_web_config(web_config_file)
        except WebConfigError as exc:
            raise Unhealthy(f"web config error: {exc}") from None
        tls, users, pinned = web.tls, bool(web.users), web.certificate
    credentials = _credentials(environ) if users else None
    scheme = "https" if tls else "http"
    url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}/healthz"

    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE      # verified below: the very certificate of the web config
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.connect()
        if tls:
            presented = cast(ssl.SSLSocket, conn.sock).getpeercert(binary_form=True)
            if presented != pinned:
                raise Unhealthy(f"{url}: the server's certificate is not the one in {web_config_file}")
        headers = {"Connection": "close"}
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        conn.request("GET", "/healthz", headers=headers)
        resp = conn.getresponse()
        body = resp.read(MAX_BODY_BYTES)
    except (OSError, http.client.HTTPException) as exc:   # ssl.SSLError and timeouts are OSErrors
        raise Unhealthy(f"{url}: {exc.__class__.__name__}: {exc}") from None
    finally:
        conn.close()
    if resp.status == 200 and body.strip() == b"ok":
        return f"healthy: {url} answered 200"
    if (resp.status == 401 and users and credentials is None
            and (resp.getheader("WWW-Authenticate") or "").startswith("Basic")):
        return (f"healthy: {url} answered 401 with its basic-auth challenge "
                "(set ATESS_HEALTHCHECK_USERNAME and ATESS_HEALTHCHECK_PASSWORD_FILE to log in)")
    raise Unhealthy(f"{url} answered {resp.status} {resp.reason}")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        listen, web, source = settings(args)
        verdict = check(listen, web, args.timeout)
    except Unhealthy as exc:
        print(f"atess-exporter healthcheck: unhealthy: {exc}", file=sys.stderr)
        return 1
    except SystemExit:      # the exporter's command line did not parse (argparse said why)
        print("atess-exporter healthcheck: unhealthy: cannot read the exporter's flags", file=sys.stderr)
        return 1
    print(f"atess-exporter healthcheck: {verdict} (settings from {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
