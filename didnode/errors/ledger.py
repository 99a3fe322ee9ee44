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


# --------------------------------------------------------------------------
# Storage and the node's identity.
# --------------------------------------------------------------------------


class StorageFull(ResourceExhausted):
    """The node's disk (file system) is full or over quota: the batch was not committed, nothing of it is on the ledger.

    RESOURCE_EXHAUSTED: gRPC's code for "the entire file system is out of
    space"; retry after the operator freed space (the node goes on by itself
    then). Not LMDB's map-full, which the node handles itself by growing the map.
    """

    reason = "STORAGE_FULL"


class StoreReadOnly(Internal):
    """The node's data directory (or its file system) does not accept writes: read-only mount, permissions.

    FAILED_PRECONDITION, not UNAVAILABLE: retrying cannot help until an
    operator made the storage writable again (gRPC: "the client should not
    retry until the system state has been explicitly fixed"); nothing of the
    request was committed.
    """

    reason = "STORE_READ_ONLY"


class NodeKeyMismatch(Internal):
    """``node.key`` and the ledger in the data directory do not belong together.

    The key exists but its ledger is missing or empty (starting a new ledger
    under it would sign checkpoints contradicting the ones it signed before),
    the ledger exists but its key is missing, or the key is not the key of the
    ledger's node DID. The node refuses to start; restore the missing part
    from a backup, or start a new identity (``didnode serve --new-identity``,
    docs/storage.md).
    """

    reason = "NODE_KEY_MISMATCH"


class CheckpointRollback(Internal):
    """The ledger does not extend the latest checkpoint this node signed (``node.checkpoint``, beside its key).

    The log is shorter than that checkpoint, or its root at that size differs:
    the ledger was rolled back, replaced or altered. The node refuses to start
    (and never signs such a checkpoint), since anything it signed now would
    contradict a checkpoint it already gave out.
    """

    reason = "CHECKPOINT_ROLLBACK"
