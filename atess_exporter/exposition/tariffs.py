"""The configured energy prices as they stand now, per plant (config `tariffs:`).

    atess_tariff_import_price_per_kwh{plant_id,currency}   price of energy bought from the grid
    atess_tariff_export_price_per_kwh{plant_id,currency}   price paid for energy fed into the grid

Per kWh, not per joule: it is the unit of every tariff and bill (per joule a price reads
8.3e-08), and the name says it. The recording rules multiply each slice of energy by the
price of its moment (dashboards/prometheus/recording.yml, group atess-household). No
tariff configured: no series at all.

The plants: those a tariff lists by id; the tariff without a list covers every other
plant the exporter knows (the account's plant list, the devices' plants) and, with
plant_id "", the devices listed without a plant. The time of day is the plant's: the
tariff's own `timezone`, else the zone of the plant list (in any of the platform's
spellings: "Europe/Berlin", "UTC+08:00", 8...), else UTC with one warning naming the
tariff's `timezone` key. Never atess.timezone or devices[].timezone: those are the zone
the API's servers write reading times in (UTC+8 on the platform), not the plant's.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone, tzinfo
from typing import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from atess_exporter.config.model import Config, Tariff
from atess_exporter.live.store import Cache
from atess_exporter.outside.zones import parse_zone

log = logging.getLogger(__name__)

LABELS = ("plant_id", "currency")


def _zone(name: str | None) -> tzinfo | None:
    """A zone as the config or the plant list writes it; None when this system does not know it."""
    return parse_zone(name) if name else None


class TariffCollector(Collector):
    def __init__(self, config: Config, cache: Cache, clock: Callable[[], float] = time.time):
        self.tariffs = config.tariffs
        self.default = next((t for t in config.tariffs if not t.plants), None)
        self.listed = {plant: t for t in config.tariffs for plant in t.plants}
        self.configured_plants = {d.plant_id for d in config.all_devices()}
        self._unzoned: set[str] = set()      # plants already warned about: priced in UTC
        self.cache = cache
        self.clock = clock

    def _plants(self) -> dict[str, str]:
        """plant_id -> the plant list's zone name ("" unknown), every plant a tariff covers."""
        plants: dict[str, str] = {}
        for account in self.cache.accounts():
            topology = account.topology
            if topology is not None:
                plants.update((p.plant_id, p.timezone) for p in topology.plants)
        if self.default is not None:
            for plant_id in self.configured_plants | {d.info.get("plant_id", "") for d in self.cache.snapshot()}:
                plants.setdefault(plant_id, "")
        else:
            plants = {plant_id: zone for plant_id, zone in plants.items() if plant_id in self.listed}
        for plant_id in self.listed:
            plants.setdefault(plant_id, "")
        return plants

    def _tariff(self, plant_id: str) -> Tariff | None:
        return self.listed.get(plant_id, self.default)

    def collect(self) -> Iterator[Metric]:
        if not self.tariffs:
            return
        buy = GaugeMetricFamily("atess_tariff_import_price_per_kwh", "Price per kWh of energy bought from the grid now, in the plant's local time (config tariffs:)",
                                labels=LABELS)
        sell = GaugeMetricFamily("atess_tariff_export_price_per_kwh", "Price per kWh paid for energy fed into the grid now, in the plant's local time (config tariffs:)",
                                 labels=LABELS)
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        for plant_id, plant_zone in sorted(self._plants().items()):
            tariff = self._tariff(plant_id)
            if tariff is None:
                continue
            zone = _zone(tariff.timezone) or _zone(plant_zone) or self._utc(plant_id, plant_zone, tariff)
            import_price, export_price = tariff.prices_at(now.astimezone(zone))
            buy.add_metric((plant_id, tariff.currency), import_price)
            sell.add_metric((plant_id, tariff.currency), export_price)
        yield buy
        yield sell

    def _utc(self, plant_id: str, plant_zone: str, tariff: Tariff) -> tzinfo:
        """A plant of unknown zone is priced in UTC; said once per plant, naming the key that fixes it."""
        if plant_id not in self._unzoned:
            self._unzoned.add(plant_id)
            log.warning("a tariff's time windows are read in UTC: the plant's zone is unknown; set the tariff's "
                        "timezone", extra={"fields": {
                            "plant_id": plant_id or "(devices without a plant)", "plant_list_zone": plant_zone,
                            "setting": f"tariffs[{self.tariffs.index(tariff)}].timezone"}})
        return timezone.utc

    def describe(self) -> Iterator[Metric]:
        return iter(())
