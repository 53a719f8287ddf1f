"""cache.py: packed samples read like the dict they came from; the change log."""

import math

from atess_exporter.live.store import Cache, DeviceSnapshot, PackedSamples

ROWS = {
    "atess_pv_power_watts": (((), 1234.5),),
    "atess_grid_voltage_volts": ((("l1",), 230.1), (("l2",), -0.0), (("l3",), float("nan"))),
    "atess_pv_energy_joules_total": (((), 1e21),),
}


def test_packed_samples_read_like_the_dict():
    packed = DeviceSnapshot(sn="a", device_type="hps_central", model="HPS150", samples=ROWS).samples
    assert isinstance(packed, PackedSamples)
    assert list(packed) == list(ROWS) and len(packed) == 3
    assert packed["atess_pv_power_watts"] == (((), 1234.5),)
    volts = packed["atess_grid_voltage_volts"]
    assert [labels for labels, _ in volts] == [("l1",), ("l2",), ("l3",)]
    assert volts[0][1] == 230.1 and math.copysign(1, volts[1][1]) == -1 and math.isnan(volts[2][1])
    assert dict(packed.items())["atess_pv_energy_joules_total"] == (((), 1e21),)
    assert packed.get("missing") is None and "atess_pv_power_watts" in packed


def test_devices_of_one_kind_share_names_and_labels():
    a = PackedSamples(ROWS)
    b = PackedSamples({name: tuple((labels, v + 1) for labels, v in rows) for name, rows in ROWS.items()})
    assert a._layout is b._layout and a != b
    assert PackedSamples(a)._values is a._values


def test_changed_since_names_the_replaced_devices():
    cache = Cache()
    for sn in "abc":
        cache.account().put(DeviceSnapshot(sn=sn, device_type="pcs", model="PCS100"))
    v = cache.version
    assert cache.changed_since(v) == set()
    cache.account().put(DeviceSnapshot(sn="b", device_type="pcs", model="PCS100", up=True))
    cache.account().update("c", lambda d: d.failed(1.0, "timeout"))
    assert cache.changed_since(v) == {"b", "c"}
    w = cache.version
    cache.account().retain(["a", "b"])
    assert cache.changed_since(w) is None          # removals: the caller must look at everything
    x = cache.version
    for i in range(Cache.CHANGE_LOG + 1):
        cache.account().put(DeviceSnapshot(sn="a", device_type="pcs", model="PCS100", last_attempt=float(i)))
    assert cache.changed_since(x) is None          # older than the log
