"""Protobuf <-> domain conversions of didnode.v1.DataService.

Shared by the servicer and the client library; imports only the generated
messages and pure core code.
"""

from __future__ import annotations

from didnode.api.v1 import data_pb2 as dpb
from didnode.core.data.anchor_proof import AnchorProof
from didnode.core.merkle.encoding import parse_sparse_proof, serialize_sparse_proof
from didnode.errors import MalformedProof
from didnode.wire.transparency import checkpoint_from_pb, checkpoint_to_pb


def anchor_request_to_pb(did: str, stream: str, seq: int) -> dpb.GetAnchorRequest:
    return dpb.GetAnchorRequest(did=did, stream=stream, seq=seq)


def anchor_to_pb(a: AnchorProof) -> dpb.GetAnchorResponse:
    return dpb.GetAnchorResponse(
        position=a.position,
        head_index=a.head_index,
        first_seq=a.first,
        count=a.count,
        entry=a.entry,
        checkpoint=checkpoint_to_pb(a.checkpoint),
        inclusion=list(a.inclusion),
        state_record=a.state_record,
        state_proof=serialize_sparse_proof(a.state_proof),
        genesis_consistency=list(a.genesis_consistency),
    )


def anchor_from_pb(m: dpb.GetAnchorResponse, did: str, stream: str) -> AnchorProof:
    """The reply to a request for (``did``, ``stream``, ...); still to be verified (a receipt does)."""
    if not m.HasField("checkpoint"):
        raise MalformedProof("the anchor reply carries no checkpoint")
    return AnchorProof(
        did=did,
        stream=stream,
        position=m.position,
        head_index=m.head_index,
        first=m.first_seq,
        count=m.count,
        entry=m.entry,
        checkpoint=checkpoint_from_pb(m.checkpoint),
        inclusion=tuple(m.inclusion),
        genesis_consistency=tuple(m.genesis_consistency),
        state_record=m.state_record,
        state_proof=parse_sparse_proof(m.state_proof),
    )
