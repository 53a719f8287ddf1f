"""Latest-data payloads of the device families other than the central HPS.

Only the central HPS is documented in full (see ``physics``). The string HPS and
PBD pages show their first and last field (``bipvBuck1 .. vpvwn``,
``bipvBuck1 .. vpv5``) and recorded data show those payloads reuse the central
names; nothing is known of the PCS and BMS payloads. So every family here speaks
the central vocabulary, plus the documented names and a few names seen in the
ATESS app (catalog/<family>.yaml says which). Like recorded data, the
undocumented payloads also carry fields that are not measurements (``lost``,
``again``, ``withTime``, ``id``, ``address``, ``dataLogSn``, a nested object) and
numbers no catalog knows (``soh``, ``rackNum`` of the BMS families), so the
exporter's handling of both is exercised by the demo.

The physics is ``physics``' own: the same deterministic 7-day cycle of PV,
load and battery per device, so lifetime totals are exact integer-Wh sums that
never decrease and ``...Today`` values restart at local midnight. Like the
vendor, some numbers are sent as numeric strings ("3.312"): the PV-string
values, a PCS's frequency and power factor, the BMS cell extremes. As the
platform's servers do (PLATFORM.md 3-4), the PCS's and PBD's ``ppv`` is W and
``loadPf`` a percentage. ``simulator/platform.py`` rewrites these payloads into
the platform's own spellings and field sets (``dialect="platform"``).

Per family (all ASSUMED, like the fields):
  * ``hps_string`` -- an HPS...TL string-type hybrid inverter with two PV strings;
  * ``pcs`` -- a PCS converter whose PV arrives through a PBD on the DC bus;
  * ``pbd`` -- a PBD PV DC-DC converter charging the battery bus; ``status`` 1
    while PV produces, 0 in standby;
  * ``bcu`` -- the BMS of one battery rack; ``mbms`` -- the master BMS over
    several racks. ``batFlag`` -1 charging, 0 idle, 1 discharging (as the ATESS
    app reads it); ``bmsStatus`` 0 idle, 1 charging, 2 discharging (as ``physics``).
"""

from __future__ import annotations

import math
import random
import time as _time

from atess_exporter.simulator import physics
from atess_exporter.simulator.device import SimDevice

_ACTIVE_KW = physics._ACTIVE_KW
_SQRT3 = math.sqrt(3.0)
# The size of battery the BMS families simulate, as a physics model key
# (rating in kW decides racks and modules): a BCU is one rack, an MBMS four.
_BATTERY_MODEL = {"bcu": "HPS100", "mbms": "HPS500"}


def _r(x: float, n: int = 1) -> float:
    return round(x, n) + 0.0  # "+ 0.0" turns -0.0 into 0.0


def _s(x: float, n: int = 1) -> str:
    return f"{x:.{n}f}"


class _Reading:
    """The device's state at the start of the current 5-minute slot."""

    def __init__(self, device: SimDevice, now: float, model: str | None = None, salt: int = 0):
        self.seed = seed = int(device.seed if device.seed is not None else 0)
        self.model = model = model or device.model
        self.p = physics._plant(seed, model)
        self.day_no, self.s = physics.slot_of(device, now)
        self.day = physics._day(seed, model, self.day_no % physics.CYCLE_DAYS)
        self.prefix = physics._cycle_prefix(seed, model)
        self.rng = random.Random((seed * 1_000_003 + self.day_no * physics.SLOTS_PER_DAY + self.s) * 31 + salt)
        d, s = self.day, self.s
        self.ppv, self.load, self.pbat, self.soc = d.ppv[s], d.load[s], d.pbat[s], d.soc[s]
        self.hour = s * physics.SLOT_HOURS
        self.time = _time.strftime("%Y-%m-%d %H:%M:%S",
                                   _time.gmtime(self.day_no * 86400 + s * physics.SLOT_SECONDS))

    def today(self, k: str) -> int:
        return self.day.cum[k][self.s]

    def total(self, k: str) -> int:
        p = self.p
        if self.day_no < p.commissioning_day:
            return 0
        before = (physics._whole_days(self.prefix[k], self.day_no)
                  - physics._whole_days(self.prefix[k], p.commissioning_day))
        return before + self.today(k)

    def energies(self, *fields: tuple[str, str, str]) -> dict[str, float]:
        """(today field, total field, energy kind) -> both readings, as the vendor names them."""
        out = {}
        for today, total, kind in fields:
            out[today], out[total] = self.kwh_today(kind), self.kwh_total(kind)
        return out

    def kwh_today(self, k: str) -> float:
        return round(self.today(k) / 1000.0, 1)

    def kwh_total(self, k: str) -> float:
        return round(self.total(k) / 1000.0, 1)

    def minutes_today(self, k: str) -> float:
        return float(self.today(k) * physics.SLOT_SECONDS // 60)

    def hours_total(self, k: str) -> float:
        return round(self.total(k) * physics.SLOT_HOURS, 1)

    # -- shared pieces ------------------------------------------------------
    def ambient(self) -> float:
        t = 22.0 + self.p.temp_offset + 6.0 * math.cos(2 * math.pi * (self.hour - 15.0) / 24.0)
        return t + self.rng.uniform(-0.3, 0.3)

    def cell_volts(self) -> float:
        cell = 3.2 + 0.0013 * self.soc + 0.03 * (-self.pbat / self.p.bat_max_kw) + self.rng.uniform(-0.002, 0.002)
        return min(max(cell, 3.0), 3.45)

    def battery(self) -> tuple[float, float, float]:
        """(cell volts, battery volts, battery amperes > 0 discharging)."""
        cell = self.cell_volts()
        vbat = cell * self.p.modules * 16
        return cell, vbat, self.pbat * 1000.0 / vbat

    def grid_lines(self) -> list[float]:
        return [400.0 * (1.0 + self.rng.uniform(-0.012, 0.012)) for _ in range(3)]

    def frequency(self) -> float:
        return 50.0 + self.rng.uniform(-0.03, 0.03)

    def pv_split(self, ppv: float, v_nominal: float) -> tuple[list[float], list[float], list[float]]:
        """Two PV strings: (powers kW, voltages V, currents A)."""
        f = self.p.pv_split[0] / (self.p.pv_split[0] + self.p.pv_split[1])
        pw = [ppv * f, ppv * (1.0 - f)]
        volts = [(v_nominal - 40.0 * ppv / self.p.pv_peak + self.rng.uniform(-3, 3)) if ppv > 0 else 0.0
                 for _ in range(2)]
        amps = [pw[k] * 1000.0 / volts[k] if volts[k] else 0.0 for k in range(2)]
        return pw, volts, amps

    def bms_limits(self) -> tuple[float, float]:
        c_rate_a = self.p.racks * 140.0  # 0.5 C of 280 Ah per rack
        chg = c_rate_a * min(1.0, max(0.0, (100.0 - self.soc) / 5.0))
        dis = c_rate_a * min(1.0, max(0.0, (self.soc - self.p.reserve_soc + 5.0) / 5.0))
        return chg, dis

    def bms_status(self) -> int:
        return physics.bms_status(self.pbat)

    def extras(self, device: SimDevice) -> dict:
        """What recorded payloads carry besides measurements."""
        return {"lost": False, "again": False, "withTime": True, "id": self.seed % 100000, "address": 1,
                "dataLogSn": device.datalog_sn, "calendar": {"year": 2026, "month": 1, "dayOfMonth": 1},
                "temp2": _r(self.ambient() + 1.5)}


def hps_string_latest(device: SimDevice, now: float) -> dict:
    """``data`` of GET /api/v1/hps/data-last-small: central names, ``bipvBuck1``, ``vpvXn``."""
    r = _Reading(device, now, salt=1)
    rng, R = r.rng, r.p.rating
    ppv, load, pbat = r.ppv, r.load, r.pbat
    grid = load - ppv - pbat  # > 0 importing
    pw, volts, amps = r.pv_split(ppv, 560.0)
    _cell, vbat, ibat = r.battery()
    g_line = r.grid_lines()
    o_phase = [v * (1.0 + rng.uniform(-0.002, 0.002)) / _SQRT3 for v in g_line]
    pf = rng.uniform(0.985, 0.999) if abs(ppv + pbat) > _ACTIVE_KW else 0.0
    grid_i = [abs(grid) * 1000.0 / (_SQRT3 * g_line[0]) * f for f in r.p.imbalance]
    ambient = r.ambient()
    return {
        "bipvBuck1": _r(amps[0]), "ibuck2": _s(amps[1]),
        "deviceSn": device.sn, "time": r.time,
        "status": 2, "runModel": 5,
        "ppv": _r(ppv, 2), "vpv": _r(sum(volts) / 2), "ipv": _r(sum(amps)),
        "pac": _r(pbat, 2), "vbat": _r(vbat), "ibat": _r(ibat),
        "capacity": int(round(r.soc)), "bmsStatus": r.bms_status(),
        "gvpvuv": _r(g_line[0]), "gvpvvw": _r(g_line[1]), "gvpvwu": _r(g_line[2]),
        "ipvu": _r(grid_i[0]), "ipvv": _r(grid_i[1]), "ipvw": _r(grid_i[2]),
        "bactivePower": _r(grid, 2), "meterPower": _r(grid, 2),
        "fac": _r(r.frequency(), 2), "loadActivePower": _r(load, 2), "pf": _r(pf, 3),
        "temp": _r(ambient), "temp1": _r(ambient + 5.0 + 25.0 * abs(ppv + pbat) / R),
        **r.energies(("epvToday", "epvTotal", "pv"), ("echargeToday", "ebatChargeTotal", "charge"),
                     ("edischargeToday", "ebatDischargeTotal", "discharge"), ("egridToday", "egridTotal", "imp"),
                     ("etoGridToday", "etoGridTotal", "exp"), ("eloadToday", "eloadTotal", "load")),
        **r.extras(device),
        "vpvun": _r(o_phase[0]), "vpvvn": _r(o_phase[1]), "vpvwn": _r(o_phase[2]),
    }


def pcs_latest(device: SimDevice, now: float) -> dict:
    """``data`` of GET /api/v1/pcs/data-last: the central names of a converter whose PV
    arrives through a PBD, plus typeFlag/selfTime (ATESS app)."""
    r = _Reading(device, now, salt=2)
    rng, R = r.rng, r.p.rating
    ppv, load, pbat = r.ppv, r.load, r.pbat
    p_inv = ppv + pbat
    grid = load - p_inv  # bypass, > 0 importing
    _cell, vbat, ibat = r.battery()
    g_line = r.grid_lines()
    o_phase = [v * (1.0 + rng.uniform(-0.002, 0.002)) / _SQRT3 for v in g_line]
    pf = rng.uniform(0.985, 0.999) if abs(p_inv) > _ACTIVE_KW else 0.0
    inv_kva = abs(p_inv) / pf if pf else 0.0
    inv_i = [inv_kva * 1000.0 / (_SQRT3 * g_line[0]) * f for f in r.p.imbalance]
    byp_kva = abs(grid) / 0.98
    chg, dis = r.bms_limits()
    ambient = r.ambient()
    return {
        "atsBypass": 0, "deviceSn": device.sn, "time": r.time,
        "status": 2, "runModel": 5, "typeFlag": 0, "selfTime": 60,
        "ppv": _r(ppv * 1000.0, 0), "pac": _r(pbat, 2),  # W, unlike every other PCS power (PLATFORM.md 4)
        "vbat": _r(vbat), "ibat": _r(ibat),
        "capacity": int(round(r.soc)), "bmsStatus": r.bms_status(),
        "maxChargeCurr": _r(chg), "maxDischargeCurr": _r(dis),
        "fac": _s(r.frequency(), 2),
        "bactivePower": _r(grid, 2), "bapparentPower": _r(byp_kva, 2),
        "breactivePower": _r(math.sqrt(max(byp_kva**2 - grid**2, 0.0)), 2),
        "pf": _s(pf, 3),
        "gvpvuv": _r(g_line[0]), "gvpvvw": _r(g_line[1]), "gvpvwu": _r(g_line[2]),
        "ipvu": _r(inv_i[0]), "ipvv": _r(inv_i[1]), "ipvw": _r(inv_i[2]),
        "outvu": _r(o_phase[0]), "outvv": _r(o_phase[1]), "outvw": _r(o_phase[2]),
        "loadActivePower": _r(load, 2), "loadPf": _r(rng.uniform(93.0, 97.0), 1),  # percent
        "temp": _r(ambient), "temp1": _r(ambient + 5.0 + 25.0 * abs(p_inv) / R),
        **r.energies(("epvToday", "epvTotal", "pv"), ("echargeToday", "ebatChargeTotal", "charge"),
                     ("edischargeToday", "ebatDischargeTotal", "discharge"), ("egridToday", "egridTotal", "imp"),
                     ("etoGridToday", "etoGridTotal", "exp"), ("eloadToday", "eloadTotal", "load")),
        **r.extras(device),
    }


def pbd_latest(device: SimDevice, now: float) -> dict:
    """``data`` of GET /api/v1/pbd/data-last: ``bipvBuck1`` .. ``vpv5`` as the doc's example,
    central names between."""
    r = _Reading(device, now, salt=3)
    rng, R = r.rng, r.p.rating
    ppv = r.ppv
    pw, volts, amps = r.pv_split(ppv, 680.0)
    _cell, vbat, _ibat = r.battery()
    pchg = ppv * 0.985  # DC-DC efficiency
    ambient = r.ambient()
    return {
        "bipvBuck1": _r(amps[0]), "ibuck2": _s(amps[1]),
        "deviceSn": device.sn, "time": r.time,
        "status": 2 if ppv > _ACTIVE_KW else 0,
        "typeFlag": 0, "selfTime": 60,
        "ppv": _r(ppv * 1000.0, 0), "vpv": _r(sum(volts) / 2), "ipv": _r(sum(amps)),  # ppv in W (PLATFORM.md 4)
        "vbat": _r(vbat), "ibat": _r(-pchg * 1000.0 / vbat), "pac": _r(-pchg, 2),
        "bvbus": _r(vbat + rng.uniform(0.5, 2.0)),
        "temp": _r(ambient), "temp1": _r(ambient + 3.0 + 25.0 * ppv / R),
        "epvToday": r.kwh_today("pv"), "epvTotal": r.kwh_total("pv"),
        "epvTimeToday": r.minutes_today("pv_t"), "epvTimeTotal": r.hours_total("pv_t"),
        **r.extras(device),
        "vpv5": 0,
    }


def _bms(device: SimDevice, now: float, family: str) -> dict:
    """A BMS payload in the central HPS's BMS vocabulary, plus batFlag (ATESS app)."""
    r = _Reading(device, now, model=_BATTERY_MODEL[family], salt=4)
    rng, p = r.rng, r.p
    pbat = r.pbat
    cell, vbat, ibat = r.battery()
    chg, dis = r.bms_limits()
    bat_temp = 24.0 + p.temp_offset / 2 + 6.0 * abs(pbat) / p.bat_max_kw
    racks = p.racks
    data: dict = {
        "deviceSn": device.sn, "time": r.time,
        "batFlag": -1 if pbat < -_ACTIVE_KW else 1 if pbat > _ACTIVE_KW else 0,
        "bmsStatus": r.bms_status(), "bmsSystemStatus": 1, "bmsVoltStatus": 1,
        "capacity": int(round(r.soc)), "soh": 96 + r.seed % 4,
        "vbat": _r(vbat), "ibat": _r(ibat), "pac": _r(pbat, 2), "mvpv": _s(cell, 3),
    }
    extremes = {
        "maxVolt": _s(cell + rng.uniform(0.004, 0.015), 3), "maxVoltGroup": rng.randint(1, racks),
        "maxVoltCell": rng.randint(1, p.modules), "maxVoltNum": rng.randint(1, 16),
        "minVolt": _s(cell - rng.uniform(0.004, 0.015), 3), "minVoltGroup": rng.randint(1, racks),
        "minVoltCell": rng.randint(1, p.modules), "minVoltNum": rng.randint(1, 16),
        "maxTemp": _s(bat_temp + rng.uniform(1.0, 3.0)), "maxTempGroup": rng.randint(1, racks),
        "maxTempNum": rng.randint(1, p.modules),
        "minTemp": _s(bat_temp - rng.uniform(0.5, 2.0)), "minTempGroup": rng.randint(1, racks),
        "minTempNum": rng.randint(1, p.modules),
    }
    if family != "mbms":  # one rack: no rack numbers
        extremes = {k: v for k, v in extremes.items() if not k.endswith("Group")}
    data.update(extremes)
    data.update({
        "maxChargeCurr": _r(chg), "maxDischargeCurr": _r(dis),
        "echargeToday": r.kwh_today("charge"), "ebatChargeTotal": r.kwh_total("charge"),
        "edischargeToday": r.kwh_today("discharge"), "ebatDischargeTotal": r.kwh_total("discharge"),
    })
    if family == "mbms":
        data["rackNum"] = racks
    data.update(r.extras(device))
    return data


def bcu_latest(device: SimDevice, now: float) -> dict:
    """``data`` of the BCU latest-data endpoint (path assumed)."""
    return _bms(device, now, "bcu")


def mbms_latest(device: SimDevice, now: float) -> dict:
    """``data`` of the MBMS latest-data endpoint (path assumed)."""
    return _bms(device, now, "mbms")


BUILDERS = {
    "hps_string": hps_string_latest,
    "pcs": pcs_latest,
    "pbd": pbd_latest,
    "bcu": bcu_latest,
    "mbms": mbms_latest,
}

physics.LATEST_BUILDERS.update(BUILDERS)
