"""Payloads of the simulated ATESS cloud: pure functions of (device, now).

Faithful to the vendor doc of the central HPS latest data (docs/api.md):
  * the key set of ``data`` is exactly the doc's example, in its order;
  * integer-schema fields are JSON ints, number-schema fields JSON floats,
    string-schema fields numeric strings ("12.5");
  * the 13 PV-string fields the doc reserves for HPS100HV/HPS150HV are strings
    on those models, and ``null`` on the others (real clouds send nulls for what
    a model lacks); on HV models ``ppv``/``vpv`` are PV1 values and ``ppv1`` the
    total PV power, as the doc's HV table says;
  * units are those in the doc's descriptions (kW, kWh, V, A, Hz, degC, %, H, Min, s),
    and ``loadPf`` a percentage as the platform sends it (PLATFORM.md 3);
  * ``...Total`` fields never decrease, ``...Today`` fields restart at local
    midnight, ``time`` is plant-local "YYYY-MM-DD HH:MM:SS" without a zone;
  * the cloud refreshes every 5 minutes (doc: "once every 5 minutes"), so values
    are those of the start of the current 5-minute slot.

Assumptions (the doc is silent): sign conventions (``pac``/``ibat`` > 0 when the
battery discharges, ``meterPower``/``bactivePower`` > 0 when importing from the
grid), enum values (``status`` 1 = running, ``runModel`` 0 = Load First,
``bmsStatus`` 0 idle / 1 charging / 2 discharging), PV-string negative voltages
as positive magnitudes, and no diesel generator (all ``dg...`` fields 0).

The physics is a cheap, deterministic model, not a weather simulation: every
device replays a 7-day cycle (weekday/weekend load, one cloudiness per day), so a
lifetime total is ``whole weeks * week energy + prefix of the current week`` and
costs O(1). Energies are summed in integer Wh so totals are exactly monotonic.
"""

from __future__ import annotations

import math
import random
import time as _time
from dataclasses import dataclass
from functools import lru_cache

from atess_exporter.simulator.device import SimDevice

SLOT_SECONDS = 300  # the cloud's refresh period
SLOTS_PER_DAY = 86400 // SLOT_SECONDS
SLOT_HOURS = SLOT_SECONDS / 3600.0
CYCLE_DAYS = 7
_SQRT3 = math.sqrt(3.0)
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
_FIRST_COMMISSIONING_DAY = 18628  # 2021-01-01, in days since the Unix epoch

# Key order of the doc's example JSON.
HPS_CENTRAL_FIELDS: tuple[str, ...] = (
    "atsBypass", "bactivePower", "bapparentPower", "bipvBuck3", "bmsStatus",
    "bmsSystemStatus", "bmsVoltStatus", "breactivePower", "bvbus", "bypassFreq",
    "capacity", "checkTime", "cpActivePower", "cpPowerLimit", "dailyEnergyFromMeter",
    "dailyEnergyToMeter", "dailyNonCriticalEnergy", "deviceSn", "dgActivePower",
    "dgApparentPower", "dgCurrentU", "dgCurrentV", "dgCurrentW", "dgGridSelect",
    "dgReactivePower", "dgTodayIntakePower", "dgTodayIntakeTime", "dgTotalIntakePower",
    "dgTotalIntakeTime", "ebatChargeTimeTotal", "ebatChargeTotal", "ebatDischargeTimeTotal",
    "ebatDischargeTotal", "echargeTimeToday", "echargeToday", "edischargeTimeToday",
    "edischargeToday", "egridTimeToday", "egridTimeTotal", "egridToday", "egridTotal",
    "eloadTimeToday", "eloadTimeTotal", "eloadToday", "eloadTotal", "epvTimeToday",
    "epvTimeTotal", "epvToday", "epvTotal", "etoGridTimeToday", "etoGridTimeTotal",
    "etoGridToday", "etoGridTotal", "fac", "gvpvuv", "gvpvvw", "gvpvwu", "ibat",
    "ibuck1", "ibuck2", "ipv", "ipva", "ipvb", "ipvc", "ipvu", "ipvv", "ipvw",
    "loadActivePower", "loadApparentPower", "loadIu", "loadIv", "loadIw", "loadPf",
    "loadReactivePower", "maxChargeCurr", "maxDischargeCurr", "maxTemp", "maxTempGroup",
    "maxTempNum", "maxVolt", "maxVoltCell", "maxVoltGroup", "maxVoltNum", "meterCurrentU",
    "meterCurrentV", "meterCurrentW", "meterPower", "meterQ", "meterS", "minTemp",
    "minTempGroup", "minTempNum", "minVolt", "minVoltCell", "minVoltGroup", "minVoltNum",
    "mvpv", "nonCriticalLoad", "outvu", "outvv", "outvw", "pac", "pf", "ppv", "ppv1",
    "ppv2", "ppv3", "pv1Volt", "pv2NegVolt", "pv2Volt", "pv3NegVolt", "pv3PosVolt",
    "pv3Volt", "runModel", "scrTemp", "status", "systemNo", "temp", "temp1", "temp3",
    "temp4", "time", "totalEnergyFromMeter", "totalEnergyToMeter", "totalNonCriticalEnergy",
    "vbat", "vpv", "vpv2", "vpv3", "vpvuv", "vpvvw", "vpvwu",
)

# Schema "string" fields that only HPS100HV/HPS150HV fill (doc's HV table).
HV_STRING_FIELDS: frozenset[str] = frozenset({
    "ppv1", "ppv2", "ppv3", "pv1Volt", "pv2Volt", "pv2NegVolt", "pv3Volt",
    "pv3PosVolt", "pv3NegVolt", "vpv2", "vpv3", "bvbus", "bipvBuck3",
})

# Energy channels (integer Wh per slot) and time channels (1 per active slot).
_ENERGY = ("pv", "load", "charge", "discharge", "imp", "exp", "m_imp", "m_exp", "noncrit")
_TIMES = ("pv_t", "load_t", "charge_t", "discharge_t", "imp_t", "exp_t")
_ACTIVE_KW = 0.05  # below this a flow does not count as "running time"


@dataclass(frozen=True)
class _Plant:
    """Per-device constants, drawn once from the device seed."""

    seed: int
    rating: float
    hv: bool
    pv_peak: float
    load_scale: float
    noncrit_kw: float
    bat_max_kw: float
    modules: int  # per rack, 16 cells each
    racks: int
    bat_kwh: float
    reserve_soc: float
    commissioning_day: int
    imbalance: tuple[float, float, float]
    pv_split: tuple[float, float, float]
    temp_offset: float


@lru_cache(maxsize=256)
def _plant(seed: int, model: str) -> _Plant:
    dev = SimDevice(sn="", model=model, seed=seed)
    rating, hv = dev.rating_kw, dev.is_hv
    rng = random.Random(seed)
    if hv:
        modules = 20  # ~1 kV battery for the HV models
    elif rating <= 50:
        modules = 8
    elif rating <= 120:
        modules = 12
    else:
        modules = 14
    rack_kwh = modules * 16 * 3.2 * 280 / 1000.0  # 280 Ah LFP cells
    racks = max(1, round(1.5 * rating / rack_kwh))
    split = [rng.uniform(0.9, 1.1) for _ in range(3)]
    return _Plant(
        seed=seed,
        rating=rating,
        hv=hv,
        pv_peak=rating * rng.uniform(0.85, 0.97),
        load_scale=rating * rng.uniform(0.5, 0.6),
        noncrit_kw=rating * rng.uniform(0.02, 0.05),
        bat_max_kw=0.5 * rating,
        modules=modules,
        racks=racks,
        bat_kwh=racks * rack_kwh,
        # Backup reserves as installers set them; all above AtessBatterySocLow's 15 %, so the
        # demo fleet is healthy at every hour (3 choices as before: the draws after it are unchanged).
        reserve_soc=rng.choice((20.0, 25.0, 30.0)),
        commissioning_day=_FIRST_COMMISSIONING_DAY + rng.randrange(0, 900),
        imbalance=tuple(rng.uniform(0.97, 1.03) for _ in range(3)),  # type: ignore[arg-type]
        pv_split=tuple(x / sum(split) for x in split),  # type: ignore[arg-type]
        temp_offset=rng.uniform(-3.0, 3.0),
    )


@dataclass(frozen=True)
class _Day:
    """Slot-by-slot powers (kW) of one day of the cycle and their running sums."""

    ppv: tuple[float, ...]
    load: tuple[float, ...]
    noncrit: tuple[float, ...]
    pbat: tuple[float, ...]  # > 0 discharging
    soc: tuple[float, ...]  # percent at the start of each slot
    end_soc: float  # percent at the next midnight
    cum: dict[str, tuple[int, ...]]  # channel -> SLOTS_PER_DAY + 1 prefix sums


def _load_shape(h: float, weekend: bool) -> float:
    shape = (
        0.25
        + 0.30 * math.exp(-(((h - 7.5) / 1.2) ** 2))
        + 0.60 * math.exp(-(((h - 19.5) / 2.0) ** 2))
    )
    if not weekend and 8.0 <= h <= 17.0:
        shape += 0.20  # working hours of a commercial site
    return shape * (0.8 if weekend else 1.0)


@lru_cache(maxsize=256)
def _cycle(seed: int, model: str) -> tuple[_Day, ...]:
    """The 7 days of the device's cycle, each starting from the previous day's
    closing state of charge; the week is replayed until its first day starts
    where its last day ends, so SOC is continuous at every midnight."""
    soc = _plant(seed, model).reserve_soc
    for _ in range(4):
        days = []
        for d in range(CYCLE_DAYS):
            days.append(_simulate_day(seed, model, d, soc))
            soc = days[-1].end_soc
        if abs(days[0].soc[0] - soc) < 1e-9:
            break
    return tuple(days)


def _day(seed: int, model: str, cycle_day: int) -> _Day:
    return _cycle(seed, model)[cycle_day]


def _simulate_day(seed: int, model: str, cycle_day: int, soc: float) -> _Day:
    p = _plant(seed, model)
    rng = random.Random(seed * 7919 + cycle_day)
    weekend = (cycle_day + _EPOCH_WEEKDAY) % 7 >= 5
    # One clear day per cycle so "PV at noon" is always visibly high somewhere.
    sky = 1.0 if cycle_day == seed % CYCLE_DAYS else rng.uniform(0.4, 1.0)
    eta = 0.95
    ppv_l, load_l, nc_l, pbat_l, soc_l = [], [], [], [], []
    sums = {k: [0] for k in _ENERGY + _TIMES}
    for s in range(SLOTS_PER_DAY):
        h = s * SLOT_HOURS
        if 6.0 < h < 18.0:
            passing_clouds = 1.0 + (1.0 - sky) * rng.uniform(-0.5, 0.5)
            ppv = p.pv_peak * math.sin(math.pi * (h - 6.0) / 12.0) ** 1.3 * sky * passing_clouds
            ppv = min(max(ppv, 0.0), p.rating)
        else:
            ppv = 0.0
        load = p.load_scale * _load_shape(h, weekend) * rng.uniform(0.97, 1.03)
        noncrit = p.noncrit_kw * (1.0 if (not weekend and 8.0 <= h <= 18.0) else 0.4)

        surplus = ppv - load
        charge = discharge = 0.0
        if surplus > 0:
            room_kwh = (100.0 - soc) / 100.0 * p.bat_kwh
            charge = min(surplus, p.bat_max_kw, room_kwh / (SLOT_HOURS * eta))
        else:
            avail_kwh = max(soc - p.reserve_soc, 0.0) / 100.0 * p.bat_kwh
            discharge = min(-surplus, p.bat_max_kw, avail_kwh * eta / SLOT_HOURS)
        pbat = discharge - charge
        grid = load - ppv - pbat  # inverter side, > 0 importing
        meter = grid + noncrit

        ppv_l.append(ppv)
        load_l.append(load)
        nc_l.append(noncrit)
        pbat_l.append(pbat)
        soc_l.append(soc)
        soc += (charge * eta - discharge / eta) * SLOT_HOURS / p.bat_kwh * 100.0
        soc = min(max(soc, 0.0), 100.0)

        flows = {
            "pv": ppv, "load": load, "charge": charge, "discharge": discharge,
            "imp": max(grid, 0.0), "exp": max(-grid, 0.0),
            "m_imp": max(meter, 0.0), "m_exp": max(-meter, 0.0), "noncrit": noncrit,
        }
        for k, kw in flows.items():
            sums[k].append(sums[k][-1] + round(kw * SLOT_HOURS * 1000.0))
            if k + "_t" in sums:
                sums[k + "_t"].append(sums[k + "_t"][-1] + (kw > _ACTIVE_KW))
    return _Day(
        ppv=tuple(ppv_l), load=tuple(load_l), noncrit=tuple(nc_l), pbat=tuple(pbat_l),
        soc=tuple(soc_l), end_soc=soc, cum={k: tuple(v) for k, v in sums.items()},
    )


@lru_cache(maxsize=256)
def _cycle_prefix(seed: int, model: str) -> dict[str, tuple[int, ...]]:
    """Per channel, the sums of whole days 0..k-1 of the cycle (k = 0..7)."""
    out: dict[str, tuple[int, ...]] = {}
    for k in _ENERGY + _TIMES:
        acc = [0]
        for d in range(CYCLE_DAYS):
            acc.append(acc[-1] + _day(seed, model, d).cum[k][-1])
        out[k] = tuple(acc)
    return out


def _whole_days(prefix: tuple[int, ...], n: int) -> int:
    """Sum of the channel over absolute days 0..n-1."""
    return (n // CYCLE_DAYS) * prefix[CYCLE_DAYS] + prefix[n % CYCLE_DAYS]


def slot_of(device: SimDevice, now: float) -> tuple[int, int]:
    """(local day number since 1970-01-01, slot of that day) of the reading at ``now``."""
    local = math.floor((now + device.tz_offset_hours * 3600.0) / SLOT_SECONDS) * SLOT_SECONDS
    day, rem = divmod(local, 86400)
    return int(day), int(rem // SLOT_SECONDS)


def bms_status(pbat: float) -> int:
    """The BMS battery status (Modbus register 176 high byte): 0 hold, 4 charging, 5 discharging."""
    return 4 if pbat < -_ACTIVE_KW else 5 if pbat > _ACTIVE_KW else 0


def _s(x: float) -> str:
    return f"{x:.1f}"


def hps_central_latest(device: SimDevice, now: float) -> dict:
    """The ``data`` object of GET /api/v1/hps/data-last for ``device`` at ``now``."""
    seed = int(device.seed if device.seed is not None else 0)
    p = _plant(seed, device.model)
    day_no, s = slot_of(device, now)
    day = _day(seed, device.model, day_no % CYCLE_DAYS)
    prefix = _cycle_prefix(seed, device.model)
    cum = day.cum

    def today(k: str) -> int:
        return cum[k][s]

    def total(k: str) -> int:
        if day_no < p.commissioning_day:
            return 0
        before = _whole_days(prefix[k], day_no) - _whole_days(prefix[k], p.commissioning_day)
        return before + cum[k][s]

    rng = random.Random(seed * 1_000_003 + day_no * SLOTS_PER_DAY + s)
    h = s * SLOT_HOURS
    R = p.rating
    ppv, load, noncrit, pbat, soc = day.ppv[s], day.load[s], day.noncrit[s], day.pbat[s], day.soc[s]
    p_inv = ppv + pbat
    grid = load - p_inv
    meter = grid + noncrit

    # Grid and output voltages: the output follows the grid through the bypass.
    g_line = [400.0 * (1.0 + rng.uniform(-0.012, 0.012)) for _ in range(3)]
    o_line = [v * (1.0 + rng.uniform(-0.002, 0.002)) for v in g_line]
    o_phase = [v / _SQRT3 for v in o_line]
    fac = 50.0 + rng.uniform(-0.03, 0.03)
    imb = p.imbalance

    def phase_currents(kva: float, line_v: float) -> list[float]:
        i = kva * 1000.0 / (_SQRT3 * line_v)
        return [round(i * f, 1) for f in imb]

    pf = rng.uniform(0.985, 0.999) if abs(p_inv) > _ACTIVE_KW else 0.0
    inv_kva = abs(p_inv) / pf if pf else 0.0
    i_inv = phase_currents(inv_kva, g_line[0])
    load_pf = rng.uniform(0.93, 0.97)
    load_kva = load / load_pf
    load_i = [round(load_kva * 1000.0 / (3 * o_phase[k]) * imb[k], 1) for k in range(3)]
    meter_kva = abs(meter) / 0.97
    meter_i = phase_currents(meter_kva, g_line[0])
    byp_kva = abs(grid) / 0.98

    # Battery: LFP cells, ~3.2 V empty to ~3.33 V full, plus an IR shift with current.
    cell = 3.2 + 0.0013 * soc + 0.03 * (-pbat / p.bat_max_kw) + rng.uniform(-0.002, 0.002)
    cell = min(max(cell, 3.0), 3.45)
    series = p.modules * 16
    vbat = cell * series
    ibat = pbat * 1000.0 / vbat
    c_rate_a = p.racks * 140.0  # 0.5 C of 280 Ah per rack
    max_chg = c_rate_a * min(1.0, max(0.0, (100.0 - soc) / 5.0))
    max_dis = c_rate_a * min(1.0, max(0.0, (soc - p.reserve_soc + 5.0) / 5.0))
    bat_temp = 24.0 + p.temp_offset / 2 + 6.0 * abs(pbat) / p.bat_max_kw

    ambient = 22.0 + p.temp_offset + 6.0 * math.cos(2 * math.pi * (h - 15.0) / 24.0)
    ambient += rng.uniform(-0.3, 0.3)

    # PV input(s).
    hv_strings: dict[str, str | None] = dict.fromkeys(HV_STRING_FIELDS)
    if p.hv:
        pw = [ppv * f for f in p.pv_split]
        pos = [(470.0 - 40.0 * ppv / p.pv_peak + rng.uniform(-3, 3)) if ppv > 0 else 0.0 for _ in range(3)]
        neg = [(v + rng.uniform(-2, 2)) if v else 0.0 for v in pos]
        volt = [a + b for a, b in zip(pos, neg)]
        cur = [pw[k] * 1000.0 / volt[k] if volt[k] else 0.0 for k in range(3)]
        vpv, ppv_field = pos[0], pw[0]
        ipv = sum(cur)
        ibuck1, ibuck2 = cur[0], cur[1]
        hv_strings.update({
            "ppv1": _s(ppv), "ppv2": _s(pw[1]), "ppv3": _s(pw[2]),
            "vpv2": _s(neg[0]), "pv1Volt": _s(volt[0]),
            "vpv3": _s(pos[1]), "pv2NegVolt": _s(neg[1]), "pv2Volt": _s(volt[1]),
            "pv3PosVolt": _s(pos[2]), "pv3NegVolt": _s(neg[2]), "pv3Volt": _s(volt[2]),
            "bipvBuck3": _s(cur[2]), "bvbus": _s(1100.0 + rng.uniform(-8, 8)),
        })
    else:
        vpv = (620.0 - 50.0 * ppv / p.pv_peak + rng.uniform(-4, 4)) if ppv > 0 else 0.0
        ppv_field = ppv
        ipv = ppv * 1000.0 / vpv if vpv else 0.0
        ibuck1 = ipv * 0.5 * imb[0]
        ibuck2 = max(ipv - ibuck1, 0.0)

    racks, modules = p.racks, p.modules
    minutes = lambda k: float(today(k) * SLOT_SECONDS // 60)
    hours = lambda k: round(total(k) * SLOT_HOURS, 1)
    kwh_today = lambda k: round(today(k) / 1000.0, 1)
    kwh_total = lambda k: round(total(k) / 1000.0, 1)
    # "+ 0.0" turns -0.0 into 0.0.
    r1, r2, r3 = (lambda x: round(x, 1) + 0.0), (lambda x: round(x, 2) + 0.0), (lambda x: round(x, 3) + 0.0)

    data = {
        "atsBypass": 0,
        "bactivePower": r2(grid),
        "bapparentPower": r2(byp_kva),
        "bmsStatus": bms_status(pbat),
        "bmsSystemStatus": 1,
        "bmsVoltStatus": 1,
        "breactivePower": r2(math.sqrt(max(byp_kva**2 - grid**2, 0.0))),
        "bypassFreq": r2(fac + rng.uniform(-0.01, 0.01)),
        "capacity": int(round(soc)),
        "checkTime": 60.0,
        "cpActivePower": r2(meter),
        "cpPowerLimit": r1(0.8 * R),
        "dailyEnergyFromMeter": kwh_today("m_imp"),
        "dailyEnergyToMeter": kwh_today("m_exp"),
        "dailyNonCriticalEnergy": kwh_today("noncrit"),
        "deviceSn": device.sn,
        "dgActivePower": 0.0, "dgApparentPower": 0.0,
        "dgCurrentU": 0.0, "dgCurrentV": 0.0, "dgCurrentW": 0.0,
        "dgGridSelect": 0,
        "dgReactivePower": 0.0,
        "dgTodayIntakePower": 0.0, "dgTodayIntakeTime": 0.0,
        "dgTotalIntakePower": 0.0, "dgTotalIntakeTime": 0.0,
        "ebatChargeTimeTotal": hours("charge_t"),
        "ebatChargeTotal": kwh_total("charge"),
        "ebatDischargeTimeTotal": hours("discharge_t"),
        "ebatDischargeTotal": kwh_total("discharge"),
        # The doc labels the two battery *time* fields "(kWh)"; they are times.
        # Minutes, like every other "...TimeToday" (assumed).
        "echargeTimeToday": minutes("charge_t"),
        "echargeToday": kwh_today("charge"),
        "edischargeTimeToday": minutes("discharge_t"),
        "edischargeToday": kwh_today("discharge"),
        "egridTimeToday": minutes("imp_t"),
        "egridTimeTotal": hours("imp_t"),
        "egridToday": kwh_today("imp"),
        "egridTotal": kwh_total("imp"),
        "eloadTimeToday": minutes("load_t"),
        "eloadTimeTotal": hours("load_t"),
        "eloadToday": kwh_today("load"),
        "eloadTotal": kwh_total("load"),
        "epvTimeToday": minutes("pv_t"),
        "epvTimeTotal": hours("pv_t"),
        "epvToday": kwh_today("pv"),
        "epvTotal": kwh_total("pv"),
        "etoGridTimeToday": minutes("exp_t"),
        "etoGridTimeTotal": hours("exp_t"),
        "etoGridToday": kwh_today("exp"),
        "etoGridTotal": kwh_total("exp"),
        "fac": r2(fac),
        "gvpvuv": r1(g_line[0]), "gvpvvw": r1(g_line[1]), "gvpvwu": r1(g_line[2]),
        "ibat": r1(ibat),
        "ibuck1": r1(ibuck1),
        "ibuck2": r1(ibuck2),
        "ipv": r1(ipv),
        # Inductor currents: the grid currents plus switching ripple.
        "ipva": r1(i_inv[0] * 1.02), "ipvb": r1(i_inv[1] * 1.02), "ipvc": r1(i_inv[2] * 1.02),
        "ipvu": i_inv[0], "ipvv": i_inv[1], "ipvw": i_inv[2],
        "loadActivePower": r2(load),
        "loadApparentPower": r2(load_kva),
        "loadIu": load_i[0], "loadIv": load_i[1], "loadIw": load_i[2],
        "loadPf": r1(load_pf * 100.0),  # a percentage, as the platform sends it (PLATFORM.md 3)
        "loadReactivePower": r2(math.sqrt(max(load_kva**2 - load**2, 0.0))),
        "maxChargeCurr": r1(max_chg),
        "maxDischargeCurr": r1(max_dis),
        "maxTemp": r1(bat_temp + rng.uniform(1.0, 3.0)),
        "maxTempGroup": rng.randint(1, racks),
        "maxTempNum": rng.randint(1, modules),
        "maxVolt": r3(cell + rng.uniform(0.004, 0.015)),
        "maxVoltCell": rng.randint(1, modules),
        "maxVoltGroup": rng.randint(1, racks),
        "maxVoltNum": rng.randint(1, 16),
        "meterCurrentU": meter_i[0], "meterCurrentV": meter_i[1], "meterCurrentW": meter_i[2],
        "meterPower": r2(meter),
        "meterQ": r2(math.sqrt(max(meter_kva**2 - meter**2, 0.0))),
        "meterS": r2(meter_kva),
        "minTemp": r1(bat_temp - rng.uniform(0.5, 2.0)),
        "minTempGroup": rng.randint(1, racks),
        "minTempNum": rng.randint(1, modules),
        "minVolt": r3(cell - rng.uniform(0.004, 0.015)),
        "minVoltCell": rng.randint(1, modules),
        "minVoltGroup": rng.randint(1, racks),
        "minVoltNum": rng.randint(1, 16),
        "mvpv": r3(cell),
        "nonCriticalLoad": r2(noncrit),
        "outvu": r1(o_phase[0]), "outvv": r1(o_phase[1]), "outvw": r1(o_phase[2]),
        "pac": r2(pbat),
        "pf": r3(pf),
        "ppv": r2(ppv_field),
        "runModel": 5,
        "scrTemp": r1(ambient + 2.0 + 10.0 * abs(grid) / R),
        "status": 2,
        "systemNo": 1,
        "temp": r1(ambient),
        "temp1": r1(ambient + 5.0 + 25.0 * abs(p_inv) / R),
        "temp3": r1(ambient + 3.0 + 20.0 * ppv / R),
        "temp4": r1(ambient + 4.0 + 20.0 * abs(p_inv) / R),
        "time": _time.strftime("%Y-%m-%d %H:%M:%S", _time.gmtime(day_no * 86400 + s * SLOT_SECONDS)),
        "totalEnergyFromMeter": kwh_total("m_imp"),
        "totalEnergyToMeter": kwh_total("m_exp"),
        "totalNonCriticalEnergy": kwh_total("noncrit"),
        "vbat": r1(vbat),
        "vpv": r1(vpv),
        "vpvuv": r1(o_line[0]), "vpvvw": r1(o_line[1]), "vpvwu": r1(o_line[2]),
    }
    data.update(hv_strings)
    return {k: data[k] for k in HPS_CENTRAL_FIELDS}


# Payload builders by device family; the other families (simulator/families.py)
# register themselves here when that module is imported, just below.
LATEST_BUILDERS = {"hps_central": hps_central_latest}

from atess_exporter.simulator import families as _families  # noqa: E402,F401  (fills LATEST_BUILDERS)
