"""The handshake's protobuf encoder sets fields one by one (for speed): its bytes must be what the
plain keyword construction of the generated messages gives, and decode must invert it."""

from __future__ import annotations

import pytest

from didnode.api.v1 import auth_pb2 as pb
from didnode.core.handshake.messages import Alert, Attachments, Challenge, CredentialRequest, Hello, Message, Response, Retry, Session
from didnode.wire.handshake import decode, encode

DID_A = "did:dnode:QmVx4f4zx2hASVz3CocsYCGJ5gCfEQt2mUA73kz1LYtBMR"
DID_B = "did:dnode:QmYL6nG3eB78BrvbeFW2N63cULTgiwM4gHtTczk5dWEPVB"
WANT = (CredentialRequest("DeviceAttestationCredential", DID_B), CredentialRequest("NodeSessionCredential", DID_A))
ATT = Attachments(("a.b.c", "d.e.f"), b'{"proof":1}')


def reference(msg: Message) -> bytes:
    """The keyword form, as the encoder was first written."""

    def want(w: tuple[CredentialRequest, ...]) -> list[pb.CredentialRequest]:
        return [pb.CredentialRequest(type=x.type, issuer=x.issuer) for x in w]

    def att(a: Attachments) -> pb.Attachments | None:
        return pb.Attachments(credentials=list(a.credentials), state_proof=a.state_proof) if (a.credentials or a.state_proof) else None

    if isinstance(msg, Hello):
        m = pb.AuthMessage(hello=pb.Hello(version=msg.version, network=msg.network, initiator_did=msg.initiator_did, key_id=msg.key_id,
                                          nonce=msg.nonce, ephemeral_key=msg.ephemeral_key, time_ms=msg.time_ms, want=want(msg.want),
                                          responder_did=msg.responder_did, session_credential=msg.session_credential, cookie=msg.cookie))
    elif isinstance(msg, Challenge):
        m = pb.AuthMessage(challenge=pb.Challenge(version=msg.version, network=msg.network, responder_did=msg.responder_did, key_id=msg.key_id,
                                                  initiator_did=msg.initiator_did, initiator_nonce=msg.initiator_nonce, nonce=msg.nonce,
                                                  ephemeral_key=msg.ephemeral_key, want=want(msg.want), attachments=att(msg.attachments),
                                                  signature=msg.signature, mac=msg.mac))
    elif isinstance(msg, Response):
        m = pb.AuthMessage(response=pb.Response(initiator_did=msg.initiator_did, responder_did=msg.responder_did, initiator_nonce=msg.initiator_nonce,
                                                responder_nonce=msg.responder_nonce, attachments=att(msg.attachments), signature=msg.signature, mac=msg.mac))
    elif isinstance(msg, Session):
        m = pb.AuthMessage(session=pb.Session(session_id=msg.session_id, credential=msg.credential, expires_ms=msg.expires_ms, mac=msg.mac))
    elif isinstance(msg, Retry):
        m = pb.AuthMessage(retry=pb.Retry(cookie=msg.cookie))
    else:
        assert isinstance(msg, Alert)
        m = pb.AuthMessage(alert=pb.Alert(reason=msg.reason, message=msg.message))
    return m.SerializeToString()


MESSAGES: list[Message] = [
    Hello(1, "local", DID_A, "key-1", b"n" * 32, b"x" * 32, 1_700_000_000_000),
    Hello(1, "local", DID_A, "key-1", b"n" * 32, b"x" * 32, 1_700_000_000_000, WANT, DID_B, True),
    Hello(0, "", "", "", b"", b"", 0),
    Challenge(1, "local", DID_B, "key-2", DID_A, b"n" * 32, b"m" * 32, b"y" * 32, (), Attachments(), b"s" * 64, b"c" * 32),
    Challenge(1, "local", DID_B, "key-2", DID_A, b"n" * 32, b"m" * 32, b"y" * 32, WANT, ATT, b"s" * 64, b"c" * 32),
    Challenge(0, "", "", "", "", b"", b"", b"", (), Attachments(), b"", b""),
    Response(DID_A, DID_B, b"n" * 32, b"m" * 32, Attachments(), b"s" * 64, b"c" * 32),
    Response(DID_A, DID_B, b"n" * 32, b"m" * 32, Attachments((), b"p"), b"s" * 64, b"c" * 32),
    Response("", "", b"", b"", Attachments(), b"", b""),
    Session(b"i" * 16, "", 0, b"c" * 32),
    Session(b"i" * 16, "a.b.c", 1_700_000_900_000, b"c" * 32),
    Session(b"", "", 0, b""),
    Alert("KEY_REVOKED", "revoked"),
    Alert("", ""),
    Hello(1, "local", DID_A, "key-1", b"n" * 32, b"x" * 32, 1_700_000_000_000, WANT, DID_B, True, b"k" * 24),
    Retry(b"k" * 24),
    Retry(b""),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_encoder_bytes_equal_the_keyword_construction_and_decode_inverts_them(msg: Message) -> None:
    raw = encode(msg)
    assert raw == reference(msg)
    assert pb.AuthMessage.FromString(raw).WhichOneof("body") == type(msg).__name__.lower()
    assert decode(raw) == msg  # decoding is strict about the wire only; the schema is the state machine's check
