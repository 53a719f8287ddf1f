"""The account side of the simulated API: plants, dataloggers, device lists, settings.

None of these paths or row fields is documented (NOTES.md: "by analogy,
assumed"); they follow the shape of the confirmed history endpoint: paginated
with ``pageNo``/``pageSize``, rows in ``data.datas``, the last page shorter than
``pageSize``. Settings are served for GET only; a modifying method gets 405,
which no test should ever see from the exporter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..endpoints import DEFAULT_ENDPOINTS, NON_DEVICE_FAMILIES
from .device import SimDevice

if TYPE_CHECKING:
    from .server import Reply, Request, Simulator

PLANTS: dict[str, dict[str, Any]] = {
    "PL1001": {"plantName": "Harbour Depot", "capacity": "300", "country": "Germany", "city": "Kiel", "timezone": "Europe/Berlin"},
    "PL1002": {"plantName": "Hill Farm", "capacity": "85.5", "country": "Germany", "city": "Eutin", "timezone": "Europe/Berlin"},
}
OFFLINE_DATALOGS = {"DL1001B"}  # one offline datalogger, so the demo shows both states

_MODES = ("Load First", "Battery First", "Economy", "Peak Shaving")


def _page(sim: "Simulator", req: "Request", rows: list[dict]) -> "Reply":
    from .server import Reply

    try:
        no = int(req.query.get("pageNo", "1"))
        size = int(req.query.get("pageSize", "20"))
    except ValueError:
        return sim.error(400, "pageNo and pageSize must be numbers")
    if no < 1 or not 1 <= size <= 1000:
        return sim.error(400, "pageNo >= 1, 1 <= pageSize <= 1000")
    chunk = rows[(no - 1) * size: no * size]
    return Reply(envelope=sim.envelope_dict({"datas": chunk, "pageNo": no, "pageSize": size, "total": len(rows)}))


def _get_only(handler: Callable) -> Callable:
    def handle(sim: "Simulator", req: "Request") -> "Reply":
        from .server import Reply, html_page

        if req.method != "GET":
            return Reply(405, body=html_page(405, "Not Allowed"))
        return handler(sim, req)

    return handle


def _plant_rows(sim: "Simulator") -> list[dict]:
    ids = sorted({d.plant_id for d in sim.devices.values()})
    return [{"plantId": pid, **PLANTS.get(pid, {"plantName": pid})} for pid in ids]


def _datalog_rows(sim: "Simulator", plant_id: str | None) -> list[dict]:
    seen: dict[str, str] = {}
    for d in sim.devices.values():
        if d.datalog_sn and (plant_id is None or d.plant_id == plant_id):
            seen.setdefault(d.datalog_sn, d.plant_id)
    return [{"datalogSn": sn, "plantId": pid, "model": "DL-WiFi", "status": 0 if sn in OFFLINE_DATALOGS else 1}
            for sn, pid in sorted(seen.items())]


def _device_row(d: SimDevice) -> dict:
    return {"deviceSn": d.sn, "deviceModel": d.model, "plantId": d.plant_id, "datalogSn": d.datalog_sn,
            "firmwareVersion": d.firmware, "ratedPower": str(d.rating_kw)}


def settings_of(d: SimDevice) -> dict:
    """Deterministic settings: numbers (some as strings, as the vendor sends them) and text."""
    return {"deviceSn": d.sn, "exportLimit": str(round(d.rating_kw * 0.8, 1)), "socLowLimit": 15, "socHighLimit": "95",
            "runModel": d.seed % len(_MODES), "workMode": _MODES[d.seed % len(_MODES)], "gridCode": "VDE-AR-N 4105"}


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
        rows = [r for r in _datalog_rows(sim, None) if r["datalogSn"] == req.query.get("datalogSn")]
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


def _reply(sim: "Simulator", data: dict) -> "Reply":
    from .server import Reply

    return Reply(envelope=sim.envelope_dict(data))


def _family_list(family: str) -> Callable:
    def handle(sim, req):
        plant = req.query.get("plantId")
        rows = [_device_row(d) for sn, d in sorted(sim.devices.items())
                if d.family == family and (plant is None or d.plant_id == plant)]
        return _page(sim, req, rows)

    return handle


def _family_device(family: str, build: Callable[[SimDevice], dict]) -> Callable:
    def handle(sim, req):
        d = sim.devices.get(req.sn or "")
        if d is None or d.family != family:
            return sim.error(400, "not found")
        return _reply(sim, build(d))

    return handle
