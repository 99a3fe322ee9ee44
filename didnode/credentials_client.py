"""Client-side credential helpers: wire conversions, the offline verifier, status list administration.

Used by :class:`didnode.client.Client` / :class:`~didnode.client.AsyncClient`
and by ``didctl vc``. Nothing here holds a private key longer than a call,
and no private key is ever sent to a node: issuers sign locally and publish
only signed status lists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from nacl.signing import SigningKey

from didnode.api.v1 import credentials_pb2 as pb
from didnode.core import builder
from didnode.core.credentials import Issuer, IssuerRecord, VerificationReport, Verifier, VerifyPolicy
from didnode.core.credentials import session as session_request
from didnode.core.credentials.jose import decode_json_object, parse_compact
from didnode.core.credentials.model import Credential, parse_claims
from didnode.core.credentials.status_list import Bitstring, list_number, read_list, resource_id
from didnode.core.credentials.verify import MAX_STATUS_LIST_TOKEN, Check, credential_error
from didnode.core.keystate import DidState
from didnode.errors import (
    CredentialInvalid,
    DuplicateOperation,
    InvalidArgument,
    PrevMismatch,
    SequenceMismatch,
    StatusListInvalid,
    UnknownResource,
)

if TYPE_CHECKING:
    from didnode.client import Client, Receipt

MEDIA_TYPE = "application/vc+jwt"
CAS_ATTEMPTS = 8


def wall_ms() -> int:
    """The local wall clock in ms (the client side may read a clock; the core may not)."""
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------
# Wire conversions
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionCredentialInfo:
    """A node session credential as the client received it."""

    token: str
    credential_id: str
    issuer: str
    subject: str
    kid: str
    valid_from_ms: int
    valid_until_ms: int


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """One entry of a published status list, as the node reports it."""

    list_url: str
    purpose: str
    index: int
    set: bool
    size: int
    allocated: int
    list_valid_from_ms: int
    position: int
    seq: int
    time_ms: int
    op_hash: bytes
    credential: str


def _local_claims(token: str) -> Credential | None:
    """The token's claims parsed locally (for the report of a remote verification); None when they do not parse."""
    try:
        return parse_claims(decode_json_object(parse_compact(token).payload, "payload"))
    except CredentialInvalid:
        return None


def report_in(resp: pb.VerifyCredentialResponse, token: str) -> VerificationReport:
    """A :class:`VerificationReport` from the node's answer (``credential`` re-parsed locally, unverified)."""
    checks = tuple(Check(c.name, c.outcome, c.reason, c.message) for c in resp.checks)
    error = None if resp.valid else credential_error(resp.reason, resp.message, dict(resp.failure_details))
    return VerificationReport(resp.valid, checks, error, _local_claims(token), resp.kid, resp.verified_at_ms, (error,) if error else ())


def session_in(r: pb.IssueSessionCredentialResponse) -> SessionCredentialInfo:
    return SessionCredentialInfo(r.token, r.credential_id, r.issuer, r.subject, r.kid, r.valid_from_ms, r.valid_until_ms)


def status_in(r: pb.GetStatusResponse) -> StatusInfo:
    return StatusInfo(
        r.status_list_credential, r.purpose, r.index, r.set, r.size, r.allocated, r.list_valid_from_ms, r.position, r.seq, r.time_ms, r.op_hash, r.credential
    )


def issuer_in(r: pb.GetIssuerResponse) -> IssuerRecord:
    state = DidState.from_json_text(r.state_json)
    return IssuerRecord(state, {k.key_id: (k.added_time_ms, k.ended_time_ms) for k in r.keys})


def session_request_pb(
    network: str, node_did: str, subject: str, kid: str, key: SigningKey, claims: Mapping[str, Any] | None, lifetime_s: int, now_ms: int
) -> pb.IssueSessionCredentialRequest:
    """A signed session credential request (see :mod:`didnode.core.credentials.session`)."""
    payload = session_request.build_request(subject, node_did, now_ms, claims, lifetime_s)
    return pb.IssueSessionCredentialRequest(request=payload, kid=kid, signature=session_request.sign_request(network, payload, key))


# --------------------------------------------------------------------------
# Offline verification
# --------------------------------------------------------------------------


class OfflineVerifier:
    """Verifies credentials locally; issuer key states and status lists come from a node, cached.

    ``cache_ttl_ms`` bounds how stale a cached key state or status list may
    be: a revocation on the ledger is seen at the latest that long after.
    The signature check and every rule run here; the node is only asked for
    ledger facts (and not at all while the cache is warm).
    """

    def __init__(
        self,
        resolve: Callable[[str], IssuerRecord],
        fetch: Callable[[str, str], str],
        policy: VerifyPolicy = VerifyPolicy(),
        cache_ttl_ms: int = 60_000,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.verifier = Verifier(resolve, fetch, policy, cache_ttl_ms)
        self.clock_ms = clock_ms

    def verify(
        self,
        token: str,
        expected_subject: str | None = None,
        expected_issuer: str | None = None,
        expected_type: str | None = None,
        now_ms: int | None = None,
    ) -> VerificationReport:
        """Verify at ``now_ms`` (default: the local clock). Raises only "could not check" errors (unreachable node)."""
        now = self.clock_ms() if now_ms is None else now_ms
        return self.verifier.verify(token, now, expected_subject, expected_issuer, expected_type)


# --------------------------------------------------------------------------
# Status list administration (issuer side)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Allocation:
    """Indices handed out in list ``number`` (the same index in the revocation and suspension lists)."""

    number: int
    first: int
    count: int
    receipt: "Receipt"


class StatusLists:
    """An issuer's revocation and suspension lists on the ledger, updated with compare-and-set.

    Every change reads the latest list, changes it, signs the new version
    locally and publishes it with the DID's next ``seq``/``prev``. When
    another writer (a second device issuing for the same DID) got there
    first, the node answers SEQUENCE_MISMATCH / PREV_MISMATCH and the change
    is redone on the new state, so indices are never handed out twice.
    """

    def __init__(self, client: "Client", issuer: Issuer, signing_key: SigningKey, network: str, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.client = client
        self.issuer = issuer
        self.key = signing_key
        self.network = network
        self.clock_ms = clock_ms

    @property
    def did(self) -> str:
        return self.issuer.did

    def _read(self, purpose: str, number: int) -> tuple[Bitstring, int] | None:
        """(bits, allocated) of the latest published list, or None if it was never published."""
        try:
            content = self.client.resource(self.did, resource_id(purpose, number)).content
        except UnknownResource:
            return None
        jws = parse_compact(content, MAX_STATUS_LIST_TOKEN)
        if jws.header.did != self.did:
            raise StatusListInvalid(f"the published {resource_id(purpose, number)} of {self.did} is signed by {jws.header.did}; republish it")
        lst = read_list(parse_claims(decode_json_object(jws.payload, "status list payload")))
        return lst.bits, lst.allocated

    def _publish(self, state: DidState, purpose: str, number: int, bits: Bitstring, allocated: int | None) -> "Receipt":
        token = self.issuer.status_list(purpose, number, bits, self.clock_ms(), allocated)
        unsigned = builder.publish(self.network, self.did, state.seq + 1, state.last, resource_id(purpose, number), MEDIA_TYPE, token)
        return self.client.submit(builder.sign(unsigned, [(self.issuer.kid, self.key)]))

    def _retry(self, attempt: Callable[[], Any]) -> Any:
        for i in range(CAS_ATTEMPTS):
            try:
                return attempt()
            except (SequenceMismatch, PrevMismatch, DuplicateOperation):
                # DuplicateOperation: another writer published the byte-identical
                # version (same state, same second, same change) first, so that
                # change is theirs, not ours: redo it on the new state.
                if i == CAS_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (i + 1))
        raise AssertionError("unreachable")

    def current_number(self, state: DidState) -> int:
        """The highest revocation list number the DID has published (0: none yet)."""
        return max((list_number(r["id"], "revocation") for r in state.resources), default=0)

    def allocate(self, count: int = 1) -> Allocation:
        """Hand out ``count`` consecutive indices, creating (and publishing) lists as needed."""
        if count < 1:
            raise InvalidArgument("allocate at least one index")

        def attempt() -> Allocation:
            state = self.client.state(self.did)
            number = max(1, self.current_number(state))
            current = self._read("revocation", number)
            bits, allocated = current if current is not None else (Bitstring(), 0)
            if allocated + count > len(bits):
                number, bits, allocated = number + 1, Bitstring(), 0
                if count > len(bits):
                    raise InvalidArgument(f"at most {len(bits)} indices fit one list")
            if current is None or allocated == 0:
                # The suspension twin must exist before any credential names it.
                if self._read("suspension", number) is None:
                    self._publish(state, "suspension", number, Bitstring(), None)
                    state = self.client.state(self.did)
            receipt = self._publish(state, "revocation", number, bits, allocated + count)
            return Allocation(number, allocated, count, receipt)

        return self._retry(attempt)  # type: ignore[no-any-return]

    def set_status(self, purpose: str, number: int, index: int, value: bool) -> "Receipt":
        """Set (revoke / suspend) or clear (reinstate) bit ``index`` of list ``<purpose>-<number>``.

        Raises :class:`InvalidArgument` for clearing a revocation (final by
        definition) or an index never allocated, :class:`UnknownResource` when the list does not exist.
        """
        if purpose == "revocation" and not value:
            raise InvalidArgument("a revocation is final; only a suspension can be lifted")

        def attempt() -> "Receipt":
            state = self.client.state(self.did)
            current = self._read(purpose, number)
            if current is None:
                raise UnknownResource(f"{self.did} has published no list {resource_id(purpose, number)}", resource=resource_id(purpose, number))
            bits, allocated = current
            rev = self._read("revocation", number) if purpose != "revocation" else current
            in_use = rev[1] if rev is not None else 0
            if index >= in_use:
                raise InvalidArgument(f"index {index} of list {number} was never allocated (allocated: {in_use})", index=index)
            bits.set(index, value)
            return self._publish(state, purpose, number, bits, allocated if purpose == "revocation" else None)

        return self._retry(attempt)  # type: ignore[no-any-return]


__all__ = [
    "Allocation",
    "OfflineVerifier",
    "SessionCredentialInfo",
    "StatusInfo",
    "StatusLists",
    "issuer_in",
    "report_in",
    "session_in",
    "session_request_pb",
    "status_in",
    "wall_ms",
]
