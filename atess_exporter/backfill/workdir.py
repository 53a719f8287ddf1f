"""The work directory `<output>.parts/` that makes a backfill resumable: part files
and per-device state, each replaced atomically so a crash leaves the old or the new."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date
from pathlib import Path

from atess_exporter.config import ConfigError

STATE_VERSION = 1


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class WorkDir:
    """`<output>.parts/`: manifest.json, and per device sn-<SN>/state.json + part files."""

    def __init__(self, output: Path):
        self.root = output.with_name(output.name + ".parts")

    def exists(self) -> bool:
        return self.root.exists()

    def open(self, start: date, end: date) -> None:
        """Create, or check that an existing directory belongs to the same run."""
        manifest = self.root / "manifest.json"
        want = {"version": STATE_VERSION, "from": start.isoformat(), "to": end.isoformat()}
        if manifest.exists():
            have = json.loads(manifest.read_text(encoding="utf-8"))
            if {k: have.get(k) for k in want} != want:
                raise ConfigError(
                    f"{self.root}: holds an unfinished backfill of --from {have.get('from')} --to {have.get('to')}; "
                    "resume it with those dates, or delete the directory to start over")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(manifest, json.dumps(want) + "\n")

    def device_dir(self, sn: str) -> Path:
        return self.root / f"sn-{sn}"

    def load_state(self, sn: str) -> dict | None:
        path = self.device_dir(sn) / "state.json"
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def save_state(self, sn: str, state: dict) -> None:
        _atomic_write(self.device_dir(sn) / "state.json", json.dumps(state, separators=(",", ":")) + "\n")

    def write_part(self, sn: str, name: str, text: str) -> None:
        folder = self.device_dir(sn)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / name, text)

    def part_path(self, sn: str, name: str) -> Path:
        return self.device_dir(sn) / name

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

