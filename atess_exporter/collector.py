"""Prometheus collectors that read the cache; a scrape never calls the API."""

from __future__ import annotations

import math
import platform
import time
from typing import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .cache import Cache, DeviceSnapshot
from .catalog import BASE_LABELS, Catalog
from .config import PollConfig
from .poller import AuthGate, Poller


INFO_LABELS = ("sn", "model", "device_type", "plant_id", "plant_name", "datalog_sn", "firmware")


class DeviceStatusCollector(Collector):
    """One series per device about the polling itself.

    atess_device_info{sn,model,device_type,plant_id,plant_name,datalog_sn,firmware} 1
    atess_device_up{sn,model}      1 when the last poll succeeded
    atess_device_online{sn,model}  1 when the device's data is fresher than stale_after_seconds
    atess_device_last_poll_timestamp_seconds{sn,model}
    atess_device_last_poll_success_timestamp_seconds{sn,model}
    atess_device_data_timestamp_seconds{sn,model}   the reading's own time
    atess_device_unusable_fields{sn,model}          text where a number was expected, last payload
    atess_device_implausible_fields{sn,model}       values outside their physical range, withheld, last payload
    atess_lifetime_glitches_total{sn,model}         lifetime totals that went backwards, held back
    """

    def __init__(self, cache: Cache, poll: PollConfig, clock: Callable[[], float] = time.time):
        self.cache = cache
        self.poll = poll
        self.clock = clock

    def _families(self) -> dict[str, Metric]:
        stale = f"{self.poll.stale_after_seconds:g}"
        return {
            "info": InfoMetricFamily("atess_device", "Device identity: SN, model, device family, plant, datalogger and firmware where known (join on sn)", labels=INFO_LABELS),
            "up": GaugeMetricFamily("atess_device_up", "1 when the last poll of the device's latest data succeeded, else 0", labels=BASE_LABELS),
            "online": GaugeMetricFamily("atess_device_online", f"1 when the device's latest reading (vendor field time) is at most {stale}s old and the cloud does not flag it lost, else 0 (without a usable time: the lost flag, else whether the payload changed within {stale}s)", labels=BASE_LABELS),
            "attempt": GaugeMetricFamily("atess_device_last_poll_timestamp_seconds", "Unix time of the last poll attempt", labels=BASE_LABELS),
            "success": GaugeMetricFamily("atess_device_last_poll_success_timestamp_seconds", "Unix time of the last successful poll", labels=BASE_LABELS),
            "data": GaugeMetricFamily("atess_device_data_timestamp_seconds", "Unix time of the device's latest reading (vendor field time, plant-local time zone as configured)", labels=BASE_LABELS),
            "unusable": GaugeMetricFamily("atess_device_unusable_fields", "Catalogued fields of the last payload that held text instead of a number (not exported)", labels=BASE_LABELS),
            "implausible": GaugeMetricFamily("atess_device_implausible_fields", "Catalogued fields of the last payload whose value was outside its physical range (withheld, not exported; see --log.level debug)", labels=BASE_LABELS),
            "glitches": CounterMetricFamily("atess_lifetime_glitches", "Lifetime totals read lower than before and held at the last good value, since the exporter started", labels=BASE_LABELS),
        }

    def describe(self) -> Iterator[Metric]:
        return iter(self._families().values())

    def collect(self) -> Iterator[Metric]:
        fams = self._families()
        now = self.clock()
        for dev in self.cache.snapshot():
            ids = (dev.sn, dev.model)
            fams["info"].add_metric((dev.sn, dev.model, dev.device_type) + tuple(dev.info.get(k, "") for k in INFO_LABELS[3:]), {})
            fams["up"].add_metric(ids, 1.0 if dev.up else 0.0)
            fams["online"].add_metric(ids, 1.0 if is_online(dev, now, self.poll.stale_after_seconds) else 0.0)
            for key, value in (("attempt", dev.last_attempt), ("success", dev.last_success), ("data", dev.data_time)):
                if value is not None:
                    fams[key].add_metric(ids, value)
            if dev.last_success is not None:
                fams["unusable"].add_metric(ids, float(dev.unusable_fields))
                fams["implausible"].add_metric(ids, float(dev.implausible_fields))
            fams["glitches"].add_metric(ids, float(dev.glitches))
        return iter(fams.values())


def data_age(dev: DeviceSnapshot, now: float) -> float:
    """Seconds since the device's latest reading; infinite when never read.

    The payload's own time is the evidence; without a usable one, the last time
    the payload changed stands in for it (a cloud repeating a frozen payload is
    not a fresh reading).
    """
    seen = dev.data_time if dev.data_time is not None else dev.changed_at
    return math.inf if seen is None else max(0.0, now - seen)


def is_online(dev: DeviceSnapshot, now: float, stale_after: float) -> bool:
    """The cloud's `lost` flag wins; else a reading at most stale_after old. With no
    usable time, the `lost` flag alone decides when it was sent."""
    if dev.lost:
        return False
    if dev.data_time is None and dev.lost is not None:
        return True
    return data_age(dev, now) <= stale_after


class AuthCollector(Collector):
    """atess_api_auth_ok 1 while the API accepts the credentials, 0 after a refusal
    (emitted once the API has answered)."""

    def __init__(self, gate: AuthGate):
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("atess_api_auth_ok", "1 when the ATESS API accepted the credentials on the last answer, 0 when it refused them (all polls pause)")
        if self.gate.ok is not None:
            fam.add_metric((), 1.0 if self.gate.ok else 0.0)
        yield fam

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("atess_api_auth_ok", "")


class ReadingsCollector(Collector):
    """Every vendor field of every device, e.g.

    atess_pv_power_watts{sn,model}
    atess_grid_voltage_volts{sn,model,phase}
    atess_pv_energy_joules_total{sn,model}
    (the full list: `atess-exporter --list-metrics`, or the README)
    """

    def __init__(self, cache: Cache, catalog: Catalog, poll: PollConfig, clock: Callable[[], float] = time.time):
        self.cache = cache
        self.catalog = catalog
        self.interval_seconds = poll.interval_seconds
        self.max_data_age = poll.max_data_age_seconds
        self.clock = clock

    def _family(self, name: str) -> Metric:
        m = self.catalog.describe_metric(name)
        cls = CounterMetricFamily if m.type == "counter" else GaugeMetricFamily
        return cls(m.family, self.catalog.help_text(name, self.interval_seconds), labels=BASE_LABELS + m.labels)

    def describe(self) -> Iterator[Metric]:
        for name in self.catalog.metrics:
            yield self._family(name)

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        devices = self.cache.snapshot()
        # Past max_data_age a frozen gauge would draw a flat line; leaving it
        # out lets Prometheus mark it stale. Lifetime counters stay true.
        fresh = {dev.sn: data_age(dev, now) <= self.max_data_age for dev in devices}
        names = sorted({name for dev in devices for name in dev.samples})
        for name in names:
            family = self._family(name)
            counter = family.type == "counter"
            for dev in devices:
                if counter or fresh[dev.sn]:
                    for labels, value in dev.samples.get(name, ()):
                        family.add_metric((dev.sn, dev.model) + labels, value)
            if family.samples:
                yield family


class BuildInfoCollector(Collector):
    """atess_exporter_build_info{version,python_version} 1"""

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("atess_exporter_build_info", "atess-exporter version and the Python running it (value is always 1)",
                                labels=("version", "python_version"))
        fam.add_metric((__version__, platform.python_version()), 1.0)
        yield fam

    describe = collect


class TopologyCollector(Collector):
    """The account as discovery last read it (empty without discovery).

    atess_plant_info{plant_id,plant_name,country,city,timezone} 1
    atess_plant_capacity_watts{plant_id}             rated PV capacity (vendor kW/kWp)
    atess_datalog_info{datalog_sn,plant_id,model} 1
    atess_datalog_online{datalog_sn,plant_id}        1 online, 0 offline (when the API says)
    """

    def __init__(self, poller: Poller):
        self.poller = poller

    def collect(self) -> Iterator[Metric]:
        topology = self.poller.topology
        if topology is None:
            return
        plant = InfoMetricFamily("atess_plant", "Plant identity and location, from the account's plant list (read on discovery refresh)",
                                 labels=("plant_id", "plant_name", "country", "city", "timezone"))
        capacity = GaugeMetricFamily("atess_plant_capacity_watts", "Plant rated capacity (vendor field capacity, kW assumed), from the plant list", labels=("plant_id",))
        datalog = InfoMetricFamily("atess_datalog", "Datalogger identity and its plant, from the datalogger list", labels=("datalog_sn", "plant_id", "model"))
        online = GaugeMetricFamily("atess_datalog_online", "1 when the datalogger list reports the datalogger online, else 0", labels=("datalog_sn", "plant_id"))
        for p in topology.plants:
            plant.add_metric((p.plant_id, p.name, p.country, p.city, p.timezone), {})
            if p.capacity_kw is not None:
                capacity.add_metric((p.plant_id,), p.capacity_kw * 1000)
        for d in topology.datalogs:
            datalog.add_metric((d.sn, d.plant_id, d.model), {})
            if d.online is not None:
                online.add_metric((d.sn, d.plant_id), 1.0 if d.online else 0.0)
        yield from (plant, capacity, datalog, online)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class SettingsCollector(Collector):
    """Each device's settings, read hourly (read-only).

    atess_setting_<name>{sn,model}                 numeric settings, as the vendor gives them
    atess_setting_info{sn,model,setting,value} 1   text settings
    """

    def __init__(self, poller: Poller, cache: Cache):
        self.poller = poller
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        settings = dict(self.poller.settings)
        if not settings:
            return
        numbers: dict[str, GaugeMetricFamily] = {}
        texts = InfoMetricFamily("atess_setting", "Text settings of the device (read-only, refreshed hourly); value is the vendor's text",
                                 labels=("sn", "model", "setting", "value"))
        for dev in self.cache.snapshot():
            current = settings.get(dev.sn)
            if current is None:
                continue
            for name, (key, value) in current.numbers.items():
                if name not in numbers:
                    numbers[name] = GaugeMetricFamily(name, f"Device setting {key} (vendor settings endpoint, no unit conversion; read-only, refreshed hourly)", labels=BASE_LABELS)
                numbers[name].add_metric((dev.sn, dev.model), value)
            for key, value in current.texts.items():
                texts.add_metric((dev.sn, dev.model, key, value), {})
        yield from (numbers[name] for name in sorted(numbers))
        yield texts

    def describe(self) -> Iterator[Metric]:
        return iter(())
