"""`accounts:`: several ATESS accounts in one exporter (an installer's customers).

Each entry is one account: `name` (the `account` label's value), its own
credentials and any other key of `atess:`, and optionally its own `devices:`,
`discovery:` and the rate-limit and back-off keys of `poll:`. Whatever an entry
does not set comes from the top-level section of the same name, so shared
settings are written once. Credentials are never shared: each account brings
its own, and top-level ones are refused (one token for two accounts is a
mistake, not a default).
"""

from __future__ import annotations

import os
import re
from typing import Any

from atess_exporter.config.input import ConfigError, kind_of, quoted
from atess_exporter.config.model import AccountConfig
from atess_exporter.config.parsers import read_api, read_devices, read_discovery, read_poll
from atess_exporter.config.reader import Section

MAX_ACCOUNTS = 100
# A label value that reads well in PromQL and in a file name (the account's state file).
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
CREDENTIAL_KEYS = ("token", "token_file", "app_id", "app_id_file", "app_key", "app_key_file")
# What may differ per account in poll: (how fast its API is called, and its back-off);
# the rest shapes the exported series and applies to every account.
POLL_KEYS = ("interval_seconds", "concurrency", "max_concurrency", "margin_seconds", "retries",
             "retry_backoff_seconds", "auth_backoff_seconds")


def _mapping(data: Any, key: str) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: must be a mapping of keys, got {kind_of(data)}")
    return data


def state_file_of(state_file: str | None, name: str, accounts: int) -> str | None:
    """One state file per account beside the configured one: state.json -> state.<name>.json."""
    if not state_file or accounts == 1:
        return state_file
    root, ext = os.path.splitext(state_file)
    return f"{root}.{name}{ext or '.json'}"


def read_accounts(data: Any, shared: dict[str, Any], families: set[str], min_interval: float,
                  state_file: str | None) -> tuple[AccountConfig, ...]:
    """`accounts:` into AccountConfigs; `shared` holds the top-level atess, poll and discovery mappings."""
    if not isinstance(data, list) or not data:
        raise ConfigError(f"accounts: must be a list of accounts (- name: north, token: ${{NORTH_TOKEN}}), got {kind_of(data)}")
    if len(data) > MAX_ACCOUNTS:
        raise ConfigError(f"accounts: {len(data)} accounts; at most {MAX_ACCOUNTS} in one exporter (run more exporters)")
    api_shared = _mapping(shared.get("atess"), "atess")
    for key in CREDENTIAL_KEYS:
        if key in api_shared:
            raise ConfigError(f"atess.{key}: with accounts:, each account has its own credentials; "
                              f"move it into its account (accounts[0].{key})")
    out: list[AccountConfig] = []
    names: dict[str, int] = {}
    files: dict[str, int] = {}
    listed: dict[str, int] = {}
    for i, item in enumerate(data):
        path = f"accounts[{i}]"
        section = Section(item, path)
        name = section.str("name", hint="give the account a name for its `account` label, e.g. name: north")
        if not NAME.fullmatch(name):
            raise ConfigError(f"{section.key('name')}: {quoted(name)} is not an account name; use 1-40 lower-case "
                              "letters, digits, _ or -, starting with a letter or digit, e.g. north")
        if name in names:
            raise ConfigError(f"{section.key('name')}: {name} is used twice (also accounts[{names[name]}]); give each account its own name")
        names[name] = i
        devices = read_devices(section.raw("devices", None), families, f"{path}.devices")
        for device in devices:
            if device.sn in listed:
                raise ConfigError(f"{path}.devices: {device.sn} is also listed under accounts[{listed[device.sn]}]; "
                                  "a device belongs to one account")
            listed[device.sn] = i
        own_poll = _mapping(section.raw("poll", None), section.key("poll"))
        for key in own_poll:
            if key not in POLL_KEYS:
                raise ConfigError(f"{section.key('poll')}.{str(key)[:100]}: applies to every account; set it in the "
                                  f"top-level poll: section (per account: {', '.join(POLL_KEYS)})")
        poll = read_poll(Section({**_mapping(shared.get("poll"), "poll"), **own_poll}, section.key("poll")), min_interval)
        own_discovery = _mapping(section.raw("discovery", None), section.key("discovery"))
        discovery = read_discovery(Section({**_mapping(shared.get("discovery"), "discovery"), **own_discovery},
                                           section.key("discovery")), families, default_enabled=not devices)
        if not devices and not discovery.enabled:
            raise ConfigError(f"{path}.devices: no device listed and discovery disabled; list at least one "
                              "or remove discovery.enabled: false")
        own_state = section.str("state_file", None)
        account_state = (own_state or None) if own_state is not None else state_file_of(state_file, name, len(data))
        if account_state:
            at = os.path.abspath(account_state)
            if at in files:
                raise ConfigError(f"{section.key('state_file')}: {quoted(account_state)} is also accounts[{files[at]}]'s; "
                                  "give each account its own state file")
            files[at] = i
        # Everything else in the entry is a key of atess: (its credentials first of all).
        own_api = {k: v for k, v in section.data.items() if k not in section.seen}
        api = read_api(Section({**api_shared, **own_api}, path))
        out.append(AccountConfig(name=name, api=api, poll=poll, devices=devices, discovery=discovery,
                                 state_file=account_state))
    return tuple(out)
