"""grpc.aio servicer of didnode.v1.CredentialService and its pb <-> domain conversions."""

from __future__ import annotations

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from didnode.api.v1 import credentials_pb2 as pb
from didnode.service.credentials import CredentialService, credential_service
from didnode.service.ledger import LedgerService
from didnode.service.node import Node
from didnode.transport.servicers import unary
from didnode.wire.credentials import issuer_record_to_pb, report_to_pb, session_credential_to_pb, status_info_to_pb


class CredentialServicer:
    """didnode.v1.CredentialService."""

    def __init__(self, service: CredentialService) -> None:
        self.service = service

    @unary
    async def Verify(self, request: pb.VerifyCredentialRequest, context: grpc.aio.ServicerContext) -> pb.VerifyCredentialResponse:
        report = self.service.verify(
            request.token,
            expected_subject=request.expected_subject or None,
            expected_issuer=request.expected_issuer or None,
            expected_type=request.expected_type or None,
        )
        return report_to_pb(report)

    @unary
    async def IssueSessionCredential(
        self, request: pb.IssueSessionCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.IssueSessionCredentialResponse:
        return session_credential_to_pb(self.service.issue_for_request(request.request, request.kid, request.signature))

    @unary
    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.GetStatusResponse:
        return status_info_to_pb(self.service.status(request.status_list_credential, request.index, request.include_credential))

    @unary
    async def GetIssuer(self, request: pb.GetIssuerRequest, context: grpc.aio.ServicerContext) -> pb.GetIssuerResponse:
        return issuer_record_to_pb(self.service.issuer_record(request.did))


def credential_service_entry(node: Node, ledger: LedgerService) -> tuple[ServiceDescriptor, object]:
    """The (descriptor, servicer) pair that :func:`didnode.transport.services.build_servicers` lists."""
    return pb.DESCRIPTOR.services_by_name["CredentialService"], CredentialServicer(credential_service(node, ledger))
