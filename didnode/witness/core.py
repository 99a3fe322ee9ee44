"""The witness's decision on an offered checkpoint, given the latest one it cosigned (pure, no I/O).

:func:`judge` applies c2sp.org/tlog-witness's consistency rules in the
specification's order, after the origin is known and the log's signature
verified (both need the configuration: :mod:`didnode.witness.service`):

1. ``old`` larger than the checkpoint's size: 400 (:class:`WitnessRequestMalformed`);
2. size 0 with a root other than the empty tree's: 422 (:class:`InconsistentCheckpoint`);
3. ``old`` not the size of the latest cosigned checkpoint (0 when none): 409
   (:class:`WitnessSizeConflict`, carrying that size);
4. ``old`` 0 with a non-empty proof: 422;
5. ``old`` equal to the size with another root: 422;
6. a consistency proof from the held checkpoint that does not verify: 422
   (:class:`~didnode.errors.InvalidProof`).

Independently of the answer, :func:`judge` says whether the offered
checkpoint is **evidence** of a split view or rollback (docs/witness.md,
"Evidence"): ``rollback`` (a validly signed checkpoint smaller than the one
held), ``fork`` (the held size with another root), ``inconsistent`` (larger,
offered against the held size, but its proof fails). The caller records the
held and offered notes in each case; it never cosigns any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from didnode.core.merkle.hasher import EMPTY_ROOT
from didnode.core.merkle.proof_verify import verify_consistency
from didnode.errors import DidnodeError, InconsistentCheckpoint, InvalidProof, WitnessRequestMalformed, WitnessSizeConflict

ROLLBACK = "rollback"
FORK = "fork"
INCONSISTENT = "inconsistent"


@dataclass(frozen=True)
class Held:
    """The latest checkpoint the witness cosigned for one log (size 0, the empty root, when none)."""

    size: int
    root: bytes


NOTHING_HELD = Held(0, EMPTY_ROOT)


@dataclass(frozen=True)
class Verdict:
    """What to do with an offered checkpoint: cosign it (``error`` None) or answer ``error``;
    and whether the offer is evidence (``evidence``: a kind, or None)."""

    error: DidnodeError | None
    evidence: str | None

    @property
    def accepted(self) -> bool:
        return self.error is None


def evidence_kind(held: Held, size: int, root: bytes) -> str | None:
    """``rollback`` or ``fork`` when a signed checkpoint of ``size``/``root`` contradicts ``held`` by itself."""
    if size < held.size:
        return ROLLBACK
    if size == held.size and root != held.root:
        return FORK
    return None


def judge(held: Held, old: int, proof: Sequence[bytes], size: int, root: bytes) -> Verdict:
    """The witness's verdict on a validly signed checkpoint (``size``, ``root``) offered with ``old`` and ``proof``."""
    evidence = evidence_kind(held, size, root)
    if old > size:
        return Verdict(WitnessRequestMalformed(f"old size {old} is larger than the checkpoint's size {size}", old=old, size=size), evidence)
    if size == 0 and root != EMPTY_ROOT:
        return Verdict(InconsistentCheckpoint("a checkpoint of size 0 must have the empty tree's root", size=0), evidence)
    if old != held.size:
        return Verdict(WitnessSizeConflict(f"old size {old} is not {held.size}, the size of the latest checkpoint cosigned", size=held.size, old=old), evidence)
    if old == 0 and proof:
        return Verdict(InconsistentCheckpoint(f"a request from old size 0 must carry no consistency proof, not {len(proof)} lines", lines=len(proof)), evidence)
    if old == size and root != held.root:
        return Verdict(InconsistentCheckpoint(f"the checkpoint of size {size} has another root than the one cosigned", size=size), evidence)
    try:
        verify_consistency(old, size, held.root, root, list(proof))
    except InvalidProof as err:
        return Verdict(err, evidence or INCONSISTENT)
    return Verdict(None, None)


__all__ = ["FORK", "INCONSISTENT", "NOTHING_HELD", "ROLLBACK", "Held", "Verdict", "evidence_kind", "judge"]
