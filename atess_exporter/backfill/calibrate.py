"""Which zone the history rows' `time` is written in, before a backfill starts.

History rows cannot reveal it: a window's rows and the window itself are both
written in the servers' zone. One latest-data call per device (at most
MAX_CALLS devices) can: the same measurement as the live exporter's
(readings/clock.py). An explicit `atess.timezone` makes no call. Without an
agreeing fresh reading (the live exporter may have just spent the devices' calls:
the API answers "too frequent") the offset the live exporter measured, kept in its
state file, serves. A backfill never guesses: with neither it stops and asks for
atess.timezone, because wrong timestamps written into a TSDB stay wrong.
"""

from __future__ import annotations

import logging
import time
from datetime import tzinfo
from typing import Callable

from atess_exporter.api.client import AtessClient, AtessError
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.live.readingtimes import remembered_offset
from atess_exporter.live.state import load_state
from atess_exporter.outside.zones import fixed_zone
from atess_exporter.readings.clock import ServerClock, parse_wall

log = logging.getLogger("atess_exporter.backfill")

MAX_CALLS = 8


class CalibrationError(Exception):
    pass


def servers_zone(config: Config, client: AtessClient, devices: list[DeviceConfig],
                 wall_clock: Callable[[], float] = time.time) -> tzinfo:
    zone = config.api_zone()
    if zone is not None:
        return zone
    measured = [d for d in devices if not d.timezone][:MAX_CALLS]
    if not measured:
        return fixed_zone(0)  # every device has its own zone: the servers' is never used
    clock = ServerClock()
    for device in measured:
        try:
            polled = wall_clock()
            data = client.latest(config.endpoint(device.type, "latest"), device.sn)
        except (AtessError, KeyError):
            continue
        wall = parse_wall(data.get("time"))
        if wall is not None:
            clock.observe(device.sn, wall, polled)
    clock.decide()
    if clock.decision.offset is None and config.state_file:
        saved = remembered_offset(load_state(config.state_file).get("clock"), config.state_file)
        if saved is not None:
            log.info("API servers' clock taken from the live exporter's state file (no fresh reading agreed)",
                     extra={"fields": {"offset_seconds": saved, "path": config.state_file}})
            return fixed_zone(saved)
    if clock.decision.offset is None:
        raise CalibrationError(
            f"cannot tell the zone the API writes times in: no agreeing fresh latest reading among "
            f"{len(measured)} device{'s' if len(measured) != 1 else ''} and none in the state file; "
            "set atess.timezone (e.g. UTC+8)")
    return fixed_zone(clock.decision.offset)
