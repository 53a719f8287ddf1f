"""Log set-up: one logfmt or JSON line per event on stderr, with credentials scrubbed.

Structured fields travel in `extra={"fields": {...}}`. The redaction filter
is a second line of defence: no code path logs a credential on purpose, but a
credential that slipped into a message (a URL, an exception) is masked anyway.

Every event is exactly one line in the chosen format, whatever it carries:
an exception becomes `exc_type` and `exc` fields (its stack, as one escaped
field, only at debug level); uncaught exceptions in any thread are logged the
same way instead of Python's raw traceback; text from outside (the API's
messages) has its control characters escaped and is truncated; JSON keeps
numbers and booleans as JSON numbers and booleans.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
import traceback
from typing import Any, Iterable

from atess_exporter.outside.text import Redactor, safe_text

MAX_VALUE_CHARS = 2048     # one field; the API's own text is already cut to 512 by the client
MAX_STACK_CHARS = 16384


def _value(value: Any) -> Any:
    """A field value as the formatters take it: bool/int/finite float kept, the rest text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10 ** 18 else f"{value:.6e}"
    if isinstance(value, float):
        return value if math.isfinite(value) else ("NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf"))
    return safe_text(value, MAX_VALUE_CHARS)   # printable, valid Unicode, bounded; a hostile __str__ too


_tag = threading.local()


def tag_thread(account: str) -> None:
    """Tag this thread's log lines with account=<name> ("": none). Each account's poller
    tags its threads, so with several accounts every line says whose it is."""
    _tag.account = account


def thread_tag() -> str:
    """This thread's tag, for the threads it starts (a pool's initializer=tag_thread, initargs=(thread_tag(),))."""
    return getattr(_tag, "account", "")


class RedactFilter(logging.Filter):
    """Prepares every record once: message, exception and fields made one safe,
    scrubbed line's worth of text (the Redactor's rule)."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.scrub = Redactor(secrets).scrub

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_atess_done", False):  # a second handler: already prepared
            return True
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad %-format must not lose the event
            message = f"{record.msg!s} (unformattable arguments: {type(exc).__name__})"
        record.msg = self.scrub(message)
        record.args = ()
        if record.exc_info and record.exc_info[0] is not None:
            etype, evalue, tb = record.exc_info
            record.exc_type_name = etype.__name__
            record.exc_message = self.scrub(_safe_str(evalue))
            record.exc_stack = self.scrub("".join(traceback.format_exception(etype, evalue, tb)))
        elif record.exc_text:
            record.exc_type_name, record.exc_message, record.exc_stack = "Exception", "", self.scrub(record.exc_text)
        record.exc_info, record.exc_text = None, None
        record.stack_info = None
        fields = getattr(record, "fields", None)
        if fields:
            # numbers and booleans stay typed; anything else is scrubbed text
            record.fields = {str(k): self._field(v) for k, v in fields.items()}
        record.account = thread_tag()
        record._atess_done = True
        return True

    def _field(self, value: Any) -> Any:
        """Numbers and booleans stay typed, unless one spells a (numeric) secret."""
        if value is None or isinstance(value, bool):
            return value
        text = _safe_str(value)
        scrubbed = self.scrub(text)
        if isinstance(value, (int, float)) and scrubbed == text:
            return value
        return scrubbed


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


class _Formatter(logging.Formatter):
    def __init__(self, with_stack: bool = False):
        super().__init__()
        self.with_stack = with_stack

    def fields(self, record: logging.LogRecord) -> dict:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.msg if isinstance(record.msg, str) else _safe_str(record.msg),
        }
        account = getattr(record, "account", "")
        if account:
            out["account"] = account
        for key, value in (getattr(record, "fields", None) or {}).items():
            if key not in out:
                out[key] = value
        exc_type, stack = getattr(record, "exc_type_name", None), getattr(record, "exc_stack", None)
        if exc_type:
            out["exc_type"] = exc_type
            out["exc"] = getattr(record, "exc_message", "")
        out = {k: _value(v) for k, v in out.items()}
        if self.with_stack and stack:
            out["stack"] = safe_text(stack, MAX_STACK_CHARS)
        return out


class LogfmtFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in self.fields(record).items():
            if value is None:
                text = ""
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            if not text or any(c in text for c in ' ="\\'):
                text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
            parts.append(f"{_key(key)}={text}")
        return " ".join(parts)


def _key(key: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in key[:64])
    return cleaned or "_"


class JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), default=str)


class _OneLineHandler(logging.StreamHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        # logging's default prints a traceback to stderr: one line instead.
        try:
            etype = sys.exc_info()[0]
            self.stream.write(f'level=error logger=atess_exporter.outside.logs msg="a log event could not be written" '
                              f'exc_type={getattr(etype, "__name__", "unknown")}\n')
        except Exception:
            pass


def _install_hooks() -> None:
    """Uncaught exceptions (main or any thread) become one log line, not a raw traceback."""
    log = logging.getLogger("atess_exporter")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        log.error("uncaught exception in a thread", exc_info=args.exc_value,
                  extra={"fields": {"thread": args.thread.name if args.thread else ""}})

    def main_hook(etype, value, tb) -> None:
        if issubclass(etype, KeyboardInterrupt):
            sys.__excepthook__(etype, value, tb)
            return
        log.critical("uncaught exception", exc_info=(etype, value, tb))

    threading.excepthook = thread_hook
    sys.excepthook = main_hook


def setup_logging(level: str = "info", fmt: str = "logfmt", secrets: Iterable[str] = (), stream=None) -> logging.Handler:
    handler = _OneLineHandler(stream)
    debug = level.lower() == "debug"
    handler.setFormatter(JsonFormatter(debug) if fmt == "json" else LogfmtFormatter(debug))
    handler.addFilter(RedactFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # urllib3 logs full URLs at debug; they carry no secret but flood the log.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
    _install_hooks()
    return handler
