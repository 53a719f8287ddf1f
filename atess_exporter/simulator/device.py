"""Simulated devices: what the simulator knows about each SN it serves."""

from __future__ import annotations

import re
import zlib
from typing import Any
from dataclasses import dataclass


@dataclass
class SimDevice:
    """One simulated device.

    ``family`` is the catalog's device family (hps_central, hps_string, pcs,
    pbd, bcu, mbms). ``model`` follows the vendor's naming (HPS30/50/100/120/150/250,
    HPS100HV, HPS150HV, HPS30TL, PCS100, PBD250...): the digits give the rating in
    kW and an ``HV`` suffix adds the PV-string fields the doc lists for
    HPS100HV/HPS150HV. ``tz_offset_hours`` is
    the plant's offset from UTC: the cloud reports plant-local times without a
    zone (docs/api.md), so the simulator needs to know it to place day and night.
    """

    sn: str
    family: str = "hps_central"
    model: str = "HPS150"
    tz_offset_hours: float = 0.0
    seed: int | None = None
    plant_id: str = "PL1001"       # the account's plant and datalogger the device sits behind
    datalog_sn: str = "DL1001A"
    firmware: str = "V2.1.07"
    lost: bool = False             # the cloud lost contact: lists and latest data say `lost: true`

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
    """The fleet served by ``--demo`` (UTC+1, a typical European install): three
    central HPS of different models, then one device of every other family.
    Plant PL1001 (Harbour Depot) holds several families behind two dataloggers;
    plant PL1002 (Hill Farm) a string HPS and a PBD."""
    depot: dict[str, Any] = {"plant_id": "PL1001"}
    farm: dict[str, Any] = {"plant_id": "PL1002", "datalog_sn": "DL1002A"}
    return [
        SimDevice(sn="HPS150A2312000147", model="HPS150", tz_offset_hours=1.0, **depot),
        SimDevice(sn="HPS100HV2403000082", model="HPS100HV", tz_offset_hours=1.0, **depot),
        SimDevice(sn="HPS50A2208000315", model="HPS50", tz_offset_hours=1.0, **farm),
        SimDevice(sn="HPS30TL2405000021", family="hps_string", model="HPS30TL", tz_offset_hours=1.0, **farm),
        SimDevice(sn="PCS100A2309000058", family="pcs", model="PCS100", tz_offset_hours=1.0, **depot),
        SimDevice(sn="PBD250A2310000112", family="pbd", model="PBD250", tz_offset_hours=1.0, **farm),
        SimDevice(sn="BCU2311000204", family="bcu", model="BCU", tz_offset_hours=1.0, datalog_sn="DL1001B", plant_id="PL1001"),
        SimDevice(sn="MBMS2311000031", family="mbms", model="MBMS", tz_offset_hours=1.0, datalog_sn="DL1001B", plant_id="PL1001"),
    ]
