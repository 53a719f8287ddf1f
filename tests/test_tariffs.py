"""Energy prices (config `tariffs:`): validated like every other value, exported as the
price that applies now in each plant's own local time, and nothing at all without one."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from atess_exporter.account.discovery import Plant, Topology
from atess_exporter.app import Exporter
from atess_exporter.config import ConfigError
from atess_exporter.exposition.tariffs import TariffCollector
from atess_exporter.live.store import Cache, DeviceSnapshot
from support import make_config, parse_exposition, require_tool, series, value

TOU = {"currency": "EUR", "import_price": 0.30, "export_price": 0.08,
       "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "07:00", "to": "22:00", "import_price": 0.38},
                   {"from": "22:00", "to": "06:00", "import_price": 0.20, "export_price": 0.05}]}
DEVICES = [{"sn": "A1", "type": "hps_central", "plant_id": "PL1", "plant_name": "Farm"},
           {"sn": "HOME", "type": "hps_string"}]


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def prices(tariffs, at: float, topology: Topology | None = None, devices=DEVICES, **sections) -> dict:
    config = make_config("http://127.0.0.1:9", devices=devices, tariffs=tariffs, **sections)
    cache = Cache()
    cache.account().topology = topology
    for d in config.devices:
        cache.account().put(DeviceSnapshot(sn=d.sn, device_type=d.type, model="", info=d.info()))
    registry = CollectorRegistry()
    registry.register(TariffCollector(config, cache, clock=lambda: at))
    return parse_exposition(generate_latest(registry).decode())


def test_time_of_use_price_follows_the_plants_local_clock_across_midnight():
    berlin = Topology(plants=(Plant("PL1", "Farm", timezone="Europe/Berlin"), Plant("PL2", "Ranch", timezone="America/New_York")))
    # Monday 2026-12-07 05:59 UTC: 06:59 in Berlin (base price, the night window ended at 06:00),
    # 00:59 in New York (night window, started Sunday 22:00)
    at = prices([TOU], utc("2026-12-07 05:59"), berlin)
    assert value(at, "atess_tariff_import_price_per_kwh", plant_id="PL1", currency="EUR") == 0.30
    assert value(at, "atess_tariff_import_price_per_kwh", plant_id="PL2") == 0.20
    assert value(at, "atess_tariff_export_price_per_kwh", plant_id="PL2") == 0.05
    # one minute later it is 07:00 in Berlin: the weekday peak
    at = prices([TOU], utc("2026-12-07 06:00"), berlin)
    assert value(at, "atess_tariff_import_price_per_kwh", plant_id="PL1") == 0.38
    assert value(at, "atess_tariff_export_price_per_kwh", plant_id="PL1") == 0.08, "the window keeps the base export price"
    # Saturday noon: no weekday peak
    at = prices([TOU], utc("2026-12-12 11:00"), berlin)
    assert value(at, "atess_tariff_import_price_per_kwh", plant_id="PL1") == 0.30


def test_devices_without_a_plant_get_the_default_tariff_under_an_empty_plant_id():
    at = prices([{**TOU, "timezone": "Europe/Berlin"}], utc("2026-12-07 12:00"))
    assert {dict(k)["plant_id"] for k in series(at, "atess_tariff_import_price_per_kwh")} == {"PL1", ""}
    assert value(at, "atess_tariff_import_price_per_kwh", plant_id="") == 0.38  # 13:00 Berlin, the tariff's zone


def test_the_api_servers_zone_never_prices_a_plant_and_an_unknown_zone_is_utc_said_once(caplog):
    """atess.timezone (and devices[].timezone) name the zone the API's servers write reading
    times in -- UTC+8 on the platform -- not the plant's: a plant of unknown zone is priced in
    UTC, with one warning naming the key that fixes it."""
    caplog.set_level("WARNING", logger="atess_exporter.exposition.tariffs")
    # 06:30 UTC on a Monday: 14:30 in UTC+8 (the peak), 06:30 in UTC (the base price)
    config = make_config("http://127.0.0.1:9", devices=DEVICES, tariffs=[TOU], atess={"timezone": "UTC+8"})
    cache = Cache()
    registry = CollectorRegistry()
    registry.register(TariffCollector(config, cache, clock=lambda: utc("2026-12-07 06:30")))
    for _ in range(2):
        at = parse_exposition(generate_latest(registry).decode())
        assert value(at, "atess_tariff_import_price_per_kwh", plant_id="PL1") == 0.30
    warned = [r for r in caplog.records if "tariff" in r.getMessage()]
    assert len(warned) == 2 and {r.fields["setting"] for r in warned} == {"tariffs[0].timezone"}   # PL1 and ""


def test_a_tariff_per_plant_and_its_own_zone():
    tariffs = [{**TOU, "plants": ["PL2"], "currency": "USD", "timezone": "America/New_York"},
               {"currency": "EUR", "import_price": 0.25}]
    topo = Topology(plants=(Plant("PL1", timezone="Europe/Berlin"), Plant("PL2")))
    at = prices(tariffs, utc("2026-12-07 12:00"), topo)   # 07:00 in New York
    assert value(at, "atess_tariff_import_price_per_kwh", plant_id="PL2", currency="USD") == 0.38
    assert value(at, "atess_tariff_import_price_per_kwh", plant_id="PL1", currency="EUR") == 0.25
    assert value(at, "atess_tariff_export_price_per_kwh", plant_id="PL1") == 0.0
    # only listed plants: no default tariff, no price for the others
    at = prices(tariffs[:1], utc("2026-12-07 12:00"), topo)
    assert {dict(k)["plant_id"] for k in series(at, "atess_tariff_import_price_per_kwh")} == {"PL2"}


def test_a_zone_name_from_the_api_that_this_system_does_not_know_prices_in_utc():
    topo = Topology(plants=(Plant("PL1", timezone="Mars/Olympus"),))
    at = prices([TOU], utc("2026-12-07 06:30"), topo, atess={"timezone": "Asia/Tokyo"})
    assert value(at, "atess_tariff_import_price_per_kwh", plant_id="PL1") == 0.30  # 06:30 UTC, not 15:30 Tokyo
    at = prices([{**TOU, "timezone": "Asia/Tokyo"}], utc("2026-12-07 06:30"), topo)
    assert value(at, "atess_tariff_import_price_per_kwh", plant_id="PL1") == 0.38  # the tariff's own zone wins


@pytest.mark.promtool
def test_no_tariff_no_series_and_promtool_accepts_the_prices():
    plain = Exporter(make_config("http://127.0.0.1:9", devices=DEVICES)).exposition().decode()
    assert "atess_tariff" not in plain
    priced = Exporter(make_config("http://127.0.0.1:9", devices=DEVICES, tariffs=[TOU])).exposition().decode()
    assert "# TYPE atess_tariff_import_price_per_kwh gauge" in priced
    promtool = require_tool("promtool")
    res = subprocess.run([promtool, "check", "metrics"], input=priced, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr


@pytest.mark.parametrize("tariffs, error", [
    ({"currency": "EUR"}, "tariffs: must be a list of tariffs"),
    ([{"currency": "euro", "import_price": 1}], "tariffs[0].currency: 'euro' is not an ISO 4217 currency code; e.g. EUR"),
    ([{"currency": "EUR"}], "tariffs[0].import_price: missing; the price per kWh bought from the grid"),
    ([{"currency": "EUR", "import_price": -0.1}], "tariffs[0].import_price: -0.1 is below the minimum 0; prices are per kWh"),
    ([{"currency": "EUR", "import_price": "cheap"}], "tariffs[0].import_price: must be a number, got 'cheap'"),
    ([{"currency": "EUR", "import_price": 1, "windows": [{"from": 1320, "import_price": 1}]}],
     'tariffs[0].windows[0].from: write the time in quotes, e.g. from: "22:00" (unquoted, YAML reads 22:00 as the number 1320)'),
    ([{"currency": "EUR", "import_price": 1, "windows": [{"to": "25:00", "import_price": 1}]}],
     "tariffs[0].windows[0].to: '25:00' is not a time of day; write HH:MM in quotes"),
    ([{"currency": "EUR", "import_price": 1, "windows": [{"from": "07:00", "to": "07:00", "import_price": 1}]}],
     "tariffs[0].windows[0].to: the window from 07:00 to 07:00 is empty"),
    ([{"currency": "EUR", "import_price": 1, "windows": [{"days": ["mo"], "import_price": 1}]}],
     "tariffs[0].windows[0].days: 'mo' is not a day of the week; use mon, tue, wed, thu, fri, sat, sun"),
    ([{"currency": "EUR", "import_price": 1, "windows": [{"from": "07:00"}]}],
     "tariffs[0].windows[0].import_price: missing; a window sets import_price, export_price or both"),
    ([{"currency": "EUR", "import_price": 1}, {"currency": "EUR", "import_price": 2}],
     "tariffs[1].plants: missing; tariffs[0] already applies to every other plant"),
    ([{"currency": "EUR", "import_price": 1, "plants": ["A"]}, {"currency": "EUR", "import_price": 1, "plants": ["A"]}],
     "tariffs[1].plants: plant 'A' already has tariffs[0]; list each plant once"),
    ([{"currency": "EUR", "import_price": 1, "timezone": "Mars/Base"}], "tariffs[0].timezone: unknown time zone 'Mars/Base'"),
    ([{"currency": "EUR", "import_price": 1, "import_prise": 2}], "tariffs[0].import_prise: unknown key; did you mean 'tariffs[0].import_price'?"),
])
def test_bad_tariffs_get_one_line_naming_key_and_fix(tariffs, error):
    with pytest.raises(ConfigError) as exc:
        make_config("http://127.0.0.1:9", devices=DEVICES, tariffs=tariffs)
    assert str(exc.value).startswith(error), str(exc.value)
    assert "\n" not in str(exc.value)


def test_the_documented_examples_are_valid_configs():
    """README's tariffs: example and config.yaml's commented one, uncommented, parse as given."""
    import yaml
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text().split("### Energy cost and savings", 1)[1]
    example = yaml.safe_load(readme.split("```yaml", 1)[1].split("```", 1)[0])
    commented = (root / "config.yaml").read_text().split("# tariffs:", 1)[1]
    uncommented = yaml.safe_load("tariffs:\n" + "\n".join(line[2:] for line in commented.splitlines() if line.startswith("# ")))
    for doc in (example, uncommented):
        config = make_config("http://127.0.0.1:9", devices=DEVICES, **doc)
        assert len(config.tariffs) == 2 and config.tariffs[0].windows[1].start == 22 * 60
