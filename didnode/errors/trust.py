"""Trust errors: what a client finds when a node's answer does not check out against its trust policy.

Part of the one error tree: import from :mod:`didnode.errors`. The proof
failures are :class:`~didnode.errors.InvalidProof` subclasses (a forged or
unprovable answer); the policy and first-contact errors are local.
"""

from __future__ import annotations

from didnode.errors.base import LocalError
from didnode.errors.transparency import InvalidProof

# --------------------------------------------------------------------------
# Checkpoints against a trust policy.
# --------------------------------------------------------------------------


class UntrustedCheckpointSigner(InvalidProof):
    """A checkpoint is signed by a key the client's trust policy does not list."""

    reason = "UNTRUSTED_CHECKPOINT_SIGNER"


class CheckpointBelowThreshold(InvalidProof):
    """A checkpoint carries valid signatures of fewer trusted keys than the trust policy's threshold."""

    reason = "CHECKPOINT_BELOW_THRESHOLD"


class BadCosignature(InvalidProof):
    """A cosignature (c2sp.org/tlog-cosignature) whose key name and key ID
    match a witness key of the trust policy does not verify: the whole note is
    rejected, as c2sp.org/signed-note advises."""

    reason = "BAD_COSIGNATURE"


class CosignatureTimeSkew(InvalidProof):
    """A trusted witness's cosignature is dated further in the future than the
    trust policy's clock-skew bound allows."""

    reason = "COSIGNATURE_TIME_SKEW"


class GenesisMismatch(InvalidProof):
    """The node's log does not begin with the genesis entry the trust policy names (another ledger)."""

    reason = "GENESIS_MISMATCH"


class LogRollback(InvalidProof):
    """The node answers under a checkpoint older than one the client already verified (a rolled-back or replayed view)."""

    reason = "LOG_ROLLBACK"


class LogFork(InvalidProof):
    """The node's checkpoint contradicts one the client verified: the same size with another root, or no consistency proof between them."""

    reason = "LOG_FORK"


class HistoryMismatch(InvalidProof):
    """A DID's history does not lead, hash-linked and proven in the log, to its verified current state (an operation hidden, invented or altered)."""

    reason = "HISTORY_MISMATCH"


# --------------------------------------------------------------------------
# Trust policies and first contact (client side only).
# --------------------------------------------------------------------------


class TrustPolicyInvalid(LocalError):
    """A trust policy file does not parse or breaks its format (docs/trust.md, "The policy file")."""

    reason = "TRUST_POLICY_INVALID"


class UnknownNode(LocalError):
    """The client holds no trust policy for this node address: accept the node first (``didctl trust add``) or give ``--trust FILE``."""

    reason = "UNKNOWN_NODE"


class TrustChanged(LocalError):
    """A known node address now presents another network, genesis or checkpoint key than the trust policy holds (never a prompt)."""

    reason = "TRUST_CHANGED"
