"""Checking a *historical* checkpoint against a trust policy: a receipt's, verified years later.

A receipt (docs/data.md, "Receipts") carries the checkpoint its proofs hang
from; whoever verifies it may do so long after, from the receipt and a trust
policy alone, with no node to ask. :func:`verify_historical` checks what
still means something then:

1. the checkpoint note: its origin and network are the policy's, valid
   signatures of at least ``threshold`` trusted checkpoint keys and valid
   cosignatures of at least ``witnessThreshold`` trusted witnesses
   (:func:`~didnode.core.trust.witnessed.verify_note_signers`, same errors);
2. the genesis: the consistency proof from the log of size 1 (whose root is
   the genesis leaf hash the policy names) to the checkpoint's log
   (:class:`GenesisMismatch` otherwise): the checkpoint is of *this* ledger.

It does not check what only a live view can: freshness (a receipt's
checkpoint is old by design), cosignature times against a clock, nor
consistency with the policy's latest verified checkpoint (there is no proof
to a later checkpoint in a receipt). The online path
(:class:`~didnode.core.trust.verifier.TrustedLog`) is unchanged and keeps
all of these. Pure.
"""

from __future__ import annotations

from typing import Sequence

from didnode.core.merkle import proof_verify
from didnode.core.trust.policy import TrustPolicy
from didnode.core.trust.witnessed import NoteSigners, verify_note_signers
from didnode.errors import GenesisMismatch, InvalidProof


def verify_historical(policy: TrustPolicy, note: bytes, genesis_consistency: Sequence[bytes]) -> NoteSigners:
    """Verify the checkpoint note ``note`` and its ``genesis_consistency`` proof (RFC 9162
    PROOF(1, D[size]), empty for a log of one entry) against ``policy`` (module docstring).

    Returns the verified checkpoint with its signer and cosigner counts; raises the trust
    errors of :mod:`~didnode.core.trust.witnessed` or :class:`GenesisMismatch`.
    """
    checked = verify_note_signers(policy, note, None)
    cp = checked.checkpoint
    if cp.tree_size < 1:
        raise GenesisMismatch("the checkpoint is of an empty log: no genesis", size=cp.tree_size)
    try:
        proof_verify.verify_consistency(1, cp.tree_size, policy.genesis, cp.log_root, list(genesis_consistency))
    except InvalidProof as exc:
        raise GenesisMismatch(
            f"the checkpoint's log ({cp.tree_size} entries) does not begin with the genesis {policy.genesis.hex()} "
            f"this trust policy names: another ledger ({exc})",
            size=cp.tree_size,
        ) from None
    return checked
