"""Verification of ``vc+jwt`` credentials against the ledger's key state.

A :class:`Verifier` takes a resolver (issuer DID -> :class:`IssuerRecord`),
a status-list fetcher ((DID, resource id) -> the latest status list token)
and a :class:`VerifyPolicy`; ``now`` is passed to every call. No clock, no
network: the callables are where the node (LMDB) or a client (RPC + cache)
plug in.

Every verification returns a :class:`VerificationReport` with one
:class:`Check` per aspect, in this order:

==========  ===========================================================
format      size bound, compact JWS, header profile (alg, typ, kid, crit and key-carrying members)
claims      VC 2.0 profile shape, JWT claims agree, type-specific claims
issuer      the kid's DID is the issuer (and the one expected, if any)
key_state   issuer active; key exists, assertionMethod, not revoked,
            not rotated before the claimed signing time
signature   Ed25519 over the signing input
validity    validFrom / validUntil / signing time against now (+- skew)
subject     credentialSubject.id is the expected subject (holder binding)
status      each Bitstring Status List entry (revocation, suspension)
==========  ===========================================================

The first five are gates: once one fails, the rest cannot be trusted and
are reported ``skipped``. The last three are evaluated independently, so a
report can say "expired" *and* "revoked". The report's reason is the first
failure's reason; :meth:`VerificationReport.raise_if_invalid` raises it.

Errors that are not about the credential (an unreachable node behind the
resolver) propagate as they are: "could not check" is not "invalid".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from didnode.core.credentials.jose import (
    ALGS,
    CompactJws,
    HeaderCache,
    check_signature,
    decode_json_object,
    parse_compact,
)
from didnode.core.credentials.model import Credential, StatusEntry, format_time, parse_claims
from didnode.core.credentials.resolver import IssuerCache, KeyView, Resolver
from didnode.core.credentials.status_list import StatusList, read_list
from didnode.core.keystate import REVOKED, ROTATED
from didnode.errors import (
    CredentialExpired,
    CredentialInvalid,
    CredentialKeyRevoked,
    CredentialKeyRotated,
    CredentialNotYetValid,
    CredentialRevoked,
    CredentialSuspended,
    IssuerDeactivated,
    IssuerNotExpected,
    IssuerUnknown,
    KeyNotAssertionMethod,
    KeyNotValidAtIssuance,
    KidNotIssuer,
    KidUnknown,
    StatusListForeignSigner,
    StatusListInvalid,
    StatusListNotFound,
    StatusListStale,
    SubjectMismatch,
    TypeNotExpected,
    UnknownDid,
    UnknownResource,
    error_for_reason,
)

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
CHECK_NAMES = ("format", "claims", "issuer", "key_state", "signature", "validity", "subject", "status")
GATES = CHECK_NAMES[:5]
MAX_STATUS_LIST_TOKEN = 60_000  # the ledger's resource content limit

StatusFetcher = Callable[[str, str], str]


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """What a verifier accepts.

    ``max_status_list_age_ms``: a status list credential whose validFrom is
    older than this is stale (None: any age; the ledger always serves the
    latest list, so staleness matters for lists cached or relayed offline).
    ``accept_rotated_keys``: False refuses every key no longer current.
    """

    allowed_algs: frozenset[str] = ALGS
    max_token_chars: int = 16384
    clock_skew_ms: int = 60_000
    max_status_list_age_ms: int | None = None
    check_status: bool = True
    accept_rotated_keys: bool = True


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check: passed, failed (with its reason code) or skipped."""

    name: str
    outcome: str
    reason: str = ""
    message: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"name": self.name, "outcome": self.outcome}
        if self.reason:
            out["reason"] = self.reason
        if self.message:
            out["message"] = self.message
        return out


# Passed checks without a message are immutable constants: the fast path allocates none.
_PASS = {name: Check(name, PASSED) for name in CHECK_NAMES}
_GATES_PASSED = tuple(_PASS[n] for n in GATES)
_NO_SUBJECT = Check("subject", SKIPPED, message="no expected subject given: holder binding not checked")
_NO_STATUS = Check("status", SKIPPED, message="the credential has no credentialStatus")
_STATUS_OFF = Check("status", SKIPPED, message="status checking is off in this verifier's policy")


def _failed(name: str, err: CredentialInvalid) -> Check:
    return Check(name, FAILED, err.reason, err.message)


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Every check and its outcome; ``error`` is the first failure (None when valid)."""

    valid: bool
    checks: tuple[Check, ...]
    error: CredentialInvalid | None
    credential: Credential | None
    kid: str
    verified_at: int
    failures: tuple[CredentialInvalid, ...] = field(default=())

    @property
    def reason(self) -> str:
        return self.error.reason if self.error is not None else ""

    @property
    def message(self) -> str:
        return self.error.message if self.error is not None else ""

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def raise_if_invalid(self) -> Credential:
        """The credential if valid; else raise the first failure (a :class:`CredentialInvalid`)."""
        if self.error is not None:
            raise self.error
        assert self.credential is not None
        return self.credential

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"valid": self.valid}
        if self.error is not None:
            out["reason"] = self.error.reason
            out["message"] = self.error.message
        out["checks"] = [c.to_json() for c in self.checks]
        out["kid"] = self.kid
        out["verifiedAt"] = format_time(self.verified_at)
        cred = self.credential
        if cred is not None:
            out["issuer"] = cred.issuer
            out["subject"] = cred.subject
            out["types"] = list(cred.types)
            out["id"] = cred.id
            out["validFrom"] = format_time(cred.valid_from)
            out["validUntil"] = format_time(cred.valid_until) if cred.valid_until is not None else None
            out["credentialSubject"] = cred.claims.get("credentialSubject")
        return out


def credential_error(reason: str, message: str, details: Mapping[str, str] | None = None) -> CredentialInvalid:
    """The :class:`CredentialInvalid` for a reason code received from a peer (e.g. the node's report)."""
    err = error_for_reason(reason, message, details)
    if isinstance(err, CredentialInvalid):
        return err
    generic = CredentialInvalid(message, **dict(details or {}))
    generic.reason = reason  # type: ignore[misc]  # an unknown code from a newer peer keeps its name
    return generic


@dataclass(slots=True)
class _VerifiedList:
    """A status list token whose signature verified once (immutable fact: key ids are never reused)."""

    jws: CompactJws
    status_list: StatusList


class Verifier:
    """Verifies credentials; holds the caches (headers, issuers, status lists).

    Not thread-safe (plain dicts): use one per thread or event loop.
    ``cache_ttl_ms`` bounds how stale cached issuer key states and fetched
    status lists may be (0: fetch every time, as the node does).
    """

    def __init__(
        self,
        resolve: Resolver,
        fetch_status: StatusFetcher | None = None,
        policy: VerifyPolicy = VerifyPolicy(),
        cache_ttl_ms: int = 0,
    ) -> None:
        self.policy = policy
        self.fetch_status = fetch_status
        self.issuers = IssuerCache(resolve, cache_ttl_ms)
        self.headers = HeaderCache()
        self.cache_ttl_ms = cache_ttl_ms
        self._fetched: dict[tuple[str, str], tuple[int, str]] = {}
        self._lists: dict[str, _VerifiedList] = {}

    # -- the public calls --------------------------------------------------

    def verify(
        self,
        token: str,
        now_ms: int,
        expected_subject: str | None = None,
        expected_issuer: str | None = None,
        expected_type: str | None = None,
    ) -> VerificationReport:
        """Check ``token`` at time ``now_ms``; never raises :class:`CredentialInvalid` (see the report).

        Precondition: ``now_ms`` is the verifier's current time in ms since the epoch.
        Raises only errors of the resolver or fetcher that are not verdicts
        (e.g. :class:`didnode.errors.NodeUnavailable`).
        """
        p = self.policy
        stage = 0
        cred: Credential | None = None
        kid = ""
        key_check = _PASS["key_state"]
        try:
            jws = parse_compact(token, p.max_token_chars, p.allowed_algs, self.headers)
            kid = jws.header.kid
            claims = decode_json_object(jws.payload, "payload")
            stage = 1
            cred = parse_claims(claims)
            if expected_type is not None and expected_type not in cred.types:
                raise TypeNotExpected(f"the credential is of type {', '.join(cred.types)}, not {expected_type}", type=expected_type)
            stage = 2
            if jws.header.did != cred.issuer:
                raise KidNotIssuer(f"kid {kid} names a key of {jws.header.did}, but the issuer is {cred.issuer}", kid=kid)
            if expected_issuer is not None and cred.issuer != expected_issuer:
                raise IssuerNotExpected(f"issued by {cred.issuer}, not by the expected {expected_issuer}", issuer=cred.issuer)
            stage = 3
            key = self._key(jws.header.did, jws.header.key_id, kid, cred.signed_at, now_ms)
            if key.fate == ROTATED:
                key_check = Check(
                    "key_state",
                    PASSED,
                    message=f"{kid} was rotated out at {format_time(key.ended_time)}; the credential was signed before",
                )
            stage = 4
            check_signature(jws, key.raw)
        except CredentialInvalid as err:
            done = [_PASS[n] for n in GATES[:stage]]
            if stage == 4:
                done[3] = key_check
            done.append(_failed(GATES[stage], err))
            why = f"not evaluated: the {GATES[stage]} check failed"
            done.extend(Check(n, SKIPPED, message=why) for n in CHECK_NAMES[stage + 1 :])
            return VerificationReport(False, tuple(done), err, cred, kid, now_ms, (err,))

        failures: list[CredentialInvalid] = []
        validity = self._validity(cred, now_ms, failures)
        if expected_subject is None:
            subject = _NO_SUBJECT
        elif cred.subject == expected_subject:
            subject = _PASS["subject"]
        else:
            mismatch = SubjectMismatch(f"the credential is about {cred.subject}, not {expected_subject}", subject=str(cred.subject))
            failures.append(mismatch)
            subject = _failed("subject", mismatch)
        status = self._status(cred, now_ms, failures)
        gates = _GATES_PASSED if key_check is _PASS["key_state"] else (*_GATES_PASSED[:3], key_check, _GATES_PASSED[4])
        checks = (*gates, validity, subject, status)
        if failures:
            return VerificationReport(False, checks, failures[0], cred, kid, now_ms, tuple(failures))
        return VerificationReport(True, checks, None, cred, kid, now_ms)

    # -- key state ---------------------------------------------------------

    def _key(self, did: str, key_id: str, kid: str, signed_at: int, now_ms: int) -> KeyView:
        """The issuer key that may have signed at ``signed_at``; raises the precise failure."""
        try:
            issuer = self.issuers.get(did, now_ms)
        except UnknownDid:
            raise IssuerUnknown(f"the issuer {did} does not exist on this ledger", did=did) from None
        if not issuer.active:
            raise IssuerDeactivated(
                f"the issuer {did} was deactivated at {format_time(issuer.deactivated_time)}; its credentials no longer verify", did=did
            )
        key = issuer.keys.get(key_id)
        if key is None:
            raise KidUnknown(f"{did} has never had a signing key {key_id!r}", kid=kid)
        if not key.assertion:
            raise KeyNotAssertionMethod(f"{kid} is not an assertionMethod key of {did}", kid=kid)
        if key.fate == REVOKED:
            raise CredentialKeyRevoked(f"{kid} was revoked ({key.reason or 'compromised'}); it verifies nothing", kid=kid)
        if key.fate == ROTATED and (not self.policy.accept_rotated_keys or signed_at >= key.ended_time):
            raise CredentialKeyRotated(
                f"{kid} was rotated out at {format_time(key.ended_time)}, before the credential's signing time {format_time(signed_at)}",
                kid=kid,
            )
        if signed_at + self.policy.clock_skew_ms < key.added_time:
            raise KeyNotValidAtIssuance(
                f"the credential claims to be signed at {format_time(signed_at)}, before {kid} existed ({format_time(key.added_time)})",
                kid=kid,
            )
        return key

    # -- validity ----------------------------------------------------------

    def _validity(self, cred: Credential, now: int, failures: list[CredentialInvalid]) -> Check:
        skew = self.policy.clock_skew_ms
        err: CredentialInvalid
        if cred.valid_until is not None and now >= cred.valid_until + skew:
            err = CredentialExpired(f"the credential expired at {format_time(cred.valid_until)}", validUntil=format_time(cred.valid_until))
        elif now + skew < cred.valid_from:
            err = CredentialNotYetValid(f"the credential is valid from {format_time(cred.valid_from)}", validFrom=format_time(cred.valid_from))
        elif now + skew < cred.signed_at:
            err = CredentialNotYetValid(f"the credential claims to be signed in the future ({format_time(cred.signed_at)})")
        else:
            return _PASS["validity"]
        failures.append(err)
        return _failed("validity", err)

    # -- status ------------------------------------------------------------

    def _status(self, cred: Credential, now: int, failures: list[CredentialInvalid]) -> Check:
        if not cred.status:
            return _NO_STATUS
        if not self.policy.check_status:
            return _STATUS_OFF
        try:
            for entry in cred.status:
                self._check_entry(cred.issuer, entry, now)
        except CredentialInvalid as err:
            failures.append(err)
            return _failed("status", err)
        return _PASS["status"]

    def _check_entry(self, issuer: str, entry: StatusEntry, now: int) -> None:
        lst = self.status_list(issuer, entry.resource_id, now)
        if (lst.did, lst.resource_id) != (entry.list_did, entry.resource_id):
            # Compared as ledger resources: one list is named by URLs of any host (status_url.py).
            raise StatusListInvalid(f"the status list at {entry.list_url} says its id is {lst.url}, another list")
        if lst.purpose != entry.purpose:
            raise StatusListInvalid(f"the status list at {entry.list_url} is for {lst.purpose}, the entry for {entry.purpose}")
        if lst.bits.get(entry.index):
            if entry.purpose == "revocation":
                raise CredentialRevoked(f"the credential is revoked ({entry.list_url} index {entry.index})", index=entry.index)
            raise CredentialSuspended(f"the credential is suspended ({entry.list_url} index {entry.index})", index=entry.index)

    def status_list(self, issuer: str, resource_id: str, now: int) -> StatusList:
        """The issuer's latest status list ``resource_id``, verified and fresh per the policy.

        Raises :class:`StatusListNotFound`, :class:`StatusListForeignSigner`,
        :class:`StatusListStale` or :class:`StatusListInvalid`.
        """
        if self.fetch_status is None:
            raise StatusListNotFound("this verifier has no status list source; the credential's status cannot be checked")
        key = (issuer, resource_id)
        cached = self._fetched.get(key)
        if cached is not None and 0 <= now - cached[0] < self.cache_ttl_ms:
            token = cached[1]
        else:
            try:
                token = self.fetch_status(issuer, resource_id)
            except (UnknownResource, UnknownDid):
                raise StatusListNotFound(f"{issuer} has published no status list {resource_id!r}", resource=resource_id) from None
            if self.cache_ttl_ms > 0:
                self._fetched[key] = (now, token)
                if len(self._fetched) > 256:
                    del self._fetched[next(iter(self._fetched))]
        return self.verify_status_list(token, issuer, now)

    def verify_status_list(self, token: str, issuer: str, now: int) -> StatusList:
        """Verify a status list credential ``token`` of ``issuer`` at ``now`` and decode it.

        The signature check and decoding are done once per token (cached);
        key fates and freshness are checked on every call. Raises
        :class:`StatusListForeignSigner`, :class:`StatusListStale` or
        :class:`StatusListInvalid` (its ``cause`` detail names the inner reason).
        """
        verified = self._lists.get(token)
        try:
            if verified is None:
                jws = parse_compact(token, MAX_STATUS_LIST_TOKEN, self.policy.allowed_algs, self.headers)
                cred = parse_claims(decode_json_object(jws.payload, "status list payload"))
            else:
                jws, cred = verified.jws, verified.status_list.credential
        except CredentialInvalid as err:
            raise StatusListInvalid(f"the status list credential is invalid: {err.message}", cause=err.reason) from None
        if jws.header.did != issuer or cred.issuer != issuer:
            signer = jws.header.did if jws.header.did != issuer else cred.issuer
            raise StatusListForeignSigner(f"the status list is signed by {signer}, not by the credential's issuer {issuer}", signer=signer)
        try:
            # Key fates can change after the list was first verified: check them every time.
            key = self._key(issuer, jws.header.key_id, jws.header.kid, cred.signed_at, now)
            if verified is None:
                check_signature(jws, key.raw)
                verified = _VerifiedList(jws, read_list(cred))
                self._lists[token] = verified
                if len(self._lists) > 64:
                    del self._lists[next(iter(self._lists))]
        except StatusListInvalid:
            raise
        except CredentialInvalid as err:
            raise StatusListInvalid(f"the status list credential does not verify: {err.message}", cause=err.reason) from None
        lst = verified.status_list
        max_age = self.policy.max_status_list_age_ms
        if max_age is not None and now - lst.credential.valid_from > max_age:
            raise StatusListStale(
                f"the status list was issued at {format_time(lst.credential.valid_from)}, older than this verifier accepts ({max_age // 1000} s)",
                validFrom=format_time(lst.credential.valid_from),
            )
        if lst.credential.valid_until is not None and now >= lst.credential.valid_until:
            raise StatusListStale(f"the status list expired at {format_time(lst.credential.valid_until)}")
        return lst
