"""The signed request for a node session credential (until the handshake replaces it).

A caller proves control of the subject DID by signing, with a *current
authentication key* of that DID, the bytes::

    b"didnode/session-credential-request/v1\\x00" || network || b"\\x00" || request

where ``request`` is the RFC 8785 canonical JSON object::

    {"claims": {...}, "lifetime": SECONDS, "node": NODE_DID,
     "nonce": 32 lowercase hex chars, "subject": DID, "timestamp": MS}

The context string keeps the signature useless to every other didnode
protocol (operations, handshakes, checkpoints); ``network`` and ``node``
bind it to one ledger and one node (a request sent to node A cannot be
replayed to node B); ``timestamp`` must be within
:data:`REQUEST_WINDOW_MS` of the node's clock and ``nonce`` is accepted once
within that window, so a captured request cannot be replayed either.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from nacl.signing import SigningKey

from didnode.core import canonical
from didnode.core.did import validate_did
from didnode.errors import InvalidArgument, MalformedMessage, MalformedOperation, NonCanonicalEncoding, TooLarge

CONTEXT = b"didnode/session-credential-request/v1\x00"
REQUEST_WINDOW_MS = 60_000
MAX_REQUEST_BYTES = 4096
MAX_CLAIMS_BYTES = 2048
RESERVED_CLAIMS = frozenset({"id"})
_NONCE_RE = re.compile(r"[0-9a-f]{32}")
_MEMBERS = frozenset({"claims", "lifetime", "node", "nonce", "subject", "timestamp"})


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """A parsed (not yet authorized) session credential request."""

    subject: str
    node: str
    timestamp: int
    nonce: str
    lifetime: int
    claims: dict[str, Any]
    payload: bytes


def signing_bytes(network: str, payload: bytes) -> bytes:
    """What the subject's authentication key signs."""
    return CONTEXT + network.encode() + b"\x00" + payload


def build_request(subject: str, node_did: str, now_ms: int, claims: Mapping[str, Any] | None = None, lifetime_s: int = 0) -> bytes:
    """Canonical request bytes (a fresh random nonce); ``lifetime_s`` 0 asks for the node's default."""
    body = {
        "claims": dict(claims or {}),
        "lifetime": lifetime_s,
        "node": node_did,
        "nonce": os.urandom(16).hex(),
        "subject": subject,
        "timestamp": now_ms,
    }
    canonical.check_value(body)
    return canonical.encode(body)


def sign_request(network: str, payload: bytes, key: SigningKey) -> bytes:
    """The subject's signature over a request."""
    return key.sign(signing_bytes(network, payload)).signature


def parse_request(payload: bytes) -> SessionRequest:
    """Parse request bytes; raises :class:`MalformedMessage`, :class:`TooLarge` or :class:`InvalidArgument`."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise TooLarge(f"session request is {len(payload)} bytes; the limit is {MAX_REQUEST_BYTES}", field="request")
    try:
        body = canonical.decode_canonical(payload)
    except NonCanonicalEncoding:
        raise MalformedMessage("session request is not RFC 8785 canonical JSON") from None
    except MalformedOperation as exc:
        raise MalformedMessage(f"session request does not parse: {exc}") from None
    if not isinstance(body, dict) or set(body) != _MEMBERS:
        raise MalformedMessage(f"session request must have exactly the members {', '.join(sorted(_MEMBERS))}")
    subject = validate_did(body["subject"])
    node = validate_did(body["node"])
    ts, lifetime, nonce, claims = body["timestamp"], body["lifetime"], body["nonce"], body["claims"]
    if type(ts) is not int or type(lifetime) is not int or lifetime < 0:
        raise MalformedMessage("timestamp and lifetime must be non-negative integers")
    if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise MalformedMessage("nonce must be 32 lowercase hex characters (16 random bytes)")
    if not isinstance(claims, dict):
        raise MalformedMessage("claims must be a JSON object")
    if RESERVED_CLAIMS & claims.keys():
        raise InvalidArgument("claims must not contain 'id': the subject is the requester")
    if len(canonical.encode(claims)) > MAX_CLAIMS_BYTES:
        raise TooLarge(f"session claims are over {MAX_CLAIMS_BYTES} bytes", field="claims")
    return SessionRequest(subject, node, ts, nonce, lifetime, claims, payload)
