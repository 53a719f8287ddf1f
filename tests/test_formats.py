"""formats.py: what render.py assumes about prometheus_client's encoders holds.

A prometheus_client upgrade that changes those assumptions fails here, by name,
rather than as a byte difference somewhere in test_render.py.
"""

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from atess_exporter.exposition.formats import EOF, Format, FormatError, Formats, _Families, registry_parts

ACCEPTS = [None, "text/plain;version=0.0.4", "text/plain;version=1.0.0;escaping=allow-utf-8",
           "application/openmetrics-text;version=1.0.0", "application/openmetrics-text;version=1.0.0;escaping=values"]


def probe_families():
    info = InfoMetricFamily("probe", 'HELP with "quotes", \\ and\nnewline', labels=("sn", "v"))
    info.add_metric(("a", 'x"y\\z\nw'), {})
    counter = CounterMetricFamily("probe_energy_joules", "energy", labels=("sn",), unit="joules")
    counter.add_metric(("a",), 1e21)
    counter.add_metric(("b",), 0.1)
    gauge = GaugeMetricFamily("probe_power_watts", "power", labels=("sn", "phase"), unit="watts")
    gauge.add_metric(("a", "l1"), float("nan"))
    gauge.add_metric(("a", "l2"), float("-inf"))
    return {"info": info, "counter": counter, "gauge": gauge}


@pytest.mark.parametrize("accept", ACCEPTS)
def test_device_pieces_and_headers_splice_back_to_the_encoder_output(accept):
    fmt, _ = Formats().negotiate(accept)
    fams = probe_families()
    pieces = fmt.device_pieces(fams)
    assert list(pieces) == list(fams)
    assert [p.count(b"\n") for p in pieces.values()] == [len(f.samples) for f in fams.values()]
    spliced = b"".join(fmt.header(f) + pieces[k] for k, f in fams.items()) + fmt.trailer
    encoder, _ = choose_encoder(accept)
    assert spliced == encoder(_Families(fams.values()))


def test_openmetrics_ends_in_eof_and_text_has_no_trailer():
    om, _ = Formats().negotiate("application/openmetrics-text;version=1.0.0")
    text, _ = Formats().negotiate("text/plain;version=0.0.4")
    assert om.trailer == EOF and text.trailer == b""


def test_negotiation_is_choose_encoder_and_same_encoders_share_a_format():
    formats = Formats()
    a, ct_a = formats.negotiate("text/plain;version=0.0.4")
    b, ct_b = formats.negotiate(None)
    c, ct_c = formats.negotiate("text/plain;version=1.0.0;escaping=underscores")
    assert a is b and ct_a == ct_b == choose_encoder(None)[1]
    assert ct_c == choose_encoder("text/plain;version=1.0.0;escaping=underscores")[1]
    # choose_encoder's answers are functions or functools.partial: the key formats.py builds from them.
    for accept in ACCEPTS:
        encoder, _ = choose_encoder(accept)
        assert encoder is generate_latest or (isinstance(encoder, functools.partial)
                                              and encoder.func in (generate_latest, openmetrics.generate_latest))


def test_a_created_sample_is_refused_not_spliced_wrongly():
    """The text format moves _created samples into a family of their own at the end:
    such output cannot be cut per sample, and formats.py says so."""
    fmt, _ = Formats().negotiate(None)
    fam = CounterMetricFamily("with_created", "c", labels=("sn",))
    fam.add_metric(("a",), 1.0, created=1700000000.0)
    with pytest.raises(FormatError):
        fmt.device_pieces({"c": fam})


def test_registry_parts_walks_the_registry_like_collect():
    registry = CollectorRegistry()
    Gauge("first", "f", registry=registry).set(1)
    Counter("second", "s", registry=registry).inc()
    registry.set_target_info({"role": "x"})
    parts = registry_parts(registry)
    fmt = Format(generate_latest)
    assert b"".join(fmt.encode(p) for p in parts) == generate_latest(registry)


label_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(['"', "\\", "\n", "ü", ""])
values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**20, 10**20).map(float) | st.sampled_from([0.0, -0.0, 1e21, 123456789.0, 1e-7])


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(label_values, label_values, values), min_size=1, max_size=4),
       kind=st.sampled_from(["gauge", "counter", "info"]), accept=st.sampled_from(ACCEPTS))
def test_sample_lines_written_here_equal_the_encoders(rows, kind, accept):
    """The one thing formats.py writes itself: a plain sample line, in every format."""
    if kind == "gauge":
        fam = GaugeMetricFamily("fuzz_power_watts", "g", labels=("sn", "phase"))
        for a, b, v in rows:
            fam.add_metric((a, b), v)
    elif kind == "counter":
        fam = CounterMetricFamily("fuzz_energy_joules", "c", labels=("sn", "phase"))
        for a, b, v in rows:
            fam.add_metric((a, b), v)
    else:
        fam = InfoMetricFamily("fuzz", "i", labels=("sn",))
        for a, b, _ in rows:
            fam.add_metric((a,), {"zz": b})
    fmt, _ = Formats().negotiate(accept)
    written_here = fmt.device_pieces({"k": fam})["k"]
    assert written_here == fmt._encoded_pieces({"k": fam})["k"]
    encoder, _ = choose_encoder(accept)
    assert fmt.header(fam) + written_here + fmt.trailer == encoder(_Families([fam]))
