"""The one error tree of didnode.

Every failure that crosses a module boundary is an instance of
:class:`DidnodeError`. Each concrete class carries a stable, machine-readable
``reason`` (UPPER_SNAKE_CASE) that travels over gRPC inside a
``google.rpc.ErrorInfo`` and is turned back into the same class by the client
(:func:`error_for_reason`). The category classes (``InvalidInput``,
``NotFound``, ...) are what the transport maps to gRPC status codes, in one
table (``didnode.transport.status``).

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
