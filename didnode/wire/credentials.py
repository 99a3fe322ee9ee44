"""Credential service messages <-> :mod:`didnode.core.credentials` values and :mod:`didnode.core.results`.

Shared by the node's credential servicer and the client library, so each field
is converted in one place.
"""

from __future__ import annotations

from typing import Any, Mapping

from nacl.signing import SigningKey

from didnode.api.v1 import credentials_pb2 as pb
from didnode.core.credentials import IssuerRecord, VerificationReport
from didnode.core.credentials import session as session_request
from didnode.core.credentials.jose import decode_json_object, parse_compact
from didnode.core.credentials.model import Credential, parse_claims
from didnode.core.credentials.verify import Check, credential_error
from didnode.core.results import SessionCredential, StatusInfo
from didnode.errors import CredentialInvalid
from didnode.wire.ledger import state_from_record


def verify_request_to_pb(
    token: str, expected_subject: str | None, expected_issuer: str | None, expected_type: str | None
) -> pb.VerifyCredentialRequest:
    """A verification request; an expectation left None is not checked."""
    return pb.VerifyCredentialRequest(
        token=token, expected_subject=expected_subject or "", expected_issuer=expected_issuer or "", expected_type=expected_type or ""
    )


def report_to_pb(r: VerificationReport) -> pb.VerifyCredentialResponse:
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


def _local_claims(token: str) -> Credential | None:
    """The token's claims parsed locally (for the report of a remote verification); None when they do not parse."""
    try:
        return parse_claims(decode_json_object(parse_compact(token).payload, "payload"))
    except CredentialInvalid:
        return None


def report_from_pb(resp: pb.VerifyCredentialResponse, token: str) -> VerificationReport:
    """A :class:`VerificationReport` from the node's answer (``credential`` re-parsed locally, unverified)."""
    checks = tuple(Check(c.name, c.outcome, c.reason, c.message) for c in resp.checks)
    error = None if resp.valid else credential_error(resp.reason, resp.message, dict(resp.failure_details))
    return VerificationReport(resp.valid, checks, error, _local_claims(token), resp.kid, resp.verified_at_ms, (error,) if error else ())


def session_credential_to_pb(c: SessionCredential) -> pb.IssueSessionCredentialResponse:
    return pb.IssueSessionCredentialResponse(
        token=c.token,
        credential_id=c.credential_id,
        issuer=c.issuer,
        subject=c.subject,
        kid=c.kid,
        valid_from_ms=c.valid_from_ms,
        valid_until_ms=c.valid_until_ms,
    )


def session_credential_from_pb(r: pb.IssueSessionCredentialResponse) -> SessionCredential:
    return SessionCredential(r.token, r.credential_id, r.issuer, r.subject, r.kid, r.valid_from_ms, r.valid_until_ms)


def session_request_to_pb(
    network: str, node_did: str, subject: str, kid: str, key: SigningKey, claims: Mapping[str, Any] | None, lifetime_s: int, now_ms: int
) -> pb.IssueSessionCredentialRequest:
    """A signed session credential request (see :mod:`didnode.core.credentials.session`).

    Precondition: ``key`` is the private key of ``kid``.
    """
    payload = session_request.build_request(subject, node_did, now_ms, claims, lifetime_s)
    return pb.IssueSessionCredentialRequest(request=payload, kid=kid, signature=session_request.sign_request(network, payload, key))


def status_info_to_pb(s: StatusInfo) -> pb.GetStatusResponse:
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


def status_info_from_pb(r: pb.GetStatusResponse) -> StatusInfo:
    return StatusInfo(
        r.status_list_credential, r.purpose, r.index, r.set, r.size, r.allocated, r.list_valid_from_ms, r.position, r.seq, r.time_ms, r.op_hash, r.credential
    )


def issuer_record_to_pb(rec: IssuerRecord) -> pb.GetIssuerResponse:
    return pb.GetIssuerResponse(
        state_record=rec.state.to_record(),
        keys=[pb.IssuerKeyTimes(key_id=k, added_time_ms=a, ended_time_ms=e) for k, (a, e) in sorted(rec.key_times.items())],
    )


def issuer_record_from_pb(r: pb.GetIssuerResponse) -> IssuerRecord:
    state = state_from_record(r.state_record, "the issuer reply")
    return IssuerRecord(state, {k.key_id: (k.added_time_ms, k.ended_time_ms) for k in r.keys})
