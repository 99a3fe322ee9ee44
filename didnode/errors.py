"""The one error tree of didnode.

Every failure that crosses a module boundary is an instance of
:class:`DidnodeError`. Each concrete class carries a stable, machine-readable
``reason`` (UPPER_SNAKE_CASE) that travels over gRPC inside a
``google.rpc.ErrorInfo`` and is turned back into the same class by the client
(:func:`error_for_reason`). The category classes (``InvalidInput``,
``NotFound``, ...) are what the transport maps to gRPC status codes, in one
table (``didnode.wire.status``).

Rules: raise the most specific class; never return ``None``/``False`` to
signal failure; messages are one line, precise, and name the offending value.
"""

from __future__ import annotations

from typing import ClassVar, Mapping

_BY_REASON: dict[str, type["DidnodeError"]] = {}


class DidnodeError(Exception):
    """Base of every didnode error.

    ``details`` are short string key/values (a position, a key id, the field
    that was too large) that travel with the error as ErrorInfo metadata.
    """

    reason: ClassVar[str] = "DIDNODE_ERROR"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Only classes that declare their own reason are registered, so that
        # category classes without one never shadow a concrete class.
        if "reason" in cls.__dict__:
            existing = _BY_REASON.get(cls.reason)
            if existing is not None and existing is not cls:
                raise TypeError(f"reason {cls.reason} is used by {existing.__name__} and {cls.__name__}")
            _BY_REASON[cls.reason] = cls

    def __init__(self, message: str, **details: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, str] = {k: str(v) for k, v in details.items()}

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason})"


def error_for_reason(reason: str, message: str, details: Mapping[str, str] | None = None) -> DidnodeError:
    """Rebuild the exception a peer raised from its reason code.

    Unknown reasons (a newer server) become a plain :class:`DidnodeError`
    whose ``reason`` attribute still says what the server said.
    """
    cls = _BY_REASON.get(reason)
    if cls is None:
        err = DidnodeError(message, **dict(details or {}))
        err.reason = reason  # type: ignore[misc]  # instance-level override for an unknown code
        return err
    return cls(message, **dict(details or {}))


def all_reasons() -> dict[str, type[DidnodeError]]:
    """Every registered reason code and its class (for docs and tests)."""
    return dict(_BY_REASON)


# --------------------------------------------------------------------------
# Categories: the transport maps these (not the leaves) to gRPC codes.
# --------------------------------------------------------------------------


class InvalidInput(DidnodeError):
    """The request itself is wrong; retrying it unchanged can never succeed."""

    reason = "INVALID_INPUT"


class NotFound(DidnodeError):
    """The thing named does not exist (yet) on this node."""

    reason = "NOT_FOUND"


class Conflict(DidnodeError):
    """The request is well formed but conflicts with the current ledger state."""

    reason = "CONFLICT"


class Unauthorized(DidnodeError):
    """A signature, key or proof does not authorize what was asked."""

    reason = "UNAUTHORIZED"


class ResourceExhausted(DidnodeError):
    """A bound on pending work, sizes or rates was hit; retry later or smaller."""

    reason = "RESOURCE_EXHAUSTED"


class Unavailable(DidnodeError):
    """The node (or its ordering service) cannot be reached right now."""

    reason = "UNAVAILABLE"


class Internal(DidnodeError):
    """A bug or a corrupted store; never the caller's fault."""

    reason = "INTERNAL"


class LocalError(DidnodeError):
    """Errors that only ever happen on the client side (keystore, files)."""

    reason = "LOCAL_ERROR"


# --------------------------------------------------------------------------
# Input: identifiers, encodings, schema, sizes.
# --------------------------------------------------------------------------


class InvalidDid(InvalidInput):
    """Not a syntactically valid ``did:dnode`` identifier or DID URL."""

    reason = "INVALID_DID"


class MalformedOperation(InvalidInput):
    """The operation bytes are not a valid operation of the method's schema."""

    reason = "MALFORMED_OPERATION"


class NonCanonicalEncoding(MalformedOperation):
    """The operation is valid JSON but not its RFC 8785 canonical form."""

    reason = "NON_CANONICAL"


class DuplicateJsonKey(MalformedOperation):
    """A JSON object repeats a member name."""

    reason = "DUPLICATE_JSON_KEY"


class TooLarge(InvalidInput):
    """An operation, field, list or message is over the method's size limit."""

    reason = "TOO_LARGE"


class WrongNetwork(InvalidInput):
    """The operation (or message) names another network than this node's."""

    reason = "WRONG_NETWORK"


class InvalidKey(InvalidInput):
    """A public key encoding (Multikey, JWK) is malformed or of the wrong type."""

    reason = "INVALID_KEY"


class InvalidArgument(InvalidInput):
    """A request parameter other than an operation is malformed."""

    reason = "INVALID_ARGUMENT"


class MalformedMessage(InvalidInput):
    """Bytes that should be a protobuf message (or other framing) do not parse."""

    reason = "MALFORMED_MESSAGE"


# --------------------------------------------------------------------------
# Not found.
# --------------------------------------------------------------------------


class UnknownDid(NotFound):
    """The DID has never been created on this ledger."""

    reason = "UNKNOWN_DID"


class UnknownKey(NotFound):
    """The DID has no verification method with that id."""

    reason = "UNKNOWN_KEY"


class UnknownVersion(NotFound):
    """No version of the DID matches the requested versionId / versionTime."""

    reason = "UNKNOWN_VERSION"


class UnknownResource(NotFound):
    """The DID has published no resource with that id."""

    reason = "UNKNOWN_RESOURCE"


class UnknownOperation(NotFound):
    """No log entry has that position or operation hash."""

    reason = "UNKNOWN_OPERATION"


# --------------------------------------------------------------------------
# Conflicts with ledger state.
# --------------------------------------------------------------------------


class DuplicateOperation(Conflict):
    """This exact operation is already on the ledger (a replay or a retry)."""

    reason = "DUPLICATE_OPERATION"


class DidAlreadyExists(Conflict):
    """A create for a DID that already exists."""

    reason = "DID_EXISTS"


class SequenceMismatch(Conflict):
    """``seq`` is not the DID's next sequence number (stale or forked writer)."""

    reason = "SEQUENCE_MISMATCH"


class PrevMismatch(Conflict):
    """``prev`` is not the hash of the DID's last operation: a fork."""

    reason = "PREV_MISMATCH"


class DidDeactivated(Conflict):
    """The DID is deactivated; no operation can follow."""

    reason = "DEACTIVATED"


# --------------------------------------------------------------------------
# Authorization: signatures and key fates.
# --------------------------------------------------------------------------


class InvalidSignature(Unauthorized):
    """A signature does not verify over the operation's signing bytes."""

    reason = "BAD_SIGNATURE"


class MissingSignature(Unauthorized):
    """A signature the method requires for this operation is absent."""

    reason = "MISSING_SIGNATURE"


class WrongSigner(Unauthorized):
    """Signed by a key that is not authorized for this operation type."""

    reason = "WRONG_SIGNER"


class KeyRotated(Unauthorized):
    """The signing key was rotated out; it cannot sign new operations."""

    reason = "KEY_ROTATED"


class KeyRevoked(Unauthorized):
    """The signing key was revoked as compromised; it never verifies again."""

    reason = "KEY_REVOKED"


class NextKeyRequired(Unauthorized):
    """Only the pre-committed next key may sign this (rotation)."""

    reason = "NEXT_KEY_REQUIRED"


class ControllerSignatureMissing(Unauthorized):
    """A named or current controller did not sign."""

    reason = "CONTROLLER_SIGNATURE_MISSING"


# --------------------------------------------------------------------------
# Capacity and availability.
# --------------------------------------------------------------------------


class Overloaded(ResourceExhausted):
    """Too much pending work; back off and retry."""

    reason = "OVERLOADED"


class NodeUnavailable(Unavailable):
    """The node could not be reached or is shutting down."""

    reason = "NODE_UNAVAILABLE"


class StoreCorrupted(Internal):
    """The store holds bytes that do not decode or do not verify."""

    reason = "STORE_CORRUPTED"


# --------------------------------------------------------------------------
# Client-side only.
# --------------------------------------------------------------------------


class KeystoreError(LocalError):
    """The keystore is missing, unreadable or inconsistent."""

    reason = "KEYSTORE_ERROR"


class WrongPassphrase(KeystoreError):
    """The keystore passphrase does not decrypt the keystore."""

    reason = "WRONG_PASSPHRASE"


class KeyNotInKeystore(KeystoreError):
    """The keystore holds no secret for that DID or key."""

    reason = "KEY_NOT_IN_KEYSTORE"


# --------------------------------------------------------------------------
# Keystore.
# --------------------------------------------------------------------------


class KeystoreCorrupted(KeystoreError):
    """A keystore file or sealed bundle does not parse, does not decrypt
    under the right key, or contradicts itself (tampered or foreign)."""

    reason = "KEYSTORE_CORRUPTED"


# --------------------------------------------------------------------------
# Transparency proofs.
# --------------------------------------------------------------------------


class InvalidProof(Unauthorized):
    """A Merkle inclusion, consistency or state-tree proof does not prove
    what it is claimed to prove."""

    reason = "INVALID_PROOF"


class MalformedProof(InvalidProof):
    """A proof's shape is wrong before any hashing: byte length, element
    count, hash size, or sizes/indices out of range for the claim."""

    reason = "MALFORMED_PROOF"


class RootMismatch(InvalidProof):
    """A well-formed proof recomputes a root other than the trusted one."""

    reason = "ROOT_MISMATCH"


# --------------------------------------------------------------------------
# Verifiable credentials (didnode.core.credentials; docs/credentials.md).
#
# Every reason a credential (or a status list credential) is not accepted
# has its own class and code, so that a verifier, a log line or a test can
# tell "expired" from "revoked" from "forged" without parsing messages.
# Two classes reuse the ledger's codes (KEY_REVOKED, KEY_ROTATED,
# BAD_SIGNATURE) because the fact is the same fact; they subclass both the
# ledger class and CredentialInvalid and declare no reason of their own, so
# the reason registry keeps one class per code.
# --------------------------------------------------------------------------


class CredentialInvalid(Unauthorized):
    """A verifiable credential is not acceptable; the subclass says why."""

    reason = "CREDENTIAL_INVALID"


class MalformedCredential(CredentialInvalid):
    """Not a strict JWS compact serialization (three unpadded base64url parts, JSON header and payload)."""

    reason = "MALFORMED_CREDENTIAL"


class TokenTooLarge(CredentialInvalid):
    """The token is longer than the verifier's limit (checked before any decoding)."""

    reason = "TOKEN_TOO_LARGE"


class AlgNotAllowed(CredentialInvalid):
    """The JOSE ``alg`` is not in the policy (``none``, HMAC and every algorithm but EdDSA)."""

    reason = "ALG_NOT_ALLOWED"


class TypNotAllowed(CredentialInvalid):
    """The JOSE ``typ`` is missing or is not ``vc+jwt``: a token of another kind."""

    reason = "TYP_NOT_ALLOWED"


class HeaderNotAllowed(CredentialInvalid):
    """The JOSE header has a member outside the profile (``crit``, ``jwk``, ``jku``, ``x5c``, ``b64``, ...)."""

    reason = "HEADER_NOT_ALLOWED"


class KidMissing(CredentialInvalid):
    """The JOSE header names no ``kid``."""

    reason = "KID_MISSING"


class KidForeign(CredentialInvalid):
    """The ``kid`` is not a ``did:dnode`` DID URL with a key fragment (another method, a URL, a thumbprint)."""

    reason = "KID_FOREIGN"


class KidNotIssuer(CredentialInvalid):
    """The ``kid`` names a key of another DID than the credential's issuer."""

    reason = "KID_NOT_ISSUER"


class KidUnknown(CredentialInvalid):
    """The issuer has never had a signing key with the ``kid``'s fragment."""

    reason = "KID_UNKNOWN"


class KeyNotAssertionMethod(CredentialInvalid):
    """The signing key is not an assertionMethod key of the issuer."""

    reason = "KEY_NOT_ASSERTION_METHOD"


class KeyNotValidAtIssuance(CredentialInvalid):
    """The credential claims to be signed before its key was installed on the ledger."""

    reason = "KEY_NOT_VALID_AT_ISSUANCE"


class CredentialKeyRotated(KeyRotated, CredentialInvalid):
    """Signed by a key rotated out before the credential's claimed signing time."""

    reason = "CREDENTIAL_KEY_ROTATED"


class CredentialKeyRevoked(KeyRevoked, CredentialInvalid):
    """Signed by a key revoked as compromised: it verifies nothing."""

    reason = "CREDENTIAL_KEY_REVOKED"


class CredentialBadSignature(InvalidSignature, CredentialInvalid):
    """The JWS signature does not verify: header or payload was altered, or forged."""

    reason = "CREDENTIAL_BAD_SIGNATURE"


class IssuerUnknown(CredentialInvalid):
    """The issuer DID does not exist on the ledger."""

    reason = "ISSUER_UNKNOWN"


class IssuerDeactivated(CredentialInvalid):
    """The issuer DID is deactivated: none of its credentials verifies any more."""

    reason = "ISSUER_DEACTIVATED"


class IssuerNotExpected(CredentialInvalid):
    """Validly issued, but not by the issuer the verifier requires."""

    reason = "ISSUER_NOT_EXPECTED"


class ClaimsInvalid(CredentialInvalid):
    """The payload is not a VC Data Model 2.0 credential of the profile, or JWT claims contradict it."""

    reason = "CLAIMS_INVALID"


class TypeNotExpected(CredentialInvalid):
    """Valid, but not of the credential type the verifier requires."""

    reason = "TYPE_NOT_EXPECTED"


class CredentialExpired(CredentialInvalid):
    """Now is at or past ``validUntil`` (plus the allowed clock skew)."""

    reason = "EXPIRED"


class CredentialNotYetValid(CredentialInvalid):
    """Now is before ``validFrom`` (or the claimed signing time) minus the allowed clock skew."""

    reason = "NOT_YET_VALID"


class SubjectMismatch(CredentialInvalid):
    """``credentialSubject.id`` is not the DID the verifier expects (the presenter)."""

    reason = "SUBJECT_MISMATCH"


class CredentialRevoked(CredentialInvalid):
    """The credential's bit in its issuer's revocation status list is set."""

    reason = "REVOKED"


class CredentialSuspended(CredentialInvalid):
    """The credential's bit in its issuer's suspension status list is set."""

    reason = "SUSPENDED"


class StatusListForeignSigner(CredentialInvalid):
    """The status list credential is issued or signed by another DID than the credential's issuer."""

    reason = "STATUS_LIST_FOREIGN_SIGNER"


class StatusListStale(CredentialInvalid):
    """The status list credential is older than the verifier's freshness policy (or past its validUntil)."""

    reason = "STATUS_LIST_STALE"


class StatusListInvalid(CredentialInvalid):
    """The status list credential does not verify or does not fit the entry (purpose, index, encoding)."""

    reason = "STATUS_LIST_INVALID"


class StatusListNotFound(CredentialInvalid):
    """The status list the credential names was never published."""

    reason = "STATUS_LIST_NOT_FOUND"


class StaleRequest(Unauthorized):
    """A signed request's timestamp is outside the accepted window (replay protection)."""

    reason = "STALE_REQUEST"


class ReplayedRequest(Unauthorized):
    """A signed request's nonce was already used."""

    reason = "REPLAYED_REQUEST"


# --------------------------------------------------------------------------
# Transparency: checkpoints and the audit.
# --------------------------------------------------------------------------


class BadCheckpointSignature(InvalidProof):
    """A signed checkpoint does not verify under the signer key the verifier
    trusts (wrong key, altered field, bad signature, or a kid that names
    another signer)."""

    reason = "BAD_CHECKPOINT_SIGNATURE"


class StaleCheckpoint(InvalidProof):
    """A checkpoint is older than the verifier's staleness bound (or is
    dated in the future beyond the allowed clock skew)."""

    reason = "STALE_CHECKPOINT"


class ProofClaimMismatch(InvalidProof):
    """A proof bundle is internally inconsistent: its parts verify, but they
    do not describe the claim (an entry at another position, a state record of
    another DID, a proof for another tree size or network than the checkpoint)."""

    reason = "PROOF_CLAIM_MISMATCH"


class NoCheckpoint(NotFound):
    """The node holds no signed checkpoint at the requested tree size."""

    reason = "NO_CHECKPOINT"


class AuditFailed(StoreCorrupted):
    """The audit of a node's store found bytes that the log does not justify.

    ``details`` carry ``position`` (the first bad log position, when one can be
    named) and ``check`` (which check failed)."""

    reason = "AUDIT_FAILED"


# --------------------------------------------------------------------------
# Authentication: the mutual handshake (didnode.core.handshake;
# docs/authentication.md).
#
# Every way a handshake fails has its own code, and AuthenticationFailed is
# their common base, so ``except AuthenticationFailed`` catches every verdict
# a handshake can reach locally. Where the fact is one the ledger or the
# protocol already names (another network, a rotated or revoked key, a
# deactivated or unknown DID, a malformed message, a bad signature, a stale
# timestamp), the class subclasses that class too and declares no reason of
# its own, like the credential classes above: one class per code in the
# registry, and the peer that receives the code over gRPC rebuilds the
# ledger class.
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
    """Too many half-open handshakes from this peer address or in total, or the nonce store is full; retry later."""

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


# --------------------------------------------------------------------------
# Cluster: the JetStream orderer (didnode.ledger.cluster; docs/cluster.md).
# --------------------------------------------------------------------------


class ClusterUnavailable(Unavailable):
    """The node cannot reach its NATS JetStream cluster, or the stream has no
    leader right now; reads keep working, writes are refused until it is back."""

    reason = "CLUSTER_UNAVAILABLE"


class WriteConflict(Conflict):
    """Concurrent writes to the same DID kept winning the per-DID compare-and-set
    (``Nats-Expected-Last-Subject-Sequence``); rebuild the operation on the new state."""

    reason = "WRITE_CONFLICT"


class WrongSubject(MalformedOperation):
    """A stream message carries an operation of another DID than its subject
    names (only a foreign publisher can cause this); every node rejects it alike."""

    reason = "WRONG_SUBJECT"


class StreamMismatch(StoreCorrupted):
    """The store was built from another stream (or in embedded mode) than the
    one the node is told to follow; it will not mix the two histories."""

    reason = "STREAM_MISMATCH"


# --------------------------------------------------------------------------
# Provisioning: `didctl provision` (didnode.provisioning; docs/provisioning.md).
# --------------------------------------------------------------------------


class ProvisioningError(LocalError):
    """A factory provisioning run or fleet transfer cannot go on; the subclass says why."""

    reason = "PROVISIONING_ERROR"


class RunMismatch(ProvisioningError):
    """The output directory (or transfer journal) belongs to a run with other
    arguments, network or keystore; resume it with the same ones or use a new directory."""

    reason = "RUN_MISMATCH"


class RunLocked(ProvisioningError):
    """Another process holds the run's journal lock (a run on the same directory is going on)."""

    reason = "RUN_LOCKED"


class JournalCorrupted(ProvisioningError):
    """A provisioning or transfer journal does not parse (other than a torn last
    record, which is dropped) or contradicts itself or the ledger."""

    reason = "JOURNAL_CORRUPTED"


class BundleInvalid(ProvisioningError):
    """A device bundle is not a well-formed bundle of a supported version, or its
    sealed keys name another DID than the bundle."""

    reason = "BUNDLE_INVALID"


class DeviceKeyFileInvalid(InvalidInput):
    """A line of a device public-key file (``--from-public-keys``) is malformed,
    repeats a serial or key, or its create signature does not verify."""

    reason = "DEVICE_KEY_FILE_INVALID"


class ManifestInvalid(InvalidInput):
    """A provisioning manifest (CSV or JSON lines) is malformed or names a DID twice."""

    reason = "MANIFEST_INVALID"
