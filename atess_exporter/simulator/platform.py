"""The platform dialect: the simulator answering as the vendor's servers actually do.

``Simulator(dialect="platform")`` (``--dialect platform``, ``--demo.dialect platform``)
rewrites every payload the documented dialect builds into what the platform the
ATESS cloud was built on sends (PLATFORM.md, the public example answers of its
HPS, PCS and PBD endpoints):

  * its spellings (PLATFORM.md 2): ``eChargeToday`` for ``echargeToday``,
    ``bActivePower``, ``iBuck1``, ``scrtemp``, ``loadIa/Ib/Ic`` ...;
  * its field sets: the PCS's own (PLATFORM.md 5: ``bvpv``, ``vacuv``, ``i1A``,
    ``gridToday`` ...), the PBD's (6) and the string HPS's extras (7), fault words,
    ``normalPower``; the PCS's ``vpvuv..`` carry phase voltages (~230 V, what the
    register holds) and its ``toGrid*``/``grid*`` the register's directions;
  * zones as fixed offsets in plant rows (``timezone: 1``, ``"GMT+1"``) and the
    personal data plant and datalogger rows carry (coordinates, owner account,
    address, contacts), which the exporter must never pass on;
  * the servers' UTC+8 clock (the Simulator's ``clock_utc_offset_hours``).

The physics is the documented dialect's: the same device gives the same readings
in both dialects, only named, grouped and unit-scaled as the platform does.
"""

from __future__ import annotations

import math
from typing import Any

from atess_exporter.simulator.device import SimDevice

DIALECTS = ("documented", "platform")
PLATFORM_CLOCK_UTC_OFFSET_HOURS = 8.0   # PLATFORM.md 1: the servers write `time` in UTC+8

# PLATFORM.md 2: the same field, the platform's spelling.
SPELLINGS = {
    "echargeToday": "eChargeToday", "edischargeToday": "eDischargeToday",
    "echargeTimeToday": "eChargeTimeToday", "edischargeTimeToday": "eDischargeTimeToday",
    "ebatChargeTotal": "eBatChargeTotal", "ebatDischargeTotal": "eBatDischargeTotal",
    "ebatChargeTimeTotal": "eBatChargeTimeTotal", "ebatDischargeTimeTotal": "eBatDischargeTimeTotal",
    "egridToday": "eGridToday", "egridTotal": "eGridTotal", "egridTimeToday": "eGridTimeToday",
    "egridTimeTotal": "eGridTimeTotal", "etoGridToday": "eToGridToday", "etoGridTotal": "eToGridTotal",
    "etoGridTimeToday": "eToGridTimeToday", "etoGridTimeTotal": "eToGridTimeTotal",
    "eloadToday": "eLoadToday", "eloadTotal": "eLoadTotal", "eloadTimeToday": "eLoadTimeToday",
    "eloadTimeTotal": "eLoadTimeTotal",
    "bactivePower": "bActivePower", "bapparentPower": "bApparentPower", "breactivePower": "bReactivePower",
    "ibuck1": "iBuck1", "ibuck2": "iBuck2", "scrTemp": "scrtemp",
    "loadIu": "loadIa", "loadIv": "loadIb", "loadIw": "loadIc",
}
_SQRT3 = math.sqrt(3.0)


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return 0.0


def _r(x: float, n: int = 1) -> float:
    return round(x, n) + 0.0


def _faults(n: int) -> dict[str, int]:
    return {f"sysFaultWord{i}": 0 for i in range(1, n + 1)}


def _common(device: SimDevice, d: dict) -> dict:
    """What every platform payload of the HPS/PCS/PBD families carries besides readings."""
    return {"normalPower": int(device.rating_kw * 1000), "alarmCode1": 0, "alarmCode2": 0, "pfSymbol": 1,
            "electricState": 5, "bmsProtection": 0, "typeFlag": 0, "selfTime": 60, "day": "",
            "statusText": "OnGridState" if d.get("status") == 2 else "WaitState", "statusLang": "common_normal",
            "maxMinTempCell": 1, "maxminVoltCell": 1}


def _renamed(d: dict) -> dict:
    return {SPELLINGS.get(k, k): v for k, v in d.items()}


def _string(device: SimDevice, d: dict) -> dict:
    out = _renamed(d)
    lines = [_num(d.get(k)) for k in ("gvpvuv", "gvpvvw", "gvpvwu")]
    grid_a = sum(_num(d.get(k)) for k in ("ipvu", "ipvv", "ipvw")) / 3
    ambient, igbt, ppv = _num(d.get("temp")), _num(d.get("temp1")), _num(d.get("ppv"))
    kva = abs(ppv + _num(d.get("pac")))
    out.update(_common(device, d))
    out.update(_faults(9))
    out.update({
        "temp2": _r(igbt - 2.0), "temp5": _r(ambient + 4.0), "temp6": _r(ambient),
        "effectiveness": 97.5 if ppv > 0.05 else 0.0,
        "insulDetecPosi": 1000, "insulDetecNega": 1000, "pvpir1": 1000, "pvnir1": 1000, "batpir": 1000, "batnir": 1000,
        "iboard": 0.1, "inductorCurr": _r(grid_a * 1.02), "invuv": _r(lines[0]), "invvw": _r(lines[1]),
        "invwu": _r(lines[2]), "pac1": _r(kva / 2, 2), "pac2": _r(kva / 2, 2), "rac": 0.0, "runStatus": 2,
        "bmsShowStatus": 1, "cfdllc1": 0, "cfdllc2": 0, "batcdct": 0, "batldt": 0, "bmstc": 0,
        "bmstv": d.get("vbat"), "ipv2": _r(_num(d.get("ibuck2"))), "gridFreq": d.get("fac"),
        "dgGridPower": 0.0, "bvbusPosi": _r(_num(d.get("vbat")) / 2 + 20), "bvbusNega": _r(_num(d.get("vbat")) / 2 + 20),
    })
    return out


def _pcs(device: SimDevice, d: dict) -> dict:
    phase = [_num(d.get(k)) for k in ("outvu", "outvv", "outvw")]
    grid_lines = [_num(d.get(k)) for k in ("gvpvuv", "gvpvvw", "gvpvwu")]
    inv = [_num(d.get(k)) for k in ("ipvu", "ipvv", "ipvw")]
    load_kw, pbat, grid = _num(d.get("loadActivePower")), _num(d.get("pac")), _num(d.get("bactivePower"))
    ppv_kw = _num(d.get("ppv")) / 1000.0
    p_out = ppv_kw + pbat
    pf = _num(d.get("pf")) or 1.0
    load_a = load_kw * 1000.0 / (_SQRT3 * (grid_lines[0] or 400.0) * 0.95)
    vbat = _num(d.get("vbat"))
    out = {k: v for k, v in _renamed(d).items() if k not in (
        "vbat", "ibat", "gvpvuv", "gvpvvw", "gvpvwu", "ipvu", "ipvv", "ipvw", "outvu", "outvv", "outvw", "fac",
        "pac", "temp", "temp1", "epvToday", "epvTotal", "eGridToday", "eGridTotal", "eToGridToday", "eToGridTotal",
        "eLoadToday", "eLoadTotal", "eBatChargeTotal", "eBatDischargeTotal")}
    out.update(_common(device, d))
    out.update(_faults(8))
    # One warning bit, so the demo shows a named fault: word 8 D6 "meter communication warning"
    # (bytes swapped: D6 is bit 6 of the high byte), a PCS without a meter.
    out["sysFaultWord8"] = 1 << 14
    ambient = _num(d.get("temp"))
    out.update({
        "bvpv": d.get("vbat"), "bipv": d.get("ibat"),
        "vacuv": _r(phase[0] * _SQRT3), "vacvw": _r(phase[1] * _SQRT3), "vacwu": _r(phase[2] * _SQRT3),
        "bipvu": _r(abs(grid) * 1000.0 / (_SQRT3 * grid_lines[0])), "bipvv": _r(abs(grid) * 1000.0 / (_SQRT3 * grid_lines[1])),
        "bipvw": _r(abs(grid) * 1000.0 / (_SQRT3 * grid_lines[2])),
        "i1A": _r(inv[0] * 1.02), "i1B": _r(inv[1] * 1.02), "i1C": _r(inv[2] * 1.02),
        "bvpvuv": grid_lines[0], "bvpvvw": grid_lines[1], "bvpvwu": grid_lines[2],
        "gridFreq": d.get("fac"), "vacFrequency": d.get("fac"),
        "risoBatp": 1000, "risoBatn": 1000, "gfdi1": 0, "gfdi2": 0,
        "loadIa": _r(load_a), "loadIb": _r(load_a), "loadIc": _r(load_a),
        # The register (input 56-58) holds the per-phase output voltage: ~230 V (PLATFORM.md 5).
        "vpvuv": phase[0], "vpvvw": phase[1], "vpvwu": phase[2],
        "bvbus": _r(vbat + 15.0), "bvbusPosi": _r(vbat / 2 + 8.0), "bvbusNega": _r(vbat / 2 + 7.0),
        "pcsActivePower": _r(p_out, 2), "outApparentPower": _r(abs(p_out) / pf, 2),
        "outReactivePower": _r(math.sqrt(max((abs(p_out) / pf) ** 2 - p_out ** 2, 0.0)), 2),
        "vacu": _r(inv[0]), "vacv": _r(inv[1]), "vacw": _r(inv[2]),
        "loadToday": d.get("eloadToday"), "loadTotal": d.get("eloadTotal"),
        "loadTimeToday": d.get("eloadTimeToday", 0.0), "loadTimeTotal": d.get("eloadTimeTotal", 0.0),
        # The registers' directions (PLATFORM.md 5): toGrid* hold what came from the grid, grid* what went to it.
        "toGridToday": d.get("egridToday"), "toGridTotal": d.get("egridTotal"),
        "toGridTimeToday": 0.0, "toGridTimeTotal": 0.0,
        "gridToday": d.get("etoGridToday"), "gridTotal": d.get("etoGridTotal"),
        "gridTimeToday": 0.0, "gridTimeTotal": 0.0,
        "temp1": _r(_num(d.get("temp1"))), "temp2": _r(_num(d.get("temp1")) - 1.0), "temp3": _r(ambient + 4.0),
        "temp4": _r(ambient + 5.0), "temp5": _r(ambient + 6.0), "temp6": _r(ambient),
        "pacToBattery": d.get("pac"), "pacToGrid": 0.0, "powerGird": _r(grid, 2), "toPowerGird": 0.0,
        "eChargeTotal": d.get("ebatChargeTotal"), "eDischargeTotal": d.get("ebatDischargeTotal"),
        "eChargeTimeTotal": 0.0, "eDischargeTimeTotal": 0.0,
        "dgGridPower": 0.0, "pvEnergy": d.get("epvToday"),
    })
    return out


def _pbd(device: SimDevice, d: dict) -> dict:
    ppv_w = _num(d.get("ppv"))
    amps = [_num(d.get("bipvBuck1")), _num(d.get("ibuck2"))]
    vpv = _num(d.get("vpv"))
    vbus = _num(d.get("bvbus"))
    out_kw = ppv_w / 1000.0 * 0.985
    out = {k: v for k, v in _renamed(d).items() if k not in ("vbat", "ibat", "pac", "iBuck2", "temp1")}
    out.update(_common(device, d))
    out.update(_faults(6))
    temp = _num(d.get("temp"))
    out.update({
        "bipvBuck2": _r(amps[1]), "bipvBuck3": 0.0, "bipvBuck4": 0.0, "bipvBuck5": 0.0,
        "biOutBuck1": _r(out_kw * 500.0 / (vbus or 1.0)), "biOutBuck2": _r(out_kw * 500.0 / (vbus or 1.0)),
        "biout": _r(out_kw * 1000.0 / (vbus or 1.0)), "bvout": _r(vbus),
        "ipv1": _r(amps[0]), "ipv2": _r(amps[1]), "ipv3": 0.0, "ipv4": 0.0, "ipv5": 0.0,
        "vpv1": _r(vpv), "vpv2": _r(vpv), "vpv3": 0.0, "vpv4": 0.0, "vpv5": 0.0,
        # ppv in W, the strings in kW, in the same answer (PLATFORM.md 4).
        "ppv1": _r(amps[0] * vpv / 1000.0, 2), "ppv2": _r(amps[1] * vpv / 1000.0, 2), "ppv3": 0.0, "ppv4": 0.0,
        "ppv5": 0.0, "pbdBatPower": _r(-out_kw, 2), "pbdOutPowe": _r(out_kw, 2),
        "eOutToday": _r(_num(d.get("epvToday")) * 0.985), "eOutTotal": _r(_num(d.get("epvTotal")) * 0.985),
        "eChargeToday": _r(_num(d.get("epvToday")) * 0.985), "eChargeTotal": _r(_num(d.get("epvTotal")) * 0.985),
        "eDischargeToday": 0.0, "eDischargeTotal": 0.0, "eChargeTimeToday": d.get("epvTimeToday"),
        "eChargeTimeTotal": d.get("epvTimeTotal"), "eDischargeTimeToday": 0.0, "eDischargeTimeTotal": 0.0,
        "temppvBuckModule": _r(temp + 8.0), "tempoutBuckModule": _r(temp + 6.0), "temppvBuckL": _r(temp + 5.0),
        "tempoutBuckL": _r(temp + 4.0),
        "risoPVp": 1000, "risoPVn": 1000, "risoBatp": 1000, "risoBatn": 1000, "risoBusp": 1000, "risoBusn": 1000,
        "bmsStatus": 254, "bmsVoltStatus": 0,   # a PBD without its own BMS link: 254 is "no reading" (PLATFORM.md 8)
    })
    return out


_FAMILIES = {"hps_string": _string, "pcs": _pcs, "pbd": _pbd}


def speak(family: str, device: SimDevice, data: dict) -> dict:
    """A documented-dialect payload (latest data or a history row) as the platform sends it."""
    build = _FAMILIES.get(family)
    if build is not None:
        return build(device, data)
    out = _renamed(data)
    if family == "hps_central":
        out.update({"normalPower": int(device.rating_kw * 1000), **_faults(8)})
    return out


# -- the account side ------------------------------------------------------

def plant_row(row: dict, tz_offset_hours: float, index: int) -> dict:
    """A plant row as the platform lists it: its zone as an offset, and personal data."""
    hours = int(tz_offset_hours) if tz_offset_hours == int(tz_offset_hours) else tz_offset_hours
    sign = "+" if tz_offset_hours >= 0 else "-"
    zone: Any = hours if index % 2 == 0 else f"GMT{sign}{abs(hours)}"
    out = {k: v for k, v in row.items() if k != "timezone"}
    watts = _num(row.get("capacity")) * 1000.0
    out.update({
        "timezone": zone, "timezoneText": f"GMT{sign}{abs(hours)}", "nominalPower": int(watts),
        "plant_lat": f"54.32077{index}", "plant_lng": f"10.12262{index}", "latitude": 54.320773, "longitude": 10.122621,
        "userAccount": f"owner{index}.mueller", "plantAddress": f"Hafenstrasse {12 + index}, 24103 Kiel",
        "postCode": "24103", "ownerName": "Jana Mueller", "phone": "+49 431 5550123",
        "email": f"owner{index}@example.org", "installerContact": "Solar Nord GmbH, +49 431 5550999",
    })
    return out


def datalog_row(row: dict) -> dict:
    return {**row, "userAccount": "owner0.mueller", "location": "Hafenstrasse 12, 24103 Kiel",
            "lat": "54.320779", "lng": "10.122629"}


def device_row(row: dict, device: SimDevice) -> dict:
    return {**row, "normalPower": int(device.rating_kw * 1000)}
