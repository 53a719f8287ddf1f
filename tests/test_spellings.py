"""Every spelling of a catalogued field is that field (PLATFORM.md §2).

The platform's servers send one field as `eChargeToday` or `echargeToday`,
`bActivePower` or `bactivePower`; older payloads say `loadIa` for `loadIu`.
The catalog resolves them once, in its lookup, for the poller, backfill,
probe and `catalog_overrides` alike.
"""

from __future__ import annotations

import pytest

from atess_exporter.catalog import CatalogError, load_catalog
from atess_exporter.readings.payload import payload_samples, read_payload

FAMILIES = ("hps_central", "hps_string", "pcs", "pbd", "bcu", "mbms")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _swap(name: str) -> str:
    """The same name with every letter's case flipped: still the same field."""
    return name.swapcase()


def _value_for(fmap) -> float:
    """A number inside the field's plausible range, in vendor units."""
    rng = fmap.plausible
    base = min(max(1.0, rng.lo), rng.hi) if rng.hi >= 1.0 else rng.hi / 2
    return base / fmap.scale if fmap.scale else base


@pytest.mark.parametrize("family", FAMILIES)
def test_any_letter_case_of_every_catalogued_field_gives_the_same_series(catalog, family):
    fam = catalog.families[family]
    for name, fmap in fam.fields.items():
        raw = _value_for(fmap)
        exact = payload_samples(fam, {name: raw})
        assert exact, (family, name)
        for other in (_swap(name), name.lower(), name.upper()):
            assert payload_samples(fam, {other: raw}) == exact, (family, name, other)
            assert not [n for n in payload_samples(fam, {other: raw}) if n.startswith("atess_vendor_")]


def test_the_platforms_spellings_from_platform_md(catalog):
    pairs = {"eChargeToday": "echargeToday", "eDischargeToday": "edischargeToday",
             "eChargeTimeToday": "echargeTimeToday", "eBatChargeTotal": "ebatChargeTotal",
             "eBatDischargeTimeTotal": "ebatDischargeTimeTotal", "eGridToday": "egridToday",
             "eToGridTotal": "etoGridTotal", "eLoadTimeTotal": "eloadTimeTotal", "bActivePower": "bactivePower",
             "bApparentPower": "bapparentPower", "bReactivePower": "breactivePower", "iBuck1": "ibuck1",
             "scrtemp": "scrTemp", "loadIa": "loadIu", "loadIb": "loadIv", "loadIc": "loadIw"}
    for family in FAMILIES:
        fam = catalog.families[family]
        for platform, doc in pairs.items():
            assert fam.canonical(platform) == doc, (family, platform)
            assert payload_samples(fam, {platform: 2}) == payload_samples(fam, {doc: 2}), (family, platform)


def test_two_spellings_in_one_payload_give_one_series_and_the_catalogued_one_wins(catalog):
    fam = catalog.families["pcs"]
    for payload in ({"bActivePower": 3.0, "bactivePower": 2.0}, {"bactivePower": 2.0, "bActivePower": 3.0}):
        assert payload_samples(fam, payload)["atess_bypass_power_watts"] == (((), 2000.0),)
    # ... unless it carries no number: then the other spelling's number is the reading.
    for payload in ({"bActivePower": 3.0, "bactivePower": None}, {"bactivePower": "", "bActivePower": "3.0"}):
        assert payload_samples(fam, payload)["atess_bypass_power_watts"] == (((), 3000.0),)
    # Two non-catalogued spellings: the first with a number.
    samples = payload_samples(fam, {"LOADIU": None, "loadIa": 4.0, "Loadiu": 5.0})
    assert samples["atess_load_current_amperes"] == ((("u",), 4.0),)
    reading = read_payload(fam, {"eChargeToday": 1.0, "echargeToday": 1.5, "ECHARGETODAY": 9.0})
    assert reading.catalogued == 1 and reading.uncatalogued == 0


def test_a_case_variant_of_a_skipped_name_is_skipped_too(catalog):
    fam = catalog.families["hps_central"]
    samples = payload_samples(fam, {"DeviceSN": 5, "SystemNo": 1, "ppv1": "3.0", "PPV1": "3.0"})
    assert samples == {}


def test_overrides_and_enums_accept_any_spelling_of_the_field(catalog):
    fixed = catalog.with_overrides({"pcs": {"fields": {"BACTIVEPOWER": {"unit": "W"}, "LoadIU": {"skip": True}}}},
                                   {"RUNMODEL": "mode_selection"})
    fam = fixed.families["pcs"]
    samples = payload_samples(fam, {"bActivePower": 1500, "loadIa": 3.0, "loadIu": 3.0, "runModel": 0})
    assert samples["atess_bypass_power_watts"] == (((), 1500.0),)
    assert "atess_load_current_amperes" not in samples and not [n for n in samples if "vendor" in n]
    assert dict(samples["atess_operation_mode_state"])[("load_first",)] == 1.0


def test_the_catalog_refuses_two_mappings_that_differ_only_in_case(catalog):
    with pytest.raises(CatalogError, match="differ only in letter case"):
        catalog.with_overrides({"pbd": {"fields": {
            "newOne": {"metric": "atess_pv_string_voltage_volts", "unit": "V", "labels": {"string": "8"}},
            "NewOne": {"metric": "atess_pv_string_voltage_volts", "unit": "V", "labels": {"string": "9"}}}}})
