"""Fixtures shared by the test files, and the check behind the tool markers.
Helpers (config, clock, waiting, certificates...) are in support.py."""

import pytest
import yaml
from prometheus_client import CollectorRegistry

from atess_exporter.simulator import Simulator, demo_devices
from atess_exporter.web.server import MetricsServer
import support
from support import TOKEN, TOOL_MARKERS, make_pki, require_tool


@pytest.fixture
def sim():
    """The embedded simulator on 127.0.0.1 with the demo fleet."""
    with Simulator(demo_devices(), token=TOKEN) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, server and client certificates, a client from another CA (support.make_pki)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def metrics_server(tmp_path):
    """start(collector, web_config=None, refresh=True, **MetricsServer options): a started
    server on 127.0.0.1:0 exposing `collector`, stopped after the test. web_config: a dict
    or YAML text (written to a file) or a file's path; refresh=False renders only when scraped."""
    servers = []

    def start(collector, web_config=None, refresh=True, **kwargs):
        path = web_config
        if isinstance(web_config, dict) or (isinstance(web_config, str) and "\n" in web_config):
            path = tmp_path / f"web-{len(servers)}.yml"
            path.write_text(web_config if isinstance(web_config, str) else yaml.safe_dump(web_config))
        registry = CollectorRegistry()
        registry.register(collector)
        server = MetricsServer(registry, "127.0.0.1:0", web_config_file=str(path) if path else None, **kwargs)
        if not refresh:
            server.refresh_seconds = None
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def pytest_runtest_setup(item):
    """A test marked with a program it needs is skipped without it (failed in CI)."""
    for marker in item.iter_markers():
        if marker.name in TOOL_MARKERS:
            require_tool(TOOL_MARKERS[marker.name])


@pytest.fixture
def mocked():
    with support.served(support.account()) as acct:
        yield acct
