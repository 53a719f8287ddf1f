"""One device's poll: its latest data (with retries) or its settings, into the store.

The store gets the result either way: a reading replaces the device's snapshot
whole, a failure keeps the last readings and marks the device down. Rate-limit
answers stretch that device's interval (rate_limit_factor); a refused
credential closes the auth gate for every device.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import replace
from typing import Any, Callable

from atess_exporter.account.typeguess import answering_family, is_not_found
from atess_exporter.api.client import AtessClient, AtessError, AuthError, RateLimitError
from atess_exporter.api.retry import RetryPolicy
from atess_exporter.catalog import Catalog
from atess_exporter.config import Config, DeviceConfig
from atess_exporter.live.authgate import AuthGate
from atess_exporter.live.counters import CounterState
from atess_exporter.live.store import AccountStore, DeviceSnapshot
from atess_exporter.live.readingtimes import ReadingTimes
from atess_exporter.readings.counterguard import guard_samples
from atess_exporter.readings.payload import Reading, read_payload
from atess_exporter.readings.devicesettings import DeviceSettings, read_device_settings

log = logging.getLogger(__name__)

MAX_WITHHELD = 32   # implausible values a snapshot names (the status page shows them)
TEXT_CHANGES_LIMIT = 3    # changes of a text setting's value before it is left out of labels


class DevicePoll:
    def __init__(self, config: Config, catalog: Catalog, store: AccountStore, auth: AuthGate, counters: CounterState,
                 polled: Callable[[str], bool], stop: threading.Event, rng: random.Random, times: ReadingTimes,
                 retyped: Callable[[str, str], None] = lambda sn, family: None):
        self.config = config
        self.catalog = catalog
        self.store = store
        self.auth = auth
        self.counters = counters
        self.polled = polled   # whether a device is still in the fleet (discovery may remove it mid-poll)
        self.stop = stop
        self.retry = RetryPolicy(config.poll.retries, config.poll.retry_backoff_seconds, rng)
        self.times = times     # places each reading in time (the servers' clock)
        self._rate_limited: dict[str, int] = {}  # consecutive rate-limit answers per device
        self._watts_warned: set[tuple[str, str]] = set()   # (sn, field) already warned about
        self._text_changes: dict[tuple[str, str], tuple[str, int]] = {}   # (sn, setting) -> (last text, changes)
        self._type_tried: set[str] = set()   # devices tried on the other families' paths (once each)
        self.retyped = retyped               # (sn, family): the fleet polls the device as that type from now on

    def latest(self, client: AtessClient, device: DeviceConfig, clock: Callable[[], float]) -> DeviceSnapshot:
        """One latest-data poll for one device; the store gets the result either way."""
        try:
            return self._latest(client, device, clock)
        finally:
            if self.times.waiting_for(device.sn):  # a failed first poll: the clock need not wait for it
                self.times.attempted(device.sn)

    def _latest(self, client: AtessClient, device: DeviceConfig, clock: Callable[[], float]) -> DeviceSnapshot:
        now = clock()
        previous = self.store.get(device.sn) or DeviceSnapshot(device.sn, device.type, device.model or "unknown")
        if self.auth.blocked():
            return self._write(device.sn, lambda current: (current or previous).failed(
                now, "not polled: the API refused the credentials; backing off"))
        path = self.config.endpoint(device.type, "latest")
        try:
            payload = self._fetch(client, path, device.sn)
        except AtessError as exc:
            if self.stop.is_set():  # a call cut short by the exporter stopping says nothing of the device
                return previous
            retyped = self._retype(client, device, exc)
            if retyped is None:
                self._failed(client, device.sn, exc)
                error = str(exc)
                return self._write(device.sn, lambda current: (current or previous).failed(now, error))
            device, payload = retyped
        self.auth.succeeded()
        self._rate_limited.pop(device.sn, None)
        model = device.model or previous.model
        reading = read_payload(self.catalog.families[device.type], payload, model, self._listed_rating(device.sn))
        self._report(device, model, reading)
        if self.store.count_dropped("uncatalogued_names", reading.uncatalogued_dropped):
            log.warning("uncatalogued fields not exported: one answer may name at most a quarter of the names "
                        "left, the exporter 2,000 in all (atess_exporter_input_dropped_total{limit=\"uncatalogued_names\"}); "
                        "map the real ones in catalog_overrides", extra={"fields": {
                            "sn": device.sn, "fields": ",".join(reading.uncatalogued_fields[:8])}})
        guard = self.counters.guard_for(device.sn, reading.rated_watts)
        glitches_before = guard.glitches
        samples = guard_samples(guard, self.catalog, reading.samples, clock())
        snapshot = DeviceSnapshot(
            sn=device.sn,
            device_type=device.type,
            model=model,
            up=True,
            last_attempt=now,
            last_success=now,
            samples=samples,
            glitches=previous.glitches + guard.glitches - glitches_before,
            unusable_fields=reading.unusable,
            implausible_fields=len(reading.implausible),
            lost=reading.lost if reading.lost is not None else self._listed_lost(device.sn),
            changed_at=previous.changed_at if previous.samples == samples and previous.changed_at else now,
            withheld=tuple(f"{b.field}={b.value:g} outside {b.allowed}" for b in reading.implausible[:MAX_WITHHELD]),
        )
        if guard.glitches > glitches_before:
            log.info("lifetime total went backwards; kept the last good value",
                     extra={"fields": {"sn": device.sn, "glitches": guard.glitches - glitches_before}})
        log.debug("polled", extra={"fields": {"sn": device.sn, "series": sum(map(len, snapshot.samples.values()))}})
        # info may have changed (discovery) while we polled: take the current one
        return self.times.store_reading(device, snapshot, payload.get("time"), now, lambda placed: self._write(
            device.sn, lambda current: replace(placed, info=current.info) if current else placed))

    def _retype(self, client: AtessClient, device: DeviceConfig, exc: AtessError) -> tuple[DeviceConfig, dict] | None:
        """Once per device: a "not found" on its family's path is tried on the other families'
        paths (account/typeguess.py); the type that answers is logged and polled from then on."""
        if not is_not_found(exc) or device.sn in self._type_tried:
            return None
        self._type_tried.add(device.sn)
        found = answering_family(client, self.config, device.sn, device.type, self.catalog.families)
        if found is None:
            return None
        family, answer = found
        if answer is None:   # "no data" there: the type is not proven by a reading
            return None
        log.warning("device answers as another type; polling it there", extra={"fields": {
            "sn": device.sn, "configured": device.type, "answered_as": family,
            "path": self.config.endpoint(family, "latest"), "fix": f"type: {family}"}})
        self.retyped(device.sn, family)
        return replace(device, type=family), answer.data

    def settings(self, client: AtessClient, device: DeviceConfig, clock: Callable[[], float]) -> None:
        """Read-only: GET the device's settings. Nothing here ever writes to the API."""
        if self.auth.blocked():
            return
        try:
            data = client.get(self.config.endpoint(device.type, "settings"), {"deviceSn": device.sn}, expect=dict)
        except AtessError as exc:
            if isinstance(exc, AuthError):
                self.auth.refused(client, str(exc))
            log.warning("settings read failed", extra={"fields": {"sn": device.sn, "outcome": exc.outcome, "error": str(exc)}})
            return
        settings = read_device_settings(data, self.config.settings.max_keys)
        if self.store.count_dropped("settings.max_keys", settings.dropped):
            log.warning("a settings answer has more keys than settings.max_keys; the rest are dropped "
                        "(atess_exporter_input_dropped_total); raise settings.max_keys if they are real",
                        extra={"fields": {"sn": device.sn, "keys": len(settings.numbers) + len(settings.texts) + settings.dropped,
                                          "max_keys": self.config.settings.max_keys}})
        self.store.put_device_settings(device.sn, self._steady_texts(device.sn, settings))

    def _steady_texts(self, sn: str, settings: DeviceSettings) -> DeviceSettings:
        """A text setting is a label value of atess_setting_info: one whose text keeps
        changing (a clock, a counter sent as text) would start a new series on every read.
        After TEXT_CHANGES_LIMIT changes it is left out, with one warning naming it."""
        texts = {}
        for key, text in settings.texts.items():
            last, changes = self._text_changes.get((sn, key), (text, 0))
            if text != last and changes < TEXT_CHANGES_LIMIT:
                changes += 1
                if changes == TEXT_CHANGES_LIMIT:
                    log.warning("a text setting keeps changing; no longer exported as a label (it would start a new "
                                "series on every read)", extra={"fields": {"sn": sn, "setting": key, "changes": changes}})
            self._text_changes[(sn, key)] = (text, changes)
            if changes < TEXT_CHANGES_LIMIT:
                texts[key] = text
        return replace(settings, texts=texts)

    def _report(self, device: DeviceConfig, model: str, reading: Reading) -> None:
        """One debug line per withheld value; one warning per field whose value looks like W, not kW."""
        for bad in reading.implausible:
            log.debug("implausible value withheld", extra={"fields": {
                "sn": device.sn, "field": bad.field, "value": bad.value, "allowed": bad.allowed}})
        new = [f for f in reading.kilo_suspects if (device.sn, f) not in self._watts_warned]
        if new:  # per field: a payload may mix W and kW (PLATFORM.md 4), so each field is judged alone
            self._watts_warned.update((device.sn, f) for f in new)
            fields = ", ".join(f"{f}: {{unit: W}}" for f in new[:4])
            log.warning("power fields look 1000x too large for the device's rating: the cloud seems to send W, not kW",
                        extra={"fields": {"sn": device.sn, "model": model, "rated_watts": reading.rated_watts,
                                          "fields": ",".join(new),
                                          "fix": f"catalog_overrides: {{{device.type}: {{fields: {{{fields}}}}}}}"}})

    def _listed_rating(self, sn: str) -> float | None:
        """The rated power the device list states (`normalPower`/`nominalPower`), if any."""
        topology = self.store.topology
        return None if topology is None else topology.rated_watts.get(sn)

    def _listed_lost(self, sn: str) -> bool | None:
        """The device list's own `lost` flag (documented on the BCU list), for payloads without one."""
        topology = self.store.topology
        return None if topology is None else topology.lost.get(sn)

    def _write(self, sn: str, change: Callable[[DeviceSnapshot | None], DeviceSnapshot]) -> DeviceSnapshot:
        """Store a poll's result unless discovery removed the device meanwhile."""
        stored = self.store.update(sn, lambda current: change(current) if self.polled(sn) else None)
        return stored if stored is not None else change(None)

    def _fetch(self, client: AtessClient, path: str, sn: str) -> dict:
        """The latest data, retried by the retry policy (api/retry.py); a stop ends the wait."""
        return self.retry.call(lambda: client.latest(path, sn), self.stop.wait, {"sn": sn})

    def _failed(self, client: AtessClient, sn: str, exc: AtessError) -> None:
        fields: dict[str, Any] = {"sn": sn, "outcome": exc.outcome, "error": str(exc)}
        if isinstance(exc, AuthError):
            pause = self.auth.refused(client, str(exc))
            if pause is None:
                log.warning("API refused the credentials; a credential file has changed since, retrying with it",
                            extra={"fields": fields})
                return
            log.error("API refused the credentials; pausing all polls",
                      extra={"fields": {**fields, "pause_seconds": round(pause)}})
            return
        if isinstance(exc, RateLimitError):
            self._rate_limited[sn] = self._rate_limited.get(sn, 0) + 1
            fields["next_poll_in_intervals"] = self.rate_limit_factor(sn)
        log.warning("poll failed", extra={"fields": fields})

    def rate_limit_factor(self, sn: str) -> int:
        """Intervals to wait before the next call: doubles per rate-limit answer, up to 8."""
        return 2 ** min(self._rate_limited.get(sn, 0), 3)

    def forget(self, sn: str) -> None:
        self._rate_limited.pop(sn, None)
        for key in [k for k in self._text_changes if k[0] == sn]:
            del self._text_changes[key]
