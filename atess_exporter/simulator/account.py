"""The account side of the simulated API: plants, dataloggers, device lists, settings.

Shapes follow the vendor doc where it shows them (docs/api.md):
  * device lists are keyed by the datalogger, ``?dataLogSn=``, and answer a
    bare JSON array (the documented BCU list ``bms/buc-base-info/list``); rows
    carry ``deviceSn``, ``dataLogSn``, ``firmwareVersion``, ``lost`` (bool),
    ``status`` (a string), ``address``, ``deviceNo``, ``systemNo``, ``updateTime``;
  * settings (``hps/big-setting``, ``hps/small-setting``, ``bms/bcu-setting``)
    answer an object; a modifying method gets 405, which no test should ever
    see from the exporter.
Assumed (undocumented): the plant and datalogger lists are page objects
``{datas, total, pageNo, pageSize, offset}`` like the documented history; the
datalogger list is keyed by ``plantId``; device-list rows also carry
``deviceModel`` (the exporter needs the model to tell HPS100HV/HPS150HV apart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS, NON_DEVICE_FAMILIES
from atess_exporter.simulator import platform
from atess_exporter.simulator.device import SimDevice

if TYPE_CHECKING:
    from atess_exporter.simulator.server import Reply, Request, Simulator

PLANTS: dict[str, dict[str, Any]] = {
    "PL1001": {"plantName": "Harbour Depot", "capacity": "300", "country": "Germany", "city": "Kiel", "timezone": "Europe/Berlin"},
    "PL1002": {"plantName": "Hill Farm", "capacity": "85.5", "country": "Germany", "city": "Eutin", "timezone": "Europe/Berlin"},
}
OFFLINE_DATALOGS = {"DL1001B"}  # one offline datalogger, so the demo shows both states

_MODES = ("Load First", "Battery First", "Economy", "Peak Shaving")


def _page(sim: "Simulator", req: "Request", rows: list[dict]) -> "Reply":
    from atess_exporter.simulator.server import Reply

    try:
        no = int(req.query.get("pageNo", "1"))
        size = int(req.query.get("pageSize", "20"))
    except ValueError:
        return sim.error(400, "pageNo and pageSize must be numbers")
    if no < 1 or not 1 <= size <= 1000:
        return sim.error(400, "pageNo >= 1, 1 <= pageSize <= 1000")
    offset = (no - 1) * size
    chunk = rows[offset: offset + size]
    return Reply(envelope=sim.envelope_dict(
        {"datas": chunk, "offset": offset, "pageNo": no, "pageSize": size, "total": len(rows)}))


def _get_only(handler: Callable) -> Callable:
    def handle(sim: "Simulator", req: "Request") -> "Reply":
        from atess_exporter.simulator.server import Reply, html_page

        if req.method != "GET":
            return Reply(405, body=html_page(405, "Not Allowed"))
        return handler(sim, req)

    return handle


def _plant_rows(sim: "Simulator") -> list[dict]:
    ids = sorted({d.plant_id for d in sim.devices.values()})
    rows = [{"plantId": pid, **PLANTS.get(pid, {"plantName": pid})} for pid in ids]
    if sim.dialect == "platform":
        zone = {d.plant_id: d.tz_offset_hours for d in sim.devices.values()}
        rows = [platform.plant_row(row, zone[row["plantId"]], i) for i, row in enumerate(rows)]
    return rows


def _datalog_rows(sim: "Simulator", plant_id: str | None) -> list[dict]:
    seen: dict[str, str] = {}
    for d in sim.devices.values():
        if d.datalog_sn and (plant_id is None or d.plant_id == plant_id):
            seen.setdefault(d.datalog_sn, d.plant_id)
    rows = [{"dataLogSn": sn, "plantId": pid, "model": "DL-WiFi", "status": 0 if sn in OFFLINE_DATALOGS else 1}
            for sn, pid in sorted(seen.items())]
    return [platform.datalog_row(r) for r in rows] if sim.dialect == "platform" else rows


def _device_row(d: SimDevice, index: int = 0) -> dict:
    """A row of a device list, the documented BCU list's fields plus deviceModel."""
    return {"address": index + 1, "dataLogSn": d.datalog_sn, "deviceModel": d.model, "deviceNo": index,
            "deviceSn": d.sn, "firmwareVersion": d.firmware, "lost": d.lost, "status": "-1" if d.lost else "2",
            "systemNo": 1, "updateTime": "2026-01-01 00:00:00"}


# GET /api/v1/bms/bcu-setting: the doc's field list with its example values.
BCU_SETTINGS: dict[str, Any] = {
    "batCellNumber": 16, "batPackNumber": 12, "cellFullChargeVoltage": 3.4, "cellFullDischargeVoltage": 3,
    "chargingCurrentCalibrationDenominator": 1, "chargingCurrentCalibrationNumerator": 1,
    "currentCalibrationEnable": 0, "currentRatio": 1,
    "dischargingCurrentCalibrationDenominator": 1, "dischargingCurrentCalibrationNumerator": 1,
    "level1CellVoltHighWarning": 3.4, "level1CellVoltLowWarning": 2.8, "level1ChargeCurrHighWarning": 0,
    "level1ChargeTEMPHighWarning": 35, "level1ChargeTEMPLowWarning": 0, "level1DischargeCurrHighWarning": 0,
    "level1DischargeTEMPHighWarning": 35, "level1DischargeTEMPLowWarning": 0,
    "level2CellVoltHighFault": 3.5, "level2CellVoltLowFault": 2.6, "level2ChargeCurrHighFault": 0,
    "level2ChargeTEMPHighFault": 40, "level2ChargeTEMPLowFault": -5, "level2DischargeCurrHighFault": 0,
    "level2DischargeTEMPHighFault": 40, "level2DischargeTEMPLowFault": -10,
    "level3CellVoltHighProtection": 3.6, "level3CellVoltLowProtection": 2.4, "level3ChargeCurrHighProtection": 0,
    "level3ChargeTEMPHighProtection": 45, "level3ChargeTEMPLowProtection": 5, "level3DischargeCurrHighProtection": 0,
    "level3DischargeTEMPHighProtection": 45, "level3DischargeTEMPLowProtection": -20,
    "pasBalWaitTimeHour": 0.001,
}


def settings_of(d: SimDevice) -> dict:
    """Deterministic settings. The doc shows only the first and last field of the HPS
    settings (central `atsComNo` .. `valleyPeriodTime5`, HV adds `sharedBatteryEnable`;
    string `batCapacity` .. `valleyPeriodTime2`); the fields between are assumed."""
    if d.family == "bcu":
        return dict(BCU_SETTINGS)
    seed = d.seed or 0    # set by SimDevice itself
    if d.family == "hps_string":
        periods = 2
        data: dict[str, Any] = {"batCapacity": str(round(d.rating_kw * 2)), "runModel": seed % 4}
    else:
        periods = 5
        data = {"atsComNo": seed % 3, "runModel": seed % 4, "socLowLimit": 15, "socHighLimit": "95"}
        if d.is_hv:
            data["sharedBatteryEnable"] = 0
    data.update({f"valleyPeriodTime{i}": f"0{i}:00-0{i + 1}:00" for i in range(1, periods + 1)})
    return data


def account_routes() -> dict[str, Callable]:
    routes: dict[str, Callable] = {}

    @_get_only
    def plant_list(sim, req):
        return _page(sim, req, _plant_rows(sim))

    @_get_only
    def plant_info(sim, req):
        rows = [r for r in _plant_rows(sim) if r["plantId"] == req.query.get("plantId")]
        return sim.error(400, "not found") if not rows else _reply(sim, rows[0])

    @_get_only
    def datalog_list(sim, req):
        return _page(sim, req, _datalog_rows(sim, req.query.get("plantId")))

    @_get_only
    def datalog_info(sim, req):
        rows = [r for r in _datalog_rows(sim, None) if r["dataLogSn"] == req.query.get("dataLogSn")]
        return sim.error(400, "not found") if not rows else _reply(sim, rows[0])

    routes[DEFAULT_ENDPOINTS["plant"]["list"]] = plant_list
    routes[DEFAULT_ENDPOINTS["plant"]["info"]] = plant_info
    routes[DEFAULT_ENDPOINTS["datalog"]["list"]] = datalog_list
    routes[DEFAULT_ENDPOINTS["datalog"]["info"]] = datalog_info
    for family, ops in DEFAULT_ENDPOINTS.items():
        if family in NON_DEVICE_FAMILIES:
            continue
        routes[ops["list"]] = _get_only(_family_list(family))
        routes[ops["info"]] = _get_only(_family_device(family, _device_row))
        routes[ops["settings"]] = _get_only(_family_device(family, settings_of))
    return routes


def _reply(sim: "Simulator", data: Any) -> "Reply":
    from atess_exporter.simulator.server import Reply

    return Reply(envelope=sim.envelope_dict(data))


def _family_list(family: str) -> Callable:
    def handle(sim, req):
        datalog = req.query.get("dataLogSn")
        if not datalog:
            return sim.error(400, "dataLogSn must not be empty")
        devices = [d for _, d in sorted(sim.devices.items()) if d.family == family and d.datalog_sn == datalog]
        rows = [_device_row(d, i) for i, d in enumerate(devices)]
        if sim.dialect == "platform":
            rows = [platform.device_row(r, d) for r, d in zip(rows, devices)]
        return _reply(sim, rows)

    return handle


def _family_device(family: str, build: Callable[[SimDevice], dict]) -> Callable:
    def handle(sim, req):
        d = sim.devices.get(req.sn or "")
        if d is None or d.family != family:
            return sim.error(400, "not found")
        return _reply(sim, build(d))

    return handle
