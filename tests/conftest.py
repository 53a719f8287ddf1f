import pytest

from atess_exporter.config import parse_config
from atess_exporter.simulator import SimDevice, Simulator, demo_devices

TOKEN = "test-token-s3cr3t-value"


@pytest.fixture
def sim():
    """The embedded simulator on 127.0.0.1 with the demo fleet."""
    with Simulator(demo_devices(), token=TOKEN) as simulator:
        yield simulator


def make_config(base_url: str, devices=None, **sections):
    """A validated Config pointing at base_url; sections override defaults."""
    devices = devices if devices is not None else demo_devices()
    data = {
        "atess": {"base_url": base_url, "token": TOKEN, "timeout_seconds": 5, **sections.pop("atess", {})},
        "poll": {"interval_seconds": 300, "concurrency": 4, **sections.pop("poll", {})},
        "devices": [{"sn": d.sn, "type": d.family, "model": d.model} if isinstance(d, SimDevice) else d for d in devices],
        "state_file": sections.pop("state_file", ""),
        **sections,
    }
    return parse_config(data, min_interval=0.01)


class FakeClient:
    """Stands in for AtessClient: `replies[sn]` is a payload, an exception, or a callable."""

    def __init__(self, replies):
        self.replies = replies
        self.calls = []

    def latest(self, path, sn):
        self.calls.append((path, sn))
        reply = self.replies[sn]
        reply = reply() if callable(reply) else reply
        if isinstance(reply, Exception):
            raise reply
        return dict(reply)


def parse_exposition(text: str) -> dict:
    """{(sample name, frozenset of label items): value} from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def series(parsed: dict, name: str, **labels) -> dict:
    """The samples of `name` whose labels include `labels`: {frozenset(labels): value}."""
    want = set(labels.items())
    return {lbls: v for (n, lbls), v in parsed.items() if n == name and want <= lbls}


def value(parsed: dict, name: str, **labels):
    found = series(parsed, name, **labels)
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return next(iter(found.values()), None)
