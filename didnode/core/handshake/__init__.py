"""Mutual challenge-response authentication between DIDs (pure core).

A SIGMA-style three-message handshake plus a fourth "session" message
(docs/authentication.md): fresh nonces and ephemeral X25519 keys,
transcript signatures binding both identities, the network, the protocol
version and the role, a session key by HKDF over the X25519 secret and the
transcript hash, and key confirmation by HMAC. Modules:

:mod:`.messages`    the messages as values, their limits and schema checks
:mod:`.transcript`  transcript hashes, signing bytes, the key schedule
:mod:`.crypto`      X25519, HKDF-SHA256, HMAC, Ed25519
:mod:`.keycheck`    "is this a current authentication key of that DID?"
:mod:`.nonces`      single-use nonces and pending challenges (interface + memory store)
:mod:`.cookies`     stateless cookies: a responder under load admits only hellos that carry one
:mod:`.machine`     the Initiator and Responder state machines
:mod:`.policy`      which authenticated peers are accepted

No clock, randomness, network or storage here: all are passed in.
"""

from didnode.core.handshake.cookies import CookieJar
from didnode.core.handshake.machine import INITIATOR, RESPONDER, Established, Fresh, Initiator, LocalIdentity, Responder, peer_error
from didnode.core.handshake.messages import (
    NO_ATTACHMENTS,
    PROTOCOL_VERSION,
    Alert,
    Attachments,
    Challenge,
    CredentialRequest,
    Hello,
    Message,
    Response,
    Retry,
    Session,
)
from didnode.core.handshake.nonces import HandshakeLimits, MemoryNonceStore, NonceStore, Origin
from didnode.core.handshake.policy import ACCEPT_ANYONE, Policy, Rule, evaluate, load_policy, parse_policy, require_credentials

__all__ = [
    "ACCEPT_ANYONE",
    "Alert",
    "Attachments",
    "Challenge",
    "CookieJar",
    "CredentialRequest",
    "Established",
    "Fresh",
    "HandshakeLimits",
    "Hello",
    "INITIATOR",
    "Initiator",
    "LocalIdentity",
    "MemoryNonceStore",
    "Message",
    "NO_ATTACHMENTS",
    "NonceStore",
    "Origin",
    "PROTOCOL_VERSION",
    "Policy",
    "RESPONDER",
    "Responder",
    "Response",
    "Retry",
    "Rule",
    "Session",
    "evaluate",
    "load_policy",
    "parse_policy",
    "peer_error",
    "require_credentials",
]
