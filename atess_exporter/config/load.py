"""The whole file: read it safely, parse every section, and name the file in
every error."""

from __future__ import annotations

from typing import Any

from atess_exporter.config.input import ConfigError, check_state_file
from atess_exporter.config.shard import parse_shard
from atess_exporter.config.accounts import read_accounts
from atess_exporter.config.model import MIN_INTERVAL_SECONDS, AccountConfig, Config
from atess_exporter.config.parsers import (read_api, read_catalog_overrides, read_devices, read_discovery, read_endpoints, read_history, read_poll, read_settings, read_tariffs)
from atess_exporter.config.reader import REQUIRED, Section
from atess_exporter.outside.yamlfile import YamlRefused, load_yaml_file


def parse_config(data: Any, source: str = "config.yaml", *, min_interval: float = MIN_INTERVAL_SECONDS) -> Config:
    """Validate an already-loaded YAML document into a Config."""
    top = Section(data, "")
    from atess_exporter.catalog import load_catalog  # the catalog decides which device families exist

    families = set(load_catalog().families)
    several = top.raw("accounts", None)
    shared = {"atess": top.raw("atess", None if several is not None else REQUIRED,
                               hint="add an atess: section with base_url and token"),
              "poll": top.raw("poll", None), "discovery": top.raw("discovery", None)}
    # The top-level sections are read on their own first: with accounts: they are every
    # account's defaults, and a mistake in them is named where it is written.
    api = read_api(Section(shared["atess"], "atess")) if several is None else None
    endpoints = read_endpoints(top.raw("endpoints", None))
    devices = read_devices(top.raw("devices", None), families)
    state_file = top.str("state_file", "atess-exporter-state.json") or None
    state_file_max_bytes = top.number("state_file_max_bytes", 64 * 1024 * 1024, 1024, integer=True)
    poll = read_poll(Section(shared["poll"], "poll"), min_interval)
    # No devices listed: the whole account, by discovery (a config with only credentials works).
    discovery = read_discovery(Section(shared["discovery"], "discovery"), families, default_enabled=not devices)
    accounts: tuple[AccountConfig, ...] = ()
    if several is not None:
        if devices:
            raise ConfigError("devices: with accounts:, list each device under its account (accounts[0].devices)")
        accounts = read_accounts(several, shared, families, min_interval, state_file)
    settings = read_settings(Section(top.raw("settings", None), "settings"))
    overrides, enums = read_catalog_overrides(top.raw("catalog_overrides", None), top.raw("enums", None))
    history_format = read_history(top.raw("history", None))
    tariffs = read_tariffs(top.raw("tariffs", None))
    shard_text = top.str("shard", "0/1")
    try:
        shard = parse_shard(shard_text)
    except ValueError as exc:
        raise ConfigError(f"shard: {str(exc).split(': ', 1)[1]}") from None
    top.done()
    if accounts:
        first = accounts[0]
        return Config(api=first.api, poll=first.poll, devices=first.devices, endpoints=endpoints, source=source,
                      state_file=first.state_file, state_file_max_bytes=state_file_max_bytes,
                      discovery=first.discovery, settings=settings, shard=shard, catalog_overrides=overrides,
                      enums=enums, history_date_format=history_format, tariffs=tariffs, accounts=accounts,
                      account_name=first.name)
    assert api is not None
    if not devices and not discovery.enabled:
        raise ConfigError("devices: no device configured and discovery disabled; list at least one "
                          "(- sn: YKD0F1022A, type: hps_central) or remove discovery.enabled: false")
    return Config(api=api, poll=poll, devices=devices, endpoints=endpoints, source=source, state_file=state_file,
                  state_file_max_bytes=state_file_max_bytes,
                  discovery=discovery, settings=settings, shard=shard, catalog_overrides=overrides, enums=enums,
                  history_date_format=history_format, tariffs=tariffs)


def load_config(path: str, *, writes_state: bool = True, **kwargs: Any) -> Config:
    """Read and validate a YAML file; every problem is a one-line ConfigError naming the file.
    `writes_state`: the caller saves `state_file`, so it must be writable (the backfill does not)."""
    try:
        data = load_yaml_file(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); pass --config.file PATH") from None
    except YamlRefused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        config = parse_config(data, source=path, **kwargs)
        if writes_state:
            for account in config.all_accounts():
                check_state_file(account.state_file)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config
