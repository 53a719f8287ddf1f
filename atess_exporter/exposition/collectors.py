"""Prometheus collectors that read the cache; a scrape never calls the API."""

from __future__ import annotations

import platform
import time
from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from atess_exporter import __version__
from atess_exporter.catalog import BASE_LABELS, Catalog
from atess_exporter.config import PollConfig
from atess_exporter.live.freshness import Window, is_online, last_seen
from atess_exporter.live.store import AccountStore, Cache, DeviceSnapshot


INFO_LABELS = ("sn", "model", "device_type", "plant_id", "plant_name", "datalog_sn", "firmware")
# Base units a catalogued name ends in: OpenMetrics writes them as `# UNIT`.
UNITS = ("volt_amperes", "amperes", "joules", "watts", "seconds", "volts", "celsius", "ratio", "hertz")


def unit_of(family: str) -> str:
    return next((u for u in UNITS if family.endswith("_" + u)), "")


def by_account(cache: Cache) -> tuple[tuple[str, ...], list[tuple[tuple[str, ...], AccountStore]]]:
    """The account label's name and each account's part with its value: ("account",) and
    (name,) when several accounts are configured, () and () for one (no label)."""
    accounts = cache.accounts()
    if len(accounts) > 1:
        return ("account",), [((a.name,), a) for a in accounts]
    return (), [((), a) for a in accounts]


class PerDeviceCollector(Collector):
    """A collector whose output is one part per cached device, merged.

    Subclasses say what one device contributes (``device_families``: families
    holding only that device's samples, keyed), which families appear even
    when empty (``SKELETON``, in order; every other key appears only with
    samples, sorted after them), and each family's current HELP/TYPE
    (``template``). ``collect`` merges the parts of all devices in SN order;
    render.py caches the same parts per device and splices them, so the rules
    live here only.
    """

    SKELETON: tuple[str, ...] = ()
    cache: Cache
    clock: Callable[[], float]

    def template(self, key: str) -> Metric:
        raise NotImplementedError

    def device_families(self, dev: DeviceSnapshot, now: float, window: Window) -> dict[str, Metric]:
        raise NotImplementedError

    def describe(self) -> Iterator[Metric]:
        return iter([self.template(k) for k in self.SKELETON])

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        merged: dict[str, Metric] = {k: self.template(k) for k in self.SKELETON}
        for dev in self.cache.snapshot():
            for key, part in self.device_families(dev, now, Window()).items():
                family = merged.get(key)
                if family is None:
                    family = merged[key] = self.template(key)
                family.samples.extend(part.samples)
        return iter([merged[k] for k in family_order(self, merged)])


def family_order(collector: PerDeviceCollector, keys) -> list[str]:
    """The order a per-device collector's families are exposed in: its skeleton,
    then the other keys sorted."""
    skeleton = collector.SKELETON
    return list(skeleton) + sorted(k for k in keys if k not in skeleton)


class DeviceStatusCollector(PerDeviceCollector):
    """One series per device about the polling itself.

    atess_device_info{sn,model,device_type,plant_id,plant_name,datalog_sn,firmware} 1
    atess_device_up{sn,model}      1 when the last poll succeeded (absent until the first poll:
                                   a device waiting for it is pending, not down)
    atess_device_online{sn,model}  1 when the device's data is fresher than stale_after_seconds
                                   (absent until the first poll, too)
    atess_device_lost{sn,model}    1 while the cloud flags the device lost, 0 when it says not (absent: never said)
    atess_device_last_poll_timestamp_seconds{sn,model}
    atess_device_last_poll_success_timestamp_seconds{sn,model}
    atess_device_data_timestamp_seconds{sn,model}   the reading's own time
    atess_device_unusable_fields{sn,model}          text where a number was expected, last payload
    atess_device_implausible_fields{sn,model}       values outside their physical range, withheld, last payload
    atess_lifetime_glitches_total{sn,model}         lifetime totals that went backwards, held back

    A new status metric: a key in SKELETON (its place in the output), its
    family in _families(), and its sample in device_families() -- nothing else
    (render.py and every exposition format follow).
    """

    SKELETON = ("info", "up", "online", "lost", "attempt", "success", "data", "unusable", "implausible", "glitches")

    def __init__(self, cache: Cache, poll: PollConfig, clock: Callable[[], float] = time.time):
        self.cache = cache
        self.poll = poll
        self.clock = clock

    def _families(self) -> dict[str, Any]:   # Info, Gauge and Counter families: add_metric differs
        stale = f"{self.poll.stale_after_seconds:g}"
        return {
            "info": InfoMetricFamily("atess_device", "Device identity: SN, model, device family, plant, datalogger and firmware where known (join on sn)", labels=INFO_LABELS),
            "up": GaugeMetricFamily("atess_device_up", "1 when the last poll of the device's latest data succeeded, else 0", labels=BASE_LABELS),
            "online": GaugeMetricFamily("atess_device_online", f"1 when the device's latest reading (vendor field time) is at most {stale}s old and the cloud does not flag it lost, else 0 (without a usable time: the lost flag, else whether the payload changed within {stale}s)", labels=BASE_LABELS),
            # Its own series, apart from online: a lost device's last reading may still be
            # fresh, and an alert on it needs no history (AtessDeviceLost).
            "lost": GaugeMetricFamily("atess_device_lost", "1 while the cloud flags the device lost (its lost flag, in the latest data or the device list), 0 while it says it is not; absent when the cloud never sent the flag", labels=BASE_LABELS),
            "attempt": GaugeMetricFamily("atess_device_last_poll_timestamp_seconds", "Unix time of the last poll attempt", labels=BASE_LABELS, unit="seconds"),
            "success": GaugeMetricFamily("atess_device_last_poll_success_timestamp_seconds", "Unix time of the last successful poll", labels=BASE_LABELS, unit="seconds"),
            "data": GaugeMetricFamily("atess_device_data_timestamp_seconds", "Unix time of the device's latest reading (vendor field time, in the API servers' zone: measured, or atess.timezone)", labels=BASE_LABELS, unit="seconds"),
            "unusable": GaugeMetricFamily("atess_device_unusable_fields", "Catalogued fields of the last payload that held text instead of a number (not exported)", labels=BASE_LABELS),
            "implausible": GaugeMetricFamily("atess_device_implausible_fields", "Catalogued fields of the last payload whose value was outside its physical range (withheld, not exported; see --log.level debug)", labels=BASE_LABELS),
            "glitches": CounterMetricFamily("atess_lifetime_glitches", "Lifetime totals read lower than before and held at the last good value, since the exporter started", labels=BASE_LABELS),
        }

    def template(self, key: str) -> Metric:
        return self._families()[key]

    def device_families(self, dev: DeviceSnapshot, now: float, window: Window) -> dict[str, Metric]:
        fams = self._families()
        ids = (dev.sn, dev.model)
        account = dev.info.get("account")
        fams["info"].add_metric((dev.sn, dev.model, dev.device_type) + tuple(dev.info.get(k, "") for k in INFO_LABELS[3:]),
                                {"account": account} if account else {})
        if dev.last_attempt is not None:  # pending until its first poll: not down, not offline
            fams["up"].add_metric(ids, 1.0 if dev.up else 0.0)
            fams["online"].add_metric(ids, 1.0 if is_online(dev, now, window, self.poll.stale_after_seconds) else 0.0)
        if dev.lost is not None:
            fams["lost"].add_metric(ids, 1.0 if dev.lost else 0.0)
        for key, value in (("attempt", dev.last_attempt), ("success", dev.last_success), ("data", dev.data_time)):
            if value is not None:
                fams[key].add_metric(ids, value)
        if dev.last_success is not None:
            fams["unusable"].add_metric(ids, float(dev.unusable_fields))
            fams["implausible"].add_metric(ids, float(dev.implausible_fields))
        fams["glitches"].add_metric(ids, float(dev.glitches))
        return {k: f for k, f in fams.items() if f.samples}


class ServerClockCollector(Collector):
    """The zone the API's `time` strings are read in, and the evidence for it (from the store).

    atess_api_clock_offset_seconds   offset of the servers' clock from UTC in use (UTC+8: 28800)
    atess_api_clock_offset_devices   devices whose newest reading supports it (0: nothing measured yet, or
                                     the readings contradict the configured zone)
    """

    def __init__(self, store: Cache):
        self.store = store

    @staticmethod
    def _families(labels: tuple[str, ...] = ()) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily("atess_api_clock_offset_seconds", "Offset from UTC of the zone the API's reading times (vendor field time) are read in: measured from the readings, or atess.timezone when set", unit="seconds", labels=labels),
                GaugeMetricFamily("atess_api_clock_offset_devices", "Devices whose newest reading supports atess_api_clock_offset_seconds (0 before a measurement, or when the readings contradict atess.timezone)", labels=labels))

    def collect(self) -> Iterator[Metric]:
        labels, accounts = by_account(self.store)
        offset, devices = self._families(labels)
        for values, account in accounts:
            published = account.api_clock
            if published is not None:
                offset.add_metric(values, published[0])
                devices.add_metric(values, float(published[1]))
        yield offset
        yield devices

    def describe(self) -> Iterator[Metric]:
        yield from self._families()


class AuthCollector(Collector):
    """atess_api_auth_ok 1 while the API accepts the credentials, 0 after a refusal
    (emitted once the API has answered)."""

    def __init__(self, cache: Cache):
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        labels, accounts = by_account(self.cache)
        fam = GaugeMetricFamily("atess_api_auth_ok", "1 when the ATESS API accepted the credentials on the last answer, 0 when it refused them (the account's polls pause)",
                                labels=labels)
        for values, account in accounts:
            if account.auth_ok is not None:
                fam.add_metric(values, 1.0 if account.auth_ok else 0.0)
        yield fam

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("atess_api_auth_ok", "")


class DroppedCollector(Collector):
    """atess_exporter_input_dropped_total{limit}: API input over a documented cap
    (discovery.max_devices, settings.max_keys...), dropped rather than kept."""

    def __init__(self, cache: Cache):
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        labels, accounts = by_account(self.cache)
        fam = CounterMetricFamily("atess_exporter_input_dropped", "Items of API input dropped at a cap; the label names the setting to raise",
                                  labels=("limit",) + labels)
        for values, account in accounts:
            for setting, count in sorted(dict(account.dropped).items()):
                fam.add_metric((setting,) + values, float(count))
        yield fam

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("atess_exporter_input_dropped", "", labels=("limit",))


class PollCollector(Collector):
    """Whether polling keeps up (emitted once the schedule runs):

    atess_poll_concurrency                    polls allowed in flight (sized to the fleet)
    atess_poll_duration_seconds               smoothed duration of one device's poll, retries included
    atess_poll_sweep_duration_seconds         the last sweep: every device polled once
    atess_poll_pending_devices                devices not polled yet since start-up
    atess_poll_overdue_devices                devices whose poll is more than one interval late
    atess_poll_devices_behind                 devices poll.max_concurrency cannot fit into one interval
    atess_poll_oldest_reading_age_seconds     age of the oldest good reading over the devices
    """

    def __init__(self, cache: Cache):
        self.cache = cache

    # (name, HELP, the PollStats field); a field that is None is left out for that account
    FAMILIES = (
        ("atess_poll_concurrency", "Device polls allowed in flight, sized to fit every device into the interval (poll.concurrency to poll.max_concurrency)", "concurrency"),
        ("atess_poll_duration_seconds", "Smoothed duration of one device's poll, retries included", "latency_seconds"),
        ("atess_poll_sweep_duration_seconds", "Duration of the last complete sweep (every device polled once); above the interval, polling does not keep up", "sweep_seconds"),
        ("atess_poll_pending_devices", "Devices not polled yet since start-up (no atess_device_up until their first poll)", "pending"),
        ("atess_poll_overdue_devices", "Devices whose poll is more than one interval late, waiting for a free worker", "overdue"),
        ("atess_poll_devices_behind", "Devices that poll.max_concurrency cannot fit into one interval at the measured poll duration (0: it keeps up)", "behind"),
        ("atess_poll_oldest_reading_age_seconds", "Age of the oldest good reading over the devices (since start-up for a device not yet polled well)", "oldest_reading_age_seconds"),
    )

    def collect(self) -> Iterator[Metric]:
        labels, accounts = by_account(self.cache)
        measured = [(values, account.poll_stats) for values, account in accounts if account.poll_stats is not None]
        for name, help_text, field in self.FAMILIES:
            fam = GaugeMetricFamily(name, help_text, labels=labels)
            for values, stats in measured:
                value = getattr(stats, field)
                if value is not None:
                    fam.add_metric(values, float(value))
            if fam.samples:
                yield fam

    def describe(self) -> Iterator[Metric]:
        return iter(())


class ReadingsCollector(PerDeviceCollector):
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
        self._shapes: dict[str, tuple[type, str, tuple[str, ...], str]] = {}

    def template(self, name: str) -> Metric:
        # HELP asked anew each time: an uncatalogued field's grows as more families send it.
        cls, family, labels, unit = self._shape(name)
        return cls(family, self.catalog.help_text(name, self.interval_seconds), labels=labels, unit=unit)

    def _shape(self, name: str) -> tuple[type, str, tuple[str, ...], str]:
        shape = self._shapes.get(name)
        if shape is None:
            m = self.catalog.describe_metric(name)
            cls = CounterMetricFamily if m.type == "counter" else GaugeMetricFamily
            # Uncatalogued fields: the unit is unknown whatever the name says.
            unit = unit_of(m.family) if name in self.catalog.metrics else ""
            shape = self._shapes[name] = (cls, m.family, BASE_LABELS + m.labels, unit)
        return shape

    def _blank(self, name: str) -> Any:
        """An empty family for one device's samples (its HELP is never shown)."""
        cls, family, labels, unit = self._shape(name)
        return cls(family, "", labels=labels, unit=unit)

    def describe(self) -> Iterator[Metric]:
        for name in self.catalog.metrics:
            yield self.template(name)

    def device_families(self, dev: DeviceSnapshot, now: float, window: Window) -> dict[str, Metric]:
        # Past max_data_age a frozen gauge would draw a flat line; leaving it
        # out lets Prometheus mark it stale. Lifetime counters stay true.
        fresh = window.within(now, last_seen(dev), self.max_data_age)
        out: dict[str, Metric] = {}
        ids = (dev.sn, dev.model)
        for name, rows in dev.samples.items():
            if not rows:
                continue
            family = self._blank(name)
            if not fresh and family.type != "counter":
                continue
            for labels, value in rows:
                family.add_metric(ids + labels, value)
            out[name] = family
        return out


class ShardCollector(Collector):
    """atess_exporter_shards{shard} COUNT: this replica's shard and how many there are, so a
    rule can tell when fewer replicas report than the configuration names (AtessShardMissing)."""

    def __init__(self, shard: tuple[int, int]):
        self.shard = shard

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("atess_exporter_shards", "Shards the fleet is split into (--shard INDEX/COUNT); label shard: this replica's index",
                                labels=("shard",))
        fam.add_metric((str(self.shard[0]),), float(self.shard[1]))
        yield fam

    describe = collect


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

    atess_plant_info{plant_id,plant_name,timezone} 1
    atess_plant_capacity_watts{plant_id}             rated PV capacity (vendor kW/kWp)
    atess_datalog_info{datalog_sn,plant_id,model} 1
    atess_datalog_online{datalog_sn,plant_id}        1 online, 0 offline (when the API says)
    atess_discovery_unread_lists                     lists the last refresh left for the next one

    With shards, the account-wide series (plants, dataloggers) come from shard 0
    only, so sums over a sharded fleet count each plant once.
    """

    def __init__(self, cache: Cache, shard: tuple[int, int] = (0, 1)):
        self.cache = cache
        self.account_wide = shard[0] == 0

    def collect(self) -> Iterator[Metric]:
        labels, accounts = by_account(self.cache)
        listed = [(values, account.topology) for values, account in accounts if account.topology is not None]
        if not listed:
            return
        unread = GaugeMetricFamily("atess_discovery_unread_lists", "Account lists (plant, datalogger, device lists) the last discovery refresh could not read to their end "
                                   "(a cap: discovery.max_calls/max_pages, or failed calls); their devices may be missing until the next refresh continues", labels=labels)
        for values, topology in listed:
            unread.add_metric(values, topology.unread_lists)
        if not self.account_wide:
            yield unread
            return
        # No address, city, country or coordinates: the plant list's personal data stays out (PLATFORM.md 9).
        plant = InfoMetricFamily("atess_plant", "Plant identity and time zone, from the account's plant list (read on discovery refresh)",
                                 labels=("plant_id", "plant_name", "timezone"))
        capacity = GaugeMetricFamily("atess_plant_capacity_watts", "Plant rated capacity (vendor field capacity, kW assumed), from the plant list", labels=("plant_id",))
        datalog = InfoMetricFamily("atess_datalog", "Datalogger identity and its plant, from the datalogger list", labels=("datalog_sn", "plant_id", "model"))
        online = GaugeMetricFamily("atess_datalog_online", "1 when the datalogger list reports the datalogger online, else 0", labels=("datalog_sn", "plant_id"))
        # A plant shared into two accounts (the installer's and the owner's) is exported once,
        # under the first account that lists it, as its devices are polled once. The account
        # goes on the info series only: join on plant_id or datalog_sn.
        for values, p in first_each(((v, p) for v, t in listed for p in t.plants), lambda p: p.plant_id):
            plant.add_metric((p.plant_id, p.name, p.timezone), dict(zip(labels, values)))
            if p.capacity_kw is not None:
                capacity.add_metric((p.plant_id,), p.capacity_kw * 1000)
        for values, d in first_each(((v, d) for v, t in listed for d in t.datalogs), lambda d: d.sn):
            datalog.add_metric((d.sn, d.plant_id, d.model), dict(zip(labels, values)))
            if d.online is not None:
                online.add_metric((d.sn, d.plant_id), 1.0 if d.online else 0.0)
        yield from (plant, capacity, datalog, online, unread)

    def describe(self) -> Iterator[Metric]:
        return iter(())


def first_each(pairs: Iterable[tuple[tuple[str, ...], Any]], key: Callable[[Any], str]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(account label values, item) pairs, only the first pair of each key."""
    seen: set[str] = set()
    for values, item in pairs:
        if key(item) not in seen:
            seen.add(key(item))
            yield values, item


class SettingsCollector(Collector):
    """Each device's settings, read hourly (read-only).

    atess_setting_<name>{sn,model}                 numeric settings, as the vendor gives them
    atess_setting_info{sn,model,setting,value} 1   text settings
    """

    def __init__(self, cache: Cache):
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        settings = self.cache.device_settings()
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
            for key, text in current.texts.items():
                texts.add_metric((dev.sn, dev.model, key, text), {})
        yield from (numbers[name] for name in sorted(numbers))
        yield texts

    def describe(self) -> Iterator[Metric]:
        return iter(())
