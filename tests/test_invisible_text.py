"""Bidi and invisible format characters never reach a label or the landing page (issue 19):
a plant name with U+202E could read backwards in Grafana and on the page."""

from atess_exporter.web.landing import render
from atess_exporter.web.status import StatusPages
from support import discovering, parse_exposition

INVISIBLE = ["\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f",
             "\ufeff", "\u061c", "\u202a", "\u2060", "\u00ad", "\U000e0041"]


def hostile(text: str) -> str:
    return "".join(ch + INVISIBLE[i % len(INVISIBLE)] for i, ch in enumerate(text))


def test_format_characters_are_stripped_from_labels_and_the_landing_page(mocked):
    mocked.plants[0]["plantName"] = hostile("Harbour Depot")
    mocked.devices[0]["deviceModel"] = "HPS\u200b150\u2066"
    mocked.settings = {"HPS-A": {"workMode": "Load\u202e First"}}
    exporter = discovering(mocked, settings={"enabled": True})
    exporter.poller.refresh_topology()
    exporter.poller.poll_settings(exporter.poller.devices["HPS-A"])
    text = exporter.exposition().decode()
    pages = StatusPages(exporter.cache, exporter.config.poll, exporter.catalog)
    page = render("/metrics", pages.fleet("")).decode()
    device = render("/metrics", pages.device("sn=HPS-A")[1]).decode()
    for where in (text, page, device):
        assert not [ch for ch in INVISIBLE if ch in where]
    assert 'plant_name="Harbour Depot"' in text and 'value="Load First"' in text
    assert "Harbour Depot" in page and "HPS150" in page and "Harbour Depot" in device
    assert parse_exposition(text)
