"""grpc.aio servicer of didnode.v1.CredentialService and its pb <-> domain conversions."""

from __future__ import annotations

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from didnode.api.v1 import credentials_pb2 as pb
from didnode.core.credentials import VerificationReport
from didnode.service.credentials import CredentialService, credential_service
from didnode.service.ledger import LedgerService
from didnode.service.node import Node
from didnode.transport.servicers import unary


def report_out(r: VerificationReport) -> pb.VerifyCredentialResponse:
    """The wire form of a verification report."""
    resp = pb.VerifyCredentialResponse(
        valid=r.valid,
        reason=r.reason,
        message=r.message,
        checks=[pb.CredentialCheck(name=c.name, outcome=c.outcome, reason=c.reason, message=c.message) for c in r.checks],
        kid=r.kid,
        verified_at_ms=r.verified_at,
    )
    if r.error is not None:
        resp.failure_details.update(r.error.details)
    cred = r.credential
    if cred is not None:
        resp.issuer = cred.issuer
        resp.subject = cred.subject or ""
        resp.types.extend(cred.types)
        resp.credential_id = cred.id or ""
        resp.valid_from_ms = max(0, cred.valid_from)
        resp.valid_until_ms = max(0, cred.valid_until or 0)
    return resp


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
        return report_out(report)

    @unary
    async def IssueSessionCredential(
        self, request: pb.IssueSessionCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.IssueSessionCredentialResponse:
        c = self.service.issue_for_request(request.request, request.kid, request.signature)
        return pb.IssueSessionCredentialResponse(
            token=c.token,
            credential_id=c.credential_id,
            issuer=c.issuer,
            subject=c.subject,
            kid=c.kid,
            valid_from_ms=c.valid_from_ms,
            valid_until_ms=c.valid_until_ms,
        )

    @unary
    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.GetStatusResponse:
        s = self.service.status(request.status_list_credential, request.index, request.include_credential)
        return pb.GetStatusResponse(
            status_list_credential=s.list_url,
            purpose=s.purpose,
            index=s.index,
            set=s.set,
            size=s.size,
            allocated=s.allocated,
            list_valid_from_ms=s.list_valid_from_ms,
            position=s.position,
            seq=s.seq,
            time_ms=s.time_ms,
            op_hash=s.op_hash,
            credential=s.credential,
        )

    @unary
    async def GetIssuer(self, request: pb.GetIssuerRequest, context: grpc.aio.ServicerContext) -> pb.GetIssuerResponse:
        rec = self.service.issuer_record(request.did)
        return pb.GetIssuerResponse(
            state_json=rec.state.to_json_text(),
            keys=[pb.IssuerKeyTimes(key_id=k, added_time_ms=a, ended_time_ms=e) for k, (a, e) in sorted(rec.key_times.items())],
        )


def credential_service_entry(node: Node, ledger: LedgerService) -> tuple[ServiceDescriptor, object]:
    """The (descriptor, servicer) pair that :func:`didnode.transport.services.build_servicers` lists."""
    return pb.DESCRIPTOR.services_by_name["CredentialService"], CredentialServicer(credential_service(node, ledger))
