"""Transparency errors: proofs, checkpoints and the audit.

Part of the one error tree: import from :mod:`didnode.errors`.
"""

from __future__ import annotations

from didnode.errors.base import NotFound, Unauthorized
from didnode.errors.ledger import StoreCorrupted

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


class MalformedNote(MalformedProof):
    """A signed note (c2sp.org/signed-note) or its checkpoint body breaks its
    format: not UTF-8, a control character, no blank line before the
    signatures, a malformed signature line, too many signatures, trailing
    bytes, or a checkpoint text that is not origin / size / root / extensions."""

    reason = "MALFORMED_NOTE"


class RootMismatch(InvalidProof):
    """A well-formed proof recomputes a root other than the trusted one."""

    reason = "ROOT_MISMATCH"


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
