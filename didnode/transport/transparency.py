"""didnode.v1.TransparencyService: the grpc.aio servicer (conversions in :mod:`didnode.wire.transparency`)."""

from __future__ import annotations

import json

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from didnode.api.v1 import transparency_pb2 as tpb
from didnode.service.node import Node
from didnode.service.transparency import TransparencyService
from didnode.transport.servicers import unary
from didnode.wire.transparency import checkpoint_to_pb, consistency_to_pb, inclusion_to_pb, state_proof_to_pb

# -- servicer -------------------------------------------------------------------


class TransparencyServicer:
    """didnode.v1.TransparencyService over :class:`TransparencyService`."""

    def __init__(self, service: TransparencyService) -> None:
        self.service = service

    @unary
    async def GetCheckpoint(self, request: tpb.GetCheckpointRequest, context: grpc.aio.ServicerContext) -> tpb.Checkpoint:
        size = request.tree_size if request.HasField("tree_size") else None
        return checkpoint_to_pb(await self.service.checkpoint(size))

    @unary
    async def GetInclusionProof(
        self, request: tpb.GetInclusionProofRequest, context: grpc.aio.ServicerContext
    ) -> tpb.InclusionProof:
        which = request.WhichOneof("entry")
        proof = await self.service.inclusion_proof(
            position=request.position if which == "position" else None,
            op_hash=request.op_hash if which == "op_hash" else None,
            tree_size=request.tree_size if request.HasField("tree_size") else None,
        )
        return inclusion_to_pb(proof)

    @unary
    async def GetConsistencyProof(
        self, request: tpb.GetConsistencyProofRequest, context: grpc.aio.ServicerContext
    ) -> tpb.ConsistencyProof:
        size2 = request.size2 if request.HasField("size2") else None
        return consistency_to_pb(await self.service.consistency_proof(request.size1, size2))

    @unary
    async def GetStateProof(self, request: tpb.GetStateProofRequest, context: grpc.aio.ServicerContext) -> tpb.StateProof:
        known = request.known_size if request.HasField("known_size") else None
        proven = await self.service.state_proof(request.did, known)
        return state_proof_to_pb(proven.proof, proven.consistency)

    @unary
    async def ResolveWithProof(
        self, request: tpb.ResolveWithProofRequest, context: grpc.aio.ServicerContext
    ) -> tpb.ResolveWithProofResponse:
        known = request.known_size if request.HasField("known_size") else None
        proven = await self.service.resolve_with_proof(request.did, known)
        return tpb.ResolveWithProofResponse(
            result_json=json.dumps(proven.result, separators=(",", ":")), state_proof=state_proof_to_pb(proven.proof, proven.consistency)
        )


def transparency_entry(node: Node) -> tuple[ServiceDescriptor, object]:
    """The (descriptor, servicer) pair that ``build_servicers`` lists for this service."""
    return tpb.DESCRIPTOR.services_by_name["TransparencyService"], TransparencyServicer(TransparencyService(node))
