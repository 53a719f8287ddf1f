"""Simulated devices: what the simulator knows about each SN it serves."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass


@dataclass
class SimDevice:
    """One simulated device.

    ``model`` follows the vendor's naming (HPS30/50/100/120/150/250, HPS100HV,
    HPS150HV...): the digits give the rating in kW and an ``HV`` suffix adds the
    PV-string fields the doc lists for HPS100HV/HPS150HV. ``tz_offset_hours`` is
    the plant's offset from UTC: the cloud reports plant-local times without a
    zone (NOTES.md), so the simulator needs to know it to place day and night.
    """

    sn: str
    family: str = "hps_central"
    model: str = "HPS150"
    tz_offset_hours: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.seed is None:
            # crc32 rather than hash(): str hashes are salted per process and the
            # payloads must be reproducible across runs.
            self.seed = zlib.crc32(self.sn.encode("utf-8"))

    @property
    def rating_kw(self) -> float:
        m = re.search(r"(\d+)", self.model)
        return float(m.group(1)) if m else 100.0

    @property
    def is_hv(self) -> bool:
        return self.model.upper().endswith("HV")


def demo_devices() -> list[SimDevice]:
    """The fleet served by ``--demo``: three central HPS of different models in
    one plant (UTC+1, a typical European install)."""
    return [
        SimDevice(sn="HPS150A2312000147", model="HPS150", tz_offset_hours=1.0),
        SimDevice(sn="HPS100HV2403000082", model="HPS100HV", tz_offset_hours=1.0),
        SimDevice(sn="HPS50A2208000315", model="HPS50", tz_offset_hours=1.0),
    ]
