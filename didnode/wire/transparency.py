"""Protobuf <-> domain conversions of didnode.v1.TransparencyService.

Shared by the servicer and the client library, so both sides use one
mapping; it imports nothing but the generated messages and pure core code
(a device's client does not pull in the node).
"""

from __future__ import annotations

from typing import Sequence

from didnode.api.v1 import transparency_pb2 as tpb
from didnode.core.checkpoint import Checkpoint, SignedCheckpoint
from didnode.core.merkle.encoding import parse_sparse_proof, serialize_sparse_proof
from didnode.core.proof_bundle import ConsistencyProof, InclusionProof, StateProof
from didnode.core.results import ProvenState
from didnode.errors import MalformedProof


def checkpoint_to_pb(s: SignedCheckpoint) -> tpb.Checkpoint:
    c = s.checkpoint
    return tpb.Checkpoint(
        network=c.network,
        tree_size=c.tree_size,
        log_root=c.log_root,
        state_root=c.state_root,
        time_ms=c.time_ms,
        kid=s.kid,
        signature=s.signature,
        note=s.note,
    )


def checkpoint_from_pb(m: tpb.Checkpoint) -> SignedCheckpoint:
    return SignedCheckpoint(Checkpoint(m.network, m.tree_size, m.log_root, m.state_root, m.time_ms), m.kid, m.signature, m.note)


def _optional_checkpoint_from_pb(parent: object, field: str) -> SignedCheckpoint | None:
    return checkpoint_from_pb(getattr(parent, field)) if parent.HasField(field) else None  # type: ignore[attr-defined]


def inclusion_to_pb(p: InclusionProof) -> tpb.InclusionProof:
    msg = tpb.InclusionProof(entry=p.entry, leaf_index=p.index, tree_size=p.tree_size, hashes=list(p.hashes))
    if p.checkpoint is not None:
        msg.checkpoint.CopyFrom(checkpoint_to_pb(p.checkpoint))
    return msg


def inclusion_from_pb(m: tpb.InclusionProof) -> InclusionProof:
    return InclusionProof(m.entry, m.leaf_index, m.tree_size, tuple(m.hashes), _optional_checkpoint_from_pb(m, "checkpoint"))


def consistency_to_pb(p: ConsistencyProof) -> tpb.ConsistencyProof:
    msg = tpb.ConsistencyProof(size1=p.size1, size2=p.size2, hashes=list(p.hashes))
    if p.checkpoint1 is not None:
        msg.checkpoint1.CopyFrom(checkpoint_to_pb(p.checkpoint1))
    if p.checkpoint2 is not None:
        msg.checkpoint2.CopyFrom(checkpoint_to_pb(p.checkpoint2))
    return msg


def consistency_from_pb(m: tpb.ConsistencyProof) -> ConsistencyProof:
    return ConsistencyProof(
        m.size1, m.size2, tuple(m.hashes), _optional_checkpoint_from_pb(m, "checkpoint1"), _optional_checkpoint_from_pb(m, "checkpoint2")
    )


def state_proof_to_pb(p: StateProof, consistency: Sequence[bytes] = ()) -> tpb.StateProof:
    return tpb.StateProof(
        did=p.did,
        present=p.present,
        state_record=p.state_record,
        proof=serialize_sparse_proof(p.proof),
        checkpoint=checkpoint_to_pb(p.checkpoint),
        consistency=list(consistency),
    )


def state_proof_from_pb(m: tpb.StateProof) -> StateProof:
    if not m.HasField("checkpoint"):
        raise MalformedProof("state proof reply carries no checkpoint")
    return StateProof(m.did, m.present, m.state_record, parse_sparse_proof(m.proof), checkpoint_from_pb(m.checkpoint))


def proven_state_from_pb(m: tpb.StateProof) -> ProvenState:
    """A state proof with the consistency proof the request asked for (both still to be verified)."""
    return ProvenState(state_proof_from_pb(m), tuple(m.consistency))


def state_proof_request_to_pb(did: str, known_size: int | None) -> tpb.GetStateProofRequest:
    req = tpb.GetStateProofRequest(did=did)
    if known_size is not None:
        req.known_size = known_size
    return req


def resolve_with_proof_request_to_pb(did: str, known_size: int | None) -> tpb.ResolveWithProofRequest:
    req = tpb.ResolveWithProofRequest(did=did)
    if known_size is not None:
        req.known_size = known_size
    return req


def checkpoint_request_to_pb(tree_size: int | None) -> tpb.GetCheckpointRequest:
    """The latest checkpoint (``tree_size`` None) or the one the node stored at ``tree_size``."""
    req = tpb.GetCheckpointRequest()
    if tree_size is not None:
        req.tree_size = tree_size
    return req


def inclusion_request_to_pb(position: int | None, op_hash: bytes | None, tree_size: int | None) -> tpb.GetInclusionProofRequest:
    """Inclusion of the entry at ``position`` or of operation ``op_hash`` (the caller gives exactly one)."""
    req = tpb.GetInclusionProofRequest()
    if position is not None:
        req.position = position
    if op_hash is not None:
        req.op_hash = op_hash
    if tree_size is not None:
        req.tree_size = tree_size
    return req


def consistency_request_to_pb(size1: int, size2: int | None) -> tpb.GetConsistencyProofRequest:
    req = tpb.GetConsistencyProofRequest(size1=size1)
    if size2 is not None:
        req.size2 = size2
    return req
