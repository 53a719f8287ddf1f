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
        **sections,
    }
    return parse_config(data, min_interval=0.01)
