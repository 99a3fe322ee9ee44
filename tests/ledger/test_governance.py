"""Governance on a real LMDB ledger through the node's own apply path: genesis, changes, admission, quotas, audit."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest

from didnode import errors
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.governance import build as gb
from didnode.core.governance.policy import CREATES, PUBLISHES, CreateQuota, PublishQuota
from didnode.core.results import Receipt
from didnode.ledger.audit import audit
from tests.core.governance.world import Gov, endorsed, governed
from tests.factory import NET, Identity, adopt_rotation, new_create, rotate_op
from tests.ledger.governed_ledger import T0, GovLedger

HOUR = 3600


def ok(outcome: object) -> Receipt:
    assert isinstance(outcome, Receipt), outcome
    return outcome


def rejected(outcome: object, cls: type[errors.DidnodeError]) -> errors.DidnodeError:
    assert isinstance(outcome, cls), outcome
    return outcome


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[GovLedger]:
    led = GovLedger(tmp_path)
    yield led
    led.close()


def start(ledger: GovLedger, **kwargs: object) -> tuple[Gov, Identity]:
    """A governed network whose genesis holds a manufacturer (listed as registrar when ``registrars`` is not given)."""
    maker, maker_op = new_create()
    registrars = kwargs.pop("registrars", {maker.did: CreateQuota(HOUR, 5, 8)})
    gov = governed(extra_genesis=[(maker, maker_op)], registrars=registrars, **kwargs)  # type: ignore[arg-type]
    for outcome in ledger.submit(gov.genesis_ops()):
        ok(outcome)
    return gov, maker


def apply_change(ledger: GovLedger, gov: Gov, changes: list[dict], signers: list[Identity] | None = None) -> None:
    op = gov.change(changes, signers)
    ok(ledger.one(op))
    gov.accepted(op)


# --------------------------------------------------------------------------
# The genesis
# --------------------------------------------------------------------------


def test_the_inception_makes_the_policy_and_is_not_a_did(ledger: GovLedger) -> None:
    gov, maker = start(ledger)
    policy = ledger.policy()
    assert policy is not None and policy.did == gov.did and policy.create == "registrars"
    assert policy.governors == tuple(sorted(g.did for g in gov.governors)) and policy.threshold == 2
    assert policy.registrars[maker.did] == CreateQuota(HOUR, 5, 8)
    assert policy.created_pos == 4 and policy.genesis[0] == maker.did
    with ledger.store.read() as txn, pytest.raises(errors.UnknownDid, match="governance record, not a DID"):
        ledger.tables.get_state(txn, gov.did)


def test_an_ungoverned_ledger_is_open_and_can_never_be_captured(ledger: GovLedger) -> None:
    first, op = new_create()  # the node's own DID, say
    ok(ledger.one(op))
    attacker, attacker_op = new_create()
    ok(ledger.one(attacker_op))
    # An inception naming the first DID as genesis: not right after the genesis creates.
    late = builder.sign(gb.inception(NET, [first.did], [first.did], 1, "governors"), [(first.kid, first.key)])
    assert "right after" in str(rejected(ledger.one(late), errors.GovernanceInvalid))
    # One that claims the whole prefix as its genesis needs every genesis DID's signature.
    grab = builder.sign(gb.inception(NET, [first.did, attacker.did], [attacker.did], 1, "governors"), [(attacker.kid, attacker.key)])
    rejected(ledger.one(grab), errors.GovernanceThreshold)
    assert ledger.policy() is None
    ok(ledger.one(new_create()[1]))


def test_an_inception_must_be_signed_by_every_genesis_did(ledger: GovLedger) -> None:
    a, a_op = new_create()
    b, b_op = new_create()
    ok(ledger.submit([a_op, b_op])[1])
    inc = gb.inception(NET, [a.did, b.did], [a.did, b.did], 1, "registrars")
    err = rejected(ledger.one(builder.sign(inc, [(a.kid, a.key)])), errors.GovernanceThreshold)
    assert b.did in str(err)
    assert ledger.policy() is None and ledger.size() == 2


def test_an_inception_must_list_the_genesis_in_log_order(ledger: GovLedger) -> None:
    a, a_op = new_create()
    b, b_op = new_create()
    ledger.submit([a_op, b_op])
    inc = gb.inception(NET, [b.did, a.did], [a.did], 1, "registrars")
    rejected(ledger.one(builder.sign(inc, [(a.kid, a.key), (b.kid, b.key)])), errors.GovernanceInvalid)


def test_a_second_inception_is_refused(ledger: GovLedger) -> None:
    gov, _ = start(ledger)
    rejected(ledger.one(gov.inception), errors.DuplicateOperation)
    g = gov.governors[0]
    other = builder.sign(gb.inception(NET, [g.did], [g.did], 1, "open"), [(g.kid, g.key)])
    assert "already" in str(rejected(ledger.one(other), errors.GovernanceInvalid))


# --------------------------------------------------------------------------
# Governance changes: who may sign them
# --------------------------------------------------------------------------


def test_a_change_needs_the_threshold_of_current_governors(ledger: GovLedger) -> None:
    gov, _ = start(ledger)
    dev, dev_op = new_create()
    ok(ledger.one(endorsed(dev_op, gov.governors[0])))
    one = gov.change([gb.add_registrar(dev.did)], gov.governors[:1])
    err = rejected(ledger.one(one), errors.GovernanceThreshold)
    assert err.details == {"signed": "1", "threshold": "2"}
    assert dev.did not in ledger.policy().registrars  # type: ignore[union-attr]
    apply_change(ledger, gov, [gb.add_registrar(dev.did)], gov.governors[:2])
    assert dev.did in ledger.policy().registrars  # type: ignore[union-attr]


def test_a_removed_governor_cannot_sign(ledger: GovLedger) -> None:
    gov, _ = start(ledger)
    g0, g1, g2 = gov.governors
    apply_change(ledger, gov, [gb.set_governors([g0.did, g1.did], 2)], [g0, g1])
    op = gov.change([gb.set_create_policy("open")], [g0, g2])
    err = rejected(ledger.one(op), errors.NotAGovernor)
    assert err.details["did"] == g2.did
    assert ledger.policy().create == "registrars"  # type: ignore[union-attr]


def test_a_replayed_signature_or_operation_is_refused(ledger: GovLedger) -> None:
    gov, _ = start(ledger)
    first = gov.change([gb.set_create_policy("open")])
    ok(ledger.one(first))
    gov.accepted(first)
    # The same operation again: already on the ledger.
    rejected(ledger.one(first), errors.DuplicateOperation)
    # Its signatures on the next change: they sign the other payload.
    unsigned = gb.change(NET, gov.did, gov.seq + 1, gov.last, [gb.set_create_policy("registrars")])
    replayed = SignedOperation(unsigned.type, NET, unsigned.did, unsigned.payload, first.proofs)
    rejected(ledger.one(replayed), errors.InvalidSignature)
    # An old change rebuilt at its old seq: the chain moved on.
    stale = builder.sign(
        gb.change(NET, gov.did, 1, hashlib.sha256(gov.inception.payload).hexdigest(), [gb.set_create_policy("governors")]),
        [(g.kid, g.key) for g in gov.governors],
    )
    rejected(ledger.one(stale), errors.SequenceMismatch)
    assert ledger.policy().create == "open"  # type: ignore[union-attr]


def test_a_change_for_another_network_is_refused(ledger: GovLedger) -> None:
    gov, _ = start(ledger)
    foreign = builder.sign(gb.change("other", gov.did, 1, gov.last, [gb.set_create_policy("open")]), [(g.kid, g.key) for g in gov.governors])
    rejected(ledger.one(foreign), errors.WrongNetwork)
    # Signatures made for another network do not verify on this one (the network is in the signed bytes).
    mine = gb.change(NET, gov.did, 1, gov.last, [gb.set_create_policy("open")])
    moved = SignedOperation(mine.type, NET, mine.did, mine.payload, foreign.proofs)
    rejected(ledger.one(moved), errors.InvalidSignature)


def test_a_new_governor_must_agree(ledger: GovLedger) -> None:
    gov, _ = start(ledger)
    new, new_op = new_create()
    ok(ledger.one(endorsed(new_op, gov.governors[0])))
    everyone = sorted([*(g.did for g in gov.governors), new.did])
    rejected(ledger.one(gov.change([gb.set_governors(everyone, 3)], gov.governors)), errors.GovernanceThreshold)
    apply_change(ledger, gov, [gb.set_governors(everyone, 3)], [*gov.governors, new])
    assert ledger.policy().threshold == 3 and new.did in ledger.policy().governors  # type: ignore[union-attr]


def test_changes_that_do_not_fit_the_policy_are_refused(ledger: GovLedger) -> None:
    gov, maker = start(ledger)
    rejected(ledger.one(gov.change([gb.add_registrar(maker.did)])), errors.GovernanceInvalid)
    rejected(ledger.one(gov.change([gb.remove_registrar(gov.governors[0].did)])), errors.GovernanceInvalid)
    ghost, _ = new_create()
    rejected(ledger.one(gov.change([gb.add_registrar(ghost.did)])), errors.UnknownDid)
    rejected(ledger.one(gov.change([gb.set_publisher_quota(maker.did, None)])), errors.GovernanceInvalid)
    assert ledger.policy().seq == 0  # type: ignore[union-attr]


# --------------------------------------------------------------------------
# Admission of creates
# --------------------------------------------------------------------------


def test_creates_by_a_registrar_as_controller_or_endorser_and_not_otherwise(ledger: GovLedger) -> None:
    gov, maker = start(ledger)
    device, op = new_create()
    err = rejected(ledger.one(op), errors.NotARegistrar)
    assert device.did in str(err) and not ledger.exists(device.did)
    ok(ledger.one(new_create(controllers=[maker])[1]))
    ok(ledger.one(endorsed(op, maker)))
    assert ledger.usage(maker.did).total_count == 2
    # A governor's endorsement needs no quota.
    ok(ledger.one(endorsed(new_create()[1], gov.governors[1])))
    assert ledger.usage(maker.did).total_count == 2
    # A DID that is not a registrar endorsing: still not admitted.
    rejected(ledger.one(endorsed(new_create()[1], device)), errors.NotARegistrar)


def test_an_endorsement_must_be_a_valid_signature_of_an_existing_did(ledger: GovLedger) -> None:
    _, maker = start(ledger)
    ghost, _ = new_create()
    rejected(ledger.one(endorsed(new_create()[1], ghost)), errors.WrongSigner)
    _, op = new_create()
    wrong = builder.sign(builder.UnsignedOperation(op.type, NET, op.did, b'{"other":1}'), [(maker.kid, maker.key)]).proofs[0]
    forged = SignedOperation(op.type, op.network, op.did, op.payload, op.proofs + (wrong,))
    rejected(ledger.one(forged), errors.InvalidSignature)


def test_the_window_quota_resets_with_ordering_time_and_the_total_holds(ledger: GovLedger) -> None:
    _, maker = start(ledger)  # 5 per hour, 8 in all
    window_end = (T0 // 3_600_000 + 1) * 3_600_000
    outs = ledger.submit([new_create(controllers=[maker])[1] for _ in range(6)], at=window_end - 10_000)
    for o in outs[:5]:
        ok(o)
    err = rejected(outs[5], errors.QuotaExceeded)
    assert err.reset_time_ms == window_end and err.details["quota"] == "window"
    # Still the same window a second before its end; the next window admits again.
    rejected(ledger.one(new_create(controllers=[maker])[1], at=window_end - 1), errors.QuotaExceeded)
    for o in ledger.submit([new_create(controllers=[maker])[1] for _ in range(3)], at=window_end):
        ok(o)
    total = rejected(ledger.one(new_create(controllers=[maker])[1], at=window_end + 5 * 3_600_000), errors.QuotaExceeded)
    assert total.details["quota"] == "total" and total.reset_time_ms is None
    assert ledger.usage(maker.did).total_count == 8


def test_usage_survives_a_restart(tmp_path: Path) -> None:
    led = GovLedger(tmp_path)
    _, maker = start(led)
    for o in led.submit([new_create(controllers=[maker])[1] for _ in range(5)]):
        ok(o)
    led.close()
    again = GovLedger(tmp_path)
    try:
        rejected(again.one(new_create(controllers=[maker])[1]), errors.QuotaExceeded)
    finally:
        again.close()


def test_a_removed_registrar_stops_creating_and_its_dids_live_on(ledger: GovLedger) -> None:
    gov, maker = start(ledger)
    device, op = new_create(controllers=[maker])
    ok(ledger.one(op))
    apply_change(ledger, gov, [gb.remove_registrar(maker.did)])
    rejected(ledger.one(new_create(controllers=[maker])[1]), errors.NotARegistrar)
    assert ledger.exists(device.did)
    with ledger.store.read() as txn:
        state = ledger.tables.get_state(txn, device.did)
    unsigned, auth, nxt, key_id = rotate_op(device, state)
    ok(ledger.one(builder.sign(unsigned, [(builder.next_kid(device.did), device.next_key)])))
    adopt_rotation(device, auth, nxt, key_id)


def test_governors_only_and_open_modes(ledger: GovLedger) -> None:
    gov, maker = start(ledger, create="governors")
    rejected(ledger.one(new_create(controllers=[maker])[1]), errors.NotARegistrar)
    ok(ledger.one(endorsed(new_create()[1], gov.governors[0])))
    apply_change(ledger, gov, [gb.set_create_policy("open")])
    ok(ledger.one(new_create()[1]))
    # Open, but a registrar's creates still count against its quota.
    ok(ledger.one(new_create(controllers=[maker])[1]))
    assert ledger.usage(maker.did).total_count == 1


# --------------------------------------------------------------------------
# Publishers
# --------------------------------------------------------------------------


def _publish(ledger: GovLedger, ident: Identity, rid: str, content: str) -> SignedOperation:
    with ledger.store.read() as txn:
        state = ledger.tables.get_state(txn, ident.did)
    return builder.sign(builder.publish(NET, ident.did, state.seq + 1, state.last, rid, "text/plain", content), [(ident.kid, ident.key)])


def test_publish_quotas_count_operations_and_bytes_per_window(ledger: GovLedger) -> None:
    gov, maker = start(ledger, publish=PublishQuota(HOUR, count=3, bytes=4000))
    for i in range(3):
        ok(ledger.one(_publish(ledger, maker, f"r{i}", "x")))
    err = rejected(ledger.one(_publish(ledger, maker, "r9", "x")), errors.QuotaExceeded)
    assert err.details["quota"] == "count" and err.details["did"] == maker.did
    # Its own quota, set by the governors, replaces the default.
    apply_change(ledger, gov, [gb.set_publisher_quota(maker.did, PublishQuota(HOUR, bytes=20_000))])
    ok(ledger.one(_publish(ledger, maker, "big", "y" * 10_000)))
    err = rejected(ledger.one(_publish(ledger, maker, "big2", "y" * 10_000)), errors.QuotaExceeded)
    assert err.details["quota"] == "bytes"
    assert ledger.usage(maker.did, PUBLISHES).total_count == 4


def test_publishing_is_closed_to_non_governors_on_a_governors_network(ledger: GovLedger) -> None:
    gov, maker = start(ledger, create="governors")
    rejected(ledger.one(_publish(ledger, maker, "r", "x")), errors.NotARegistrar)
    ok(ledger.one(_publish(ledger, gov.governors[0], "r", "x")))


# --------------------------------------------------------------------------
# The audit replays governance
# --------------------------------------------------------------------------


def test_the_audit_replays_a_governed_ledger_and_catches_a_tampered_count(tmp_path: Path) -> None:
    led = GovLedger(tmp_path / "node")
    gov, maker = start(led, publish=PublishQuota(HOUR, count=50))
    led.submit([new_create(controllers=[maker])[1] for _ in range(4)])
    apply_change(led, gov, [gb.set_registrar_quota(maker.did, CreateQuota(total=100))])
    led.submit([new_create(controllers=[maker])[1] for _ in range(3)] + [_publish(led, maker, "s", "z")])
    led.submit([new_create()[1]])  # rejected: never on the log
    size = led.size()
    led.close()
    report = audit(str(tmp_path / "node"), workers=0)
    assert report.entries == size
    assert audit(str(tmp_path / "node"), workers=2, chunk=4).state_root == report.state_root
    # A count the log does not support.
    led = GovLedger(tmp_path / "node")
    from didnode.core.governance.policy import Usage
    from didnode.store import layout

    led.store.write(lambda txn: txn.put(layout.usage_key(CREATES, maker.did), Usage(-1, 0, 0, 1, 0).encode(), db=led.tables.usage_db))
    led.close()
    with pytest.raises(errors.AuditFailed, match="usage"):
        audit(str(tmp_path / "node"), workers=0)
