"""The parsers of the file's sections (atess, poll, discovery, settings, endpoints,
devices, catalog_overrides and enums, history), one function each."""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from typing import Any

from atess_exporter.outside.zones import parse_zone
from atess_exporter.config.input import ConfigError, check_header_text, kind_of, quoted
from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS, NON_DEVICE_FAMILIES, OPERATIONS
from atess_exporter.catalog.models import FAMILY_MODELS
from atess_exporter.outside.text import valid_sn
from atess_exporter.config.model import (DISCOVERY_REFRESH_SECONDS, MAX_PAGE_SIZE, MIN_INTERVAL_SECONDS, WEEKDAYS, ApiConfig, Credentials,
                                         DeviceConfig, DiscoveryConfig, PollConfig, SettingsConfig, Tariff, TariffWindow)
from atess_exporter.config.reader import Section


def _timezone(value: str, key: str, auto: bool = False) -> str:
    """A zone as written (IANA name or offset such as "UTC+8"); "auto" where allowed."""
    if auto and value == "auto":
        return value
    if parse_zone(value) is None:
        choices = '"auto" (measured), ' if auto else ""
        raise ConfigError(f"{key}: unknown time zone {quoted(value)}; use {choices}an IANA name such as "
                          "Asia/Shanghai, or an offset such as UTC+8 (GMT+8 means UTC+8 here)")
    return value


def unknown_family(value: str, families: set[str] | dict, key: str, what: str) -> ConfigError:
    """`hps` -> both HPS types with the models each covers; `pcss` -> 'pcs'; else the list."""
    value = value[:100]
    starts = sorted(f for f in families if value and f.startswith(value.lower()))
    if starts:
        fix = "did you mean " + " or ".join(
            f"{f!r}" + (f" ({FAMILY_MODELS[f]})" if f in FAMILY_MODELS else "") for f in starts) + "?"
    else:
        close = difflib.get_close_matches(value, families, n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(sorted(families))}"
    return ConfigError(f"{key}: unknown {what} {quoted(value)}; {fix}")


def read_api(section: Section) -> ApiConfig:
    base_url = section.str("base_url", "https://www.enerclo-atesspower.com").rstrip("/")
    if not re.match(r"^https?://[^/\s]+", base_url):
        raise ConfigError(f"{section.key('base_url')}: {quoted(base_url)} is not an http(s) URL; e.g. https://www.enerclo-atesspower.com")
    creds = Credentials(
        token=section.secret("token"),
        app_id=section.secret("app_id"),
        app_key=section.secret("app_key"),
        scheme=section.str("auth_scheme", "Basic"),
    )
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
        timezone=_timezone(section.str("timezone", "auto"), section.key("timezone"), auto=True),
        success_codes=section.int_list("success_codes", (0, 200)),
        auth_error_codes=section.int_list("auth_error_codes", (401, 403)),
        rate_limit_codes=section.int_list("rate_limit_codes", (429,)),
        max_response_bytes=section.number("max_response_bytes", 16 * 1024 * 1024, 64 * 1024, integer=True,
                                          maximum=1024 * 1024 * 1024),
        credentials_at=section.path,
    )
    section.done()  # an unknown key first: `tokn:` is a typo, not a missing credential
    if creds.token is not None and (creds.app_id or creds.app_key):
        raise ConfigError(f"{section.key('token')}: give either token or app_id and app_key, not both")
    if creds.token is None and not (creds.app_id and creds.app_key):
        missing = "app_key" if creds.app_id else "app_id" if creds.app_key else "token"
        raise ConfigError(f"{section.key(missing)}: missing credential; set token (or app_id and app_key), "
                          "e.g. token: ${ATESS_TOKEN} (README: Credentials)")
    return api


def read_poll(section: Section, min_interval: float) -> PollConfig:
    poll = PollConfig(
        interval_seconds=section.number(
            "interval_seconds", float(MIN_INTERVAL_SECONDS), min_interval,
            hint=f"the ATESS API allows one call per device every 5 minutes; set it to {min_interval:g} or more",
            maximum=86400,
        ),
        concurrency=section.number("concurrency", 4, 1, integer=True, maximum=256),
        max_concurrency=section.number("max_concurrency", 0, 1, integer=True, maximum=1024)
        if section.raw("max_concurrency", None) is not None else 0,
        margin_seconds=section.number("margin_seconds", 0.0, 0, maximum=3600)
        if section.raw("margin_seconds", None) is not None else -1.0,
        retries=section.number("retries", 2, 0, integer=True, maximum=10),
        retry_backoff_seconds=section.number("retry_backoff_seconds", 2.0, 0, maximum=3600),
        stale_after_seconds=section.number("stale_after_seconds", 900.0, 1, maximum=30 * 86400),
        max_data_age_seconds=section.number("max_data_age_seconds", 3600.0, 1, maximum=30 * 86400),
        counter_reset_confirm_polls=section.number("counter_reset_confirm_polls", 3, 1, integer=True, maximum=100),
        auth_backoff_seconds=section.number("auth_backoff_seconds", 0.0, 0, maximum=86400),
    )
    if poll.margin_seconds < 0:  # not set: 2 s, or 1 % of a short (test) interval
        poll = replace(poll, margin_seconds=min(2.0, poll.interval_seconds / 100))
    if not poll.max_concurrency:  # not set: 64, or the floor when that is higher
        poll = replace(poll, max_concurrency=max(64, poll.concurrency))
    elif poll.max_concurrency < poll.concurrency:
        raise ConfigError(f"{section.key('max_concurrency')}: {poll.max_concurrency} is below concurrency "
                          f"({poll.concurrency}); set it at least as high")
    if poll.stale_after_seconds < poll.interval_seconds:
        raise ConfigError(f"{section.key('stale_after_seconds')}: {poll.stale_after_seconds:g} is below "
                          f"interval_seconds ({poll.interval_seconds:g}): every reading would turn stale before "
                          f"the next poll; set it to at least {poll.interval_seconds:g} (e.g. 3 intervals)")
    if poll.max_data_age_seconds < poll.stale_after_seconds:
        raise ConfigError(f"{section.key('max_data_age_seconds')}: {poll.max_data_age_seconds:g} is below "
                          f"stale_after_seconds ({poll.stale_after_seconds:g}); set it at least as high")
    section.done()
    return poll


def _filter(data: Any, key: str) -> tuple[frozenset[str], frozenset[str]]:
    section = Section(data, key)
    sns, plants = frozenset(section.str_list("sn")), frozenset(section.str_list("plant"))
    section.done()
    return sns, plants


def read_discovery(section: Section, families: set[str], default_enabled: bool = False) -> DiscoveryConfig:
    chosen = section.str_list("families")
    for family in chosen:
        if family not in families:
            raise unknown_family(family, families, section.key("families"), "device family")
    include = _filter(section.raw("include", None), section.key("include"))
    exclude = _filter(section.raw("exclude", None), section.key("exclude"))
    discovery = DiscoveryConfig(
        enabled=section.bool("enabled", default_enabled),
        refresh_seconds=section.number("refresh_seconds", DISCOVERY_REFRESH_SECONDS, 300, maximum=7 * 86400,
                                       hint="discovery lists the whole account; refresh at most every 5 minutes"),
        refresh_set=section.data.get("refresh_seconds") is not None,
        page_size=section.number("page_size", 100, 1, integer=True, maximum=MAX_PAGE_SIZE),
        max_pages=section.number("max_pages", 50, 1, integer=True, maximum=10000),
        max_calls=section.number("max_calls", 0, 0, integer=True, maximum=10000000),
        max_devices=section.number("max_devices", 20000, 1, integer=True, maximum=1000000),
        concurrency=section.number("concurrency", 8, 1, integer=True, maximum=64),
        calls_per_second=section.number("calls_per_second", 10.0, 0.01, maximum=1000),
        families=chosen,
        include_sns=include[0], include_plants=include[1],
        exclude_sns=exclude[0], exclude_plants=exclude[1],
    )
    section.done()
    return discovery


def read_settings(section: Section) -> SettingsConfig:
    settings = SettingsConfig(
        enabled=section.bool("enabled", False),
        refresh_seconds=section.number("refresh_seconds", 3600.0, 3600, maximum=7 * 86400,
                                       hint="settings are read at most hourly"),
        max_keys=section.number("max_keys", 500, 1, integer=True, maximum=100000),
    )
    section.done()
    return settings


def read_endpoints(data: Any) -> dict[str, dict[str, str]]:
    merged = {family: dict(ops) for family, ops in DEFAULT_ENDPOINTS.items()}
    top = Section(data, "endpoints")
    for family in list(top.data):
        if family not in merged:
            raise unknown_family(str(family), merged, f"endpoints.{str(family)[:100]}", "device family")
        ops = Section(top.raw(family), f"endpoints.{family}")
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


def read_devices(data: Any, families: set[str], path: str = "devices") -> tuple[DeviceConfig, ...]:
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ConfigError(f"{path}: must be a list of devices (- sn: ... type: ...), got {kind_of(data)}")
    seen: dict[str, int] = {}
    out = []
    for i, item in enumerate(data):
        section = Section(item, f"{path}[{i}]")
        sn = section.str("sn", hint="give the device serial number, e.g. sn: YKD0F1022A").strip()
        if not valid_sn(sn):
            raise ConfigError(f"{section.key('sn')}: {quoted(sn)} is not a serial number (letters, digits, . _ - only)")
        if sn in seen:
            raise ConfigError(f"{section.key('sn')}: {sn} is listed twice (also {path}[{seen[sn]}]); remove one")
        seen[sn] = i
        kind = section.str("type", hint=f"one of {', '.join(sorted(families))}")
        if kind not in families:
            raise unknown_family(kind, families, section.key("type"), "device type")
        tz = section.str("timezone", None)
        out.append(DeviceConfig(
            sn=sn,
            type=kind,
            model=section.str("model", ""),
            timezone=_timezone(tz, section.key("timezone")) if tz not in (None, "") else None,
            plant_id=str(section.raw("plant_id", "")),
            plant_name=section.str("plant_name", ""),
        ))
        section.done()
    return tuple(out)


def read_catalog_overrides(overrides: Any, enums: Any) -> tuple[dict, dict]:
    """`catalog_overrides:` and `enums:`, checked by building the corrected catalog once."""
    from atess_exporter.catalog import CatalogError, load_catalog

    overrides, enums = overrides or {}, enums or {}
    for key, value in (("catalog_overrides", overrides), ("enums", enums)):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a mapping, got {kind_of(value)}; see README 'Correcting the catalog'")
    try:
        load_catalog().with_overrides(overrides, enums)
    except CatalogError as exc:
        raise ConfigError(f"{exc}; see README 'Correcting the catalog'") from None
    return overrides, enums


def read_history(data: Any) -> str:
    section = Section(data, "history")
    fmt = section.str("date_format", "%Y-%m-%d %H:%M:%S")
    if "%Y" not in fmt or "%m" not in fmt or "%d" not in fmt or len(fmt) > 40:
        raise ConfigError(f"{section.key('date_format')}: {fmt!r} must be a strftime pattern with %Y, %m and %d, "
                          "e.g. '%Y-%m-%d %H:%M:%S' (the doc) or '%Y-%m-%d'")
    section.done()
    return fmt



# Prices are per kWh (the unit on every bill; per joule they would read 8.3e-08), in any
# currency: 1e6 is far above any real tariff in any currency and still a finite bound.
MAX_PRICE_PER_KWH = 1e6
MAX_TARIFFS = 1000
MAX_WINDOWS = 48


def _price(section: Section, name: str, default: Any) -> Any:
    return section.number(name, default, 0.0, maximum=MAX_PRICE_PER_KWH,
                          hint="prices are per kWh and not negative, e.g. 0.30")


def _clock(section: Section, name: str, default: str) -> int:
    """Minutes since local midnight of "HH:MM" ("24:00" is the end of the day)."""
    value = section.raw(name, default)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 24 * 60:
            meant = f"{value // 60:02d}:{value % 60:02d}"
            raise ConfigError(f"{section.key(name)}: write the time in quotes, e.g. {name}: \"{meant}\" "
                              f"(unquoted, YAML reads {meant} as the number {value})")
        raise ConfigError(f"{section.key(name)}: {value} is not a time of day; write HH:MM in quotes, e.g. {name}: \"22:00\"")
    text = section.str(name, default)
    m = re.fullmatch(r"([01]?\d|2[0-4]):([0-5]\d)", text.strip())
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise ConfigError(f"{section.key(name)}: {quoted(text)} is not a time of day; write HH:MM in quotes, e.g. \"07:00\"")
    return int(m.group(1)) * 60 + int(m.group(2))


_DAY_NAMES = {name: i for i, day in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
              for name in (day, day[:3])}


def _days(section: Section) -> frozenset[int]:
    names = section.str_list("days") or WEEKDAYS
    days = set()
    for name in names:
        day = _DAY_NAMES.get(name.strip().lower())
        if day is None:
            raise ConfigError(f"{section.key('days')}: {quoted(name)} is not a day of the week; use {', '.join(WEEKDAYS)}")
        days.add(day)
    return frozenset(days)


def read_tariffs(data: Any) -> tuple[Tariff, ...]:
    """`tariffs:` a list of tariffs; at most one without `plants:` (the default), and
    no plant in two."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"tariffs: must be a list of tariffs (- currency: EUR, import_price: 0.30 ...), got {kind_of(data)}")
    if len(data) > MAX_TARIFFS:
        raise ConfigError(f"tariffs: {len(data)} tariffs; at most {MAX_TARIFFS}")
    out: list[Tariff] = []
    owner: dict[str, int] = {}
    default_at = None
    for i, item in enumerate(data):
        section = Section(item, f"tariffs[{i}]")
        currency = section.str("currency", hint="the ISO 4217 code of the prices, e.g. currency: EUR")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ConfigError(f"{section.key('currency')}: {quoted(currency)} is not an ISO 4217 currency code; e.g. EUR, USD, GBP")
        if section.data.get("import_price") is None:
            section.raw("import_price", hint="the price per kWh bought from the grid, e.g. import_price: 0.30")
        import_price = _price(section, "import_price", None)
        export_price = _price(section, "export_price", 0.0)
        tz = section.str("timezone", None)
        plants = section.str_list("plants")
        for plant in plants:
            if plant in owner:
                raise ConfigError(f"{section.key('plants')}: plant {quoted(plant)} already has tariffs[{owner[plant]}]; list each plant once")
            owner[plant] = i
        if not plants:
            if default_at is not None:
                raise ConfigError(f"{section.key('plants')}: missing; tariffs[{default_at}] already applies to every other plant, "
                                  "so list the plant ids this one is for, e.g. plants: [PL1001]")
            default_at = i
        windows = section.raw("windows", [])
        if not isinstance(windows, list):
            raise ConfigError(f"{section.key('windows')}: must be a list of time windows (- days: [mon, fri], from: \"07:00\", to: \"22:00\", import_price: 0.38), got {kind_of(windows)}")
        if len(windows) > MAX_WINDOWS:
            raise ConfigError(f"{section.key('windows')}: {len(windows)} windows; at most {MAX_WINDOWS}")
        parsed = []
        for j, raw in enumerate(windows):
            w = Section(raw, f"{section.key('windows')}[{j}]")
            start, end = _clock(w, "from", "00:00"), _clock(w, "to", "24:00")
            if start == end or start == 24 * 60:
                raise ConfigError(f"{w.key('to')}: the window from {start // 60:02d}:{start % 60:02d} to {end // 60:02d}:{end % 60:02d} is empty; "
                                  "for the whole day write from: \"00:00\", to: \"24:00\"")
            if "import_price" not in w.data and "export_price" not in w.data:
                raise ConfigError(f"{w.key('import_price')}: missing; a window sets import_price, export_price or both")
            parsed.append(TariffWindow(days=_days(w), start=start, end=end,
                                       import_price=_price(w, "import_price", import_price),
                                       export_price=_price(w, "export_price", export_price)))
            w.done()
        out.append(Tariff(currency=currency, import_price=import_price, export_price=export_price, windows=tuple(parsed),
                          plants=frozenset(plants), timezone=_timezone(tz, section.key("timezone")) if tz else None))
        section.done()
    return tuple(out)
