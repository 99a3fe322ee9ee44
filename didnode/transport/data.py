"""didnode.v1.DataService: the grpc.aio servicer (conversions in :mod:`didnode.wire.data`)."""

from __future__ import annotations

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from didnode.api.v1 import data_pb2 as dpb
from didnode.service.data import DataService
from didnode.service.node import Node
from didnode.service.transparency import TransparencyService
from didnode.transport.servicers import unary
from didnode.wire.data import anchor_to_pb


class DataServicer:
    """didnode.v1.DataService over :class:`DataService`."""

    def __init__(self, service: DataService) -> None:
        self.service = service

    @unary
    async def GetAnchor(self, request: dpb.GetAnchorRequest, context: grpc.aio.ServicerContext) -> dpb.GetAnchorResponse:
        return anchor_to_pb(await self.service.get_anchor(request.did, request.stream, request.seq))


def data_entry(node: Node) -> tuple[ServiceDescriptor, object]:
    """The (descriptor, servicer) pair that ``build_servicers`` lists for this service."""
    return dpb.DESCRIPTOR.services_by_name["DataService"], DataServicer(DataService(node, TransparencyService(node)))
