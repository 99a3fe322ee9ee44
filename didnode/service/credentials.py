"""Credential use cases of a node: verify against the ledger, issue session credentials, read status.

No protobuf here (the transport converts). The verifier reads the ledger on
every call (no issuer cache): a revocation, rotation or deactivation applies
to the very next verification on every node that has applied it.

Threading: one :class:`CredentialService` belongs to the node's event loop
(its verifier's caches are plain dicts); the in-process
:meth:`CredentialService.issue_session_credential` is for code on that loop
(the authentication handshake).
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping

from didnode.core.credentials import Issuer, IssuerRecord, VerificationReport, Verifier, VerifyPolicy, record_from_versions
from didnode.core.credentials import session as session_request
from didnode.core.credentials.model import NODE_SESSION, parse_status_list_url
from didnode.core.credentials.status_list import StatusList
from didnode.core.did import split_did_url, validate_did
from didnode.core.keystate import CURRENT, REVOKED, ROTATED
from didnode.core.operations import verify_raw
from didnode.core.results import SessionCredential, StatusInfo
from didnode.errors import (
    ClaimsInvalid,
    DidDeactivated,
    InvalidArgument,
    KeyRevoked,
    KeyRotated,
    Overloaded,
    ReplayedRequest,
    StaleRequest,
    UnknownKey,
    WrongSigner,
)
from didnode.service.ledger import LedgerService
from didnode.service.node import Node

DEFAULT_SESSION_LIFETIME_S = 15 * 60
NODE_KEY_ID = "key-1"
MAX_PENDING_NONCES = 100_000


class CredentialService:
    """Credential use cases for one node."""

    def __init__(self, node: Node, ledger: LedgerService, session_lifetime_s: int | None = None, policy: VerifyPolicy = VerifyPolicy()) -> None:
        self.node = node
        self.ledger = ledger
        self.session_lifetime_s = session_lifetime_s or node.config.session_lifetime_s or DEFAULT_SESSION_LIFETIME_S
        self.verifier = Verifier(self.issuer_record, self.fetch_status_list, policy, cache_ttl_ms=0)
        self.issuer = Issuer(node.node_did, NODE_KEY_ID, node.signing_key)
        self._nonces: dict[str, int] = {}

    # -- resolver and fetcher backed by LMDB -----------------------------------

    def issuer_record(self, did: str) -> IssuerRecord:
        """``did``'s state and the ledger times of its keys (one read transaction)."""
        validate_did(did)
        tables = self.node.tables
        with self.node.store.read() as txn:
            state = tables.get_state(txn, did)
            versions = tables.versions(txn, did)
        return record_from_versions(state, {v.position: v.time for v in versions})

    def fetch_status_list(self, did: str, resource_id: str) -> str:
        """The latest published content of ``did``'s resource ``resource_id``."""
        return self.ledger.resource(did, resource_id).content

    # -- verify ----------------------------------------------------------------

    def verify(
        self, token: str, expected_subject: str | None = None, expected_issuer: str | None = None, expected_type: str | None = None
    ) -> VerificationReport:
        """Verify ``token`` at the node's current time (a report; never raises for an invalid credential)."""
        return self.verifier.verify(token, self.node.clock_ms(), expected_subject, expected_issuer, expected_type)

    # -- session credentials ------------------------------------------------------

    def issue_session_credential(self, subject_did: str, claims: Mapping[str, Any] | None = None, lifetime: int | None = None) -> SessionCredential:
        """A ``NodeSessionCredential`` about ``subject_did``, signed by the node's key-1.

        Precondition: the caller has authenticated ``subject_did`` (the
        handshake, or :meth:`issue_for_request`). ``lifetime`` in seconds;
        None or 0 means the configured lifetime, which is also the maximum.
        Raises :class:`UnknownDid`, :class:`DidDeactivated` (subject),
        :class:`InvalidArgument` (lifetime, claims), :class:`KeyRotated` when
        the node's key-1 is no longer current (an operator rotated the node DID).
        """
        validate_did(subject_did)
        lifetime_s = lifetime or self.session_lifetime_s
        if not 0 < lifetime_s <= self.session_lifetime_s:
            raise InvalidArgument(f"lifetime must be 1..{self.session_lifetime_s} seconds, not {lifetime_s}", lifetime=lifetime_s)
        subject = self.ledger.state(subject_did)
        if not subject.active:
            raise DidDeactivated(f"{subject_did} is deactivated; no session credential is issued for it", did=subject_did)
        node_key = self.ledger.state(self.node.node_did).key(NODE_KEY_ID)
        if node_key.fate != CURRENT or node_key.raw != bytes(self.node.signing_key.verify_key):
            raise KeyRotated(f"the node's {NODE_KEY_ID} is no longer current; it cannot issue session credentials", kid=self.issuer.kid)
        now = self.node.clock_ms()
        # Whole seconds: validFrom and validUntil are second-precision timestamps.
        until = (now // 1000 + lifetime_s) * 1000
        try:
            token = self.issuer.issue(subject_did, [NODE_SESSION], dict(claims or {}), now, until)
        except ClaimsInvalid as exc:
            raise InvalidArgument(f"session claims: {exc}") from None
        cred = self.verifier.verify(token, now).raise_if_invalid()
        return SessionCredential(token, cred.id or "", self.node.node_did, subject_did, self.issuer.kid, cred.valid_from, until)

    def issue_for_request(self, request: bytes, kid: str, signature: bytes) -> SessionCredential:
        """Issue after checking the subject's signed request (see :mod:`didnode.core.credentials.session`).

        Raises :class:`MalformedMessage`/:class:`InvalidArgument` (request),
        :class:`StaleRequest`, :class:`ReplayedRequest`, :class:`WrongSigner`,
        :class:`KeyRevoked`, :class:`KeyRotated`, :class:`InvalidSignature`,
        :class:`DidDeactivated` or :class:`UnknownDid`.
        """
        req = session_request.parse_request(request)
        if req.node != self.node.node_did:
            raise InvalidArgument(f"the request is addressed to node {req.node}, this node is {self.node.node_did}")
        now = self.node.clock_ms()
        if abs(now - req.timestamp) > session_request.REQUEST_WINDOW_MS:
            raise StaleRequest(
                f"request timestamp is {abs(now - req.timestamp) // 1000} s away from the node's clock; at most "
                f"{session_request.REQUEST_WINDOW_MS // 1000} s are accepted"
            )
        did, key_id = split_did_url(kid)
        if did != req.subject:
            raise WrongSigner(f"the request must be signed by a key of its subject {req.subject}, not {kid}", kid=kid)
        state = self.ledger.state(did)
        if not state.active:
            raise DidDeactivated(f"{did} is deactivated", did=did)
        try:
            key = state.key(key_id)
        except UnknownKey:
            raise WrongSigner(f"{kid} is not a key of {did}", kid=kid) from None
        if key.fate == REVOKED:
            raise KeyRevoked(f"{kid} was revoked; it can never sign again", kid=kid)
        if key.fate == ROTATED:
            raise KeyRotated(f"{kid} was rotated out; only a current key proves control", kid=kid)
        if "authentication" not in key.purposes:
            raise WrongSigner(f"{kid} is not an authentication key of {did}", kid=kid)
        verify_raw(key.raw, signature, session_request.signing_bytes(self.node.network, request), kid)
        # Only authenticated requests reach the nonce table, so junk cannot fill it.
        self._use_nonce(req.nonce, now)
        return self.issue_session_credential(req.subject, req.claims, req.lifetime or None)

    def _use_nonce(self, nonce: str, now: int) -> None:
        window = session_request.REQUEST_WINDOW_MS
        if len(self._nonces) > MAX_PENDING_NONCES // 2:
            self._nonces = {n: t for n, t in self._nonces.items() if t > now}
        if nonce in self._nonces and self._nonces[nonce] > now:
            raise ReplayedRequest("this session request was already used (nonce seen)")
        if len(self._nonces) >= MAX_PENDING_NONCES:
            raise Overloaded("too many session requests in the replay window; retry later")
        # A nonce must be remembered as long as its timestamp is acceptable: window on both sides.
        self._nonces[nonce] = now + 2 * window

    # -- status ------------------------------------------------------------------

    def status(self, list_url: str, index: int, include_credential: bool = False) -> StatusInfo:
        """Entry ``index`` of the latest published list at ``list_url`` (the list is verified first).

        Raises :class:`InvalidArgument` (URL), :class:`UnknownResource`,
        :class:`StatusListInvalid` / :class:`StatusListForeignSigner` /
        :class:`StatusListStale` (the list itself is not acceptable).
        """
        try:
            did, rid = parse_status_list_url(list_url)
        except ClaimsInvalid as exc:
            raise InvalidArgument(str(exc)) from None
        res = self.ledger.resource(did, rid)
        # Verify the very content whose ledger position is reported.
        lst: StatusList = self.verifier.verify_status_list(res.content, did, self.node.clock_ms())
        value = lst.bits.get(index)
        return StatusInfo(
            list_url,
            lst.purpose,
            index,
            value,
            len(lst.bits),
            lst.allocated or 0,  # the legacy member; lists allocated at random do not tell
            lst.credential.valid_from,
            res.position,
            res.seq,
            res.time_ms,
            res.op_hash,
            res.content if include_credential else "",
        )


_SERVICES: "weakref.WeakKeyDictionary[Node, CredentialService]" = weakref.WeakKeyDictionary()


def credential_service(node: Node, ledger: LedgerService) -> CredentialService:
    """The node's one :class:`CredentialService` (created on first use).

    The gRPC servicer and the authentication handshake share it, so they
    share the session-request nonce table and the verifier's caches.
    Precondition: called on the node's event loop thread.
    """
    service = _SERVICES.get(node)
    if service is None:
        service = CredentialService(node, ledger)
        _SERVICES[node] = service
    return service
