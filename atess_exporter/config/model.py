"""What a validated configuration is: plain frozen objects, and the `Secret`
wrapper that keeps credentials out of every repr, log line and exception."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Callable

from atess_exporter.outside.zones import parse_zone

# The vendor doc: "The frequency of acquisition is once every 5 minutes".
MIN_INTERVAL_SECONDS = 300
# The platform allows 10 plant-list calls a day (PLATFORM.md 9), and every page of the
# list is a call: every 3 h is 8 one-page listings a day, restarts included, since the
# last topology is kept in the state file; COUNT shards and an account of several pages
# share those 8 (live/listing.py).
DISCOVERY_REFRESH_SECONDS = 10800.0
PLANT_LIST_CALLS_PER_DAY = 10
MAX_PAGE_SIZE = 1000   # discovery.page_size's maximum


class Secret:
    """A credential that never prints itself: repr/str/format give a placeholder.

    One read from a `*_file` keeps its file, and ``reload()`` reads it again
    when it changed (Kubernetes and systemd rotate mounted secrets in place)."""

    __slots__ = ("_value", "_source", "_seen")

    def __init__(self, value: str, source: Callable[[], tuple[object, str]] | None = None, seen: object = None):
        self._value = value
        self._source = source      # () -> (the file's identity, its value); raises on a bad file
        self._seen = seen          # the identity (inode, size, mtime) of what _value was read from

    def reveal(self) -> str:
        return self._value

    def reload(self) -> bool:
        """Read the file again if it changed; True when the value did. A file that cannot be
        read, or holds no usable value, keeps the old value (ConfigError says why, never what)."""
        if self._source is None:
            return False
        seen, value = self._source()
        if seen == self._seen:
            return False
        self._seen = seen
        if value == self._value:
            return False
        self._value = value
        return True

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Credentials:
    token: Secret | None = None
    app_id: Secret | None = None
    app_key: Secret | None = None
    scheme: str = "Basic"

    def authorization(self) -> Secret:
        """The Authorization header value, itself a secret."""
        if self.token is not None:
            raw = self.token.reveal()
            # A token pasted with its scheme is sent as it is.
            if re.match(r"^(Basic|Bearer)\s", raw):
                return Secret(raw)
            return Secret(f"{self.scheme} {raw}" if self.scheme else raw)
        if self.app_id is None or self.app_key is None:   # the config's reader refuses this
            raise ValueError("atess: a token, or app_id and app_key, are required")
        pair = f"{self.app_id.reveal()}:{self.app_key.reveal()}".encode()
        return Secret(f"{self.scheme} {base64.b64encode(pair).decode()}")

    def reload(self) -> bool:
        """Re-read the `*_file` credentials that changed; True when one did. Each is read
        even when an earlier one failed; the first failure is raised after."""
        changed, failure = False, None
        for secret in (self.token, self.app_id, self.app_key):
            if secret is None:
                continue
            try:
                changed = secret.reload() or changed
            except Exception as exc:    # ConfigError: names the key and file, never the value
                failure = failure or exc
        if failure is not None and not changed:
            raise failure
        return changed

    def values(self) -> list[str]:
        """Every secret string, for log redaction."""
        out = [s.reveal() for s in (self.token, self.app_id, self.app_key) if s]
        out.append(self.authorization().reveal())
        if self.token is None:
            out.append(self.authorization().reveal().split(" ", 1)[-1])
        return [v for v in out if v]


@dataclass(frozen=True)
class ApiConfig:
    base_url: str
    credentials: Credentials
    language: str = "en"
    timeout_seconds: float = 15.0
    company_type: str | None = None
    timezone: str = "auto"                 # the servers' zone of `time` strings; "auto": measured
    success_codes: tuple[int, ...] = (0, 200)
    auth_error_codes: tuple[int, ...] = (401, 403)
    rate_limit_codes: tuple[int, ...] = (429,)
    max_response_bytes: int = 16 * 1024 * 1024   # per answer, on the wire and after decompression
    credentials_at: str = "atess"          # where the credentials are written: "atess", or "accounts[N]"


@dataclass(frozen=True)
class PollConfig:
    interval_seconds: float = float(MIN_INTERVAL_SECONDS)
    concurrency: int = 4                   # polls in flight at start, and the least ever
    max_concurrency: int = 64              # the most: polls in flight grow to fit the fleet into the interval
    margin_seconds: float = 2.0            # each device's calls are interval + this apart (end to start)
    retries: int = 2                       # transport errors and HTTP 5xx only
    retry_backoff_seconds: float = 2.0     # first retry; doubles, with jitter
    stale_after_seconds: float = 900.0     # data older than this: atess_device_online 0
    max_data_age_seconds: float = 3600.0   # older than this: instantaneous gauges withdrawn
    counter_reset_confirm_polls: int = 3   # lower lifetime totals in a row before a reset is believed
    auth_backoff_seconds: float = 0.0      # pause after refused credentials; 0 means one interval


@dataclass(frozen=True)
class DeviceConfig:
    sn: str
    type: str
    model: str = ""
    timezone: str | None = None
    plant_id: str = ""
    plant_name: str = ""

    def info(self) -> dict[str, str]:
        return {k: v for k, v in (("plant_id", self.plant_id), ("plant_name", self.plant_name)) if v}


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool = False
    refresh_seconds: float = DISCOVERY_REFRESH_SECONDS
    refresh_set: bool = False             # the user chose refresh_seconds (else shards share the default's budget)
    page_size: int = 100
    families: tuple[str, ...] = ()        # device families whose lists are read; () = all
    include_sns: frozenset[str] = frozenset()
    include_plants: frozenset[str] = frozenset()   # plant ids or names
    exclude_sns: frozenset[str] = frozenset()
    exclude_plants: frozenset[str] = frozenset()
    max_pages: int = 50                   # pages per list and refresh when its total promises no more
    max_calls: int = 0                    # list calls per refresh; 0: whatever the account's lists need
    max_devices: int = 20000              # devices (and plants, dataloggers) adopted; the rest dropped and counted
    concurrency: int = 8                  # lists read at a time (the pages of one list in order)
    calls_per_second: float = 10.0        # per list endpoint (assumed: the vendor documents no list rate)

    def refresh_every(self, shards: int, pages: int = 1) -> float:
        """Seconds between one replica's listings of the account: refresh_seconds as set, else the
        default times the shard count and the plant list's pages (calls), so COUNT replicas
        together spend 8 plant-list calls a day whatever the account's size."""
        if self.refresh_set:
            return self.refresh_seconds
        return self.refresh_seconds * max(shards, 1) * max(pages, 1)

    def wants(self, sn: str, plant_id: str = "", plant_name: str = "") -> bool:
        plants = {plant_id, plant_name} - {""}
        if sn in self.exclude_sns or plants & self.exclude_plants:
            return False
        if self.include_sns or self.include_plants:
            return sn in self.include_sns or bool(plants & self.include_plants)
        return True


@dataclass(frozen=True)
class SettingsConfig:
    enabled: bool = False
    refresh_seconds: float = 3600.0
    max_keys: int = 500                   # settings kept per device; the rest dropped and counted


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")   # datetime.weekday() order


@dataclass(frozen=True)
class TariffWindow:
    """A time-of-use window: on `days` (0 = Monday) from `start` to `end`, minutes of the
    local day; end <= start runs over midnight into the next day (the window belongs to
    the day it starts on). Its prices per kWh."""
    days: frozenset[int]
    start: int
    end: int
    import_price: float
    export_price: float

    def covers(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        return ((weekday in self.days and minute >= self.start)
                or ((weekday - 1) % 7 in self.days and minute < self.end))


@dataclass(frozen=True)
class Tariff:
    """Energy prices per kWh in `currency` for the plants listed (none listed: every
    plant no other tariff names). The first window that covers the local time sets the
    price; outside every window the base prices apply."""
    currency: str
    import_price: float
    export_price: float = 0.0
    windows: tuple[TariffWindow, ...] = ()
    plants: frozenset[str] = frozenset()
    timezone: str | None = None            # None: the plant list's zone for the plant, else UTC (warned)

    def prices_at(self, local: datetime) -> tuple[float, float]:
        """(import, export) per kWh at this local wall-clock time."""
        weekday, minute = local.weekday(), local.hour * 60 + local.minute
        for window in self.windows:
            if window.covers(weekday, minute):
                return window.import_price, window.export_price
        return self.import_price, self.export_price


DEFAULT_ACCOUNT = "default"   # the one account of a config without `accounts:`


@dataclass(frozen=True)
class AccountConfig:
    """One ATESS account of `accounts:` (or the only one): its credentials and API
    settings, its devices, how it is listed and polled, and its state file."""
    name: str
    api: ApiConfig
    poll: PollConfig
    devices: tuple[DeviceConfig, ...]
    discovery: DiscoveryConfig
    state_file: str | None


@dataclass(frozen=True)
class Config:
    """The whole file. `api`, `poll`, `devices`, `discovery` and `state_file` are one
    account's: the only one, the first of `accounts:`, or -- after for_account() --
    the one a poller serves."""
    api: ApiConfig
    poll: PollConfig
    devices: tuple[DeviceConfig, ...]
    endpoints: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = "config.yaml"
    state_file: str | None = None          # lifetime counters' last good values; None: not kept
    state_file_max_bytes: int = 64 * 1024 * 1024   # a larger state file is not read
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    settings: SettingsConfig = field(default_factory=SettingsConfig)
    shard: tuple[int, int] = (0, 1)        # (index, count): this replica polls its share of the SNs
    catalog_overrides: dict = field(default_factory=dict)   # the user's corrections (catalog/overrides.py)
    enums: dict = field(default_factory=dict)               # enumeration tables replaced by the user
    history_date_format: str = "%Y-%m-%d %H:%M:%S"          # startDate/endDate of history calls
    tariffs: tuple[Tariff, ...] = ()                        # energy prices; () exports no tariff series
    accounts: tuple[AccountConfig, ...] = ()                # every account; () for a Config built by hand: this one
    account_name: str = DEFAULT_ACCOUNT                     # the account the fields above are

    def all_accounts(self) -> tuple[AccountConfig, ...]:
        return self.accounts or (AccountConfig(self.account_name, self.api, self.poll, self.devices, self.discovery,
                                               self.state_file),)

    def for_account(self, account: AccountConfig) -> "Config":
        """This config as one account's poller sees it."""
        return replace(self, api=account.api, poll=account.poll, devices=account.devices,
                       discovery=account.discovery, state_file=account.state_file, account_name=account.name)

    def one_account(self, name: str | None) -> "Config":
        """The account a one-account command (probe, backfill) works on: `name`, or the only one.
        Raises ValueError saying which names there are."""
        accounts = self.all_accounts()
        names = ", ".join(a.name for a in accounts)
        if name is None:
            if len(accounts) > 1:
                raise ValueError(f"the config has {len(accounts)} accounts ({names}); pick one with --account NAME")
            return self.for_account(accounts[0])
        for account in accounts:
            if account.name == name:
                return self.for_account(account)
        raise ValueError(f"--account {name[:40]!r}: no such account; the config has {names}")

    def account_label(self) -> str:
        """The `account` label's value on this account's series: its name when the file
        configures several accounts, else "" (no label)."""
        return self.account_name if len(self.all_accounts()) > 1 else ""

    def all_devices(self) -> tuple[DeviceConfig, ...]:
        """The devices listed under every account."""
        return tuple(d for account in self.all_accounts() for d in account.devices)

    def secrets(self) -> list[str]:
        """Every account's secret strings, for log redaction."""
        return [value for account in self.all_accounts() for value in account.api.credentials.values()]

    def catalog(self):
        """The packaged catalog with this config's overrides applied."""
        from atess_exporter.catalog import load_catalog
        return load_catalog().with_overrides(self.catalog_overrides, self.enums)

    def endpoint(self, family: str, operation: str) -> str:
        return self.endpoints[family][operation]

    def api_zone(self) -> tzinfo | None:
        """The configured zone of the API's `time` strings; None when it is measured ("auto")."""
        return None if self.api.timezone == "auto" else parse_zone(self.api.timezone)

    def device_zone(self, device: DeviceConfig) -> tzinfo | None:
        """A device's own configured zone (devices[].timezone), else None."""
        return parse_zone(device.timezone) if device.timezone else None

