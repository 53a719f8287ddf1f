"""Configuration: YAML in, plain validated objects out.

Every error is a ConfigError whose text is one line naming the key and the fix,
so start-up can print it and exit 1 without a traceback.
"""

# The rooms: model (the validated objects), reader (one YAML mapping, key by key),
# parsers (one function per section), load (the file, start to end). The names
# below are what the rest of the project imports from `atess_exporter.config`.

from atess_exporter.config.input import ConfigError
from atess_exporter.config.load import load_config, parse_config
from atess_exporter.config.model import (MIN_INTERVAL_SECONDS, ApiConfig, Config, Credentials, DeviceConfig, DiscoveryConfig, PollConfig, Secret, SettingsConfig)

__all__ = [
    "ApiConfig", "Config", "ConfigError", "Credentials", "DeviceConfig", "DiscoveryConfig", "MIN_INTERVAL_SECONDS",
    "PollConfig", "Secret", "SettingsConfig", "load_config", "parse_config",
]
