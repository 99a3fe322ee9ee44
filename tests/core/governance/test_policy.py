"""The govern operation's schema, the governance record codec and the quota arithmetic: one negative test per way an input can be wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from didnode import errors
from didnode.core import canonical
from didnode.core.governance import build as gb
from didnode.core.governance.policy import (
    CreateQuota,
    Policy,
    PublishQuota,
    Usage,
    is_governance_record,
    window_end_ms,
    window_index,
)
from didnode.core.operations import Proof, parse
from tests.factory import NET, new_create

DIDS = sorted(new_create()[0].did for _ in range(4))
PROOF = (Proof(DIDS[0] + "#key-1", bytes(64)),)
PREV = "ab" * 32


def inception(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "govern", "network": NET, "seq": 0, "genesis": DIDS[:3], "governors": DIDS[:2], "threshold": 2,
        "policy": {"create": "registrars", "registrars": [{"did": DIDS[2], "quota": {"perWindow": 5, "window": 60, "total": 9}}]},
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def change(*changes: dict[str, Any], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "govern", "network": NET, "did": DIDS[3], "seq": 1, "prev": PREV, "changes": list(changes)}
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def parsed(body: dict[str, Any]):  # type: ignore[no-untyped-def]
    return parse(canonical.encode(body), PROOF, NET)


def test_an_inception_and_a_change_parse() -> None:
    op = parsed(inception())
    assert op.type == "govern" and op.did.startswith("did:dnode:Qm") and op.governance.threshold == 2  # type: ignore[union-attr]
    op = parsed(change({"action": "removeRegistrar", "did": DIDS[2]}, {"action": "setCreatePolicy", "create": "open"}))
    assert [c.action for c in op.governance] == ["removeRegistrar", "setCreatePolicy"]  # type: ignore[union-attr]


def test_the_builders_make_what_the_parser_takes() -> None:
    u = gb.inception(NET, DIDS[:3], DIDS[:2], 1, "open", {DIDS[2]: CreateQuota(total=3)}, PublishQuota(60, count=1), {DIDS[1]: PublishQuota(5, bytes=9)})
    assert parse(u.payload, PROOF, NET).did == u.did
    c = gb.change(NET, u.did, 1, PREV, [
        gb.add_registrar(DIDS[0]), gb.add_registrar(DIDS[1], CreateQuota(60, 2)), gb.set_registrar_quota(DIDS[1], CreateQuota(total=1)),
        gb.remove_registrar(DIDS[2]), gb.set_create_policy("governors"), gb.set_publish_quota(None),
        gb.set_publisher_quota(DIDS[1], None), gb.set_publisher_quota(DIDS[0], PublishQuota(1, bytes=1)), gb.set_governors(DIDS[:3], 3),
    ])
    assert len(parse(c.payload, PROOF, NET).governance) == 9  # type: ignore[arg-type]


BAD_INCEPTIONS = {
    "did on an inception": inception(did=DIDS[0]),
    "prev on an inception": inception(prev=PREV),
    "changes on an inception": inception(changes=[]),
    "no policy": inception(policy=None),
    "no create in the policy": inception(policy={}),
    "unknown create policy": inception(policy={"create": "everyone"}),
    "unknown policy member": inception(policy={"create": "open", "fees": 1}),
    "governor outside the genesis": inception(governors=[DIDS[3]]),
    "unsorted governors": inception(governors=[DIDS[1], DIDS[0]]),
    "duplicate governor": inception(governors=[DIDS[0], DIDS[0]]),
    "no governors": inception(governors=[]),
    "duplicate genesis DID": inception(genesis=[DIDS[0], DIDS[0]]),
    "threshold zero": inception(threshold=0),
    "threshold above the governors": inception(threshold=3),
    "threshold not an integer": inception(threshold="2"),
    "not a DID": inception(genesis=["did:web:example.com"]),
    "window without perWindow": inception(policy={"create": "open", "registrars": [{"did": DIDS[2], "quota": {"window": 60}}]}),
    "window zero": inception(policy={"create": "open", "registrars": [{"did": DIDS[2], "quota": {"perWindow": 1, "window": 0}}]}),
    "window over a year": inception(policy={"create": "open", "registrars": [{"did": DIDS[2], "quota": {"perWindow": 1, "window": 10**9}}]}),
    "negative total": inception(policy={"create": "open", "registrars": [{"did": DIDS[2], "quota": {"total": -1}}]}),
    "unknown quota member": inception(policy={"create": "open", "registrars": [{"did": DIDS[2], "quota": {"fee": 1}}]}),
    "registrar twice": inception(policy={"create": "open", "registrars": [{"did": DIDS[2]}, {"did": DIDS[2]}]}),
    "registrars unsorted": inception(policy={"create": "open", "registrars": [{"did": DIDS[2]}, {"did": DIDS[0]}]}),
    "publish quota without limits": inception(policy={"create": "open", "publish": {"window": 60}}),
    "publish quota without window": inception(policy={"create": "open", "publish": {"count": 6}}),
}


@pytest.mark.parametrize("body", BAD_INCEPTIONS.values(), ids=BAD_INCEPTIONS.keys())
def test_a_bad_inception_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises((errors.MalformedOperation, errors.InvalidDid, errors.TooLarge)):
        parsed(body)


BAD_CHANGES = {
    "no changes": change(),
    "unknown action": change({"action": "mint"}),
    "no action": change({"did": DIDS[0]}),
    "missing did": change({"action": "addRegistrar"}),
    "unknown member": change({"action": "removeRegistrar", "did": DIDS[0], "quota": {}}),
    "quota not an object": change({"action": "setRegistrarQuota", "did": DIDS[0], "quota": 5}),
    "bad create policy": change({"action": "setCreatePolicy", "create": "closed"}),
    "governors unsorted": change({"action": "setGovernors", "governors": [DIDS[1], DIDS[0]], "threshold": 1}),
    "threshold over": change({"action": "setGovernors", "governors": [DIDS[0]], "threshold": 2}),
    "genesis on a change": change({"action": "setCreatePolicy", "create": "open"}, genesis=DIDS[:1]),
    "no prev": change({"action": "setCreatePolicy", "create": "open"}, prev=None),
    "no did": change({"action": "setCreatePolicy", "create": "open"}, did=None),
    "too many governors": change({"action": "setGovernors", "governors": sorted(new_create()[0].did for _ in range(17)), "threshold": 1}),
    "too many changes": change(*[{"action": "setCreatePolicy", "create": "open"}] * 65),
}


@pytest.mark.parametrize("body", BAD_CHANGES.values(), ids=BAD_CHANGES.keys())
def test_a_bad_change_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises((errors.MalformedOperation, errors.InvalidDid, errors.TooLarge)):
        parsed(body)


def _policy() -> Policy:
    return Policy(
        did=DIDS[3], seq=2, last=PREV, governors=tuple(DIDS[:2]), threshold=1, create="registrars",
        registrars={DIDS[2]: CreateQuota(60, 5, 9), DIDS[0]: CreateQuota()}, publish=PublishQuota(60, 1, 2),
        publishers={DIDS[1]: PublishQuota(5, bytes=9)}, genesis=tuple(DIDS[:3]), created_pos=3, updated_pos=9, updated_time=123,
    )


def test_the_record_round_trips_and_is_told_apart_from_a_did_state() -> None:
    record = _policy().to_record()
    assert is_governance_record(record) and Policy.from_record(record) == _policy()
    assert not is_governance_record(b"\x01rest")


@pytest.mark.parametrize("damage", ["tag", "json", "order", "truncated", "member"])
def test_a_damaged_record_is_store_corrupted(damage: str) -> None:
    record = _policy().to_record()
    view = json.loads(record[1:])
    bad = {
        "tag": b"H" + record[1:],
        "json": record[:-1] + b"!",
        "order": b"G" + json.dumps(view).encode(),  # not the canonical form
        "truncated": record[: len(record) // 2],
        "member": b"G" + canonical.encode({k: v for k, v in view.items() if k != "threshold"}),
    }[damage]
    with pytest.raises(errors.StoreCorrupted):
        Policy.from_record(bad)


@given(st.integers(0, 2**45), st.integers(1, 366 * 86400))
def test_a_time_lies_in_exactly_one_window_which_ends_after_it(t: int, w: int) -> None:
    k = window_index(t, w)
    assert k * w * 1000 <= t < window_end_ms(k, w)


def test_usage_starts_again_in_a_new_window_and_keeps_its_totals() -> None:
    u = Usage().in_window(7).plus(1, 10).plus(1, 5)
    assert (u.window, u.count, u.bytes, u.total_count, u.total_bytes) == (7, 2, 15, 2, 15)
    assert u.in_window(7) is u
    v = u.in_window(8)
    assert (v.count, v.bytes, v.total_count, v.total_bytes) == (0, 0, 2, 15)
    assert Usage.decode(u.encode()) == u and Usage.decode(Usage().encode()) == Usage()
    with pytest.raises(errors.StoreCorrupted):
        Usage.decode(b"short")
