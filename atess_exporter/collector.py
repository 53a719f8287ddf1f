"""Prometheus collectors that read the cache; a scrape never calls the API."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .cache import Cache
from .catalog import BASE_LABELS, Catalog


INFO_LABELS = ("sn", "model", "device_type", "plant_id", "plant_name", "datalog_sn", "firmware")


class DeviceStatusCollector(Collector):
    """One series per device about the polling itself.

    atess_device_info{sn,model,device_type,plant_id,plant_name,datalog_sn,firmware} 1
    atess_device_up{sn,model} 1 when the last poll succeeded
    atess_device_last_poll_timestamp_seconds{sn,model}
    atess_device_last_poll_success_timestamp_seconds{sn,model}
    atess_device_data_timestamp_seconds{sn,model}   the reading's own time
    """

    def __init__(self, cache: Cache):
        self.cache = cache

    def _families(self) -> dict[str, Metric]:
        return {
            "info": InfoMetricFamily("atess_device", "Device identity: SN, model, device family, plant, datalogger and firmware where known (join on sn)", labels=INFO_LABELS),
            "up": GaugeMetricFamily("atess_device_up", "1 when the last poll of the device's latest data succeeded, else 0", labels=BASE_LABELS),
            "attempt": GaugeMetricFamily("atess_device_last_poll_timestamp_seconds", "Unix time of the last poll attempt", labels=BASE_LABELS),
            "success": GaugeMetricFamily("atess_device_last_poll_success_timestamp_seconds", "Unix time of the last successful poll", labels=BASE_LABELS),
            "data": GaugeMetricFamily("atess_device_data_timestamp_seconds", "Unix time of the device's latest reading (vendor field time, plant-local time zone as configured)", labels=BASE_LABELS),
        }

    def describe(self) -> Iterator[Metric]:
        return iter(self._families().values())

    def collect(self) -> Iterator[Metric]:
        fams = self._families()
        for dev in self.cache.snapshot():
            ids = (dev.sn, dev.model)
            fams["info"].add_metric((dev.sn, dev.model, dev.device_type) + tuple(dev.info.get(k, "") for k in INFO_LABELS[3:]), {})
            fams["up"].add_metric(ids, 1.0 if dev.up else 0.0)
            for key, value in (("attempt", dev.last_attempt), ("success", dev.last_success), ("data", dev.data_time)):
                if value is not None:
                    fams[key].add_metric(ids, value)
        return iter(fams.values())


class ReadingsCollector(Collector):
    """Every vendor field of every device, e.g.

    atess_pv_power_watts{sn,model}
    atess_grid_voltage_volts{sn,model,phase}
    atess_pv_energy_joules_total{sn,model}
    (the full list: `atess-exporter --list-metrics`, or the README)
    """

    def __init__(self, cache: Cache, catalog: Catalog, interval_seconds: float):
        self.cache = cache
        self.catalog = catalog
        self.interval_seconds = interval_seconds

    def _family(self, name: str) -> Metric:
        m = self.catalog.describe_metric(name)
        cls = CounterMetricFamily if m.type == "counter" else GaugeMetricFamily
        return cls(m.family, self.catalog.help_text(name, self.interval_seconds), labels=BASE_LABELS + m.labels)

    def describe(self) -> Iterator[Metric]:
        for name in self.catalog.metrics:
            yield self._family(name)

    def collect(self) -> Iterator[Metric]:
        devices = self.cache.snapshot()
        names = sorted({name for dev in devices for name in dev.samples})
        for name in names:
            family = self._family(name)
            for dev in devices:
                for labels, value in dev.samples.get(name, ()):
                    family.add_metric((dev.sn, dev.model) + labels, value)
            yield family


class BuildInfoCollector(Collector):
    """atess_exporter_build_info{version} 1"""

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("atess_exporter_build_info", "atess-exporter version (value is always 1)", labels=("version",))
        fam.add_metric((__version__,), 1.0)
        yield fam

    describe = collect
