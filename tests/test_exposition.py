"""What Prometheus sees: a golden exposition, promtool, and the HTTP endpoints."""

import gzip
import subprocess
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from atess_exporter.app import Exporter
from atess_exporter.live.store import Cache
from atess_exporter.catalog import load_catalog
from atess_exporter.exposition.collectors import DeviceStatusCollector, ReadingsCollector
from atess_exporter.live.poller import Poller
from atess_exporter.web.server import MetricsServer
from support import FakeClient, make_config, require_tool

DATA_TIME = 1767261600.0  # 2026-01-01 10:00:00 UTC, the payload's "time"

PAYLOAD = {
    "deviceSn": "YKD0F1022A",
    "time": "2026-01-01 10:00:00",
    "ppv": "12.5",          # kW as a string, as the API sends it
    "capacity": 87,         # %
    "vbat": "51.2",
    "ibat": None,           # null: no sample
    "temp": "",             # empty: no sample
    "gvpvuv": 400.5,
    "epvTotal": "1234.5",   # kWh lifetime
    "epvToday": 10,
}

GOLDEN = """\
# HELP atess_device_info Device identity: SN, model, device family, plant, datalogger and firmware where known (join on sn)
# TYPE atess_device_info gauge
atess_device_info{datalog_sn="",device_type="hps_central",firmware="",model="HPS150",plant_id="",plant_name="",sn="YKD0F1022A"} 1.0
# HELP atess_device_up 1 when the last poll of the device's latest data succeeded, else 0
# TYPE atess_device_up gauge
atess_device_up{model="HPS150",sn="YKD0F1022A"} 1.0
# HELP atess_device_online 1 when the device's latest reading (vendor field time) is at most 900s old and the cloud does not flag it lost, else 0 (without a usable time: the lost flag, else whether the payload changed within 900s)
# TYPE atess_device_online gauge
atess_device_online{model="HPS150",sn="YKD0F1022A"} 1.0
# HELP atess_device_lost 1 while the cloud flags the device lost (its lost flag, in the latest data or the device list), 0 while it says it is not; absent when the cloud never sent the flag
# TYPE atess_device_lost gauge
# HELP atess_device_last_poll_timestamp_seconds Unix time of the last poll attempt
# TYPE atess_device_last_poll_timestamp_seconds gauge
atess_device_last_poll_timestamp_seconds{model="HPS150",sn="YKD0F1022A"} 1.76726166e+09
# HELP atess_device_last_poll_success_timestamp_seconds Unix time of the last successful poll
# TYPE atess_device_last_poll_success_timestamp_seconds gauge
atess_device_last_poll_success_timestamp_seconds{model="HPS150",sn="YKD0F1022A"} 1.76726166e+09
# HELP atess_device_data_timestamp_seconds Unix time of the device's latest reading (vendor field time, in the API servers' zone: measured, or atess.timezone)
# TYPE atess_device_data_timestamp_seconds gauge
atess_device_data_timestamp_seconds{model="HPS150",sn="YKD0F1022A"} 1.7672616e+09
# HELP atess_device_unusable_fields Catalogued fields of the last payload that held text instead of a number (not exported)
# TYPE atess_device_unusable_fields gauge
atess_device_unusable_fields{model="HPS150",sn="YKD0F1022A"} 0.0
# HELP atess_device_implausible_fields Catalogued fields of the last payload whose value was outside its physical range (withheld, not exported; see --log.level debug)
# TYPE atess_device_implausible_fields gauge
atess_device_implausible_fields{model="HPS150",sn="YKD0F1022A"} 0.0
# HELP atess_lifetime_glitches_total Lifetime totals read lower than before and held at the last good value, since the exporter started
# TYPE atess_lifetime_glitches_total counter
atess_lifetime_glitches_total{model="HPS150",sn="YKD0F1022A"} 0.0
# HELP atess_battery_soc_ratio Battery state of charge. Vendor field hps_central.capacity "Battery SOC(%)", bcu.soc "SOC (%)", mbms.soc "SOC (%)". Cached from the last poll (every 300s per device).
# TYPE atess_battery_soc_ratio gauge
atess_battery_soc_ratio{model="HPS150",sn="YKD0F1022A"} 0.87
# HELP atess_battery_voltage_volts Battery voltage. Vendor field hps_central.vbat "BAT Voltage (V)", pcs.bvpv (another name of vbat). Cached from the last poll (every 300s per device).
# TYPE atess_battery_voltage_volts gauge
atess_battery_voltage_volts{model="HPS150",sn="YKD0F1022A"} 51.2
# HELP atess_grid_voltage_volts Grid line-to-line voltage. Vendor field hps_central.gvpvuv "Grid Voltage UV (V)", hps_central.gvpvvw "Grid Voltage VW (V)", hps_central.gvpvwu "Grid Voltage WU (V)", pcs.bvpvuv (another name of gvpvuv), pcs.bvpvvw (another name of gvpvvw), pcs.bvpvwu (another name of gvpvwu). Cached from the last poll (every 300s per device).
# TYPE atess_grid_voltage_volts gauge
atess_grid_voltage_volts{model="HPS150",phase="uv",sn="YKD0F1022A"} 400.5
# HELP atess_pv_energy_joules_total Lifetime PV generation energy. Vendor field hps_central.epvTotal "Total.PV Energy (kWh)", pcs.eTotal "Total generation", pbd.eTotal "Total generation". Cached from the last poll (every 300s per device).
# TYPE atess_pv_energy_joules_total counter
atess_pv_energy_joules_total{model="HPS150",sn="YKD0F1022A"} 4.4442e+09
# HELP atess_pv_energy_today_joules PV generation energy today (resets at local midnight). Vendor field hps_central.epvToday "Daily.PV Energy (kWh)", pcs.eToday "Daily generation", pbd.eToday "Daily generation". Cached from the last poll (every 300s per device).
# TYPE atess_pv_energy_today_joules gauge
atess_pv_energy_today_joules{model="HPS150",sn="YKD0F1022A"} 3.6e+07
# HELP atess_pv_power_watts Total PV input power over all PV strings (every model: ppv, or ppv1 on HPS100HV/HPS150HV). Vendor field hps_central.ppv "PV Power (kW)", hps_central.ppv1 (hv models) "Total PV Power", pcs.ppv "PV Power", pbd.ppv "PV Power". Cached from the last poll (every 300s per device).
# TYPE atess_pv_power_watts gauge
atess_pv_power_watts{model="HPS150",sn="YKD0F1022A"} 12500.0
"""


def polled_cache(payload=PAYLOAD, now=DATA_TIME + 60):
    config = make_config("http://127.0.0.1:9", devices=[{"sn": "YKD0F1022A", "type": "hps_central", "model": "HPS150"}])
    cache = Cache()
    poller = Poller(config, FakeClient({"YKD0F1022A": payload}), cache, load_catalog(), clock=lambda: now)
    poller.poll_all_once()
    return config, cache


def test_golden_exposition_on_a_fresh_registry():
    config, cache = polled_cache()
    registry = CollectorRegistry()
    clock = lambda: DATA_TIME + 60
    registry.register(DeviceStatusCollector(cache, config.poll, clock=clock))
    registry.register(ReadingsCollector(cache, load_catalog(), config.poll, clock=clock))
    assert generate_latest(registry).decode() == GOLDEN


@pytest.mark.promtool
def test_promtool_check_metrics_is_silent_on_the_demo_fleet(sim):
    promtool = require_tool("promtool")
    exporter = Exporter(make_config(sim.base_url))
    snaps = exporter.poller.poll_all_once()
    assert all(s.up for s in snaps)
    text = exporter.exposition()
    assert text.count(b"\natess_") > 300
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


@pytest.fixture
def served(sim):
    exporter = Exporter(make_config(sim.base_url))
    exporter.poller.poll_all_once()
    server = MetricsServer(exporter.registry, "127.0.0.1:0", "/metrics")
    server.start()
    yield exporter, f"http://127.0.0.1:{server.port}"
    server.stop()


def get(url, **headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_http_endpoints(served):
    exporter, base = served
    status, headers, body = get(base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b'atess_device_up{model="HPS150",sn="HPS150A2312000147"} 1.0' in body

    status, headers, zipped = get(base + "/metrics", **{"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(zipped).count(b"\n") == body.count(b"\n")

    status, headers, om = get(base + "/metrics", Accept="application/openmetrics-text; version=1.0.0")
    assert headers["Content-Type"].startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")

    assert get(base + "/healthz")[0] == 200
    status, headers, page = get(base + "/")
    assert status == 200 and b'href="/metrics"' in page
    assert get(base + "/nothing-here")[0] == 404


def test_custom_telemetry_path(sim):
    exporter = Exporter(make_config(sim.base_url))
    server = MetricsServer(exporter.registry, "127.0.0.1:0", "/probe/metrics")
    server.start()
    try:
        assert get(f"http://127.0.0.1:{server.port}/probe/metrics")[0] == 200
        assert get(f"http://127.0.0.1:{server.port}/metrics")[0] == 404
    finally:
        server.stop()


def test_process_python_and_build_info_like_every_python_exporter(sim):
    """process_* and python_info from the client library's collectors; build info names the Python."""
    import platform

    from support import parse_exposition

    exporter = Exporter(make_config(sim.base_url))
    parsed = parse_exposition(exporter.exposition().decode())
    names = {name for name, _ in parsed}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds",
            "process_open_fds", "process_max_fds"} <= names
    python = platform.python_version()
    assert parsed[("python_info", frozenset({"implementation": platform.python_implementation(), "version": python,
                                              "major": python.split(".")[0], "minor": python.split(".")[1],
                                              "patchlevel": python.split(".")[2]}.items()))] == 1.0
    from atess_exporter import __version__
    assert parsed[("atess_exporter_build_info", frozenset({"version": __version__, "python_version": python}.items()))] == 1.0
    assert 0 < parsed[("process_resident_memory_bytes", frozenset())] < 2**34
