"""The final OpenMetrics file from the finished parts: families grouped, series
contiguous, time ascending, as `promtool tsdb create-blocks-from` wants it."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Iterable, TextIO

from atess_exporter.catalog import Catalog
from atess_exporter.catalog.naming import UNCATALOGUED_PREFIX, UncataloguedDef
from atess_exporter.outside.text import escape_label
from atess_exporter.backfill.workdir import WorkDir

log = logging.getLogger("atess_exporter.backfill")  # the package's name: log lines read as before the split


def _series_key(line: str) -> str:
    return line.rsplit(" ", 2)[0]


def _definition(catalog: Catalog, name: str):
    """A name of the parts as the catalog knows it now. Uncatalogued vendor fields
    (atess_vendor_*, as the live exporter exports them) are kept, also those met by an
    earlier run of an interrupted backfill; None for a name the catalog once had and
    no longer has (parts written by an older version)."""
    try:
        return catalog.describe_metric(name)
    except KeyError:
        if name.startswith(UNCATALOGUED_PREFIX):
            return UncataloguedDef(name=name, help="Uncatalogued vendor field: the raw value as sent, unit unknown")
        return None


def _help(catalog: Catalog, name: str, m) -> str:
    if name in catalog.metrics or catalog.uncatalogued.get(name) is not None:
        return catalog.help_text(name, None)
    return f"{m.help}. Imported from the device's history by atess-exporter backfill."


def merge_parts(work: WorkDir, sns: Iterable[str], catalog: Catalog, output: Path) -> int:
    """All finished parts into `output`: families grouped, series contiguous, time ascending."""
    buckets = work.root / "merge"
    shutil.rmtree(buckets, ignore_errors=True)
    names: set[str] = set()
    sns = sorted(sns)
    for sn in sns:  # pass 1: each device's parts split per metric, in window order
        state = work.load_state(sn)
        if not state:
            continue
        folder = buckets / f"sn-{sn}"
        folder.mkdir(parents=True, exist_ok=True)
        handles: dict[str, TextIO] = {}
        try:
            for part in state["parts"]:
                with open(work.part_path(sn, part), encoding="utf-8") as fh:
                    for line in fh:
                        name = line[: line.index("{")]
                        out = handles.get(name)
                        if out is None:
                            out = handles[name] = open(folder / name, "w", encoding="utf-8")
                        out.write(line)
        finally:
            for out in handles.values():
                out.close()
        names.update(handles)
    known = {n: _definition(catalog, n) for n in names}
    for n in sorted(n for n, m in known.items() if m is None):
        log.warning("metric no longer in the catalog, left out", extra={"fields": {"metric": n}})
    samples = 0
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:  # pass 2: one family at a time
        for name in sorted((n for n, m in known.items() if m is not None), key=lambda n: known[n].family):
            m = known[name]
            help_text = _help(catalog, name, m)
            out.write(f"# HELP {m.family} {escape_label(help_text)}\n# TYPE {m.family} {m.type}\n")
            for sn in sns:
                path = buckets / f"sn-{sn}" / name
                if not path.exists():
                    continue
                with open(path, encoding="utf-8") as fh:
                    lines = fh.readlines()
                lines.sort(key=_series_key)  # stable: time order within a series is kept
                previous = None
                for line in lines:
                    series, _, ts = line.rsplit(" ", 2)
                    key = (series, ts)
                    if key == previous:
                        continue
                    previous = key
                    out.write(line)
                    samples += 1
        out.write("# EOF\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, output)
    shutil.rmtree(buckets, ignore_errors=True)
    return samples
