"""sharding: parse_shard, and rendezvous hashing of SNs over replicas."""

import os
import subprocess
import sys
from collections import Counter

import pytest

from atess_exporter.config.shard import in_shard, parse_shard, shard_of

# 10,000 SNs in the vendor's styles (model prefix, year-month, serial).
PREFIXES = ["HPS150A", "HPS100HV", "HPS30TL", "PCS100A", "PBD250A", "BCU", "MBMS"]
SNS = [f"{PREFIXES[i % 7]}{2200 + i % 300:04d}{i:06d}" for i in range(10_000)]

# Pinned: a change of hash, key format or tie rule would move every fleet's devices.
KNOWN = {
    "HPS150A2312000147": [0, 0, 3, 12],
    "HPS100HV2403000082": [1, 1, 3, 8],
    "HPS50A2208000315": [1, 1, 1, 1],
    "HPS30TL2405000021": [0, 0, 4, 4],
    "PCS100A2309000058": [1, 1, 3, 3],
    "PBD250A2310000112": [0, 0, 0, 11],
    "BCU2311000204": [1, 1, 3, 3],
    "MBMS2311000031": [1, 1, 1, 1],
    "YKD0F1022A": [1, 1, 1, 1],
}
COUNTS = (2, 3, 5, 16)


def test_sns_are_distinct():
    assert len(set(SNS)) == len(SNS)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 10])
def test_every_device_in_exactly_one_shard(count):
    for sn in SNS[:2000]:
        owners = [i for i in range(count) if in_shard(sn, i, count)]
        assert owners == [shard_of(sn, count)]


@pytest.mark.parametrize("count", [2, 3, 4, 8, 16])
def test_balance(count):
    sizes = Counter(shard_of(sn, count) for sn in SNS)
    assert set(sizes) == set(range(count))
    expected = len(SNS) / count
    # ~5 standard deviations of a fair split; the SNs are fixed, so this cannot flake.
    tolerance = 5 * (len(SNS) * (1 / count) * (1 - 1 / count)) ** 0.5
    assert max(abs(n - expected) for n in sizes.values()) <= tolerance, sizes


@pytest.mark.parametrize("n", range(1, 10))
def test_growing_count_moves_few_and_only_to_the_new_shard(n):
    moved = 0
    for sn in SNS:
        before, after = shard_of(sn, n), shard_of(sn, n + 1)
        if before != after:
            moved += 1
            assert after == n, f"{sn} moved {before} -> {after}, not to the new shard {n}"
    assert moved <= 1.3 * len(SNS) / (n + 1), f"{moved} of {len(SNS)} moved growing {n} -> {n + 1}"
    assert moved >= 0.7 * len(SNS) / (n + 1)     # the new shard does get its share


def test_known_vector():
    for sn, shards in KNOWN.items():
        assert [shard_of(sn, c) for c in COUNTS] == shards, sn
    assert all(shard_of(sn, 1) == 0 for sn in KNOWN)


def test_stable_across_processes_and_hash_seeds():
    code = ("from atess_exporter.config.shard import shard_of; import json, sys;"
            f"print(json.dumps({{sn: [shard_of(sn, c) for c in {list(COUNTS)}] for sn in {sorted(KNOWN)}}}))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import json
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert json.loads(out) == KNOWN


def test_independent_of_fleet_order():
    forward = {sn: shard_of(sn, 5) for sn in SNS[:500]}
    backward = {sn: shard_of(sn, 5) for sn in reversed(SNS[:500])}
    assert forward == backward


@pytest.mark.parametrize("text, expected", [
    ("0/1", (0, 1)), ("2/3", (2, 3)), (" 1 / 4 ", (1, 4)), ("15/16", (15, 16)),
])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "expected INDEX/COUNT"),
    ("3", "expected INDEX/COUNT"),
    ("1/2/3", "expected INDEX/COUNT"),
    ("a/3", "non-negative whole numbers"),
    ("-1/3", "non-negative whole numbers"),
    ("1.5/3", "non-negative whole numbers"),
    ("0/0", "COUNT must be at least 1"),
    ("3/3", "0-based and must be below COUNT (3); use 0..2"),
    ("1/1", "0-based"),
    ("0/5000", "above the maximum"),
])
def test_parse_shard_errors(text, message):
    with pytest.raises(ValueError) as err:
        parse_shard(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value) and str(err.value).startswith("--shard ")


@pytest.mark.parametrize("hostname, expected", [
    ("atess-exporter-0", (0, 3)), ("atess-exporter-2", (2, 3)), ("shard-exporter-12-1", (1, 3)),
])
def test_auto_takes_the_index_from_the_statefulset_pods_ordinal(hostname, expected):
    assert parse_shard("auto/3", hostname=hostname) == expected


def test_auto_reads_the_pod_name_kubernetes_puts_in_hostname(monkeypatch):
    monkeypatch.setenv("HOSTNAME", "atess-exporter-1")
    assert parse_shard("auto/2") == (1, 2)


@pytest.mark.parametrize("hostname, message", [
    ("my-laptop", "does not end in -ORDINAL"),
    ("atess-exporter-3", "must be below COUNT (3); use 0..2 (auto: the pod's ordinal is 3; are the StatefulSet's replicas above COUNT?)"),
])
def test_auto_without_a_usable_ordinal_is_a_one_line_error(hostname, message):
    with pytest.raises(ValueError) as err:
        parse_shard("auto/3", hostname=hostname)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_arguments():
    with pytest.raises(ValueError):
        shard_of("X", 0)
    with pytest.raises(ValueError):
        in_shard("X", 3, 3)
