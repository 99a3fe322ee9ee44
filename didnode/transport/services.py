"""Which gRPC services a node serves: one list, so adding a service is one line here."""

from __future__ import annotations

from google.protobuf.descriptor import ServiceDescriptor

from didnode.api.v1 import ledger_pb2, node_pb2
from didnode.auth.responder import AuthServicer
from didnode.service.auth import node_responder
from didnode.service.ledger import LedgerService
from didnode.service.node import Node
from didnode.transport.credentials import credential_service_entry
from didnode.transport.data import data_entry
from didnode.transport.servicers import LedgerServicer, NodeServicer
from didnode.transport.transparency import transparency_entry
from didnode.wire.handshake import SERVICE as AUTH_SERVICE


def build_servicers(node: Node, ledger: LedgerService, *, auth: bool = True) -> list[tuple[ServiceDescriptor, object]]:
    """(service descriptor, servicer) for every didnode service of ``node``.

    ``auth=False`` leaves out AuthService: the handshake signs as the node DID,
    whose key state must be on the ledger (a cluster node whose create the
    network's governance refused serves reads, writes and transparency only).
    """
    out = [
        (ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"], LedgerServicer(ledger)),
        (node_pb2.DESCRIPTOR.services_by_name["NodeService"], NodeServicer(ledger)),
        credential_service_entry(node, ledger),
        transparency_entry(node),
        data_entry(node),
    ]
    if auth:
        out.append((AUTH_SERVICE, AuthServicer(node_responder(node, ledger))))
    return out
