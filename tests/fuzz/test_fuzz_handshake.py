"""Fuzz targets: the handshake's ``AuthMessage`` in both carriages.

Header carriage (``HandshakeInHeaders``' hello, the challenge in response headers, the
session in the trailer): the raw bytes go through :func:`didnode.wire.handshake.decode`.
Stream carriage: gRPC's deserializer parses the message, then
:func:`~didnode.wire.handshake.message_from_pb`. Either way the schema check
(:func:`~didnode.core.handshake.messages.validate`) follows, as in the state machine.
"""

from __future__ import annotations

import json

from google.protobuf.message import DecodeError

from didnode.api.v1 import auth_pb2 as pb
from didnode.auth.peers import StapledStateVerifier
from didnode.core.proof_bundle import StateProof
from didnode.core.handshake.messages import Alert, Attachments, Challenge, CredentialRequest, Hello, Response, Session, validate
from didnode.errors import HandshakeMalformed
from didnode.wire import handshake as wire
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, T0, world


def _messages() -> list[bytes]:
    w = world()
    a, b = w.admin.did, w.issuer.did
    want = (CredentialRequest("DeviceAttestationCredential", b),)
    att = Attachments((w.tokens[0],), json.dumps({"type": "didnode/state-proof/v1"}).encode())
    msgs = [
        Hello(1, "local", a, "key-1", bytes(range(32)), bytes(32), 1_750_000_000_000, want, b, True),
        Hello(1, "local", a, "key-1", bytes(32), bytes(32), 1),
        Challenge(1, "local", b, "key-1", a, bytes(32), bytes(range(32)), bytes(32), want, att, bytes(64), bytes(32)),
        Response(a, b, bytes(32), bytes(32), att, bytes(64), bytes(32)),
        Session(bytes(16), w.tokens[0], 1_750_000_900_000, bytes(32)),
        Alert("POLICY_REJECTED", "no rule accepts you"),
    ]
    return [wire.encode(m) for m in msgs]


TOKENS = (*DID_TOKENS, "local", "key-1", "DeviceAttestationCredential", "POLICY_REJECTED")


@target("auth_message", seeds=_messages, tokens=TOKENS, max_len=8192)
def fuzz_auth_message(data: bytes) -> None:
    """Header and trailer carriage: the bytes of the didnode-auth-*-bin metadata value."""
    msg = wire.decode(data)
    validate(msg)
    assert wire.decode(wire.encode(msg)) == msg


@target("auth_stream_message", seeds=_messages, tokens=TOKENS, max_len=8192)
def fuzz_auth_stream_message(data: bytes) -> None:
    """Stream carriage: gRPC parses the message (a DecodeError is answered as malformed), then the strict conversion."""
    try:
        m = pb.AuthMessage.FromString(data)
    except DecodeError as exc:
        raise HandshakeMalformed(f"does not parse: {exc}") from None
    validate(wire.message_from_pb(m))


def _stapled_proofs() -> list[bytes]:
    from tests.fuzz.test_fuzz_transparency import _bundles

    return [json.dumps(b.to_json()).encode() for b in _bundles()[1] if isinstance(b, StateProof)]


@target("stapled_state_proof", seeds=_stapled_proofs, tokens=(*TOKENS, '"didnode/state-proof/v1"', '"checkpoint":', '"present":', '"stateRecord":', '"proof":'), max_len=16384)
def fuzz_stapled_state_proof(data: bytes) -> None:
    """A peer's stapled state proof (handshake attachments), checked against a trust policy naming the node key."""
    from didnode.core.trust import TrustedKey, TrustPolicy
    from tests.fuzz.test_fuzz_transparency import KEY, KID

    policy = TrustPolicy.create("local", bytes(32), [TrustedKey(KID, bytes(KEY.verify_key))], max_staleness_ms=3_600_000)
    verifier = StapledStateVerifier(policy)
    for did in {json.loads(s)["did"] for s in _stapled_proofs()}:
        verifier.verify(did, data, T0 + 60_000)


test_fuzz = harness.fuzz_tests(__name__)


REGRESSIONS = {
    # The stapled proof was read with json.loads catching ValueError only: RecursionError.
    "stapled-proof-nested-too-deep": ("stapled_state_proof", b"[" * 100_000),
}
test_regression = harness.regression_tests(REGRESSIONS)
