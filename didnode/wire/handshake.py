"""The handshake's wire form: :mod:`didnode.core.handshake.messages` <-> ``didnode.v1.AuthMessage``, and its gRPC carriage.

Both roles use this module: the method names, the header and trailer keys of
the header carriage and their size bound, and the strict codec.

Decoding is strict: bytes that do not parse, an empty ``oneof``, unknown
fields anywhere (a field this version does not know is not covered by the
transcript, so it is refused rather than ignored) and messages over the
size limits are :class:`~didnode.errors.HandshakeMalformed` /
:class:`~didnode.errors.HandshakeTooLarge`. The schema checks proper
(lengths, DIDs) are the core's (:func:`~didnode.core.handshake.messages.validate`).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import unknown_fields
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as PbMessage

from didnode.api.v1 import auth_pb2 as pb
from didnode.core.handshake.messages import (
    MAX_HELLO_BYTES,
    MAX_MESSAGE_BYTES,
    Alert,
    Attachments,
    Challenge,
    CredentialRequest,
    Hello,
    NO_ATTACHMENTS,
    Message,
    Response,
    Retry,
    Session,
)
from didnode.errors import HandshakeMalformed, HandshakeTooLarge

SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["AuthService"]
METHOD = "/didnode.v1.AuthService/Handshake"
METHOD_IN_HEADERS = "/didnode.v1.AuthService/HandshakeInHeaders"

# Carriage (docs/authentication.md, "On the wire"). Whatever carries a message,
# it is the same serialized AuthMessage, decoded as strictly and checked by the
# same state machine; carriage only decides how many gRPC operations (each a
# batch, a completion and a wake-up of both processes' event loops) a handshake
# costs. Every operation saved is about 20-40 µs of CPU per side.
#
# ``Handshake``: every message is a stream message, except that an initiator
# sending SESSION_IN_TRAILER as request metadata gets the session message in the
# trailing metadata of the OK status (one batch, status + trailer, instead of two).
#
# ``HandshakeInHeaders``: the hello rides in the request headers (a hello is at
# most MAX_HELLO_BYTES, so it always fits), the challenge in the response headers
# and the session in the trailer, each when it has at most MAX_HEADER_MESSAGE_BYTES
# (else it is a stream message, and the receiver takes it from the stream). Only
# the response is always a stream message. A responder without this method (an
# older one) answers UNIMPLEMENTED and the initiator falls back to ``Handshake``.
#
# Both methods: a responder under load answers a hello with a Retry in the trailer
# RETRY_TRAILER_KEY of a RESOURCE_EXHAUSTED status (reason HANDSHAKE_RETRY) and ends
# the call, so that it keeps nothing, not even a stream; the initiator sends the same
# hello with the cookie on a new call. (An initiator that does not know cookies sees
# the status, as it saw TOO_MANY_PENDING before.)
RETRY_TRAILER_KEY = "didnode-auth-retry-bin"
SESSION_IN_TRAILER: tuple[str, str] = ("didnode-auth-session", "trailer")
SESSION_TRAILER_KEY = "didnode-auth-session-bin"
HELLO_HEADER_KEY = "didnode-auth-hello-bin"
CHALLENGE_HEADER_KEY = "didnode-auth-challenge-bin"
# Base64 on the wire makes 4 KiB about 5.5 KB: under gRPC's default 8 KiB limit
# on received metadata, with room for the other headers.
MAX_HEADER_MESSAGE_BYTES = 4096


def metadata_value(metadata: Any, key: str) -> str | bytes | None:
    """The value of ``key`` in gRPC metadata (a sequence of pairs; None counts as empty), or None when absent."""
    for k, v in metadata or ():
        if k == key:
            return v  # type: ignore[no-any-return]
    return None


def _want_out(target: object, want: tuple[CredentialRequest, ...]) -> None:
    add = target.add  # type: ignore[attr-defined]
    for w in want:
        add(type=w.type, issuer=w.issuer)


def _att_out(target: PbMessage, att: Attachments) -> None:
    """Fill ``target.attachments`` unless there are none: the field is then left out (decoded as empty)."""
    if att.credentials or att.state_proof:
        a = target.attachments  # type: ignore[attr-defined]
        a.credentials.extend(att.credentials)
        a.state_proof = att.state_proof


# Fields are set one by one on the oneof member: with upb this is about twice as
# fast as building nested messages from keyword arguments, and a handshake encodes
# two messages per side. Proto3 leaves default values (0, "", b"", False) out
# either way, so the bytes are the same (tests/auth check against the keyword form).


def message_to_pb(msg: Message) -> pb.AuthMessage:
    """The protobuf form of a handshake message."""
    out = pb.AuthMessage()
    if isinstance(msg, Challenge):
        c = out.challenge
        c.SetInParent()  # present even when every field is a default (the oneof says which message)
        c.version = msg.version
        c.network = msg.network
        c.responder_did = msg.responder_did
        c.key_id = msg.key_id
        c.initiator_did = msg.initiator_did
        c.initiator_nonce = msg.initiator_nonce
        c.nonce = msg.nonce
        c.ephemeral_key = msg.ephemeral_key
        if msg.want:
            _want_out(c.want, msg.want)
        _att_out(c, msg.attachments)
        c.signature = msg.signature
        c.mac = msg.mac
    elif isinstance(msg, Hello):
        h = out.hello
        h.SetInParent()  # present even when every field is a default (the oneof says which message)
        h.version = msg.version
        h.network = msg.network
        h.initiator_did = msg.initiator_did
        h.key_id = msg.key_id
        h.nonce = msg.nonce
        h.ephemeral_key = msg.ephemeral_key
        h.time_ms = msg.time_ms
        if msg.want:
            _want_out(h.want, msg.want)
        h.responder_did = msg.responder_did
        h.session_credential = msg.session_credential
        h.cookie = msg.cookie
    elif isinstance(msg, Response):
        r = out.response
        r.SetInParent()  # present even when every field is a default (the oneof says which message)
        r.initiator_did = msg.initiator_did
        r.responder_did = msg.responder_did
        r.initiator_nonce = msg.initiator_nonce
        r.responder_nonce = msg.responder_nonce
        _att_out(r, msg.attachments)
        r.signature = msg.signature
        r.mac = msg.mac
    elif isinstance(msg, Session):
        se = out.session
        se.SetInParent()  # present even when every field is a default (the oneof says which message)
        se.session_id = msg.session_id
        se.credential = msg.credential
        se.expires_ms = msg.expires_ms
        se.mac = msg.mac
    elif isinstance(msg, Retry):
        rt = out.retry
        rt.SetInParent()  # present even when every field is a default (the oneof says which message)
        rt.cookie = msg.cookie
    else:
        a = out.alert
        a.SetInParent()  # present even when every field is a default (the oneof says which message)
        a.reason = msg.reason
        a.message = msg.message
    return out


def encode(msg: Message) -> bytes:
    """Serialized ``AuthMessage`` bytes of ``msg``."""
    return message_to_pb(msg).SerializeToString()


def _no_unknown(m: PbMessage, what: str) -> None:
    if len(unknown_fields.UnknownFieldSet(m)):
        raise HandshakeMalformed(f"the {what} carries fields this protocol version does not define")


def _want_in(items: object, what: str) -> tuple[CredentialRequest, ...]:
    out = []
    for w in items:  # type: ignore[attr-defined]
        _no_unknown(w, what)
        out.append(CredentialRequest(w.type, w.issuer))
    return tuple(out)


def _att_in(parent: PbMessage, what: str) -> Attachments:
    # An absent submessage is the empty one (the encoder omits empty attachments).
    if not parent.HasField("attachments"):
        return NO_ATTACHMENTS
    m = parent.attachments  # type: ignore[attr-defined]
    _no_unknown(m, what)
    if not m.credentials and not m.state_proof:
        return NO_ATTACHMENTS
    return Attachments(tuple(m.credentials), m.state_proof)


def message_from_pb(m: pb.AuthMessage) -> Message:
    """The core message of a parsed ``AuthMessage``; raises :class:`HandshakeMalformed` / :class:`HandshakeTooLarge`."""
    which = m.WhichOneof("body")
    if which is None:
        raise HandshakeMalformed("the handshake message is empty (no hello, challenge, response, session, alert or retry)")
    size = m.ByteSize()
    limit = MAX_HELLO_BYTES if which == "hello" else MAX_MESSAGE_BYTES
    if size > limit:
        raise HandshakeTooLarge(f"the {which} message has {size} bytes; the limit is {limit}", field=which)
    _no_unknown(m, "message")
    body = getattr(m, which)
    _no_unknown(body, which)
    if which == "hello":
        h = m.hello
        return Hello(
            h.version,
            h.network,
            h.initiator_did,
            h.key_id,
            h.nonce,
            h.ephemeral_key,
            h.time_ms,
            _want_in(h.want, which) if h.want else (),
            h.responder_did,
            h.session_credential,
            h.cookie,
        )
    if which == "challenge":
        c = m.challenge
        return Challenge(
            c.version,
            c.network,
            c.responder_did,
            c.key_id,
            c.initiator_did,
            c.initiator_nonce,
            c.nonce,
            c.ephemeral_key,
            _want_in(c.want, which) if c.want else (),
            _att_in(c, which),
            c.signature,
            c.mac,
        )
    if which == "response":
        r = m.response
        return Response(r.initiator_did, r.responder_did, r.initiator_nonce, r.responder_nonce, _att_in(r, which), r.signature, r.mac)
    if which == "session":
        s = m.session
        return Session(s.session_id, s.credential, s.expires_ms, s.mac)
    if which == "retry":
        return Retry(m.retry.cookie)
    a = m.alert
    return Alert(a.reason, a.message)


def decode(raw: bytes) -> Message:
    """Parse serialized ``AuthMessage`` bytes strictly (see the module docstring)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise HandshakeTooLarge(f"the handshake message has {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        m = pb.AuthMessage.FromString(raw)
    except DecodeError as exc:
        raise HandshakeMalformed(f"the handshake message does not parse: {exc or 'truncated or garbage bytes'}") from None
    return message_from_pb(m)
