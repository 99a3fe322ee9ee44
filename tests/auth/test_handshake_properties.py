"""Property: any single-byte change to any of the four handshake messages, on the wire, makes the handshake fail.

The honest handshake is deterministic here (fixed randomness and time), so
each example replays it exactly, with one byte of one serialized message
replaced in flight. Whatever the byte does (breaks the protobuf, changes a
nonce, a DID, a key id, the clock, an attachment, a signature or a MAC,
turns the message into another kind), one of the two sides must raise a
didnode error before both consider the session established.
"""

from __future__ import annotations

from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from didnode.core.handshake import Attachments, Established
from didnode.core.handshake.messages import CredentialRequest
from didnode.errors import DidnodeError
from didnode.wire.handshake import decode, encode
from tests.auth.world import NOW, World, pair

WORLD = World()
A = WORLD.identity()
B = WORLD.identity()
WANT = (CredentialRequest("DeviceAttestationCredential", A.did),)
ATTACHED = Attachments(("eyJhbGciOiJFZERTQSJ9.e30.c2ln",), b'{"type":"didnode/state-proof/v1"}')


def handshake(k: int = -1, mutate: Callable[[bytes], bytes] = lambda b: b) -> tuple[list[bytes], Established, Established]:
    """One deterministic handshake; message ``k`` (0..3) goes through ``mutate`` on the wire."""
    i, r = pair(WORLD, A, B, seed="prop", want=WANT)
    sent: list[bytes] = []

    def wire(msg: object) -> object:
        raw = encode(msg)  # type: ignore[arg-type]
        sent.append(raw)
        return decode(mutate(raw) if len(sent) - 1 == k else raw)

    h = wire(i.hello(NOW))
    r.check_hello(h, NOW)  # type: ignore[arg-type]
    c = wire(r.challenge(WORLD.state(h.initiator_did), NOW, ATTACHED))  # type: ignore[attr-defined]
    i.check_challenge(c, NOW)  # type: ignore[arg-type]
    i.verify_challenge(WORLD.state(c.responder_did))  # type: ignore[attr-defined]
    resp = wire(i.response(ATTACHED))
    r.check_response(resp, NOW)  # type: ignore[arg-type]
    r.recheck(WORLD.state(h.initiator_did))  # type: ignore[attr-defined]
    session, est_r = r.session("eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln", NOW + 900_000)
    i.finish(wire(session))  # type: ignore[arg-type]
    est_i = i.recheck(WORLD.state(c.responder_did))  # type: ignore[attr-defined]
    return sent, est_i, est_r


HONEST, _, _ = handshake()


def test_the_honest_handshake_is_deterministic_and_completes() -> None:
    sent, est_i, est_r = handshake()
    assert sent == HONEST and len(sent) == 4
    assert est_i.session_key == est_r.session_key


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_single_byte_change_of_any_message_fails(data: st.DataObject) -> None:
    k = data.draw(st.integers(0, 3), label="message")
    pos = data.draw(st.integers(0, len(HONEST[k]) - 1), label="position")
    old = HONEST[k][pos]
    new = data.draw(st.integers(0, 255).filter(lambda v: v != old), label="byte")

    def mutate(raw: bytes) -> bytes:
        return raw[:pos] + bytes((new,)) + raw[pos + 1 :]

    with pytest.raises(DidnodeError):
        handshake(k, mutate)


@pytest.mark.parametrize("k", range(4))
def test_every_byte_of_each_message_matters(k: int) -> None:
    """Exhaustive over positions (one flip each): no byte of any message is ignored."""
    for pos in range(len(HONEST[k])):

        def mutate(raw: bytes, pos: int = pos) -> bytes:
            return raw[:pos] + bytes((raw[pos] ^ 0x01,)) + raw[pos + 1 :]

        with pytest.raises(DidnodeError):
            handshake(k, mutate)


@pytest.mark.parametrize("k", range(4))
def test_truncated_and_garbage_messages_fail(k: int) -> None:
    for cut in (0, 1, len(HONEST[k]) // 2, len(HONEST[k]) - 1):
        with pytest.raises(DidnodeError) as exc:
            handshake(k, lambda raw, cut=cut: raw[:cut])
        assert exc.value.reason in ("HANDSHAKE_MALFORMED", "OUT_OF_ORDER")
    with pytest.raises(DidnodeError) as exc:
        handshake(k, lambda raw: b"\xff\xfe garbage \x00\x01" * 3)
    assert exc.value.reason == "HANDSHAKE_MALFORMED"
