"""When this replica lists the account: the shards share the plant list's daily budget.

The platform allows 10 plant-list calls a day per account (PLATFORM.md 9), and
the API cannot list one shard's devices: every replica lists the whole account.
So without `discovery.refresh_seconds` set, a replica of a COUNT-shard
deployment lists every 10800 x COUNT s, and the account as a whole is still
listed 8 times a day (config/model.py `refresh_every`).

The replicas take turns without talking to each other: shard i lists on a grid
of that period on the wall clock, offset by i x period / COUNT, the first slot
at least half a period after its last listing (a start-up without a saved
topology lists at once, and then joins its grid). A single replica lists one
period after its last listing. An unfinished walk continues sooner
(CONTINUE_SECONDS), whatever the period.
"""

from __future__ import annotations

import logging

from atess_exporter.config import Config
from atess_exporter.config.model import DISCOVERY_REFRESH_SECONDS, PLANT_LIST_CALLS_PER_DAY

log = logging.getLogger(__name__)

CONTINUE_SECONDS = 300.0  # an unfinished discovery walk continues this soon (the API's 5-minute limit per list)


def period(config: Config) -> float:
    """Seconds between this replica's listings of the account."""
    return config.discovery.refresh_every(config.shard[1])


def next_listing(config: Config, last: float) -> float:
    """Wall time of this replica's next listing after one at `last` (wall time): within
    [last + period / 2, last + 1.5 period) whatever the clock says."""
    index, count = config.shard
    every = period(config)
    if count <= 1:
        return last + every
    earliest = last + every / 2
    return earliest + (index * every / count - earliest) % every


def warn_over_budget(config: Config) -> None:
    """One warning when the replicas together list the account more than the platform allows."""
    count = config.shard[1]
    every = period(config)
    per_day = 86400 * count / every
    if per_day <= PLANT_LIST_CALLS_PER_DAY:
        return
    log.warning("discovery.refresh_seconds lists the account more than 10 times a day across the shards; the "
                "platform the ATESS cloud was built on allows 10 plant-list calls a day per account, and every "
                "shard lists the whole account", extra={"fields": {
                    "setting": "discovery.refresh_seconds", "refresh_seconds": every, "shards": count,
                    "account_listings_per_day": round(per_day, 1),
                    "suggested": DISCOVERY_REFRESH_SECONDS * count,
                    "fix": "remove discovery.refresh_seconds (the default is shared by the shards) or raise it"}})
