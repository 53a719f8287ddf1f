"""Which zone the history rows' `time` is written in, before a backfill starts.

History rows cannot reveal it: a window's rows and the window itself are both
written in the servers' zone. One latest-data call per device (at most
MAX_CALLS devices) can: the same measurement as the live exporter's
(readings/clock.py). An explicit `atess.timezone` makes no call. A backfill
never guesses: without a measurement it stops and asks for atess.timezone,
because wrong timestamps written into a TSDB stay wrong.
"""

from __future__ import annotations

import time
from datetime import tzinfo
from typing import Callable

from atess_exporter.api.client import AtessClient, AtessError
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.outside.zones import fixed_zone
from atess_exporter.readings.clock import ServerClock, parse_wall

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
    if clock.decision.offset is None:
        raise CalibrationError(
            f"cannot tell the zone the API writes times in: no agreeing fresh latest reading among "
            f"{len(measured)} device{'s' if len(measured) != 1 else ''}; set atess.timezone (e.g. UTC+8)")
    return fixed_zone(clock.decision.offset)
