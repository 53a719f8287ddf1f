"""Recorded API answers: redacted for a bug report, loadable as test fixtures.

`atess-exporter probe --save DIR` writes one JSON file per call:

    {"format": "atess-recording/1", "family": "hps_central", "operation": "latest",
     "path": "/api/v1/hps/data-last", "model": "HPS150", "outcome": "success",
     "status": 200, "code": 0, "msg": "", "data": {...}}

Serial numbers, plant names and identifiers are replaced by stable hashes
("SN-3f2a9c1b0d"), in keys we know carry them and wherever the same text
appears in another string; the token is never part of an answer and so is
never written. tests/fixtures/recorded/ holds such files, and the test suite
reads every one of them through the same catalog as live polls.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

FORMAT = "atess-recording/1"
# Keys whose values identify a customer, a site or a device.
_IDENTIFYING = {
    "deviceSn": "SN", "sn": "SN", "dataLogSn": "DL", "datalogSn": "DL", "plantId": "PL", "plantName": "PLANT",
    "name": "NAME", "id": "ID", "alias": "NAME", "address": "ADDR", "city": "CITY", "userName": "USER",
    "email": "USER", "phone": "USER", "latitude": "GEO", "longitude": "GEO", "lat": "GEO", "lng": "GEO",
}
# Personal data of plant and datalogger rows (PLATFORM.md 9), by what the key says:
# coordinates, owner and installer accounts, addresses, contacts, post codes.
_PERSONAL = re.compile(r"(^|_)(lat|lng|lon)(_|$)|latitude|longitude|address|account|user|owner|installer|contact|"
                       r"phone|mobile|tel(ephone)?$|e?mail|city|country|province|street|post_?code|zip|company|agent",
                       re.IGNORECASE)
MAX_DEPTH = 32


def _kind(key: str) -> str | None:
    """The hash prefix for a key that identifies a customer, site or device, else None."""
    if key in _IDENTIFYING:
        return _IDENTIFYING[key]
    return "PII" if isinstance(key, str) and _PERSONAL.search(key) else None


def _hash(prefix: str, value: Any) -> str:
    digest = hashlib.sha256(f"atess:{value}".encode("utf-8", "replace")).hexdigest()[:10]
    return f"{prefix}-{digest}"


def redact(data: Any, known: dict[str, str] | None = None) -> tuple[Any, dict[str, str]]:
    """A copy of `data` with identifying values hashed; returns the mapping used, so
    the same SN hashes the same across every file of one recording."""
    known = {} if known is None else known

    def collect(node: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(node, dict):
            for key, value in node.items():
                kind = _kind(key)
                if kind and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    text = str(value)
                    if text and text not in known:
                        known[text] = _hash(kind, text)
                collect(value, depth + 1)
        elif isinstance(node, list):
            for item in node:
                collect(item, depth + 1)

    collect(data, 0)
    # Longest first, so an SN that contains another is replaced whole.
    secrets = sorted((k for k in known if len(k) >= 4), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(k) for k in secrets)) if secrets else None

    def scrub(node: Any, depth: int, key: str = "") -> Any:
        if depth > MAX_DEPTH:
            return None
        if isinstance(node, dict):
            return {k: scrub(v, depth + 1, k) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v, depth + 1) for v in node]
        if _kind(key) and not isinstance(node, bool) and node is not None and str(node) in known:
            return known[str(node)]
        if isinstance(node, str) and pattern is not None:
            return pattern.sub(lambda m: known[m.group(0)], node)
        return node

    return scrub(data, 0), known


def save(directory: Path, name: str, record: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]
    path = directory / f"{safe}.json"
    path.write_text(json.dumps({"format": FORMAT, **record}, indent=1, ensure_ascii=False, sort_keys=True) + "\n",
                    encoding="utf-8")
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
