"""The handshake state machines, in memory: the happy path and every way it must fail, each with its reason.

Pure core (no clock, network or storage besides the in-memory nonce store):
fast, and each failure is its own test asserting its own reason code.
"""

from __future__ import annotations

import dataclasses

import pytest
from nacl.signing import SigningKey

from didnode import errors
from didnode.core import builder
from didnode.core.handshake import (
    Alert,
    Fresh,
    HandshakeLimits,
    Initiator,
    MemoryNonceStore,
    Responder,
    Session,
)
from didnode.core.handshake import transcript as tr
from didnode.core.handshake.crypto import hkdf_extract, hmac_sha256
from didnode.core.handshake.machine import LocalIdentity
from tests.auth.world import NET, NOW, World, complete, det_random, pair
from tests.factory import adopt_rotation, new_create, rotate_op


@pytest.fixture
def w() -> World:
    return World()


def reason_of(exc: pytest.ExceptionInfo[errors.DidnodeError]) -> str:
    return exc.value.reason


# --------------------------------------------------------------------------
# The happy path
# --------------------------------------------------------------------------


def test_both_sides_derive_the_same_session_and_name_each_other(w: World) -> None:
    a, b = w.identity(), w.identity()
    run = complete(w, *pair(w, a, b))
    assert run.initiator.peer_did == b.did and run.responder.peer_did == a.did
    assert run.initiator.peer_key_id == "key-1" == run.responder.peer_key_id
    assert run.initiator.session_id == run.responder.session_id == run.session.session_id
    assert run.initiator.session_key == run.responder.session_key and len(run.initiator.session_key) == 32
    assert any("current authentication key" in c for c in run.initiator.checks)
    assert any("as initiator" in c for c in run.responder.checks)


def test_fresh_randomness_gives_a_fresh_session(w: World) -> None:
    a, b = w.identity(), w.identity()
    one = complete(w, *pair(w, a, b, seed="one"))
    two = complete(w, *pair(w, a, b, seed="two"))
    assert one.initiator.session_key != two.initiator.session_key
    assert one.initiator.session_id != two.initiator.session_id


def hkdf_expand(prk: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF-Expand with SHA-256, written out in full: the reference the handshake's
    inlined one-block key schedule is checked against (the handshake itself never calls it)."""
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac_sha256(prk, block + info + bytes((counter,)))
        out += block
        counter += 1
    return out[:length]


def test_hkdf_matches_rfc5869_test_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    prk = hkdf_extract(salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    assert hkdf_expand(prk, info, 42).hex() == okm


def test_inlined_key_schedule_is_the_documented_hkdf(w: World) -> None:
    """confirmation_keys and session_key compute one-block HKDF-Expand inline: they must equal the generic HKDF."""
    ss, ni, nr, th4 = bytes(range(32)), b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    prk = hkdf_extract(tr.sha256(tr.SALT_CONTEXT + ni + nr), ss)
    keys = tr.confirmation_keys(ss, ni, nr)
    assert keys.responder == hkdf_expand(prk, b"didnode/auth/v1 responder confirmation")
    assert keys.initiator == hkdf_expand(prk, b"didnode/auth/v1 initiator confirmation")
    assert keys.session == hkdf_expand(prk, b"didnode/auth/v1 session confirmation")
    assert tr.session_key(ss, th4) == hkdf_expand(hkdf_extract(th4, ss), b"didnode/auth/v1 session key")
    assert hkdf_expand(prk, b"x", 32) == hkdf_expand(prk, b"x", 33)[:32]


def test_cached_string_encodings_are_exact() -> None:
    """The transcript caches length-prefixed encodings of recurring strings; a cached one is byte-identical."""
    for text in ("local", "did:dnode:abc", "é" * 10, "x" * 300, ""):
        first, again = tr._s(text), tr._s(text)
        assert first == again == len(text.encode()).to_bytes(4, "big") + text.encode()


def test_signing_context_is_distinct_from_every_other_didnode_context() -> None:
    from didnode.core import checkpoint, operations
    from didnode.core.credentials import session

    sign_bytes = tr.signing_bytes(tr.RESPONDER, bytes(32))
    for other in (operations.SIGNING_CONTEXT, checkpoint.CHECKPOINT_CONTEXT, session.CONTEXT):
        assert not sign_bytes.startswith(other) and not other.startswith(tr.SIGNATURE_CONTEXT)
    assert tr.signing_bytes(tr.RESPONDER, bytes(32)) != tr.signing_bytes(tr.INITIATOR, bytes(32))


# --------------------------------------------------------------------------
# Replay (messages 1, 2, 3; within and across sessions)
# --------------------------------------------------------------------------


def test_replayed_hello_while_the_first_is_pending_is_a_replay(w: World) -> None:
    a, b = w.identity(), w.identity()
    nr = MemoryNonceStore()
    i, r = pair(w, a, b, nr=nr)
    h = i.hello(NOW)
    r.check_hello(h, NOW)
    r.challenge(w.state(a.did), NOW)
    r2 = Responder(w.local(b), NET, Fresh.draw(det_random("r2")), nr, peer="ipv4:10.0.0.9")
    r2.check_hello(h, NOW + 5)
    with pytest.raises(errors.HandshakeReplay) as exc:
        r2.challenge(w.state(a.did), NOW + 5)
    assert reason_of(exc) == "REPLAY"


def test_replayed_hello_of_a_completed_session_is_a_replay(w: World) -> None:
    a, b = w.identity(), w.identity()
    nr = MemoryNonceStore()
    run = complete(w, *pair(w, a, b, nr=nr))
    r2 = Responder(w.local(b), NET, Fresh.draw(det_random("later")), nr, peer="ipv4:10.0.0.2")
    r2.check_hello(run.hello, NOW + 30_000)
    with pytest.raises(errors.HandshakeReplay) as exc:
        r2.challenge(w.state(a.did), NOW + 30_000)
    assert reason_of(exc) == "REPLAY"


def test_hello_replayed_after_the_window_is_stale_not_accepted(w: World) -> None:
    a, b = w.identity(), w.identity()
    nr = MemoryNonceStore()
    run = complete(w, *pair(w, a, b, nr=nr))
    later = NOW + nr.limits.max_skew_ms + 1
    r2 = Responder(w.local(b), NET, Fresh.draw(det_random("much later")), nr)
    with pytest.raises(errors.HandshakeStale) as exc:
        r2.check_hello(run.hello, later)
    assert reason_of(exc) == "HANDSHAKE_STALE"


def test_replayed_challenge_in_a_new_session_is_a_replay(w: World) -> None:
    a, b = w.identity(), w.identity()
    ni = MemoryNonceStore()
    old = complete(w, *pair(w, a, b, ni=ni, seed="old"))
    i2, _ = pair(w, a, b, ni=ni, seed="new")
    i2.hello(NOW + 1000)
    with pytest.raises(errors.HandshakeReplay) as exc:
        i2.check_challenge(old.challenge, NOW + 1000)
    assert reason_of(exc) == "REPLAY"


def test_replayed_response_in_a_new_session_is_a_replay(w: World) -> None:
    a, b = w.identity(), w.identity()
    nr = MemoryNonceStore()
    old = complete(w, *pair(w, a, b, nr=nr, seed="old"))
    i2, r2 = pair(w, a, b, nr=nr, seed="new")
    h = i2.hello(NOW + 1000)
    r2.check_hello(h, NOW + 1000)
    r2.challenge(w.state(a.did), NOW + 1000)
    with pytest.raises(errors.HandshakeReplay) as exc:
        r2.check_response(old.response, NOW + 1000)
    assert reason_of(exc) == "REPLAY"


def test_response_sent_twice_in_one_session_is_out_of_order(w: World) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b)
    run = complete(w, i, r)
    with pytest.raises(errors.HandshakeOutOfOrder) as exc:
        r.check_response(run.response, NOW)
    assert reason_of(exc) == "OUT_OF_ORDER"


# --------------------------------------------------------------------------
# Reflection and identity misbinding
# --------------------------------------------------------------------------


def test_own_hello_reflected_to_own_responder_is_a_reflection(w: World) -> None:
    a = w.identity()
    shared = MemoryNonceStore()  # one device: its initiator and responder share a store
    i = Initiator(w.local(a), NET, Fresh.draw(det_random("i")), shared)
    r = Responder(w.local(a), NET, Fresh.draw(det_random("r")), shared)
    with pytest.raises(errors.HandshakeReflection) as exc:
        r.check_hello(i.hello(NOW), NOW)
    assert reason_of(exc) == "REFLECTION"


def test_own_challenge_reflected_to_own_initiator_is_a_reflection(w: World) -> None:
    a, b = w.identity(), w.identity()
    # A's responder answers B; the attacker sends that challenge to A's own initiator.
    ib, ra = pair(w, b, a, seed="x")
    h = ib.hello(NOW)
    ra.check_hello(h, NOW)
    c = ra.challenge(w.state(b.did), NOW)
    ia = Initiator(w.local(a), NET, Fresh.draw(det_random("ia")), MemoryNonceStore())
    ia.hello(NOW)
    with pytest.raises(errors.HandshakeReflection) as exc:
        ia.check_challenge(c, NOW)
    assert reason_of(exc) == "REFLECTION"


def test_peer_nonce_equal_to_an_own_nonce_is_a_reflection(w: World) -> None:
    a, b = w.identity(), w.identity()
    store = MemoryNonceStore()
    i, _ = pair(w, a, b, ni=store)
    h = i.hello(NOW)
    # The same device's responder (same store) is handed a hello from B carrying A's own nonce.
    ib = Initiator(w.local(b), NET, Fresh(h.nonce, det_random("e")(32)), MemoryNonceStore())
    forged = ib.hello(NOW)
    r = Responder(w.local(a), NET, Fresh.draw(det_random("ra")), store)
    r.check_hello(forged, NOW)
    with pytest.raises(errors.HandshakeReflection) as exc:
        r.challenge(w.state(b.did), NOW)
    assert reason_of(exc) == "REFLECTION"


def test_response_signed_for_another_responder_is_a_misbinding(w: World) -> None:
    """Eve relays A's response to C to B: A's signature binds C, not B."""
    a, b, c = w.identity(), w.identity(), w.identity()
    ia, rc = pair(w, a, c, seed="ac")
    h = ia.hello(NOW)
    rc.check_hello(h, NOW)
    ia.check_challenge(rc.challenge(w.state(a.did), NOW), NOW)
    ia.verify_challenge(w.state(c.did))
    resp_for_c = ia.response()
    # B got the same hello (relayed) and answered it.
    rb = Responder(w.local(b), NET, Fresh.draw(det_random("b")), MemoryNonceStore())
    rb.check_hello(h, NOW)
    challenge_b = rb.challenge(w.state(a.did), NOW)
    forged = dataclasses.replace(resp_for_c, responder_nonce=challenge_b.nonce)
    with pytest.raises(errors.IdentityMisbinding) as exc:
        rb.check_response(forged, NOW)
    assert reason_of(exc) == "MISBINDING"


def test_response_claiming_another_initiator_is_a_misbinding(w: World) -> None:
    """Eve takes A's response and claims it as her own session (her hello named Eve)."""
    a, b, eve = w.identity(), w.identity(), w.identity()
    ia, rb = pair(w, a, b, seed="a")
    ha = ia.hello(NOW)
    rb.check_hello(ha, NOW)
    ia.check_challenge(rb.challenge(w.state(a.did), NOW), NOW)
    ia.verify_challenge(w.state(b.did))
    resp_a = ia.response()
    # Eve opened her own session with B using A's nonce and ephemeral key ...
    he = dataclasses.replace(ha, initiator_did=eve.did)
    rb2 = Responder(w.local(b), NET, Fresh.draw(det_random("b2")), MemoryNonceStore())
    rb2.check_hello(he, NOW)
    c2 = rb2.challenge(w.state(eve.did), NOW)
    # ... and presents A's signature as hers.
    with pytest.raises(errors.IdentityMisbinding) as exc:
        rb2.check_response(dataclasses.replace(resp_a, responder_nonce=c2.nonce), NOW)
    assert reason_of(exc) == "MISBINDING"


def test_challenge_from_an_unexpected_responder_is_a_misbinding(w: World) -> None:
    a, b, c = w.identity(), w.identity(), w.identity()
    i = Initiator(w.local(a), NET, Fresh.draw(det_random("i")), MemoryNonceStore(), expect_peer=c.did)
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), MemoryNonceStore())
    h = i.hello(NOW)
    r.check_hello(dataclasses.replace(h, responder_did=""), NOW)
    with pytest.raises(errors.IdentityMisbinding) as exc:
        i.check_challenge(r.challenge(w.state(a.did), NOW), NOW)
    assert reason_of(exc) == "MISBINDING"


def test_hello_meant_for_another_responder_is_a_misbinding(w: World) -> None:
    a, b, c = w.identity(), w.identity(), w.identity()
    i = Initiator(w.local(a), NET, Fresh.draw(det_random("i")), MemoryNonceStore(), expect_peer=c.did)
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), MemoryNonceStore())
    with pytest.raises(errors.IdentityMisbinding) as exc:
        r.check_hello(i.hello(NOW), NOW)
    assert reason_of(exc) == "MISBINDING"


# --------------------------------------------------------------------------
# Network, version, ledger key state
# --------------------------------------------------------------------------


def test_hello_from_another_network_is_wrong_network(w: World) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b, network_i="testnet")
    with pytest.raises(errors.PeerWrongNetwork) as exc:
        r.check_hello(i.hello(NOW), NOW)
    assert reason_of(exc) == "PEER_WRONG_NETWORK"


def test_challenge_from_another_network_is_wrong_network(w: World) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b)
    h = i.hello(NOW)
    r.check_hello(h, NOW)
    c = r.challenge(w.state(a.did), NOW)
    with pytest.raises(errors.PeerWrongNetwork) as exc:
        i.check_challenge(dataclasses.replace(c, network="testnet"), NOW)
    assert reason_of(exc) == "PEER_WRONG_NETWORK"


def test_unsupported_version_is_refused(w: World) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b)
    with pytest.raises(errors.UnsupportedVersion) as exc:
        r.check_hello(dataclasses.replace(i.hello(NOW), version=2), NOW)
    assert reason_of(exc) == "UNSUPPORTED_VERSION"


def test_initiator_signing_with_a_rotated_key_is_refused(w: World) -> None:
    a, b = w.identity(), w.identity()
    old = w.local(a)  # key-1, about to be rotated out
    unsigned, auth, nxt, key_id = rotate_op(a, w.led.resolve(a.did))
    w.submit(builder.sign(unsigned, [(builder.next_kid(a.did), a.next_key)]))
    adopt_rotation(a, auth, nxt, key_id)
    i = Initiator(old, NET, Fresh.draw(det_random("i")), MemoryNonceStore())
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), MemoryNonceStore())
    r.check_hello(i.hello(NOW), NOW)
    with pytest.raises(errors.PeerKeyRotated) as exc:
        r.challenge(w.state(a.did), NOW)
    assert reason_of(exc) == "PEER_KEY_ROTATED"
    # The new key authenticates.
    complete(w, *pair(w, a, b, seed="after"))


def test_responder_signing_with_a_revoked_key_is_refused(w: World) -> None:
    admin = w.identity()
    a, b = w.identity(), w.identity(controllers=[admin])
    w.revoke(b, "key-1", by=admin)
    i, r = pair(w, a, b)
    h = i.hello(NOW)
    r.check_hello(h, NOW)
    c = r.challenge(w.state(a.did), NOW)
    i.check_challenge(c, NOW)
    with pytest.raises(errors.PeerKeyRevoked) as exc:
        i.verify_challenge(w.state(b.did))
    assert reason_of(exc) == "PEER_KEY_REVOKED"


def test_initiator_signing_with_a_revoked_key_is_refused(w: World) -> None:
    admin = w.identity()
    a, b = w.identity(controllers=[admin]), w.identity()
    w.revoke(a, "key-1", by=admin)
    i, r = pair(w, a, b)
    r.check_hello(i.hello(NOW), NOW)
    with pytest.raises(errors.PeerKeyRevoked) as exc:
        r.challenge(w.state(a.did), NOW)
    assert reason_of(exc) == "PEER_KEY_REVOKED"
    assert r.nonces.pending_count() == 0, "a refused hello leaves no pending state"


def test_deactivated_did_is_refused(w: World) -> None:
    admin = w.identity()
    a, b = w.identity(controllers=[admin]), w.identity()
    w.deactivate(a, by=admin)
    i, r = pair(w, a, b)
    r.check_hello(i.hello(NOW), NOW)
    with pytest.raises(errors.PeerDeactivated) as exc:
        r.challenge(w.state(a.did), NOW)
    assert reason_of(exc) == "PEER_DEACTIVATED"


def test_unknown_did_is_refused(w: World) -> None:
    b = w.identity()
    ghost, _ = new_create()  # never submitted
    i = Initiator(LocalIdentity.from_signing_key(ghost.did, "key-1", ghost.key), NET, Fresh.draw(det_random("g")), MemoryNonceStore())
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), MemoryNonceStore())
    h = r.check_hello(i.hello(NOW), NOW)
    with pytest.raises(errors.PeerUnknown) as exc:
        w.state(h.initiator_did)
    assert reason_of(exc) == "PEER_UNKNOWN"


def test_key_agreement_key_offered_as_authentication_key_is_refused(w: World) -> None:
    a, b = w.identity(), w.identity()
    # The initiator names its X25519 key-agreement key ka-1 as the key that signs.
    forged = LocalIdentity.from_signing_key(a.did, "ka-1", SigningKey(bytes(a.ka) if a.ka else bytes(32)))
    i = Initiator(forged, NET, Fresh.draw(det_random("i")), MemoryNonceStore())
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), MemoryNonceStore())
    r.check_hello(i.hello(NOW), NOW)
    with pytest.raises(errors.NotAnAuthenticationKey) as exc:
        r.challenge(w.state(a.did), NOW)
    assert reason_of(exc) == "NOT_AN_AUTHENTICATION_KEY"


def test_assertion_only_key_is_not_an_authentication_key(w: World) -> None:
    b = w.identity()
    key, nxt = SigningKey.generate(), SigningKey.generate()
    unsigned = builder.create(NET, [builder.NewKey("sign-1", bytes(key.verify_key), ("assertionMethod",))], bytes(nxt.verify_key))
    w.submit(builder.sign(unsigned, [(f"{unsigned.did}#sign-1", key)]))
    i = Initiator(LocalIdentity.from_signing_key(unsigned.did, "sign-1", key), NET, Fresh.draw(det_random("i")), MemoryNonceStore())
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), MemoryNonceStore())
    r.check_hello(i.hello(NOW), NOW)
    with pytest.raises(errors.NotAnAuthenticationKey) as exc:
        r.challenge(w.state(unsigned.did), NOW)
    assert reason_of(exc) == "NOT_AN_AUTHENTICATION_KEY"


def test_unknown_key_id_is_refused(w: World) -> None:
    a, b = w.identity(), w.identity()
    i = Initiator(LocalIdentity.from_signing_key(a.did, "key-7", a.key), NET, Fresh.draw(det_random("i")), MemoryNonceStore())
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), MemoryNonceStore())
    r.check_hello(i.hello(NOW), NOW)
    with pytest.raises(errors.PeerUnknownKey) as exc:
        r.challenge(w.state(a.did), NOW)
    assert reason_of(exc) == "PEER_UNKNOWN_KEY"


def test_impostor_without_the_private_key_fails_the_signature(w: World) -> None:
    a, b = w.identity(), w.identity()
    impostor = LocalIdentity.from_signing_key(a.did, "key-1", SigningKey.generate())
    i = Initiator(impostor, NET, Fresh.draw(det_random("i")), MemoryNonceStore())
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), MemoryNonceStore())
    h = i.hello(NOW)
    r.check_hello(h, NOW)
    i.check_challenge(r.challenge(w.state(a.did), NOW), NOW)
    i.verify_challenge(w.state(b.did))
    with pytest.raises(errors.HandshakeBadSignature) as exc:
        r.check_response(i.response(), NOW)
    assert reason_of(exc) == "HANDSHAKE_BAD_SIGNATURE"


# --------------------------------------------------------------------------
# Key confirmation, low-order keys
# --------------------------------------------------------------------------


def test_challenge_with_a_substituted_ephemeral_key_fails_key_confirmation(w: World) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b)
    h = i.hello(NOW)
    r.check_hello(h, NOW)
    c = r.challenge(w.state(a.did), NOW)
    mitm = dataclasses.replace(c, ephemeral_key=Fresh.draw(det_random("m")).ephemeral_secret)
    i.check_challenge(mitm, NOW)
    with pytest.raises(errors.KeyConfirmationFailed) as exc:
        i.verify_challenge(w.state(b.did))
    assert reason_of(exc) == "KEY_CONFIRMATION_FAILED"


def test_forged_session_message_fails_key_confirmation(w: World) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b)
    h = i.hello(NOW)
    r.check_hello(h, NOW)
    i.check_challenge(r.challenge(w.state(a.did), NOW), NOW)
    i.verify_challenge(w.state(b.did))
    r.check_response(i.response(), NOW)
    r.recheck(w.state(a.did))
    s, _ = r.session("", 0)
    with pytest.raises(errors.KeyConfirmationFailed) as exc:
        i.finish(Session(s.session_id, "eyJ.forged.token", NOW + 1000, s.mac))
    assert reason_of(exc) == "KEY_CONFIRMATION_FAILED"


def test_low_order_ephemeral_key_is_refused(w: World) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b)
    r.check_hello(dataclasses.replace(i.hello(NOW), ephemeral_key=bytes(32)), NOW)
    with pytest.raises(errors.PeerInvalidKey) as exc:
        r.challenge(w.state(a.did), NOW)
    assert reason_of(exc) == "PEER_INVALID_KEY"


# --------------------------------------------------------------------------
# Schema, order, time, alerts
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field_name, value",
    [("nonce", b"\x01" * 31), ("ephemeral_key", b""), ("initiator_did", "did:dnode:nope"), ("key_id", "key 1"), ("network", "Local!")],
)
def test_hello_breaking_the_schema_is_malformed(w: World, field_name: str, value: object) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b)
    with pytest.raises(errors.HandshakeMalformed) as exc:
        r.check_hello(dataclasses.replace(i.hello(NOW), **{field_name: value}), NOW)
    assert reason_of(exc) == "HANDSHAKE_MALFORMED"


def test_response_before_any_hello_is_out_of_order(w: World) -> None:
    a, b = w.identity(), w.identity()
    run = complete(w, *pair(w, a, b, seed="first"))
    _, r = pair(w, a, b, seed="second")
    with pytest.raises(errors.HandshakeOutOfOrder) as exc:
        r.check_response(run.response, NOW)
    assert reason_of(exc) == "OUT_OF_ORDER"


def test_session_before_the_response_is_out_of_order(w: World) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b)
    h = i.hello(NOW)
    r.check_hello(h, NOW)
    c = r.challenge(w.state(a.did), NOW)
    with pytest.raises(errors.HandshakeOutOfOrder) as exc:
        i.finish(Session(bytes(16), "", 0, bytes(32)))
    assert reason_of(exc) == "OUT_OF_ORDER"
    with pytest.raises(errors.HandshakeOutOfOrder):
        r.check_hello(h, NOW)  # a second hello on the same stream
    assert c.version == 1


def test_challenge_sent_to_a_responder_is_out_of_order(w: World) -> None:
    a, b = w.identity(), w.identity()
    run = complete(w, *pair(w, a, b, seed="x"))
    _, r = pair(w, a, b, seed="y")
    with pytest.raises(errors.HandshakeOutOfOrder) as exc:
        r.check_hello(run.challenge, NOW)
    assert reason_of(exc) == "OUT_OF_ORDER"


def test_response_after_the_deadline_times_out_and_frees_the_slot(w: World) -> None:
    a, b = w.identity(), w.identity()
    nr = MemoryNonceStore(HandshakeLimits(timeout_ms=500))
    i, r = pair(w, a, b, nr=nr)
    h = i.hello(NOW)
    r.check_hello(h, NOW)
    i.check_challenge(r.challenge(w.state(a.did), NOW), NOW)
    i.verify_challenge(w.state(b.did))
    assert nr.pending_count() == 1
    with pytest.raises(errors.HandshakeTimeout) as exc:
        r.check_response(i.response(), NOW + 501)
    assert reason_of(exc) == "HANDSHAKE_TIMEOUT"
    r.abandon(NOW + 501)
    assert nr.pending_count() == 0


def test_alert_from_the_peer_raises_the_reason_it_names(w: World) -> None:
    a, b = w.identity(), w.identity()
    i, r = pair(w, a, b)
    r.check_hello(i.hello(NOW), NOW)
    r.challenge(w.state(a.did), NOW)
    with pytest.raises(errors.KeyRevoked) as exc:
        r.check_response(Alert("KEY_REVOKED", "your key is revoked"), NOW)
    assert exc.value.details["by"] == "peer"


# --------------------------------------------------------------------------
# Bounds on half-open handshakes
# --------------------------------------------------------------------------


def test_pending_challenges_are_bounded_per_peer_address_and_in_total(w: World) -> None:
    a, b = w.identity(), w.identity()
    store = MemoryNonceStore(HandshakeLimits(max_pending_per_peer=2, max_pending_total=3))
    evicted: list[bytes] = []

    def open_from(peer: str, seed: str) -> Responder:
        i = Initiator(w.local(a), NET, Fresh.draw(det_random(seed + "i")), MemoryNonceStore())
        r = Responder(w.local(b), NET, Fresh.draw(det_random(seed + "r")), store, peer=peer, on_evict=evicted.append)
        r.check_hello(i.hello(NOW), NOW)
        r.challenge(w.state(a.did), NOW)
        return r

    first = open_from("ipv4:10.0.0.1", "1")
    open_from("ipv4:10.0.0.1", "2")
    with pytest.raises(errors.TooManyPending) as exc:
        open_from("ipv4:10.0.0.1", "3")
    assert reason_of(exc) == "TOO_MANY_PENDING"
    open_from("ipv4:10.0.0.2", "4")
    # Full: 10.0.0.3 takes the place of the oldest challenge of 10.0.0.1 (it holds the most).
    open_from("ipv4:10.0.0.3", "5")
    assert evicted == [first.fresh.nonce] and store.pending_count("ipv4:10.0.0.1") == 1
    # Now everyone holds one: an address holding as many as anyone is refused.
    with pytest.raises(errors.TooManyPending):
        open_from("ipv4:10.0.0.2", "6")
    # Expired challenges are purged, freeing the slots.
    store.purge(NOW + 2 * store.limits.timeout_ms + 1)
    assert store.pending_count() == 0
    open_from("ipv4:10.0.0.1", "7")


def test_a_full_nonce_table_refuses_new_hellos_until_entries_expire(w: World) -> None:
    a, b = w.identity(), w.identity()
    store = MemoryNonceStore(HandshakeLimits(max_nonces=4))
    for n in range(2):
        complete(w, *pair(w, a, b, nr=store, seed=f"s{n}"))  # 2 nonces each
    i, r = pair(w, a, b, nr=store, seed="s9")
    r.check_hello(i.hello(NOW), NOW)
    with pytest.raises(errors.TooManyPending) as exc:
        r.challenge(w.state(a.did), NOW)
    assert reason_of(exc) == "TOO_MANY_PENDING"
    i2, r2 = pair(w, a, b, nr=store, seed="s10")
    later = NOW + store.limits.retention_ms + 1
    r2.check_hello(i2.hello(later), later)
    r2.challenge(w.state(a.did), later)  # the expired nonces made room


def test_memory_store_started_late_refuses_older_hellos(w: World) -> None:
    a, b = w.identity(), w.identity()
    store = MemoryNonceStore(not_before_ms=NOW + 10)
    i, r = pair(w, a, b, nr=store)
    r.check_hello(i.hello(NOW), NOW + 20)
    with pytest.raises(errors.HandshakeStale):
        r.challenge(w.state(a.did), NOW + 20)


@pytest.mark.parametrize("ref", ["key-1", "#key-1", "{did}#key-1", "{did}#key-1-jwk"])
def test_local_identity_takes_the_key_id_in_any_form_a_user_copies(ref: str) -> None:
    did = "did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE"
    ident = LocalIdentity.from_seed(did, ref.format(did=did), bytes(32))
    assert ident.key_id == "key-1" and ident.kid == f"{did}#key-1"


def test_local_identity_refuses_a_key_of_another_did() -> None:
    did = "did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE"
    other = "did:dnode:QmW8cXSXwv7SmQQZN99f36wdcCEMJ6hpeV2jA3aZDQ8kgp"
    with pytest.raises(errors.InvalidArgument):
        LocalIdentity.from_seed(did, f"{other}#key-1", bytes(32))
