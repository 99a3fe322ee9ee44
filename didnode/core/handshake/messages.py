"""The handshake's messages as plain values, their limits and their schema checks.

The wire form is protobuf (``proto/didnode/v1/auth.proto``; the transport
converts); these dataclasses mirror it field for field so that the
transcript (:mod:`.transcript`) can be computed from exactly what was
sent. :func:`validate` is the schema: exact byte lengths of nonces, keys,
signatures and MACs, DID and key-id syntax, and a limit on every string and
list. A message that breaks it is :class:`HandshakeMalformed` (or
:class:`HandshakeTooLarge`), never silently truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from didnode.core.did import KEY_ID_RE, validate_did
from didnode.core.operations import NETWORK_RE
from didnode.errors import HandshakeMalformed, HandshakeTooLarge, InvalidDid

PROTOCOL_VERSION = 1
NONCE_BYTES = 32
KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAC_BYTES = 32
SESSION_ID_BYTES = 16

# Limits (docs/authentication.md, "Limits"). A hello carries no attachments,
# so a flood of hellos is cheap to parse; attachments are bounded per message.
MAX_HELLO_BYTES = 2048
MAX_MESSAGE_BYTES = 256 * 1024
MAX_WANT = 8
MAX_TYPE_CHARS = 64
MAX_CREDENTIALS = 8
MAX_CREDENTIAL_CHARS = 16384
MAX_STATE_PROOF_BYTES = 64 * 1024
MAX_ALERT_REASON = 64
MAX_ALERT_MESSAGE = 512
# A responder's cookie is opaque to the initiator (didnode.core.handshake.cookies makes 24-byte ones).
MAX_COOKIE_BYTES = 64


@dataclass(frozen=True, slots=True)
class CredentialRequest:
    """A credential asked of the peer: its type, issued by ``issuer``."""

    type: str
    issuer: str

    def __str__(self) -> str:
        return f"{self.type} from {self.issuer}"


@dataclass(frozen=True, slots=True)
class Attachments:
    """Evidence about the sender: vc+jwt credentials and an optional stapled state proof."""

    credentials: tuple[str, ...] = ()
    state_proof: bytes = b""


NO_ATTACHMENTS = Attachments()


@dataclass(frozen=True, slots=True)
class Hello:
    """Message 1 (initiator -> responder)."""

    version: int
    network: str
    initiator_did: str
    key_id: str
    nonce: bytes
    ephemeral_key: bytes
    time_ms: int
    want: tuple[CredentialRequest, ...] = ()
    responder_did: str = ""
    session_credential: bool = False
    cookie: bytes = b""
    """The responder's cookie from a :class:`Retry`, when this hello is sent again; else empty.
    Not covered by the transcript (H1): the cookie is computed over H1, and only decides whether
    the responder keeps state for this hello (docs/authentication.md, "Floods")."""


@dataclass(frozen=True, slots=True)
class Retry:
    """The responder's stateless answer to a hello while it is under load: send the same hello again with ``cookie``."""

    cookie: bytes


@dataclass(frozen=True, slots=True)
class Challenge:
    """Message 2 (responder -> initiator)."""

    version: int
    network: str
    responder_did: str
    key_id: str
    initiator_did: str
    initiator_nonce: bytes
    nonce: bytes
    ephemeral_key: bytes
    want: tuple[CredentialRequest, ...]
    attachments: Attachments
    signature: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """Message 3 (initiator -> responder)."""

    initiator_did: str
    responder_did: str
    initiator_nonce: bytes
    responder_nonce: bytes
    attachments: Attachments
    signature: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class Session:
    """Message 4 (responder -> initiator) after message 3 verified."""

    session_id: bytes
    credential: str
    expires_ms: int
    mac: bytes


@dataclass(frozen=True, slots=True)
class Alert:
    """Sent instead of the next message by a side that gives up."""

    reason: str
    message: str


Message = Union[Hello, Challenge, Response, Session, Alert, Retry]

KIND = {
    Hello: "hello (message 1)",
    Challenge: "challenge (message 2)",
    Response: "response (message 3)",
    Session: "session (message 4)",
    Alert: "alert",
    Retry: "retry (a cookie for the hello)",
}


def kind(msg: Message) -> str:
    """A human name of the message's kind."""
    return KIND[type(msg)]


# --------------------------------------------------------------------------
# Schema checks
# --------------------------------------------------------------------------


def _bytes(value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise HandshakeMalformed(f"{what} has {len(value)} bytes; it must have {size}", field=what)


# DIDs already found valid: a peer's DID shows up in every one of its
# handshakes, and base58-decoding it each time is a measurable share of a
# handshake's cost. Bounded; cleared when full (a miss only costs a decode).
_VALID_DIDS: dict[str, bool] = {}
_VALID_DIDS_LIMIT = 8192


def _did(value: str, what: str, optional: bool = False) -> None:
    if optional and not value:
        return
    if value in _VALID_DIDS:
        return
    try:
        validate_did(value)
    except InvalidDid as exc:
        raise HandshakeMalformed(f"{what}: {exc}", field=what) from None
    if len(_VALID_DIDS) >= _VALID_DIDS_LIMIT:
        _VALID_DIDS.clear()
    _VALID_DIDS[value] = True


def _key_id(value: str, what: str) -> None:
    if not KEY_ID_RE.fullmatch(value):
        raise HandshakeMalformed(f"{what} {value[:40]!r} is not a key id (1-32 characters of [A-Za-z0-9_-])", field=what)


def _network(value: str) -> None:
    if not NETWORK_RE.fullmatch(value):
        raise HandshakeMalformed(f"network id {value[:40]!r} must match [a-z0-9][a-z0-9-]{{0,31}}", field="network")


def _want(want: tuple[CredentialRequest, ...]) -> None:
    if len(want) > MAX_WANT:
        raise HandshakeTooLarge(f"{len(want)} credential requests; the limit is {MAX_WANT}", field="want")
    for w in want:
        if not w.type or len(w.type) > MAX_TYPE_CHARS or not w.type.isprintable():
            raise HandshakeMalformed(f"credential request type {w.type[:40]!r} must be 1-{MAX_TYPE_CHARS} printable characters", field="want")
        _did(w.issuer, "credential request issuer")


def _attachments(att: Attachments) -> None:
    if len(att.credentials) > MAX_CREDENTIALS:
        raise HandshakeTooLarge(f"{len(att.credentials)} credentials attached; the limit is {MAX_CREDENTIALS}", field="credentials")
    for token in att.credentials:
        if not token or len(token) > MAX_CREDENTIAL_CHARS:
            raise HandshakeTooLarge(
                f"an attached credential has {len(token)} characters; it must have 1-{MAX_CREDENTIAL_CHARS}", field="credentials"
            )
    if len(att.state_proof) > MAX_STATE_PROOF_BYTES:
        raise HandshakeTooLarge(f"the stapled state proof has {len(att.state_proof)} bytes; the limit is {MAX_STATE_PROOF_BYTES}", field="state_proof")


def validate(msg: Message) -> None:
    """Check ``msg`` against the schema; raises :class:`HandshakeMalformed` or :class:`HandshakeTooLarge`.

    Version and network are *not* compared with anything here (that is the
    state machine's job, with their own reason codes); only their syntax is.
    """
    if isinstance(msg, Hello):
        _network(msg.network)
        _did(msg.initiator_did, "initiator_did")
        _key_id(msg.key_id, "key_id")
        _bytes(msg.nonce, NONCE_BYTES, "nonce")
        _bytes(msg.ephemeral_key, KEY_BYTES, "ephemeral_key")
        _want(msg.want)
        _did(msg.responder_did, "responder_did", optional=True)
        if len(msg.cookie) > MAX_COOKIE_BYTES:
            raise HandshakeTooLarge(f"the hello's cookie has {len(msg.cookie)} bytes; the limit is {MAX_COOKIE_BYTES}", field="cookie")
    elif isinstance(msg, Challenge):
        _network(msg.network)
        _did(msg.responder_did, "responder_did")
        _key_id(msg.key_id, "key_id")
        _did(msg.initiator_did, "initiator_did")
        _bytes(msg.initiator_nonce, NONCE_BYTES, "initiator_nonce")
        _bytes(msg.nonce, NONCE_BYTES, "nonce")
        _bytes(msg.ephemeral_key, KEY_BYTES, "ephemeral_key")
        _want(msg.want)
        _attachments(msg.attachments)
        _bytes(msg.signature, SIGNATURE_BYTES, "signature")
        _bytes(msg.mac, MAC_BYTES, "mac")
    elif isinstance(msg, Response):
        _did(msg.initiator_did, "initiator_did")
        _did(msg.responder_did, "responder_did")
        _bytes(msg.initiator_nonce, NONCE_BYTES, "initiator_nonce")
        _bytes(msg.responder_nonce, NONCE_BYTES, "responder_nonce")
        _attachments(msg.attachments)
        _bytes(msg.signature, SIGNATURE_BYTES, "signature")
        _bytes(msg.mac, MAC_BYTES, "mac")
    elif isinstance(msg, Session):
        _bytes(msg.session_id, SESSION_ID_BYTES, "session_id")
        if len(msg.credential) > MAX_CREDENTIAL_CHARS:
            raise HandshakeTooLarge(f"the session credential has {len(msg.credential)} characters; the limit is {MAX_CREDENTIAL_CHARS}")
        if bool(msg.credential) != bool(msg.expires_ms):
            raise HandshakeMalformed("a session message carries a credential and its expiry together, or neither")
        _bytes(msg.mac, MAC_BYTES, "mac")
    elif isinstance(msg, Retry):
        if not msg.cookie or len(msg.cookie) > MAX_COOKIE_BYTES:
            raise HandshakeMalformed(f"a retry's cookie has {len(msg.cookie)} bytes; it must have 1-{MAX_COOKIE_BYTES}", field="cookie")
    elif isinstance(msg, Alert):
        if len(msg.reason) > MAX_ALERT_REASON or len(msg.message) > MAX_ALERT_MESSAGE:
            raise HandshakeTooLarge("an alert's reason or message is over its limit")
    else:  # pragma: no cover - the Message union is closed
        raise HandshakeMalformed(f"not a handshake message: {type(msg).__name__}")
