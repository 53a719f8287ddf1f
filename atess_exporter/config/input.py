"""What enters through the configuration, checked where it enters.

Error texts are one bounded line (a value quoted from the file is cut short);
`${VAR}` references expand as in shells; secrets read from files must be small
regular text files; values sent in HTTP headers must be printable latin-1; the
state file's directory must take a new file. The config package uses these for every key.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from typing import Any

from atess_exporter.outside.text import CONTROL


class ConfigError(Exception):
    """A configuration problem, phrased for the user: key, problem, fix.

    Always one line of bounded length, whatever value it quotes."""

    MAX_CHARS = 600

    def __init__(self, message: str):
        text = " ".join(str(message).splitlines())
        if len(text) > self.MAX_CHARS:
            text = text[: self.MAX_CHARS] + "...(truncated)"
        super().__init__(text)


def quoted(value: Any, limit: int = 60) -> str:
    """repr() of a value from the file, short enough for a one-line error."""
    text = value if isinstance(value, str) else kind_of(value)
    text = repr(text[:limit]) + ("..." if len(text) > limit else "")
    return text


# ${VAR}, ${VAR:-default} (unset or empty) and ${VAR-default} (unset), as in POSIX shells
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")
# Upper bounds for numbers that have no natural one: finite, and far beyond any sane setting.
NUMBER_MAX = 1e9


def kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)


def expand_env(text: str, key: str) -> str:
    def sub(match: re.Match) -> str:
        name, op, default = match.groups()
        value = os.environ.get(name)
        if op == ":-" and not value:
            return default
        if op == "-" and value is None:
            return default
        if value is None:
            raise ConfigError(f"{key}: environment variable {name} is not set; export it, "
                              f"or give a default as ${{{name}:-value}}")
        return value

    return _ENV_REF.sub(sub, text)


SECRET_FILE_MAX_BYTES = 64 * 1024


def read_secret_file(path: str, key: str, name: str, with_identity: bool = False) -> Any:
    """A small regular UTF-8 text file's content, without the newline editors add;
    with_identity: (the file's identity, content), the identity to notice a change."""
    fix = f"point it at a small text file holding only the {name}"
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{key}: {quoted(path)} is not a regular file; {fix}")
            data = fh.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {quoted(path)} ({exc.strerror}); {fix}") from None
    if len(data) > SECRET_FILE_MAX_BYTES:
        raise ConfigError(f"{key}: {quoted(path)} is larger than {SECRET_FILE_MAX_BYTES // 1024} KiB; {fix}")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {quoted(path)} is not UTF-8 text; {fix}") from None
    return ((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns), text) if with_identity else text


def check_header_text(value: str, key: str, what: str, secret: bool = False) -> None:
    """A value sent in an HTTP header: no control characters, latin-1 only.
    A secret's text is never quoted, only the position of the problem."""
    control = CONTROL.search(value)
    if control is not None:
        i, ch = control.start(), control.group()
        shown = "" if secret else f" in {quoted(value)}"
        raise ConfigError(f"{key}: {what} contains a control character (U+{ord(ch):04X} at position {i + 1}){shown}; "
                          "remove it (a stray newline or carriage return?)")
    for i, ch in enumerate(value):
        if ord(ch) > 0xFF:
            shown = "" if secret else f" in {quoted(value)}"
            raise ConfigError(f"{key}: {what} contains a character HTTP headers cannot carry (position {i + 1}){shown}; "
                              "use only ASCII or latin-1 characters")


def check_state_file(state_file: str | None) -> None:
    """The state file can be replaced: a temporary file beside it is created and removed,
    as every save does. Refused here, at start, rather than never saved."""
    if not state_file:
        return
    where = os.path.dirname(os.path.abspath(state_file))
    if os.path.isdir(state_file):
        raise ConfigError(f"state_file: {quoted(state_file)} is a directory; give a file path, e.g. {os.path.join(state_file, 'atess-state.json')!r}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".atess-state-check-", dir=where)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"state_file: cannot write beside {quoted(state_file, 120)} ({exc.strerror}); "
                          "point it at a writable directory, or set state_file: '' to keep no state") from None
