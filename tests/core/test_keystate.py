"""The did:dnode state machine: every signing rule, and each way an operation can be unauthorized."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from didnode import errors
from didnode.core import builder
from didnode.core.keystate import CURRENT, REVOKED, ROTATED
from tests.factory import MemLedger, adopt_rotation, new_create, rotate_op


@pytest.fixture
def ledger() -> MemLedger:
    return MemLedger()


def test_create_is_self_certifying_and_active(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    assert state.did == ident.did
    assert state.seq == 0 and state.status == "active"
    assert [k.id for k in state.current_keys()] == ["key-1"]
    assert state.key_agreement() is not None


def test_create_without_proof_of_possession_is_rejected(ledger: MemLedger) -> None:
    ident, op = new_create()
    other = SigningKey.generate()
    forged = builder.sign(builder.UnsignedOperation(op.type, op.network, op.did, op.payload), [(f"{op.did}#key-1", other)])
    with pytest.raises(errors.InvalidSignature):
        ledger.submit(forged)


def test_create_naming_a_controller_that_did_not_sign_is_rejected(ledger: MemLedger) -> None:
    admin, admin_op = new_create()
    ledger.submit(admin_op)
    _, op = new_create(controllers=[admin])
    device_only = builder.SignedOperation(op.type, op.network, op.did, op.payload, op.proofs[:1])
    with pytest.raises(errors.ControllerSignatureMissing):
        ledger.submit(device_only)


def test_stolen_current_key_cannot_rotate_the_did_away(ledger: MemLedger) -> None:
    """Pre-rotation: the thief holds key-1 but not the committed next key."""
    ident, op = new_create()
    state = ledger.submit(op)
    unsigned, *_ = rotate_op(ident, state)
    # The thief signs with the stolen current key, as did#key-1 ...
    with pytest.raises(errors.NextKeyRequired):
        ledger.submit(builder.sign(unsigned, [(ident.kid, ident.key)]))
    # ... or claims it is the next key: the signature does not match the revealed key.
    with pytest.raises(errors.InvalidSignature):
        ledger.submit(builder.sign(unsigned, [(builder.next_kid(ident.did), ident.key)]))
    # Revealing the thief's own key as nextKey fails the commitment check.
    thief_next = SigningKey.generate()
    forged = builder.rotate(ledger.network, ident.did, 1, state.last, bytes(thief_next.verify_key), [builder.NewKey("key-9", bytes(thief_next.verify_key))], bytes(SigningKey.generate().verify_key))
    with pytest.raises(errors.WrongSigner):
        ledger.submit(builder.sign(forged, [(builder.next_kid(ident.did), thief_next)]))
    # The stolen key can still sign what it is allowed to sign: an update.
    upd = builder.update(ledger.network, ident.did, 1, state.last, [], None)
    assert ledger.submit(builder.sign(upd, [(ident.kid, ident.key)])).seq == 1


def test_rotation_by_next_key_retires_the_old_key(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    unsigned, auth, nxt, key_id = rotate_op(ident, state)
    state = ledger.submit(builder.sign(unsigned, [(builder.next_kid(ident.did), ident.next_key)]))
    old = state.key("key-1")
    assert old.fate == ROTATED and old.ended_seq == 1
    assert state.key(key_id).fate == CURRENT
    # Which keys could sign at each position: key-1 at 0, key-2 from 1 on.
    assert [k.id for k in state.keys_valid_at(0)] == ["key-1"]
    assert [k.id for k in state.keys_valid_at(1)] == [key_id]
    # The rotated key can no longer sign.
    stale = builder.update(ledger.network, ident.did, 2, state.last, [], None)
    with pytest.raises(errors.KeyRotated):
        ledger.submit(builder.sign(stale, [(ident.kid, ident.key)]))
    adopt_rotation(ident, auth, nxt, key_id)
    assert ledger.submit(builder.sign(stale, [(ident.kid, ident.key)])).seq == 2


def test_revoked_key_never_signs_again(ledger: MemLedger) -> None:
    admin, admin_op = new_create()
    ledger.submit(admin_op)
    ident, op = new_create(controllers=[admin])
    state = ledger.submit(op)
    rev = builder.revoke(ledger.network, ident.did, 1, state.last, "key-1", "stolen")
    state = ledger.submit(builder.sign(rev, [(admin.kid, admin.key)]))
    k = state.key("key-1")
    assert k.fate == REVOKED and k.reason == "stolen"
    assert state.keys_valid_at(state.updated_pos) == []
    upd = builder.update(ledger.network, ident.did, 2, state.last, [], None)
    with pytest.raises(errors.KeyRevoked):
        ledger.submit(builder.sign(upd, [(ident.kid, ident.key)]))


def test_revoke_by_the_subjects_current_key_is_rejected(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    rev = builder.revoke(ledger.network, ident.did, 1, state.last, "key-1", "oops")
    with pytest.raises(errors.WrongSigner):
        ledger.submit(builder.sign(rev, [(ident.kid, ident.key)]))


def test_revoke_by_next_key_and_then_rotation_still_works(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    rev = builder.revoke(ledger.network, ident.did, 1, state.last, "key-1", "lost device key", bytes(ident.next_key.verify_key))
    state = ledger.submit(builder.sign(rev, [(builder.next_kid(ident.did), ident.next_key)]))
    assert state.key("key-1").fate == REVOKED
    unsigned, *_ = rotate_op(ident, state)
    state = ledger.submit(builder.sign(unsigned, [(builder.next_kid(ident.did), ident.next_key)]))
    assert state.key("key-1").fate == REVOKED, "a rotation must not resurrect a revoked key's fate"


def test_signature_by_an_unrelated_did_is_rejected(ledger: MemLedger) -> None:
    stranger, sop = new_create()
    ledger.submit(sop)
    ident, op = new_create()
    state = ledger.submit(op)
    rev = builder.revoke(ledger.network, ident.did, 1, state.last, "key-1", "x")
    with pytest.raises(errors.WrongSigner):
        ledger.submit(builder.sign(rev, [(stranger.kid, stranger.key)]))


def test_wrong_seq_and_forked_prev_are_rejected(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    with pytest.raises(errors.SequenceMismatch):
        ledger.submit(builder.sign(builder.update(ledger.network, ident.did, 5, state.last, [], None), [(ident.kid, ident.key)]))
    with pytest.raises(errors.PrevMismatch):
        ledger.submit(builder.sign(builder.update(ledger.network, ident.did, 1, "0" * 64, [], None), [(ident.kid, ident.key)]))


def test_recover_by_controller_replaces_keys_and_commitment(ledger: MemLedger) -> None:
    admin, admin_op = new_create()
    ledger.submit(admin_op)
    ident, op = new_create(controllers=[admin])
    state = ledger.submit(op)
    new_auth, new_next = SigningKey.generate(), SigningKey.generate()
    rec = builder.recover(ledger.network, ident.did, 1, state.last, [builder.NewKey("key-2", bytes(new_auth.verify_key))], bytes(new_next.verify_key))
    with pytest.raises(errors.ControllerSignatureMissing):
        ledger.submit(builder.sign(rec, [(ident.kid, ident.key)]))
    state = ledger.submit(builder.sign(rec, [(admin.kid, admin.key)]))
    assert [k.id for k in state.current_keys()] == ["key-2"]
    assert state.key("key-1").fate == ROTATED
    assert state.key_agreement() is None  # recovery without a new agreement key drops the old one


def test_recover_without_controller_is_rejected(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    rec = builder.recover(ledger.network, ident.did, 1, state.last, [builder.NewKey("key-2", bytes(SigningKey.generate().verify_key))], bytes(SigningKey.generate().verify_key))
    with pytest.raises(errors.WrongSigner):
        ledger.submit(builder.sign(rec, [(ident.kid, ident.key)]))


def test_transfer_needs_old_and_new_controllers(ledger: MemLedger) -> None:
    maker, mop = new_create()
    buyer, bop = new_create()
    ledger.submit(mop)
    ledger.submit(bop)
    ident, op = new_create(controllers=[maker])
    state = ledger.submit(op)
    tr = builder.transfer(ledger.network, ident.did, 1, state.last, [buyer.did])
    with pytest.raises(errors.ControllerSignatureMissing):
        ledger.submit(builder.sign(tr, [(maker.kid, maker.key)]))
    with pytest.raises(errors.ControllerSignatureMissing):
        ledger.submit(builder.sign(tr, [(buyer.kid, buyer.key)]))
    state = ledger.submit(builder.sign(tr, [(maker.kid, maker.key), (buyer.kid, buyer.key)]))
    assert state.controllers == (buyer.did,)
    # The maker no longer controls the device.
    rev = builder.revoke(ledger.network, ident.did, 2, state.last, "key-1", "x")
    with pytest.raises(errors.WrongSigner):
        ledger.submit(builder.sign(rev, [(maker.kid, maker.key)]))
    assert ledger.submit(builder.sign(rev, [(buyer.kid, buyer.key)])).key("key-1").fate == REVOKED


def test_deactivate_is_terminal(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    d = builder.deactivate(ledger.network, ident.did, 1, state.last, "end of life")
    with pytest.raises(errors.NextKeyRequired):
        ledger.submit(builder.sign(d, [(ident.kid, ident.key)]))
    d = builder.deactivate(ledger.network, ident.did, 1, state.last, "end of life", bytes(ident.next_key.verify_key))
    state = ledger.submit(builder.sign(d, [(builder.next_kid(ident.did), ident.next_key)]))
    assert state.status == "deactivated" and state.current_keys() == []
    upd = builder.update(ledger.network, ident.did, 2, state.last, [], None)
    with pytest.raises(errors.DidDeactivated):
        ledger.submit(builder.sign(upd, [(ident.kid, ident.key)]))


def test_deactivated_controller_cannot_sign(ledger: MemLedger) -> None:
    admin, admin_op = new_create()
    astate = ledger.submit(admin_op)
    d = builder.deactivate(ledger.network, admin.did, 1, astate.last, "retired", bytes(admin.next_key.verify_key))
    ledger.submit(builder.sign(d, [(builder.next_kid(admin.did), admin.next_key)]))
    with pytest.raises(errors.DidDeactivated):
        ledger.submit(new_create(controllers=[admin])[1])


def test_unknown_did_and_duplicate_create(ledger: MemLedger) -> None:
    ident, op = new_create()
    upd = builder.update(ledger.network, ident.did, 1, "0" * 64, [], None)
    with pytest.raises(errors.UnknownDid):
        ledger.submit(builder.sign(upd, [(ident.kid, ident.key)]))
    ledger.submit(op)
    with pytest.raises(errors.DidAlreadyExists):
        ledger.submit(op)


def test_key_agreement_key_cannot_sign(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    upd = builder.update(ledger.network, ident.did, 1, state.last, [], None)
    fake = SigningKey(bytes(ident.ka)) if ident.ka else SigningKey.generate()
    with pytest.raises(errors.WrongSigner):
        ledger.submit(builder.sign(upd, [(f"{ident.did}#ka-1", fake)]))


def test_update_replaces_services_and_agreement_key(ledger: MemLedger) -> None:
    ident, op = new_create(services=[builder.service("mqtt", "MQTTBroker", "mqtts://broker.example:8883")])
    state = ledger.submit(op)
    assert state.services[0]["id"] == "mqtt"
    from nacl.public import PrivateKey

    ka2 = PrivateKey.generate()
    upd = builder.update(ledger.network, ident.did, 1, state.last, [], builder.NewAgreementKey("ka-2", bytes(ka2.public_key)))
    state = ledger.submit(builder.sign(upd, [(ident.kid, ident.key)]))
    assert state.services == ()
    assert state.key_agreement().id == "ka-2"
    assert state.key("ka-1").fate == ROTATED


def test_key_ids_are_never_reused(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    new_next = SigningKey.generate()
    u = builder.rotate(ledger.network, ident.did, 1, state.last, bytes(ident.next_key.verify_key), [builder.NewKey("key-1", bytes(SigningKey.generate().verify_key))], bytes(new_next.verify_key))
    with pytest.raises(errors.MalformedOperation):
        ledger.submit(builder.sign(u, [(builder.next_kid(ident.did), ident.next_key)]))


def test_publish_needs_an_assertion_key_and_keeps_the_latest_version(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    pub = builder.publish(ledger.network, ident.did, 1, state.last, "status-1", "application/vc+jwt", "eyJ...v1")
    with pytest.raises(errors.WrongSigner):
        ledger.submit(builder.sign(pub, [(builder.next_kid(ident.did), ident.next_key)]))
    state = ledger.submit(builder.sign(pub, [(ident.kid, ident.key)]))
    first = state.resource("status-1")
    pub2 = builder.publish(ledger.network, ident.did, 2, state.last, "status-1", "application/vc+jwt", "eyJ...v2")
    state = ledger.submit(builder.sign(pub2, [(ident.kid, ident.key)]))
    assert state.resource("status-1")["seq"] == 2 and first["seq"] == 1
    assert len(state.resources) == 1
    with pytest.raises(errors.UnknownResource):
        state.resource("status-2")


def test_publish_may_be_larger_than_other_operations(ledger: MemLedger) -> None:
    ident, op = new_create()
    state = ledger.submit(op)
    big = "A" * 20000
    pub = builder.publish(ledger.network, ident.did, 1, state.last, "status-1", "application/vc+jwt", big)
    assert ledger.submit(builder.sign(pub, [(ident.kid, ident.key)])).resource("status-1")
    upd = builder.update(ledger.network, ident.did, 2, ledger.states[ident.did].last, [builder.service("s", "T", "https://x/" + "a" * 500)] * 1, None)
    assert len(upd.payload) < 8192


def test_a_second_proof_with_the_same_key_needs_its_own_valid_signature(ledger: MemLedger) -> None:
    """The verified-signature cache is keyed by key and signature, not by key alone."""
    from didnode.core.operations import Proof

    admin, aop = new_create()
    ledger.submit(aop)
    # The device lists the admin's public key as its own key-1 (odd but legal),
    # signs properly as did#key-1, and attaches a garbage "controller" proof.
    unsigned = builder.create(ledger.network, [builder.NewKey("key-1", bytes(admin.key.verify_key))], bytes(SigningKey.generate().verify_key), controllers=[admin.did])
    good = builder.sign(unsigned, [(f"{unsigned.did}#key-1", admin.key)])
    forged = builder.SignedOperation(good.type, good.network, good.did, good.payload, (good.proofs[0], Proof(admin.kid, b"\x07" * 64)))
    with pytest.raises(errors.InvalidSignature):
        ledger.submit(forged)
