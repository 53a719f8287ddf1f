"""Configuration: YAML in, plain validated objects out.

Every error is a ConfigError whose text is one line naming the key and the fix,
so start-up can print it and exit 1 without a traceback.
"""

from __future__ import annotations

import base64
import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .configinput import (NUMBER_MAX, ConfigError, check_header_text, check_state_file, expand_env, kind_of, quoted,
                          read_secret_file)
from .endpoints import DEFAULT_ENDPOINTS, NON_DEVICE_FAMILIES, OPERATIONS
from .sharding import parse_shard

# The vendor doc: "The frequency of acquisition is once every 5 minutes".
MIN_INTERVAL_SECONDS = 300


class Secret:
    """A credential that never prints itself: repr/str/format give a placeholder."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

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
        pair = f"{self.app_id.reveal()}:{self.app_key.reveal()}".encode()
        return Secret(f"{self.scheme} {base64.b64encode(pair).decode()}")

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
    timezone: str = "UTC"
    success_codes: tuple[int, ...] = (0, 200)
    auth_error_codes: tuple[int, ...] = (401, 403)
    rate_limit_codes: tuple[int, ...] = (429,)
    max_response_bytes: int = 16 * 1024 * 1024   # per answer, on the wire and after decompression


@dataclass(frozen=True)
class PollConfig:
    interval_seconds: float = float(MIN_INTERVAL_SECONDS)
    concurrency: int = 4
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
    refresh_seconds: float = 3600.0
    page_size: int = 100
    families: tuple[str, ...] = ()        # device families whose lists are read; () = all
    include_sns: frozenset[str] = frozenset()
    include_plants: frozenset[str] = frozenset()   # plant ids or names
    exclude_sns: frozenset[str] = frozenset()
    exclude_plants: frozenset[str] = frozenset()
    max_pages: int = 50                   # pages per list and refresh: a list that never ends stops here
    max_calls: int = 2000                 # list calls per refresh

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


@dataclass(frozen=True)
class Config:
    api: ApiConfig
    poll: PollConfig
    devices: tuple[DeviceConfig, ...]
    endpoints: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = "config.yaml"
    state_file: str | None = None          # lifetime counters' last good values; None: not kept
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    settings: SettingsConfig = field(default_factory=SettingsConfig)
    shard: tuple[int, int] = (0, 1)        # (index, count): this replica polls its share of the SNs
    catalog_overrides: dict = field(default_factory=dict)   # the user's corrections (catalog/overrides.py)
    enums: dict = field(default_factory=dict)               # enumeration tables replaced by the user
    history_date_format: str = "%Y-%m-%d %H:%M:%S"          # startDate/endDate of history calls

    def catalog(self):
        """The packaged catalog with this config's overrides applied."""
        from .catalog import load_catalog
        return load_catalog().with_overrides(self.catalog_overrides, self.enums)

    def endpoint(self, family: str, operation: str) -> str:
        return self.endpoints[family][operation]

    def device_timezone(self, device: DeviceConfig) -> ZoneInfo:
        return ZoneInfo(device.timezone or self.api.timezone)


_REQUIRED = object()
class _Section:
    """Reads one mapping of the YAML file and refuses keys nobody asked for."""

    def __init__(self, data: Any, path: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'top level'}: must be a mapping of keys, got {kind_of(data)}")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str, default: Any = _REQUIRED, hint: str = "") -> Any:
        self.seen.add(name)
        if name not in self.data or self.data[name] is None:
            if default is _REQUIRED:
                raise ConfigError(f"{self.key(name)}: missing; {hint or 'add it'}")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = _REQUIRED, hint: str = "") -> Any:
        value = self.raw(name, default, hint)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{self.key(name)}: must be a string, got {kind_of(value)}")
        return expand_env(str(value), self.key(name))

    def number(self, name: str, default: Any, minimum: float, hint: str = "", integer: bool = False,
               maximum: float = NUMBER_MAX) -> Any:
        value = self.raw(name, default)
        if isinstance(value, str):
            value = expand_env(value, self.key(name))
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{self.key(name)}: must be a number, got {quoted(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self.key(name)}: must be a number, got {kind_of(value)}")
        if isinstance(value, int) and abs(value) > NUMBER_MAX:
            value = float("inf") if value > 0 else float("-inf")  # a huge integer: out of range, said simply
        if not math.isfinite(value):
            raise ConfigError(f"{self.key(name)}: {value} is not a finite number; set it between {minimum:g} and {maximum:g}")
        if integer and value != int(value):
            raise ConfigError(f"{self.key(name)}: must be a whole number, got {value}")
        if value < minimum:
            raise ConfigError(f"{self.key(name)}: {value:g} is below the minimum {minimum:g}; {hint or f'set it to {minimum:g} or more'}")
        if value > maximum:
            raise ConfigError(f"{self.key(name)}: {value:g} is above the maximum {maximum:g}; set it to {maximum:g} or less")
        return int(value) if integer else float(value)

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: must be true or false, got {quoted(value)}")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.raw(name, [])
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{self.key(name)}: must be a list of strings, e.g. [YKD0F1022A]")
        return tuple(expand_env(str(v), self.key(name)) for v in value)

    def int_list(self, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self.raw(name, default)
        if value is default:
            return default
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{self.key(name)}: must be a list of integers, e.g. [{', '.join(map(str, default))}]")
        return tuple(value)

    def secret(self, name: str) -> Secret | None:
        """A credential given inline (`${ENV}` allowed) or as `<name>_file`."""
        inline = self.str(name, None)
        path = self.str(f"{name}_file", None)
        if inline is not None and path is not None:
            raise ConfigError(f"{self.key(name)}: given both inline and as {name}_file; keep one")
        key = self.key(name)
        if path is not None:
            key = self.key(name + "_file")
            inline = read_secret_file(path, key, name)
            if not inline:
                raise ConfigError(f"{key}: {quoted(path)} is empty; put the {name} in it")
        if inline is not None and not inline.strip():
            raise ConfigError(f"{self.key(name)}: is empty; set the credential or remove the key")
        if inline is not None:
            check_header_text(inline, key, f"the {name}", secret=True)
        return Secret(inline) if inline is not None else None

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen, key=str)
        if unknown:
            name = str(unknown[0])[:100]
            close = difflib.get_close_matches(name, sorted(self.seen), n=1)
            fix = f"did you mean {self.key(close[0])!r}?" if close else f"allowed keys here: {', '.join(sorted(self.seen))}"
            raise ConfigError(f"{self.key(name)}: unknown key; {fix}")


def _timezone(value: str, key: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{key}: unknown time zone {quoted(value)}; use an IANA name such as UTC or Europe/Berlin") from None
    return value


def _api(section: _Section) -> ApiConfig:
    base_url = section.str("base_url", "https://www.enerclo-atesspower.com").rstrip("/")
    if not re.match(r"^https?://[^/\s]+", base_url):
        raise ConfigError(f"{section.key('base_url')}: {quoted(base_url)} is not an http(s) URL; e.g. https://www.enerclo-atesspower.com")
    creds = Credentials(
        token=section.secret("token"),
        app_id=section.secret("app_id"),
        app_key=section.secret("app_key"),
        scheme=section.str("auth_scheme", "Basic"),
    )
    if creds.token is not None and (creds.app_id or creds.app_key):
        raise ConfigError(f"{section.key('token')}: give either token or app_id and app_key, not both")
    if creds.token is None and not (creds.app_id and creds.app_key):
        missing = "app_key" if creds.app_id else "app_id" if creds.app_key else "token"
        raise ConfigError(f"{section.key(missing)}: missing credential; set token (or app_id and app_key), e.g. token: ${{ATESS_TOKEN}}")
    company = section.str("company_type", None)
    for key, value in (("language", section.str("language", "en")), ("company_type", company),
                       ("auth_scheme", creds.scheme)):
        if value is not None:
            check_header_text(value, section.key(key), "the value")
    api = ApiConfig(
        base_url=base_url,
        credentials=creds,
        language=section.str("language", "en"),
        timeout_seconds=section.number("timeout_seconds", 15.0, 0.1, maximum=300,
                                       hint="the whole call (connect, headers and body) must end within it"),
        company_type=company,
        timezone=_timezone(section.str("timezone", "UTC"), section.key("timezone")),
        success_codes=section.int_list("success_codes", (0, 200)),
        auth_error_codes=section.int_list("auth_error_codes", (401, 403)),
        rate_limit_codes=section.int_list("rate_limit_codes", (429,)),
        max_response_bytes=section.number("max_response_bytes", 16 * 1024 * 1024, 64 * 1024, integer=True,
                                          maximum=1024 * 1024 * 1024),
    )
    section.done()
    return api


def _poll(section: _Section, min_interval: float) -> PollConfig:
    poll = PollConfig(
        interval_seconds=section.number(
            "interval_seconds", float(MIN_INTERVAL_SECONDS), min_interval,
            hint=f"the ATESS API allows one call per device every 5 minutes; set it to {min_interval:g} or more",
            maximum=86400,
        ),
        concurrency=section.number("concurrency", 4, 1, integer=True, maximum=256),
        retries=section.number("retries", 2, 0, integer=True, maximum=10),
        retry_backoff_seconds=section.number("retry_backoff_seconds", 2.0, 0, maximum=3600),
        stale_after_seconds=section.number("stale_after_seconds", 900.0, 1, maximum=30 * 86400),
        max_data_age_seconds=section.number("max_data_age_seconds", 3600.0, 1, maximum=30 * 86400),
        counter_reset_confirm_polls=section.number("counter_reset_confirm_polls", 3, 1, integer=True, maximum=100),
        auth_backoff_seconds=section.number("auth_backoff_seconds", 0.0, 0, maximum=86400),
    )
    if poll.max_data_age_seconds < poll.stale_after_seconds:
        raise ConfigError(f"{section.key('max_data_age_seconds')}: {poll.max_data_age_seconds:g} is below "
                          f"stale_after_seconds ({poll.stale_after_seconds:g}); set it at least as high")
    section.done()
    return poll


def _filter(data: Any, key: str) -> tuple[frozenset[str], frozenset[str]]:
    section = _Section(data, key)
    sns, plants = frozenset(section.str_list("sn")), frozenset(section.str_list("plant"))
    section.done()
    return sns, plants


def _discovery(section: _Section, families: set[str], default_enabled: bool = False) -> DiscoveryConfig:
    chosen = section.str_list("families")
    for family in chosen:
        if family not in families:
            close = difflib.get_close_matches(family[:100], families, n=1)
            raise ConfigError(f"{section.key('families')}: unknown device family {quoted(family)}; "
                              f"{'did you mean ' + repr(close[0]) + '?' if close else 'use ' + ', '.join(sorted(families))}")
    include = _filter(section.raw("include", None), section.key("include"))
    exclude = _filter(section.raw("exclude", None), section.key("exclude"))
    discovery = DiscoveryConfig(
        enabled=section.bool("enabled", default_enabled),
        refresh_seconds=section.number("refresh_seconds", 3600.0, 300, maximum=7 * 86400,
                                       hint="discovery lists the whole account; refresh at most every 5 minutes"),
        page_size=section.number("page_size", 100, 1, integer=True, maximum=1000),
        max_pages=section.number("max_pages", 50, 1, integer=True, maximum=10000),
        max_calls=section.number("max_calls", 2000, 1, integer=True, maximum=1000000),
        families=chosen,
        include_sns=include[0], include_plants=include[1],
        exclude_sns=exclude[0], exclude_plants=exclude[1],
    )
    section.done()
    return discovery


def _settings(section: _Section) -> SettingsConfig:
    settings = SettingsConfig(
        enabled=section.bool("enabled", False),
        refresh_seconds=section.number("refresh_seconds", 3600.0, 3600, maximum=7 * 86400,
                                       hint="settings are read at most hourly"),
    )
    section.done()
    return settings


def _endpoints(data: Any) -> dict[str, dict[str, str]]:
    merged = {family: dict(ops) for family, ops in DEFAULT_ENDPOINTS.items()}
    top = _Section(data, "endpoints")
    for family in list(top.data):
        if family not in merged:
            top.raw(family)  # mark as seen only if valid
            close = difflib.get_close_matches(str(family)[:100], merged, n=1)
            raise ConfigError(f"endpoints.{family}: unknown device family; {'did you mean ' + repr(close[0]) + '?' if close else 'known: ' + ', '.join(sorted(merged))}")
        ops = _Section(top.raw(family), f"endpoints.{family}")
        # plant and datalog have only list and info; device families all operations
        for op in (DEFAULT_ENDPOINTS[family] if family in NON_DEVICE_FAMILIES else OPERATIONS):
            path = ops.str(op, None)
            if path is None:
                continue
            if not path.startswith("/"):
                raise ConfigError(f"{ops.key(op)}: {quoted(path)} must be a path starting with '/', e.g. /api/v1/pcs/data-last")
            merged[family][op] = path
        ops.done()
    top.done()
    return merged


def _devices(data: Any, families: set[str]) -> tuple[DeviceConfig, ...]:
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ConfigError(f"devices: must be a list of devices (- sn: ... type: ...), got {kind_of(data)}")
    seen: dict[str, int] = {}
    out = []
    for i, item in enumerate(data):
        section = _Section(item, f"devices[{i}]")
        sn = section.str("sn", hint="give the device serial number, e.g. sn: YKD0F1022A").strip()
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", sn):
            raise ConfigError(f"{section.key('sn')}: {quoted(sn)} is not a serial number (letters, digits, . _ - only)")
        if sn in seen:
            raise ConfigError(f"{section.key('sn')}: {sn} is listed twice (also devices[{seen[sn]}]); remove one")
        seen[sn] = i
        kind = section.str("type", hint=f"one of {', '.join(sorted(families))}")
        if kind not in families:
            close = difflib.get_close_matches(kind[:100], families, n=1)
            raise ConfigError(f"{section.key('type')}: unknown device type {quoted(kind)}; {'did you mean ' + repr(close[0]) + '?' if close else 'use one of ' + ', '.join(sorted(families))}")
        tz = section.str("timezone", None)
        out.append(DeviceConfig(
            sn=sn,
            type=kind,
            model=section.str("model", ""),
            timezone=_timezone(tz, section.key("timezone")) if tz else None,
            plant_id=str(section.raw("plant_id", "")),
            plant_name=section.str("plant_name", ""),
        ))
        section.done()
    return tuple(out)


def parse_config(data: Any, source: str = "config.yaml", *, min_interval: float = MIN_INTERVAL_SECONDS) -> Config:
    """Validate an already-loaded YAML document into a Config."""
    top = _Section(data, "")
    from .catalog import load_catalog  # the catalog decides which device families exist

    families = set(load_catalog().families)
    api = _api(_Section(top.raw("atess", hint="add an atess: section with base_url and token"), "atess"))
    poll = _poll(_Section(top.raw("poll", None), "poll"), min_interval)
    endpoints = _endpoints(top.raw("endpoints", None))
    devices = _devices(top.raw("devices", None), families)
    state_file = top.str("state_file", "atess-exporter-state.json") or None
    # No devices listed: the whole account, by discovery (a config with only credentials works).
    discovery = _discovery(_Section(top.raw("discovery", None), "discovery"), families, default_enabled=not devices)
    settings = _settings(_Section(top.raw("settings", None), "settings"))
    overrides, enums = _catalog_overrides(top.raw("catalog_overrides", None), top.raw("enums", None))
    history_format = _history(top.raw("history", None))
    shard_text = top.str("shard", "0/1")
    try:
        shard = parse_shard(shard_text)
    except ValueError as exc:
        raise ConfigError(f"shard: {str(exc).split(': ', 1)[1]}") from None
    top.done()
    if not devices and not discovery.enabled:
        raise ConfigError("devices: no device configured and discovery disabled; list at least one "
                          "(- sn: YKD0F1022A, type: hps_central) or remove discovery.enabled: false")
    return Config(api=api, poll=poll, devices=devices, endpoints=endpoints, source=source, state_file=state_file,
                  discovery=discovery, settings=settings, shard=shard, catalog_overrides=overrides, enums=enums,
                  history_date_format=history_format)


def _catalog_overrides(overrides: Any, enums: Any) -> tuple[dict, dict]:
    """`catalog_overrides:` and `enums:`, checked by building the corrected catalog once."""
    from .catalog import CatalogError, load_catalog

    overrides, enums = overrides or {}, enums or {}
    for key, value in (("catalog_overrides", overrides), ("enums", enums)):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a mapping, got {_kind(value)}; see README 'Correcting the catalog'")
    try:
        load_catalog().with_overrides(overrides, enums)
    except CatalogError as exc:
        raise ConfigError(f"{exc}; see README 'Correcting the catalog'") from None
    return overrides, enums


def _history(data: Any) -> str:
    section = _Section(data, "history")
    fmt = section.str("date_format", "%Y-%m-%d %H:%M:%S")
    if "%Y" not in fmt or "%m" not in fmt or "%d" not in fmt or len(fmt) > 40:
        raise ConfigError(f"{section.key('date_format')}: {fmt!r} must be a strftime pattern with %Y, %m and %d, "
                          "e.g. '%Y-%m-%d %H:%M:%S' (the doc) or '%Y-%m-%d'")
    section.done()
    return fmt


def load_config(path: str, *, writes_state: bool = True, **kwargs: Any) -> Config:
    """Read and validate a YAML file; every problem is a one-line ConfigError naming the file.
    `writes_state`: the caller saves `state_file`, so it must be writable (the backfill does not)."""
    from .yamlsafe import YamlRefused, load_yaml, read_text

    try:
        text = read_text(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); pass --config.file PATH") from None
    except YamlRefused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        data = load_yaml(text)
    except YamlRefused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        config = parse_config(data, source=path, **kwargs)
        if writes_state:
            check_state_file(config.state_file)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config
