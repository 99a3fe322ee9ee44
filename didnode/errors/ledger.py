"""Ledger errors: identifiers and encodings, not found, conflicts, authorization (signatures and key fates), capacity and availability.

Part of the one error tree: import from :mod:`didnode.errors`.
"""

from __future__ import annotations

from didnode.errors.base import Conflict, Internal, InvalidInput, NotFound, ResourceExhausted, Unauthorized, Unavailable

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


class InvalidService(MalformedOperation):
    """A service entry breaks the method's rules: id syntax, type character set, endpoint URI or scheme policy."""

    reason = "INVALID_SERVICE"


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
