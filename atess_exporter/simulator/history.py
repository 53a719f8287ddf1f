"""History endpoints of the simulated ATESS cloud ("historical data" per family).

``GET <history path>?deviceSn=&startDate=&endDate=&pageNo=&pageSize=`` (the
central HPS path is documented, the rest assumed). Generic over
``physics.LATEST_BUILDERS``: the row of a 5-minute slot is exactly the payload the
latest-data endpoint would have served during that slot, whose ``time``
(plant-local ``YYYY-MM-DD HH:MM:SS``) is the slot's start.

From the vendor doc: ``startDate``/``endDate`` are date-times
(``2023-10-01 00:00:00`` .. ``2023-10-01 23:59:59``); pages start at ``pageNo=1``;
``data`` is ``{datas, offset, pageNo, pageSize, total}``. A range cap is likely (7
days per request in a related vendor API).

Assumptions (the doc is silent), each a choice a client must survive:
  * only the day of ``startDate`` and ``endDate`` counts (plant-local days, both
    inclusive; days of the servers' zone when the Simulator has
    ``clock_utc_offset_hours``); a bare ``YYYY-MM-DD`` is accepted too;
  * the cap counts days inclusively (7 days = start .. start + 6); exceeding it
    is an API error envelope (HTTP 200, code ``RANGE_ERROR_CODE``);
  * rows come oldest first; slots later than the simulator's clock do not exist
    yet (so today's history is partial and future days are empty);
  * ``total`` counts the rows in the whole range, ``offset`` is the first row's
    index; a page past the end has an empty ``datas``;
  * ``pageNo`` defaults to 1 and ``pageSize`` to 10; ``pageSize`` above
    ``max_page_size`` is refused rather than silently capped.

The cap and the page-size limit are read from the Simulator when it carries
``history_max_days`` / ``history_max_page_size`` attributes (so a test can set
``sim.history_max_days = 3``), else from the handler's own arguments.
"""

from __future__ import annotations

import math
import re
import time as _time
from datetime import date
from typing import TYPE_CHECKING, Any, Callable

from atess_exporter.simulator.physics import LATEST_BUILDERS, SLOT_SECONDS, SLOTS_PER_DAY

if TYPE_CHECKING:  # server imports this module; import it lazily at run time
    from atess_exporter.simulator.server import Reply, Request, Simulator

DEFAULT_MAX_DAYS = 7
DEFAULT_MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 10
RANGE_ERROR_CODE = 500      # the doc's "fail"; the real code is unknown
PARAM_ERROR_CODE = 400

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?: \d{2}:\d{2}:\d{2})?$")
_EPOCH = date(1970, 1, 1)


def _parse_date(text: str | None) -> date | None:
    match = _DATE.match(text or "")
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def _parse_int(text: str | None, default: int) -> int | None:
    if text is None or text == "":
        return default
    if not re.match(r"^\d{1,9}$", text.strip()):
        return None
    return int(text)


def history_rows(family: str, device: Any, start: date, end: date, now: float,
                 offset: int = 0, limit: int | None = None,
                 clock_utc_offset_hours: float | None = None) -> tuple[int, list[dict]]:
    """(total rows in [start, end], the rows from ``offset``, at most ``limit``).

    Day ``d`` and slot ``s`` of the calendar start at Unix time
    ``d*86400 + s*300 - zone_offset``; only slots that have started by ``now``
    exist. The calendar (the window's days and each row's ``time``) is the
    plant's, or the servers' zone when ``clock_utc_offset_hours`` is given.
    """
    builder = LATEST_BUILDERS[family]
    hours = device.tz_offset_hours if clock_utc_offset_hours is None else clock_utc_offset_hours
    offset_s = hours * 3600.0
    first = (start - _EPOCH).days * SLOTS_PER_DAY                 # absolute local slot numbers
    last = (end - _EPOCH).days * SLOTS_PER_DAY + SLOTS_PER_DAY - 1
    newest = math.floor((now + offset_s) / SLOT_SECONDS)          # the slot running at `now`
    last = min(last, newest)
    total = max(0, last - first + 1)
    stop = total if limit is None else min(total, offset + limit)
    rows = []
    for i in range(offset, stop):
        slot = first + i
        local = slot * SLOT_SECONDS
        row = dict(builder(device, local - offset_s))
        row["time"] = _time.strftime("%Y-%m-%d %H:%M:%S", _time.gmtime(local))
        rows.append(row)
    return total, rows


def history_handler(family: str, max_days: int = DEFAULT_MAX_DAYS,
                    max_page_size: int = DEFAULT_MAX_PAGE_SIZE) -> Callable[["Simulator", "Request"], "Reply"]:
    """Handler of a "historical data" endpoint for one device family."""
    if family not in LATEST_BUILDERS:
        raise ValueError(f"no payload builder for family {family!r}; known: {sorted(LATEST_BUILDERS)}")

    def handle(sim: Simulator, req: Request) -> Reply:
        from atess_exporter.simulator.server import Reply, html_page

        if req.method != "GET":
            return Reply(405, body=html_page(405, "Not Allowed"))
        sn = req.sn
        if sn is None:
            return sim.error(PARAM_ERROR_CODE, "deviceSn must not be empty")
        dev = sim.devices.get(sn)
        if dev is None or dev.family != family:
            return sim.error(PARAM_ERROR_CODE, "not found")
        start = _parse_date(req.query.get("startDate"))
        end = _parse_date(req.query.get("endDate"))
        if start is None or end is None:
            return sim.error(PARAM_ERROR_CODE, "startDate and endDate must be date-times (yyyy-MM-dd HH:mm:ss)")
        if end < start:
            return sim.error(PARAM_ERROR_CODE, "endDate must not be before startDate")
        cap = int(getattr(sim, "history_max_days", max_days))
        if (end - start).days + 1 > cap:
            return sim.error(RANGE_ERROR_CODE, f"the query range must not exceed {cap} days")
        page_no = _parse_int(req.query.get("pageNo"), 1)
        page_size = _parse_int(req.query.get("pageSize"), DEFAULT_PAGE_SIZE)
        size_cap = int(getattr(sim, "history_max_page_size", max_page_size))
        if page_no is None or page_no < 1:
            return sim.error(PARAM_ERROR_CODE, "pageNo must be a whole number from 1")
        if page_size is None or not 1 <= page_size <= size_cap:
            return sim.error(PARAM_ERROR_CODE, f"pageSize must be a whole number from 1 to {size_cap}")
        total, rows = history_rows(family, dev, start, end, sim.clock(),
                                   offset=(page_no - 1) * page_size, limit=page_size,
                                   clock_utc_offset_hours=sim.clock_utc_offset_hours)
        if sim.dialect == "platform":
            from atess_exporter.simulator.platform import speak
            rows = [speak(family, dev, row) for row in rows]
        data = {"datas": rows, "offset": (page_no - 1) * page_size, "pageNo": page_no, "pageSize": page_size,
                "total": total}
        return Reply(envelope=sim.envelope_dict(data))

    return handle
