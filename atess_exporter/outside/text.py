"""Text from outside made safe, for every place it goes: labels, log lines, HTML, files.

The one module for hostile text (API answers, config values, error texts):

- JSON nesting is bounded (deep input was a RecursionError in the middle of a
  poll, counted as a success).
- Every string of a parsed answer, keys included, is valid Unicode that encodes
  to UTF-8: a lone surrogate (`"\\ud800"`) becomes U+FFFD, so no label value or
  metric name downstream can fail to encode and take /metrics down with it.
- Text quoted into an exception or a log line (the API's `code` and `msg`) is
  escaped (no control character reaches a terminal) and truncated.
- A label value is cut to MAX_LABEL_TEXT printable characters (label_text) and
  written escaped (escape_label); a serial number is letters, digits and . _ -
  (valid_sn), the same rule for the config and the API's lists.
- Configured credentials are masked wherever text leaves the process (log
  lines, the landing page), and identifiers in a saved recording are replaced
  by their hashes: one Redactor, one rule (longest text first, 4 characters
  at least). HTML gets html.escape on top of that.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any, Iterable, Mapping

REDACTED = "<redacted>"
MAX_DEPTH = 64
MAX_QUOTED = 512

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0/C1 controls, DEL, the line/paragraph separators some terminals and log shippers break on,
# and the invisible format characters that reorder or hide text (bidi embeddings, overrides
# and isolates, the Arabic letter mark, zero-width spaces and joiners, word joiner and
# invisible operators, BOM, soft hyphen, tag characters): with them a plant name in a label
# or on the landing page can be made to read backwards or to look like another.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
                     "\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]")


class JsonRejected(ValueError):
    """Not JSON we accept: invalid, or nested too deep."""


def json_depth(value: Any) -> int:
    """The deepest nesting of lists/dicts in a parsed value (iterative: no recursion limit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return deepest


def decode_text(body: bytes) -> str:
    """Bytes to text the way JSON allows (UTF-8/16/32), invalid sequences replaced."""
    try:
        encoding = json.detect_encoding(body)
    except Exception:  # pragma: no cover - detect_encoding does not raise on bytes
        encoding = "utf-8"
    return body.decode(encoding, errors="replace").lstrip("\ufeff")


def parse_json(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing nesting deeper than max_depth; strings made valid Unicode.

    The C decoder guards its own recursion (RecursionError near 1,000 levels,
    raised cleanly); below that the parsed value's depth is measured without
    recursion. Scanning the text first would need a tokenizer: a regex over
    JSON strings is quadratic on input such as '"\\"\\"\\"...'.
    """
    try:
        data = json.loads(text)
    except RecursionError:
        raise JsonRejected(f"nested too deep (at most {max_depth} levels)") from None
    except ValueError as exc:  # also: integers longer than Python converts
        raise JsonRejected(f"not valid JSON ({safe_text(exc, 120)})") from None
    depth = json_depth(data)
    if depth > max_depth:
        raise JsonRejected(f"nested {depth} levels deep (at most {max_depth})")
    if _SURROGATE_ESCAPE.search(text):
        data = clean_strings(data)
    return data


def clean_string(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def clean_strings(value: Any) -> Any:
    """A copy of a parsed JSON value whose every string encodes to UTF-8.

    A key that collides with another once cleaned keeps the first value seen.
    Depth is bounded by parse_json, so recursion is too.
    """
    if isinstance(value, str):
        return clean_string(value)
    if isinstance(value, list):
        return [clean_strings(v) for v in value]
    if isinstance(value, dict):
        out: dict = {}
        for key, item in value.items():
            key = clean_string(key)
            if key not in out:
                out[key] = clean_strings(item)
        return out
    return value


def safe_text(value: Any, limit: int = MAX_QUOTED) -> str:
    """`value` as one short, printable line: controls escaped, truncated to `limit` characters."""
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:  # a hostile __str__ must not break the error path
            value = f"<{type(value).__name__}>"
    cut = len(value) > limit
    value = value[: limit * 4]  # bound the work on a huge value before escaping
    text = CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), clean_string(value))
    if len(text) > limit or cut:
        return text[:limit] + "...(truncated)"
    return text


def secret_spellings(secret: str) -> set[str]:
    """The ways a credential can come back in a text: as it is, URL-encoded (a query or
    form an API echoes) and JSON- or repr-escaped (an error that quotes a payload)."""
    out = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
           json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]}
    return {s for s in out if len(s) >= 4}


_rotated: set[str] = set()     # credentials read from a rotated *_file after start-up
_rotated_version = 0


def remember_secrets(secrets: Iterable[str]) -> None:
    """Credentials that appeared after start-up (a rotated *_file): every Redactor masks
    them from now on, the log filter's and the landing page's included."""
    global _rotated_version
    _rotated.update(v for s in secrets if s for v in secret_spellings(s))
    _rotated_version += 1


class Redactor:
    """Replaces given texts wherever they appear: secrets by REDACTED, in every
    spelling of secret_spellings, or each text by its own replacement. Texts
    shorter than 4 characters are left alone (they would mask half of every
    line); the longest is replaced first, so one text inside another leaves
    nothing of it behind."""

    def __init__(self, texts: Iterable[str] | Mapping[str, str]):
        self._secrets = not isinstance(texts, Mapping)    # credentials: rotated ones are masked too
        if not isinstance(texts, Mapping):
            texts = {v: REDACTED for t in texts if t for v in secret_spellings(t)}
        self._own = dict(texts)
        self._version = _rotated_version
        self._build(self._own)

    def _build(self, texts: Mapping[str, str]) -> None:
        self.replacements = {t: r for t, r in texts.items() if len(t) >= 4}
        ordered = sorted(self.replacements, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def scrub(self, text: str) -> str:
        if self._secrets and self._version != _rotated_version:   # a credential was rotated since
            self._version = _rotated_version
            self._build({**self._own, **{v: REDACTED for v in _rotated}})
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.replacements[m.group(0)], text)


MAX_LABEL_TEXT = 128
_SN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def valid_sn(text: object) -> bool:
    """A serial number as the config and the exporter accept it: 1-64 letters, digits, . _ -"""
    return isinstance(text, str) and bool(_SN.match(text))


def label_text(value: object) -> str:
    """An API string fit for a label value: control characters dropped, at most
    MAX_LABEL_TEXT characters; anything that is not a string or number becomes ""."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    text = CONTROL.sub("", str(value)).strip()
    return text[:MAX_LABEL_TEXT]


def escape_label(value: str) -> str:
    """A label value (or HELP text) as the text formats write it: backslash, newline and quote escaped."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value
