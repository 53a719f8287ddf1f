"""Arbitrary JSON through the client, the parser and the collectors: never an
exception, never an invalid exposition."""

import json
import re

import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from atess_exporter.app import Exporter
from atess_exporter.catalog import load_catalog
from support import make_config

BASE = "http://127.0.0.1:9"
LATEST = BASE + "/api/v1/hps/data-last"
KNOWN = sorted(load_catalog().families["hps_central"].fields) + ["time", "deviceSn"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["12.5", "", " ", "-0", "1e309", "NaN", "abc", "2026-01-01 10:00:00"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
keys = st.one_of(st.sampled_from(KNOWN), st.text(min_size=1, max_size=16))
payloads = st.dictionaries(keys, values, max_size=25)
envelopes = st.one_of(
    st.fixed_dictionaries({"code": st.sampled_from([0, 200, "0", 500, None, "x"]), "data": st.one_of(payloads, values), "msg": values}),
    values,
)
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(envelope=envelopes)
def test_any_answer_gives_a_valid_exposition(envelope):
    exporter = Exporter(make_config(BASE, devices=[{"sn": "A", "type": "hps_central"}, {"sn": "B", "type": "hps_central"}]))
    good = {"code": 0, "data": {"ppv": "1.5", "time": "2026-01-01 10:00:00"}, "msg": ""}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        def reply(request):
            body = envelope if "deviceSn=A" in request.url else good
            return 200, {}, json.dumps(body, allow_nan=True)
        mock.add_callback(responses.GET, LATEST, callback=reply)
        snaps = {s.sn: s for s in exporter.poller.poll_all_once()}
    assert snaps["B"].up, "the other device is never affected"
    text = exporter.exposition().decode()
    families = list(text_string_to_metric_families(text))
    for family in families:
        assert NAME.match(family.name)
        for sample in family.samples:
            assert NAME.match(sample.name)
            assert sample.value == sample.value, f"{sample.name} is NaN"  # parse_number drops NaN/inf
    assert any(f.name == "atess_device_up" for f in families)
