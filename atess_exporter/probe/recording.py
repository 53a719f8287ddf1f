"""Recorded API answers: redacted for a bug report, loadable as test fixtures.

`atess-exporter probe --save DIR` writes one JSON file per call:

    {"format": "atess-recording/1", "family": "hps_central", "operation": "latest",
     "path": "/api/v1/hps/data-last", "model": "HPS150", "outcome": "success",
     "status": 200, "code": 0, "msg": "", "data": {...}}

What is kept is an allow-list, not a list of what to hide: a file meant for
a public bug report must not carry what nobody thought of.

* values under keys known to be harmless -- the catalog's measurement fields,
  the vendor fields it knows and skips, and the page and list shapes (pageNo,
  total, model, status, firmwareVersion...) -- are kept when they are numbers,
  booleans or short codes, dates and versions; other text there is dropped;
* identifiers (deviceSn, dataLogSn, plantId, plantName, id, city, and any key
  ending in Sn or Id) are replaced by hashes under a salt drawn per recording,
  so one SN hashes the same in every file of a recording (in any letter case)
  and a short identifier cannot be looked up in a table of hashes;
* every other value is dropped ("<text>", "<number>"), under whatever key,
  and a key that is not a plain identifier is hashed too;
* the configured credentials, in every spelling (text.secret_spellings), are
  scrubbed from the whole file last, whatever field carried them.

tests/fixtures/recorded/ holds such files, and the test suite reads every one
of them through the same catalog as live polls.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets as random_secrets
from pathlib import Path
from typing import Any, Iterable

from atess_exporter.outside.text import Redactor

FORMAT = "atess-recording/1"
# Keys of the page and list shapes, and list-row keys that describe no person or site.
SHAPE_KEYS = frozenset({
    "datas", "offset", "pageNo", "pageSize", "total", "time", "updateTime", "model", "deviceModel", "deviceType",
    "firmwareVersion", "status", "lost", "deviceNo", "systemNo", "capacity", "timezone", "calendar",
    "year", "month", "dayOfMonth", "hourOfDay", "minute", "second", "again", "unit", "type", "code",
})
# Identifiers, hashed (compared in lower case): hashing keeps them linkable across files.
_IDENTIFYING = {"devicesn": "SN", "sn": "SN", "datalogsn": "DL", "plantid": "PL", "plantname": "PLANT",
                "id": "ID", "city": "CITY", "stationcode": "ST"}
_PLAIN_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_CODE = re.compile(r"^[A-Za-z0-9_.:+/-]{0,40}$|^\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?$")
MAX_DEPTH = 32


def harmless_keys(catalog: Any) -> frozenset[str]:
    """The catalog's fields (and the ones it skips, and their other names), with the shape
    keys; in lower case, as every spelling of a catalogued field is that field."""
    keys = set(SHAPE_KEYS)
    for fam in catalog.families.values():
        keys.update(fam.fields)
        keys.update(fam.skip)
        keys.update(fam.aliases)
        for variant in fam.variants:
            keys.update(variant.fields)
            keys.update(variant.skip)
    return frozenset(k.casefold() for k in keys)


def _kind(key: str) -> str | None:
    """The hash prefix when `key` names an identifier, else None."""
    lower = key.lower()
    if lower in _IDENTIFYING:
        return _IDENTIFYING[lower]
    if _PLAIN_KEY.match(key) and (key.endswith(("Sn", "SN", "Id", "ID")) or lower.endswith("_id")):
        return "ID"
    return None


class Redaction:
    """One recording's redaction: the salt and the identifiers seen, shared by its files."""

    def __init__(self, harmless: Iterable[str], credentials: Iterable[str] = (), salt: bytes | None = None):
        self.harmless = frozenset(harmless)
        self.credentials = Redactor(credentials)
        self.salt = salt if salt is not None else random_secrets.token_bytes(16)
        self.known: dict[str, str] = {}          # identifier (lower case) -> hash

    def _hash(self, prefix: str, value: Any) -> str:
        text = str(value).strip().lower()
        got = self.known.get(text)
        if got is None:
            digest = hashlib.sha256(self.salt + text.encode("utf-8", "replace")).hexdigest()[:10]
            got = self.known[text] = f"{prefix}-{digest}"
        return got

    def _collect(self, node: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(node, dict):
            for key, value in node.items():
                kind = _kind(str(key))
                if kind and isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
                    self._hash(kind, value)
                self._collect(value, depth + 1)
        elif isinstance(node, list):
            for item in node:
                self._collect(item, depth + 1)

    def redact(self, data: Any) -> Any:
        """A copy of `data` with only harmless values, identifiers hashed."""
        self._collect(data, 0)
        found = sorted((k for k in self.known if len(k) >= 4), key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, found)), re.IGNORECASE) if found else None

        def text(value: str) -> str:
            if pattern is not None:
                value = pattern.sub(lambda m: self.known[m.group(0).lower()], value)
            return value if _CODE.match(value) else "<text>"

        def scrub(node: Any, depth: int, key: str | None) -> Any:
            if depth > MAX_DEPTH:
                return None
            if isinstance(node, dict):
                return {self._key(str(k)): scrub(v, depth + 1, str(k)) for k, v in node.items()}
            if isinstance(node, list):
                return [scrub(v, depth + 1, key) for v in node]
            if node is None or isinstance(node, bool):
                return node
            kind = None if key is None else _kind(key)
            harmless = key is None or key.casefold() in self.harmless
            if kind is not None:
                return self._hash(kind, node) if str(node).strip() else ""
            if isinstance(node, (int, float)):
                return node if harmless else "<number>"
            return text(str(node)) if harmless else "<text>"

        return scrub(data, 0, None)

    def _key(self, key: str) -> str:
        return key if _PLAIN_KEY.match(key) else self._hash("KEY", key)

    def dumps(self, record: dict) -> str:
        """The file's text, with the credentials scrubbed in every spelling."""
        text = json.dumps({"format": FORMAT, **record}, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        return self.credentials.scrub(text)


def save(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]
    path = directory / f"{safe}.json"
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path) -> dict:
    """One recorded answer; ValueError when the file is not a recording."""
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not an {FORMAT} file")
    for key in ("family", "operation", "outcome"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"{path}: {key} missing")
    return record
