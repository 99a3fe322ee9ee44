"""The trust policy file: a round trip, and every way a file can be wrong is TRUST_POLICY_INVALID (nothing else)."""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from didnode.core.checkpoint import Checkpoint, sign
from didnode.core.encoding import ED25519_PUB, X25519_PUB, multikey_encode
from didnode.core.trust import DEFAULT_MAX_STALENESS_MS, TRUST_TYPE, TrustedKey, TrustPolicy, fingerprint
from didnode.core.trust import policy as policy_mod
from didnode.core.trust.policy import MAX_KEYS, MAX_POLICY_BYTES, from_json, loads
from didnode.errors import TrustPolicyInvalid
from tests.core.trust.memlog import NODE, T0, signer
from tests.fuzz.harness import mutate

GENESIS = bytes(range(32))
K1, KID1 = signer("key-1")
K2, KID2 = signer("key-2")


def _policy(**changes: Any) -> TrustPolicy:
    fields: dict[str, Any] = {
        "network": "local",
        "genesis": GENESIS,
        "keys": [TrustedKey(KID1, bytes(K1.verify_key)), TrustedKey(KID2, bytes(K2.verify_key))],
        "threshold": 1,
        "max_staleness_ms": DEFAULT_MAX_STALENESS_MS,
        "latest": sign(Checkpoint("local", 7, b"\x01" * 32, b"\x02" * 32, T0), K1, KID1),
    }
    fields.update(changes)
    return TrustPolicy.create(**fields)


def _doc() -> dict[str, Any]:
    return _policy().to_json()


def test_round_trip_through_text_and_json() -> None:
    p = _policy()
    assert loads(p.dumps()) == p
    assert loads(p.dumps().encode()) == p
    assert from_json(json.loads(json.dumps(p.to_json()))) == p
    assert p.dumps().endswith("}\n")
    bare = _policy(latest=None)
    assert bare.to_json()["latestCheckpoint"] is None
    assert loads(bare.dumps()) == bare


def test_the_file_has_exactly_the_documented_members() -> None:
    d = _doc()
    assert set(d) == {"type", "network", "genesis", "checkpointKeys", "threshold", "maxStalenessMs", "latestCheckpoint"}
    assert d["type"] == TRUST_TYPE == "didnode/trust/v1"
    assert d["genesis"] == GENESIS.hex()
    assert d["checkpointKeys"][0] == {"kid": KID1, "publicKeyMultibase": multikey_encode(bytes(K1.verify_key), ED25519_PUB)}


def test_with_latest_key_for_same_anchors_and_fingerprint() -> None:
    p = _policy(latest=None)
    cp = sign(Checkpoint("local", 9, b"\x03" * 32, b"\x04" * 32, T0), K1, KID1)
    q = p.with_latest(cp)
    assert q.latest == cp and p.latest is None
    assert q.same_anchors(p)
    assert not q.same_anchors(_policy(threshold=2))
    assert not q.same_anchors(_policy(genesis=b"\x09" * 32))
    assert p.key_for(KID2) == p.keys[1] and p.key_for(f"{NODE}#nope") is None
    fp = p.keys[0].fingerprint
    assert fp.startswith("SHA256:") and "=" not in fp and fp == fingerprint(bytes(K1.verify_key))


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(d: dict[str, Any]) -> Any:
        target: Any = d
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        return d

    return edit


def _delete(*path: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(d: dict[str, Any]) -> Any:
        target: Any = d
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]
        return d

    return edit


def _dup_key(d: dict[str, Any]) -> Any:
    d["checkpointKeys"].append(dict(d["checkpointKeys"][0]))
    return d


def _same_key_twice(d: dict[str, Any]) -> Any:
    d["checkpointKeys"][1]["publicKeyMultibase"] = d["checkpointKeys"][0]["publicKeyMultibase"]
    return d


def _many_keys(d: dict[str, Any]) -> Any:
    d["checkpointKeys"] = [
        {"kid": f"{NODE}#k{i}", "publicKeyMultibase": multikey_encode(bytes(SigningKey(bytes([i]) * 32).verify_key), ED25519_PUB)}
        for i in range(MAX_KEYS + 1)
    ]
    return d


BAD_DOCUMENTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "not an object": lambda d: [d],
    "null": lambda d: None,
    "missing type": _delete("type"),
    "missing network": _delete("network"),
    "missing genesis": _delete("genesis"),
    "missing checkpointKeys": _delete("checkpointKeys"),
    "missing threshold": _delete("threshold"),
    "missing maxStalenessMs": _delete("maxStalenessMs"),
    "missing latestCheckpoint": _delete("latestCheckpoint"),
    "extra member": _set(("comment",), "hi"),
    "another type": _set(("type",), "didnode/trust/v2"),
    "type not a string": _set(("type",), 1),
    "network not a string": _set(("network",), 5),
    "network uppercase": _set(("network",), "Local"),
    "network too long": _set(("network",), "a" * 33),
    "network empty": _set(("network",), ""),
    "genesis not a string": _set(("genesis",), 0),
    "genesis uppercase hex": _set(("genesis",), GENESIS.hex().upper()),
    "genesis not hex": _set(("genesis",), "zz" * 32),
    "genesis short": _set(("genesis",), "00" * 31),
    "genesis long": _set(("genesis",), "00" * 33),
    "genesis with spaces": _set(("genesis",), "00 " * 21 + "0"),
    "genesis non-ascii digits": _set(("genesis",), "\uff10" * 64),
    "keys not a list": _set(("checkpointKeys",), {"kid": KID1}),
    "no keys": _set(("checkpointKeys",), []),
    "too many keys": _many_keys,
    "key not an object": _set(("checkpointKeys", 0), KID1),
    "key missing kid": _delete("checkpointKeys", 0, "kid"),
    "key missing publicKeyMultibase": _delete("checkpointKeys", 0, "publicKeyMultibase"),
    "key extra member": _set(("checkpointKeys", 0, "purpose"), "checkpoint"),
    "kid not a string": _set(("checkpointKeys", 0, "kid"), 7),
    "kid not a DID URL": _set(("checkpointKeys", 0, "kid"), "key-1"),
    "kid without fragment": _set(("checkpointKeys", 0, "kid"), NODE),
    "kid too long": _set(("checkpointKeys", 0, "kid"), NODE + "#" + "k" * 600),
    "multikey not a string": _set(("checkpointKeys", 0, "publicKeyMultibase"), None),
    "multikey not base58btc": _set(("checkpointKeys", 0, "publicKeyMultibase"), "m" + "A" * 40),
    "multikey bad alphabet": _set(("checkpointKeys", 0, "publicKeyMultibase"), "z0OIl"),
    "multikey of x25519": _set(("checkpointKeys", 0, "publicKeyMultibase"), multikey_encode(b"\x05" * 32, X25519_PUB)),
    "multikey short": _set(("checkpointKeys", 0, "publicKeyMultibase"), multikey_encode(b"\x05" * 31, ED25519_PUB)),
    "duplicate kid": _dup_key,
    "same key under two kids": _same_key_twice,
    "threshold 0": _set(("threshold",), 0),
    "threshold negative": _set(("threshold",), -1),
    "threshold above the keys": _set(("threshold",), 3),
    "threshold true": _set(("threshold",), True),
    "threshold float": _set(("threshold",), 1.0),
    "threshold string": _set(("threshold",), "1"),
    "staleness below 1 s": _set(("maxStalenessMs",), 999),
    "staleness above 366 days": _set(("maxStalenessMs",), 366 * 86_400_000 + 1),
    "staleness bool": _set(("maxStalenessMs",), False),
    "staleness float": _set(("maxStalenessMs",), 120000.0),
    "staleness null": _set(("maxStalenessMs",), None),
    "latest of another network": _set(("latestCheckpoint", "network"), "prod"),
    "latest not an object": _set(("latestCheckpoint",), "size 7"),
    "latest missing a member": _delete("latestCheckpoint", "signature"),
    "latest extra member": _set(("latestCheckpoint", "note"), 1),
    "latest bad root": _set(("latestCheckpoint", "logRoot"), "00"),
    "latest negative size": _set(("latestCheckpoint", "treeSize"), -1),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_every_wrong_document_is_trust_policy_invalid(case: str) -> None:
    doc = BAD_DOCUMENTS[case](copy.deepcopy(_doc()))
    with pytest.raises(TrustPolicyInvalid) as e:
        from_json(doc)
    assert e.value.reason == "TRUST_POLICY_INVALID"
    assert str(e.value).startswith("trust policy: ")
    with pytest.raises(TrustPolicyInvalid):
        loads(json.dumps(doc))


def test_the_edges_of_the_bounds_are_accepted() -> None:
    for value in (1_000, 366 * 86_400_000):
        assert _policy(max_staleness_ms=value).max_staleness_ms == value
    assert _policy(threshold=2).threshold == 2
    assert _policy(network="a" * 32, latest=None).network == "a" * 32
    keys = [TrustedKey(f"{NODE}#k{i}", bytes(SigningKey(bytes([i + 1]) * 32).verify_key)) for i in range(MAX_KEYS)]
    assert len(_policy(keys=keys, latest=None).keys) == MAX_KEYS


BAD_TEXTS = {
    "empty": b"",
    "not JSON": b"network: local",
    "truncated": _policy().dumps().encode()[:-20],
    "bad UTF-8": b'{"type": "\xff"}',
    "nested too deeply": b"[" * 100_000,
    "huge integer": b'{"threshold": ' + b"9" * 5000 + b"}",
    "NaN": b'{"threshold": NaN}',
    "a member twice": _policy().dumps().replace('"threshold": 1', '"threshold": 1, "threshold": 2').encode(),
    "a key member twice": _policy().dumps().replace(f'"kid": "{KID1}"', f'"kid": "{KID1}", "kid": "{KID2}"').encode(),
    "huge file": b'{"type": "' + b" " * MAX_POLICY_BYTES + b'"}',
    "huge text": '{"type": "' + "\u00e9" * (MAX_POLICY_BYTES // 2 + 1) + '"}',
    "lone surrogate text": '{"type": "\ud800"}',
    "a JSON string": b'"didnode/trust/v1"',
}


@pytest.mark.parametrize("case", sorted(BAD_TEXTS))
def test_every_wrong_file_is_trust_policy_invalid(case: str) -> None:
    with pytest.raises(TrustPolicyInvalid):
        loads(BAD_TEXTS[case])


def test_a_huge_file_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(policy_mod.canonical, "loads", no_parse)
    with pytest.raises(TrustPolicyInvalid, match="at most 65536"):
        loads(b" " * (MAX_POLICY_BYTES + 1))


def test_create_checks_what_from_json_checks() -> None:
    with pytest.raises(TrustPolicyInvalid):
        _policy(genesis=b"\x00" * 31)
    with pytest.raises(TrustPolicyInvalid):
        _policy(keys=[])
    with pytest.raises(TrustPolicyInvalid):
        _policy(keys=[TrustedKey(KID1, b"\x01" * 33)])
    with pytest.raises(TrustPolicyInvalid):
        _policy(network="other")  # the latest checkpoint is of "local"


# -- properties ----------------------------------------------------------------------------------

_networks = st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True)
_seeds = st.binary(min_size=32, max_size=32)


@st.composite
def policies(draw: st.DrawFn) -> TrustPolicy:
    network = draw(_networks)
    seeds = draw(st.lists(_seeds, min_size=1, max_size=5, unique=True))
    fragments = draw(st.lists(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), min_size=len(seeds), max_size=len(seeds), unique=True))
    keys = [TrustedKey(f"{NODE}#{f}", bytes(SigningKey(s).verify_key)) for s, f in zip(seeds, fragments)]
    latest = None
    if draw(st.booleans()):
        cp = Checkpoint(network, draw(st.integers(1, (1 << 64) - 1)), draw(_seeds), draw(_seeds), draw(st.integers(0, (1 << 64) - 1)))
        latest = sign(cp, SigningKey(seeds[0]), keys[0].kid)
    return TrustPolicy.create(
        network,
        draw(_seeds),
        keys,
        draw(st.integers(1, len(keys))),
        draw(st.integers(1_000, 366 * 86_400_000)),
        latest,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_generated_policies_round_trip(p: TrustPolicy) -> None:
    assert loads(p.dumps()) == p
    assert from_json(p.to_json()) == p


_edit = st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8))
_TOKENS = tuple(t.encode() for t in ('"type"', '"genesis"', '"threshold"', "null", "true", "0", "-1", "[]", "{}", '"z6Mk', ",", ":", '"'))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), st.lists(_edit, min_size=1, max_size=6))
def test_byte_mutations_raise_nothing_but_trust_policy_invalid(p: TrustPolicy, edits: list[tuple[int, int, bytes]]) -> None:
    data = mutate(p.dumps().encode(), edits, _TOKENS)
    try:
        got = loads(data)
    except TrustPolicyInvalid:
        return
    assert loads(got.dumps()) == got  # whatever parses is a policy that writes itself back


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
_PATHS = [("type",), ("network",), ("genesis",), ("checkpointKeys",), ("checkpointKeys", 0), ("checkpointKeys", 0, "kid"),
          ("checkpointKeys", 0, "publicKeyMultibase"), ("threshold",), ("maxStalenessMs",), ("latestCheckpoint",),
          ("latestCheckpoint", "treeSize"), ("latestCheckpoint", "kid"), ("latestCheckpoint", "network")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_PATHS), _json_values)
def test_member_replacements_raise_nothing_but_trust_policy_invalid(path: tuple[Any, ...], value: Any) -> None:
    doc = _set(path, value)(copy.deepcopy(_doc()))
    for parse in (lambda: from_json(doc), lambda: loads(json.dumps(doc))):
        try:
            parse()
        except TrustPolicyInvalid:
            pass
