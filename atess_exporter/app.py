"""The one wiring: config -> client -> poller -> store -> collectors -> registry -> HTTP server.

cli.py parses the command line and runs the process's life (signals, start, stop);
every piece the exporter is made of is built here.
"""

from __future__ import annotations

import threading
from typing import Callable

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, disable_created_metrics
from prometheus_client.exposition import generate_latest

from atess_exporter.api.client import AtessClient
from atess_exporter.api.instrumentation import ApiStats
from atess_exporter.config import Config
from atess_exporter.exposition.collectors import (AuthCollector, BuildInfoCollector, DeviceStatusCollector,
                                                  DroppedCollector, PollCollector, ReadingsCollector,
                                                  ServerClockCollector, SettingsCollector, ShardCollector,
                                                  TopologyCollector)
from atess_exporter.exposition.tariffs import TariffCollector
from atess_exporter.live.poller import Poller
from atess_exporter.live.store import Cache, DeviceSnapshot
from atess_exporter.web.server import MetricsServer
from atess_exporter.web.status import StatusPages

# `_created` series double the output and no dashboard or rule here uses them.
disable_created_metrics()


class Exporter:
    """Every account's client and poller writing one store, and the collectors reading it."""

    def __init__(self, config: Config, session=None):
        self.config = config
        self.catalog = config.catalog()
        self.registry = CollectorRegistry()
        accounts = config.all_accounts()
        self.api_stats = ApiStats(self.registry, accounts=len(accounts) > 1)
        self.cache = Cache()
        self.pollers: list[Poller] = []
        for account in accounts:
            own = config.for_account(account)
            client = AtessClient(own.api, observer=self.api_stats.observer(own.account_label()), session=session,
                                 connections=max(own.poll.max_concurrency, own.discovery.concurrency))
            self.pollers.append(Poller(own, client, self.cache, self.catalog))
        self.poller, self.client = self.pollers[0], self.pollers[0].client   # the only (or first) account's
        self.registry.register(BuildInfoCollector())
        # process_* (CPU, memory, open files, start time) and python_info, as every Python exporter has.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(AuthCollector(self.cache))
        self.registry.register(DroppedCollector(self.cache))
        self.registry.register(ServerClockCollector(self.cache))
        self.registry.register(DeviceStatusCollector(self.cache, config.poll))
        self.registry.register(ReadingsCollector(self.cache, self.catalog, config.poll))
        self.registry.register(PollCollector(self.cache))
        self.registry.register(ShardCollector(config.shard))
        self.registry.register(TopologyCollector(self.cache, config.shard))
        self.registry.register(SettingsCollector(self.cache))
        self.registry.register(TariffCollector(config, self.cache))

    def web_server(self, listen_address: str, telemetry_path: str, *, web_config_file: str | None,
                   max_connections: int | None, max_auth_checks: int, demo: bool) -> MetricsServer:
        """/metrics over this registry, and the status pages over this store."""
        status = StatusPages(self.cache, self.config.poll, self.catalog, self.config.secrets(), demo)
        return MetricsServer(self.registry, listen_address, telemetry_path, web_config_file=web_config_file,
                             max_connections=max_connections, max_auth_checks=max_auth_checks,
                             landing_extra=status)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def start(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Start polling; `on_ready(device_count)` runs once the device set is known:
        at once for a fixed SN list, after the first discovery otherwise."""
        for poller in self.pollers:
            poller.start()
        if on_ready is not None:
            threading.Thread(target=self._when_ready, args=(on_ready,), name="ready", daemon=True).start()

    def _when_ready(self, on_ready: Callable[[int], None]) -> None:
        for poller in self.pollers:
            if poller.config.discovery.enabled:
                poller.discovered.wait()
        on_ready(sum(len(poller.devices) for poller in self.pollers))

    def run_once(self) -> list[DeviceSnapshot]:
        """--once: every account polled once (one after another: each sizes its own workers)."""
        return [snapshot for poller in self.pollers for snapshot in poller.run_once()]

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
