"""Authentication errors: every way the mutual handshake fails (docs/authentication.md).

Part of the one error tree: import from :mod:`didnode.errors`.
"""

from __future__ import annotations

from didnode.errors.base import InvalidInput, ResourceExhausted, Unauthorized
from didnode.errors.ledger import DidDeactivated, InvalidKey, InvalidSignature, KeyRevoked, KeyRotated, MalformedMessage, TooLarge, UnknownDid, UnknownKey, WrongNetwork
from didnode.errors.credentials import StaleRequest

# --------------------------------------------------------------------------
# Authentication: the mutual handshake (didnode.core.handshake;
# docs/authentication.md).
#
# Every way a handshake fails has its own code, and AuthenticationFailed is
# their common base, so ``except AuthenticationFailed`` catches every verdict
# a handshake can reach locally. Where the fact is one the ledger or the
# protocol already names (another network, a rotated or revoked key, a
# deactivated or unknown DID, a malformed message, a bad signature, a stale
# timestamp), the class subclasses that class too, and still has a code of its
# own (PEER_KEY_REVOKED, HANDSHAKE_MALFORMED, ...): the peer that receives the
# code over gRPC rebuilds exactly this class, which is also the ledger class.
# --------------------------------------------------------------------------


class AuthenticationFailed(Unauthorized):
    """A mutual-authentication handshake failed; the subclass says why."""

    reason = "AUTHENTICATION_FAILED"


class HandshakeReplay(AuthenticationFailed):
    """A handshake message carries a nonce that an earlier handshake already used (a replayed message 1, 2 or 3)."""

    reason = "REPLAY"


class HandshakeReflection(AuthenticationFailed):
    """A party's own message, DID, nonce or ephemeral key came back to it as if it were the peer's."""

    reason = "REFLECTION"


class IdentityMisbinding(AuthenticationFailed):
    """A message was made for another peer or another session: its identities or echoed nonces are not this handshake's."""

    reason = "MISBINDING"


class KeyConfirmationFailed(AuthenticationFailed):
    """The peer's MAC does not verify under the key derived from this handshake's X25519 secret."""

    reason = "KEY_CONFIRMATION_FAILED"


class NotAnAuthenticationKey(AuthenticationFailed):
    """The peer signs with a key that is not one of its authentication keys (a key-agreement or assertion-only key)."""

    reason = "NOT_AN_AUTHENTICATION_KEY"


class CredentialRequired(AuthenticationFailed):
    """The verifier's policy requires a credential (type and issuer) that the peer did not present."""

    reason = "CREDENTIAL_REQUIRED"


class PolicyRejected(AuthenticationFailed):
    """The peer authenticated, but no rule of the verifier's policy accepts it (DID, controller, credential)."""

    reason = "POLICY_REJECTED"


class HandshakeTimeout(AuthenticationFailed):
    """The handshake did not complete within its time limit; the half-open handshake was dropped."""

    reason = "HANDSHAKE_TIMEOUT"


class HandshakeOutOfOrder(InvalidInput, AuthenticationFailed):
    """A handshake message arrived in a state that does not expect it (message 3 first, a second hello, ...)."""

    reason = "OUT_OF_ORDER"


class UnsupportedVersion(InvalidInput, AuthenticationFailed):
    """The peer speaks a handshake protocol version this side does not."""

    reason = "UNSUPPORTED_VERSION"


class TooManyPending(ResourceExhausted, AuthenticationFailed):
    """Too many half-open handshakes from this peer address or in total, or the nonce store is full; retry later.
    Also the end of a half-open handshake that gave its place to a newer one (every slot taken, its address holding the most)."""

    reason = "TOO_MANY_PENDING"


class PeerWrongNetwork(WrongNetwork, AuthenticationFailed):
    """The peer's handshake names another network."""

    reason = "PEER_WRONG_NETWORK"


class PeerKeyRotated(KeyRotated, AuthenticationFailed):
    """The peer signs with a key rotated out on the ledger."""

    reason = "PEER_KEY_ROTATED"


class PeerKeyRevoked(KeyRevoked, AuthenticationFailed):
    """The peer signs with a key revoked on the ledger."""

    reason = "PEER_KEY_REVOKED"


class PeerDeactivated(DidDeactivated, AuthenticationFailed):
    """The peer's DID is deactivated."""

    reason = "PEER_DEACTIVATED"


class PeerUnknown(UnknownDid, AuthenticationFailed):
    """The peer's DID does not exist on the ledger."""

    reason = "PEER_UNKNOWN"


class PeerUnknownKey(UnknownKey, AuthenticationFailed):
    """The peer names a key id its DID never had."""

    reason = "PEER_UNKNOWN_KEY"


class PeerInvalidKey(InvalidKey, AuthenticationFailed):
    """The peer's ephemeral X25519 key is a low-order point."""

    reason = "PEER_INVALID_KEY"


class HandshakeMalformed(MalformedMessage, AuthenticationFailed):
    """A handshake message is truncated, garbage, or breaks the schema."""

    reason = "HANDSHAKE_MALFORMED"


class HandshakeTooLarge(TooLarge, AuthenticationFailed):
    """A handshake message or one of its fields is over its limit."""

    reason = "HANDSHAKE_TOO_LARGE"


class HandshakeBadSignature(InvalidSignature, AuthenticationFailed):
    """The peer's transcript signature does not verify."""

    reason = "HANDSHAKE_BAD_SIGNATURE"


class HandshakeStale(StaleRequest, AuthenticationFailed):
    """A hello's timestamp is outside the responder's replay window."""

    reason = "HANDSHAKE_STALE"


class HandshakeRetry(TooManyPending):
    """The responder is under load: it kept no state for this hello and sent a cookie; send the same hello again with it.

    Carries the responder's ``Retry`` message (docs/authentication.md, "Floods"); the SDK's initiator
    resends its hello with the cookie by itself. An initiator that does not know cookies sees a
    ``RESOURCE_EXHAUSTED`` status, as it saw ``TOO_MANY_PENDING`` before.
    """

    reason = "HANDSHAKE_RETRY"
