"""Protobuf <-> domain conversions of didnode.v1.TransparencyService.

Shared by the servicer and the client library, so both sides use one
mapping; it imports nothing but the generated messages and pure core code
(a device's client does not pull in the node).
"""

from __future__ import annotations

from didnode.api.v1 import transparency_pb2 as tpb
from didnode.core.checkpoint import Checkpoint, SignedCheckpoint
from didnode.core.merkle.encoding import parse_sparse_proof, serialize_sparse_proof
from didnode.core.proof_bundle import ConsistencyProof, InclusionProof, StateProof
from didnode.errors import MalformedProof


def checkpoint_out(s: SignedCheckpoint) -> tpb.Checkpoint:
    c = s.checkpoint
    return tpb.Checkpoint(
        network=c.network,
        tree_size=c.tree_size,
        log_root=c.log_root,
        state_root=c.state_root,
        time_ms=c.time_ms,
        kid=s.kid,
        signature=s.signature,
    )


def checkpoint_in(m: tpb.Checkpoint) -> SignedCheckpoint:
    return SignedCheckpoint(Checkpoint(m.network, m.tree_size, m.log_root, m.state_root, m.time_ms), m.kid, m.signature)


def _optional_checkpoint_in(parent: object, field: str) -> SignedCheckpoint | None:
    return checkpoint_in(getattr(parent, field)) if parent.HasField(field) else None  # type: ignore[attr-defined]


def inclusion_out(p: InclusionProof) -> tpb.InclusionProof:
    msg = tpb.InclusionProof(entry=p.entry, leaf_index=p.index, tree_size=p.tree_size, hashes=list(p.hashes))
    if p.checkpoint is not None:
        msg.checkpoint.CopyFrom(checkpoint_out(p.checkpoint))
    return msg


def inclusion_in(m: tpb.InclusionProof) -> InclusionProof:
    return InclusionProof(m.entry, m.leaf_index, m.tree_size, tuple(m.hashes), _optional_checkpoint_in(m, "checkpoint"))


def consistency_out(p: ConsistencyProof) -> tpb.ConsistencyProof:
    msg = tpb.ConsistencyProof(size1=p.size1, size2=p.size2, hashes=list(p.hashes))
    if p.checkpoint1 is not None:
        msg.checkpoint1.CopyFrom(checkpoint_out(p.checkpoint1))
    if p.checkpoint2 is not None:
        msg.checkpoint2.CopyFrom(checkpoint_out(p.checkpoint2))
    return msg


def consistency_in(m: tpb.ConsistencyProof) -> ConsistencyProof:
    return ConsistencyProof(
        m.size1, m.size2, tuple(m.hashes), _optional_checkpoint_in(m, "checkpoint1"), _optional_checkpoint_in(m, "checkpoint2")
    )


def state_out(p: StateProof) -> tpb.StateProof:
    return tpb.StateProof(
        did=p.did,
        present=p.present,
        state_record=p.state_record,
        proof=serialize_sparse_proof(p.proof),
        checkpoint=checkpoint_out(p.checkpoint),
    )


def state_in(m: tpb.StateProof) -> StateProof:
    if not m.HasField("checkpoint"):
        raise MalformedProof("state proof reply carries no checkpoint")
    return StateProof(m.did, m.present, m.state_record, parse_sparse_proof(m.proof), checkpoint_in(m.checkpoint))
