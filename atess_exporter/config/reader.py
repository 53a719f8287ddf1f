"""One mapping of the YAML file, read key by key: each value checked for its type
and range where it is read, and any key nobody asked for refused with a guess."""

from __future__ import annotations

import builtins
import difflib
import math
from typing import Any

from atess_exporter.config.input import (NUMBER_MAX, ConfigError, check_header_text, expand_env, kind_of, quoted, read_secret_file)
from atess_exporter.config.model import Secret


REQUIRED = object()  # "no default": None is a real default for many keys


class Section:
    """Reads one mapping of the YAML file and refuses keys nobody asked for."""

    def __init__(self, data: Any, path: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'top level'}: must be a mapping of keys, got {kind_of(data)}")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def misspelt(self, *names: str) -> None:
        """Before a required key is reported missing: a key nobody asked for that looks like
        it (`tokn:` for token) is the real mistake, so say that."""
        for key in sorted(set(self.data) - self.seen - set(names), key=str):
            close = difflib.get_close_matches(str(key)[:100], names, n=1)
            if close:
                raise ConfigError(f"{self.key(str(key)[:100])}: unknown key; did you mean {self.key(close[0])!r}?")

    def raw(self, name: str, default: Any = REQUIRED, hint: str = "") -> Any:
        self.seen.add(name)
        if name not in self.data or self.data[name] is None:
            if default is REQUIRED:
                self.misspelt(name)
                raise ConfigError(f"{self.key(name)}: missing; {hint or 'add it'}")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = REQUIRED, hint: str = "") -> Any:
        value = self.raw(name, default, hint)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{self.key(name)}: must be a string, got {kind_of(value)}")
        return expand_env(str(value), self.key(name))

    def number(self, name: builtins.str, default: Any, minimum: float, hint: builtins.str = "", integer: builtins.bool = False,
               maximum: float = NUMBER_MAX) -> Any:
        value = self.raw(name, default)
        if isinstance(value, str):
            value = expand_env(value, self.key(name))
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{self.key(name)}: must be a number, got {quoted(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self.key(name)}: must be a number, got {kind_of(value)}")
        if isinstance(value, int) and abs(value) > NUMBER_MAX:
            value = float("inf") if value > 0 else float("-inf")  # a huge integer: out of range, said simply
        if not math.isfinite(value):
            raise ConfigError(f"{self.key(name)}: {value} is not a finite number; set it between {minimum:g} and {maximum:g}")
        if integer and value != int(value):
            raise ConfigError(f"{self.key(name)}: must be a whole number, got {value}")
        if value < minimum:
            raise ConfigError(f"{self.key(name)}: {value:g} is below the minimum {minimum:g}; {hint or f'set it to {minimum:g} or more'}")
        if value > maximum:
            raise ConfigError(f"{self.key(name)}: {value:g} is above the maximum {maximum:g}; set it to {maximum:g} or less")
        return int(value) if integer else float(value)

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: must be true or false, got {quoted(value)}")
        return value

    def str_list(self, name: builtins.str) -> tuple[builtins.str, ...]:
        value = self.raw(name, [])
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{self.key(name)}: must be a list of strings, e.g. [YKD0F1022A]")
        return tuple(expand_env(str(v), self.key(name)) for v in value)

    def int_list(self, name: builtins.str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self.raw(name, default)
        if value is default:
            return default
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{self.key(name)}: must be a list of integers, e.g. [{', '.join(map(str, default))}]")
        return tuple(value)

    def secret(self, name: builtins.str) -> Secret | None:
        """A credential given inline (`${ENV}` allowed) or as `<name>_file`."""
        inline = self.str(name, None)
        path = self.str(f"{name}_file", None)
        if inline is not None and path is not None:
            raise ConfigError(f"{self.key(name)}: given both inline and as {name}_file; keep one")
        key = self.key(name)
        if path is not None:
            key = self.key(name + "_file")

            def source() -> tuple[object, str]:
                seen, text = read_secret_file(path, key, name, with_identity=True)
                if not text:
                    raise ConfigError(f"{key}: {quoted(path)} is empty; put the {name} in it")
                check_header_text(text, key, f"the {name}", secret=True)
                return seen, text

            seen, inline = source()
            return Secret(inline, source, seen)
        if inline is not None and not inline.strip():
            raise ConfigError(f"{self.key(name)}: is empty; set the credential or remove the key")
        if inline is not None:
            check_header_text(inline, key, f"the {name}", secret=True)
        return Secret(inline) if inline is not None else None

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen, key=str)
        if unknown:
            name = str(unknown[0])[:100]
            close = difflib.get_close_matches(name, sorted(self.seen), n=1)
            fix = f"did you mean {self.key(close[0])!r}?" if close else f"allowed keys here: {', '.join(sorted(self.seen))}"
            raise ConfigError(f"{self.key(name)}: unknown key; {fix}")
