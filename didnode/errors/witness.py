"""Witness errors: the c2sp.org/tlog-witness ``add-checkpoint`` refusals (docs/witness.md).

Part of the one error tree: import from :mod:`didnode.errors`. The witness's
HTTP edge answers each with the status the protocol names (``STATUS`` in
:mod:`didnode.witness.http`); a bad log signature is
:class:`~didnode.errors.BadCheckpointSignature` (403) and a consistency proof
that does not verify is an :class:`~didnode.errors.InvalidProof` (422).
"""

from __future__ import annotations

from didnode.errors.base import Conflict, InvalidInput, LocalError, NotFound, Unavailable
from didnode.errors.transparency import InvalidProof


class WitnessRequestMalformed(InvalidInput):
    """An ``add-checkpoint`` request body is not an old size line, at most 63 base64
    hash lines, a blank line and a checkpoint note (or its old size exceeds the
    checkpoint's size)."""

    reason = "WITNESS_REQUEST_MALFORMED"


class UnknownLogOrigin(NotFound):
    """The witness is not configured for the checkpoint's origin (no verifier key for that log)."""

    reason = "UNKNOWN_LOG_ORIGIN"


class WitnessSizeConflict(Conflict):
    """The request's old size is not the size of the latest checkpoint the
    witness cosigned for the log; ``details['size']`` is that size."""

    reason = "WITNESS_SIZE_CONFLICT"


class InconsistentCheckpoint(InvalidProof):
    """A signed checkpoint contradicts the one the witness holds (same size and
    another root, or a root the empty tree cannot have), or comes with a
    consistency proof from size 0."""

    reason = "INCONSISTENT_CHECKPOINT"


class ReplayMismatch(InvalidProof):
    """A node acting as a witness was offered a checkpoint of its own ledger whose log
    root, or ``didnode-state-root``, is not the one the node computed at that size
    (a fork of the log it replays). Answered 422; both notes are kept as evidence."""

    reason = "REPLAY_MISMATCH"


class WitnessNotCaughtUp(Unavailable):
    """A node acting as a witness was offered a checkpoint of its own ledger larger than
    the log it has applied, and its log did not reach that size in time; retry
    (answered 503 with ``Retry-After``)."""

    reason = "WITNESS_NOT_CAUGHT_UP"


class WitnessDataLocked(LocalError):
    """Another witness process holds the witness data directory (its lock file)."""

    reason = "WITNESS_DATA_LOCKED"


class WitnessStateCorrupted(LocalError):
    """A witness state file (a log's latest cosigned checkpoint, or the witness key)
    cannot be read back as written."""

    reason = "WITNESS_STATE_CORRUPTED"
