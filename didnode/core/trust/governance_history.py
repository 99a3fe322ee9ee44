"""The network's governance record checked against a verified checkpoint: now, and at any past position.

The governance record lives in the state table under the governance
identifier like a DID's state record, so the state tree commits to it:

* :func:`verify_governance_at` checks the current record with a state proof
  under a verified checkpoint (as :func:`didnode.core.transparency_verify.verify_state_at`
  does for a DID) and decodes it as a :class:`~didnode.core.governance.policy.Policy`;
* :func:`verify_governance_history` checks the record's ``govern`` operations,
  each proven in the log at the checkpoint's size, and replays them with
  :func:`didnode.core.governance.rules.govern` (``trusted``: they were checked
  when accepted) into exactly the proven record (nothing hidden, nothing
  invented: the record commits to its last operation's hash and its seq), and
  returns the record after each operation;
* :func:`policy_at` picks the record in effect at a position from those.

Pure, as :mod:`didnode.core.trust.history` is for DIDs. Raises
:class:`~didnode.errors.HistoryMismatch` for a history that does not lead to
the record, the :class:`~didnode.errors.InvalidProof` subclasses for a bad proof.
Usage counts are not here: they are derived from the log, not committed to.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from didnode.core import operations
from didnode.core.checkpoint import Checkpoint
from didnode.core.governance.policy import Policy
from didnode.core.governance.rules import govern
from didnode.core.keystate import DidState
from didnode.core.keystate.transitions import ApplyContext
from didnode.core.merkle import sparse_verify
from didnode.core.merkle.encoding import SparseProof
from didnode.core.trust.history import ProvenOperation, check_proven_chain
from didnode.errors import (
    DidnodeError,
    HistoryMismatch,
    InvalidArgument,
    MalformedProof,
    NoGovernance,
    ProofClaimMismatch,
    StoreCorrupted,
    UnknownDid,
)


def _no_resolve(did: str) -> DidState:
    raise UnknownDid(f"{did}: other DIDs are not consulted when replaying accepted governance operations")


def decode_record(record: bytes, what: str) -> Policy:
    """A governance record received from a node; bytes that do not decode raise :class:`MalformedProof`."""
    try:
        return Policy.from_record(record)
    except StoreCorrupted as exc:
        raise MalformedProof(f"{what} is not a governance record: {exc.message}") from None


def verify_governance_at(checkpoint: Checkpoint, governance: str, record: bytes, proof: SparseProof) -> Policy:
    """The governance record ``record`` of identifier ``governance``, checked under ``checkpoint``.

    Preconditions: ``checkpoint`` is verified against the trust policy. The
    state-tree key is ``SHA-256(UTF-8 identifier)``, the value ``SHA-256(record)``.
    """
    key = hashlib.sha256(governance.encode("utf-8")).digest()
    sparse_verify.verify_present(checkpoint.state_root, key, hashlib.sha256(record).digest(), proof)
    policy = decode_record(record, "the proven record")
    if policy.did != governance:
        raise ProofClaimMismatch(f"the proven governance record is of {policy.did[:80]!r}, not of {governance}", did=governance)
    return policy


def replay_governance(governance: str, ops: Sequence[ProvenOperation], network: str) -> list[Policy]:
    """The records after each of ``ops`` (accepted ``govern`` operations of ``governance`` in seq order),
    replayed trusted (signatures were checked on acceptance; ``inclusion`` is not looked at).
    Raises the operation's typed error."""
    policy: Policy | None = None
    out = []
    for o in ops:
        op = operations.parse(o.payload, o.proofs, network)
        if op.type != "govern" or op.did != governance:
            raise HistoryMismatch(f"the history of {governance} holds a {op.type} operation of {op.did[:80]}", did=governance)
        policy = govern(policy, op, ApplyContext(o.position, o.time_ms, _no_resolve, trusted=True))
        out.append(policy)
    return out


def verify_governance_history(record: bytes, network: str, ops: Sequence[ProvenOperation], checkpoint: Checkpoint) -> list[Policy]:
    """Check ``ops`` (the module docstring) against ``record``, proven under the verified ``checkpoint``;
    return the record after each operation (the last equals ``record``).

    Preconditions: ``checkpoint`` is verified against the trust policy and
    ``record`` is proven under it (:func:`verify_governance_at`).
    """
    head = decode_record(record, "the proven record")
    did = head.did
    check_proven_chain(did, head.seq, ops, checkpoint, "record")
    try:
        versions = replay_governance(did, ops, network)
    except DidnodeError as exc:
        raise HistoryMismatch(f"the history of {did} does not replay: {exc}", did=did) from None
    if versions[-1].to_record() != record:
        raise HistoryMismatch(f"the history of {did} replays to another record than its verified one", did=did)
    return versions


def policy_at(versions: Sequence[Policy], position: int) -> Policy:
    """The record in effect once the log holds position ``position``: made by the last govern operation at a
    position at most ``position``. Raises :class:`NoGovernance` before the inception."""
    if position < 0:
        raise InvalidArgument(f"a log position is not negative ({position})", position=position)
    chosen = None
    for v in versions:
        if v.updated_pos <= position:
            chosen = v
    if chosen is None:
        first = versions[0].updated_pos if versions else 0
        raise NoGovernance(f"the network had no governance record yet at position {position} (its inception is at {first})", position=position)
    return chosen
