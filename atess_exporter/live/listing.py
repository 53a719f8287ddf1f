"""When this replica lists the account: the shards share the plant list's daily budget.

The platform allows 10 plant-list calls a day per account (PLATFORM.md 9); every
page of the plant list is a call, and the API cannot list one shard's devices:
every replica lists the whole account. So without `discovery.refresh_seconds`
set, a replica of a COUNT-shard deployment whose last walk read the plant list
in PAGES pages lists every 10800 x COUNT x PAGES s, and the account as a whole
still spends 8 plant-list calls a day (config/model.py `refresh_every`). The
pages are measured by discovery (Topology.plant_list_calls, kept in the state
file with the topology), not asked of the user; `PlantPages` says once why the
period grew, or warns when a `refresh_seconds` the user set overspends.

The replicas take turns without talking to each other: shard i lists on a grid
of that period on the wall clock, offset by i x period / COUNT, the first slot
at least half a period after its last listing (a start-up without a saved
topology lists at once, and then joins its grid). A single replica lists one
period after its last listing. An unfinished walk continues sooner
(CONTINUE_SECONDS), whatever the period.
"""

from __future__ import annotations

import logging
import math

from atess_exporter.config import Config
from atess_exporter.config.model import DISCOVERY_REFRESH_SECONDS, MAX_PAGE_SIZE, PLANT_LIST_CALLS_PER_DAY

log = logging.getLogger(__name__)

CONTINUE_SECONDS = 300.0  # an unfinished discovery walk continues this soon (the API's 5-minute limit per list)


def period(config: Config, pages: int = 1) -> float:
    """Seconds between this replica's listings of an account whose plant list takes `pages`
    pages (0: not measured yet, taken as 1)."""
    return config.discovery.refresh_every(config.shard[1], pages)


def next_listing(config: Config, last: float, pages: int = 1) -> float:
    """Wall time of this replica's next listing after one at `last` (wall time): within
    [last + period / 2, last + 1.5 period) whatever the clock says."""
    index, count = config.shard
    every = period(config, pages)
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


class PlantPages:
    """What the measured plant-list pages mean for the listing period, said once per count:
    an info line when the default period grew (new devices appear later), a warning when
    a refresh_seconds the user set makes the replicas overspend the daily calls."""

    def __init__(self, config: Config):
        self.config = config
        self._told = 1   # one page: today's period, nothing to say

    def measured(self, pages: int, plants: int) -> None:
        """A complete walk read the plant list in `pages` pages and found `plants` plants."""
        if pages <= 1 or pages == self._told:
            return
        self._told = pages
        settings, count = self.config.discovery, self.config.shard[1]
        every = period(self.config, pages)
        fields = {"plant_list_pages": pages, "plants": plants, "page_size": settings.page_size, "shards": count}
        if not settings.refresh_set:
            log.info("the plant list takes several pages, each one of the platform's 10 plant-list calls a day: "
                     "this replica lists the account less often, so new devices appear later; a larger "
                     "discovery.page_size, if the API honours it, means fewer pages", extra={"fields": {
                         **fields, "period_seconds": round(every)}})
            return
        per_day = 86400 * count * pages / every
        if per_day <= PLANT_LIST_CALLS_PER_DAY:
            return
        suggested = {"suggested_refresh_seconds": DISCOVERY_REFRESH_SECONDS * count * pages}
        size = _page_size_within_budget(every, count, plants)
        if size is not None and size > settings.page_size:
            suggested["suggested_page_size"] = size
        log.warning("discovery.refresh_seconds spends more than 10 plant-list calls a day across the shards: "
                    "every page of the plant list is a call, and every shard lists the whole account",
                    extra={"fields": {
                        **fields, "setting": "discovery.refresh_seconds", "refresh_seconds": every,
                        "plant_list_calls_per_day": round(per_day, 1), **suggested,
                        "fix": "remove discovery.refresh_seconds (the default follows the pages) or raise it, or "
                               "raise discovery.page_size if the API honours it (fewer pages)"}})


def _page_size_within_budget(every: float, count: int, plants: int) -> int | None:
    """The page size that lists `plants` plants within the daily calls at this period; None
    when even one page a listing is too many, or no page size allowed is large enough."""
    pages = math.floor(PLANT_LIST_CALLS_PER_DAY * every / (86400 * count))
    if pages < 1 or plants < 1:
        return None
    size = math.ceil(plants / pages)
    return size if size <= MAX_PAGE_SIZE else None
