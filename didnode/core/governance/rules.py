"""Governance rules: applying ``govern`` operations, and admitting creates and publishes.

Pure and deterministic, like :func:`didnode.core.keystate.apply`: everything
they depend on (the ledger position, the ordering time, other DIDs' states,
the usage counted so far) is passed in, so every node of a cluster and every
replay of the log (``didctl audit``) reaches the same verdict on every
operation.

* :func:`govern` applies a ``govern`` operation to the policy. The inception
  (seq 0) must come right after the network's genesis creates (entries
  ``0 .. n-1`` are exactly the creates of the n DIDs it names in ``genesis``)
  and be signed by every one of them; a change (seq >= 1) continues the
  record's ``seq``/``prev`` chain and is signed by at least ``threshold``
  current governors, by no one else but governors it adds (who must agree).
* :func:`admit` decides whether the policy lets a create or a publish in and
  returns the usage to count for it. A create is *sponsored* by the first
  registrar among its other signers (controllers and endorsers, in proof
  order) and counted against that registrar's quota; governors need no
  quota. Every other operation type (rotate, revoke, recover, ...) is never
  gated: a DID that exists can always secure itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Sequence

from didnode.core.governance.policy import (
    CREATES,
    GOVERNORS,
    MAX_PUBLISHERS,
    MAX_REGISTRARS,
    OPEN,
    PUBLISHES,
    Change,
    CreateQuota,
    Inception,
    Policy,
    PublishQuota,
    Usage,
    window_end_ms,
    window_index,
)
from didnode.core.keystate import ACTIVE, ApplyContext
from didnode.core.keystate.transitions import check_signer
from didnode.core.operations import Operation
from didnode.errors import (
    DidDeactivated,
    GovernanceInvalid,
    GovernanceThreshold,
    NotAGovernor,
    NotARegistrar,
    PrevMismatch,
    QuotaExceeded,
    SequenceMismatch,
    TooLarge,
    UnknownDid,
)


def govern(policy: Policy | None, op: Operation, ctx: ApplyContext) -> Policy:
    """Apply the ``govern`` operation ``op`` to ``policy`` (None on a network without governance).

    Precondition: ``op`` came from :func:`~didnode.core.operations.parse` and is
    not already on the ledger. Raises a typed error and changes nothing when
    the operation is not valid.
    """
    if op.seq == 0:
        if policy is not None:
            raise GovernanceInvalid(f"this network is governed by {policy.did} already; an inception comes once, in the genesis")
        assert isinstance(op.governance, Inception)
        return _incept(op, op.governance, ctx)
    if policy is None:
        raise GovernanceInvalid("this network has no governance record: governance is created in the network's genesis (didnode init)")
    if op.did != policy.did:
        raise GovernanceInvalid(f"{op.did} is not this network's governance record ({policy.did})", did=op.did)
    if op.seq != policy.seq + 1:
        raise SequenceMismatch(
            f"governance change has seq {op.seq}; the next seq is {policy.seq + 1}", did=op.did, expected=policy.seq + 1
        )
    if op.prev != policy.last:
        raise PrevMismatch(
            f"governance change names prev {op.prev[:16]}…, but the last governance operation is {policy.last[:16]}…",
            did=op.did, expected=policy.last,
        )
    assert isinstance(op.governance, tuple)
    return _change(policy, op, op.governance, ctx)


def _incept(op: Operation, body: Inception, ctx: ApplyContext) -> Policy:
    n = len(body.genesis)
    if ctx.position != n:
        raise GovernanceInvalid(
            f"a governance inception comes right after the {n} genesis creates it names, at position {n}; this one is at {ctx.position}"
        )
    for i, did in enumerate(body.genesis if not ctx.trusted else ()):
        try:
            created = ctx.resolve(did).created_pos
        except UnknownDid:
            raise GovernanceInvalid(f"genesis DID {did} is not on the ledger", did=did) from None
        if created != i:
            raise GovernanceInvalid(f"genesis DID {did} was created at position {created}, not {i} as the genesis lists it", did=did)
    signed = _signer_dids(op, ctx, set(body.genesis), "genesis DID")
    missing = [d for d in body.genesis if d not in signed]
    if missing:
        raise GovernanceThreshold(f"a governance inception is signed by every genesis DID; {missing[0]} did not sign", did=missing[0])
    for did in (*body.registrars, *body.publishers):
        _must_exist(did, ctx, "registrar" if did in body.registrars else "publisher")
    return Policy(
        did=op.did,
        seq=0,
        last=op.hash.hex(),
        governors=body.governors,
        threshold=body.threshold,
        create=body.create,
        registrars=dict(body.registrars),
        publish=body.publish,
        publishers=dict(body.publishers),
        genesis=body.genesis,
        created_pos=ctx.position,
        updated_pos=ctx.position,
        updated_time=ctx.time,
    )


def _signer_dids(op: Operation, ctx: ApplyContext, allowed: set[str], role: str) -> set[str]:
    """Check every proof: each by a current authentication key of a DID in ``allowed``; return the DIDs that signed."""
    signed: set[str] = set()
    for proof in op.proofs:
        did = proof.kid.partition("#")[0]
        if did not in allowed:
            raise NotAGovernor(f"{proof.kid} signed a governance operation, but {did} is not a current {role}", did=did, kid=proof.kid)
        check_signer(op, proof, did, ctx, role)
        signed.add(did)
    return signed


def _must_exist(did: str, ctx: ApplyContext, role: str) -> None:
    if ctx.trusted:  # replaying an accepted operation (a past policy): checked when it was accepted
        return
    try:
        state = ctx.resolve(did)
    except UnknownDid:
        raise UnknownDid(f"{role} {did} does not exist on this ledger", did=did) from None
    if state.status != ACTIVE:
        raise DidDeactivated(f"{role} {did} is deactivated", did=did)


def _change(policy: Policy, op: Operation, changes: tuple[Change, ...], ctx: ApplyContext) -> Policy:
    incoming = {g for c in changes if c.action == "setGovernors" for g in c.governors} - set(policy.governors)
    signed = _signer_dids(op, ctx, set(policy.governors) | incoming, "governor")
    by_governors = signed & set(policy.governors)
    if len(by_governors) < policy.threshold:
        raise GovernanceThreshold(
            f"a governance change needs {policy.threshold} of the {len(policy.governors)} governors; "
            f"{len(by_governors)} signed", signed=len(by_governors), threshold=policy.threshold,
        )
    registrars = dict(policy.registrars)
    publishers = dict(policy.publishers)
    new = policy
    for c in changes:
        if c.action == "addRegistrar":
            if c.did in registrars:
                raise GovernanceInvalid(f"{c.did} is a registrar already (setRegistrarQuota changes its quota)", did=c.did)
            _must_exist(c.did, ctx, "registrar")
            if len(registrars) >= MAX_REGISTRARS:
                raise TooLarge(f"a network lists at most {MAX_REGISTRARS} registrars", field="registrars")
            registrars[c.did] = c.create_quota or CreateQuota()
        elif c.action in ("setRegistrarQuota", "removeRegistrar"):
            if c.did not in registrars:
                raise GovernanceInvalid(f"{c.did} is not a registrar of this network", did=c.did)
            if c.action == "removeRegistrar":
                del registrars[c.did]
            else:
                registrars[c.did] = c.create_quota or CreateQuota()
        elif c.action == "setCreatePolicy":
            new = replace(new, create=c.create)
        elif c.action == "setPublishQuota":
            new = replace(new, publish=c.publish_quota)
        elif c.action == "setPublisherQuota":
            _set_publisher(publishers, c.did, c.publish_quota, ctx)
        else:  # setGovernors: every governor it adds agreed (signed)
            for g in c.governors:
                if g not in policy.governors:
                    _must_exist(g, ctx, "governor")
                    if g not in signed:
                        raise GovernanceThreshold(f"new governor {g} did not sign the change that adds it", did=g)
            new = replace(new, governors=c.governors, threshold=c.threshold)
    return replace(
        new,
        seq=op.seq,
        last=op.hash.hex(),
        registrars=registrars,
        publishers=publishers,
        updated_pos=ctx.position,
        updated_time=ctx.time,
    )


def _set_publisher(publishers: dict[str, PublishQuota], did: str, quota: PublishQuota | None, ctx: ApplyContext) -> None:
    if quota is None:
        if publishers.pop(did, None) is None:
            raise GovernanceInvalid(f"{did} has no quota of its own to remove", did=did)
        return
    if did not in publishers:
        _must_exist(did, ctx, "publisher")
        if len(publishers) >= MAX_PUBLISHERS:
            raise TooLarge(f"a network sets its own quota for at most {MAX_PUBLISHERS} publishers", field="publishers")
    publishers[did] = quota


# --------------------------------------------------------------------------
# Admission of creates and publishes
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Charge:
    """Usage to record for an admitted operation: ``kind`` (CREATES or PUBLISHES) of ``did``, now ``usage``."""

    kind: bytes
    did: str
    usage: Usage


UsageLookup = Callable[[bytes, str], Usage]


def admit(policy: Policy | None, op: Operation, time_ms: int, usage: UsageLookup) -> tuple[Charge, ...]:
    """May ``op`` (already valid against its DID's state) enter the ledger at ordering time ``time_ms``?

    Returns the usage to record when it is accepted; raises
    :class:`NotARegistrar` or :class:`QuotaExceeded` when the policy says no.
    ``usage(kind, did)`` returns what the log counted so far (including the
    batch's earlier operations).
    """
    if policy is None:
        return ()
    if op.type == "create":
        return admit_create(policy, op.did, [p.kid.partition("#")[0] for p in op.proofs], time_ms, usage)
    if op.type in ("publish", "anchor"):  # an anchor is a ledger resource too: the publish quota counts it
        return _admit_publish(policy, op, time_ms, usage)
    return ()


def admit_create(policy: Policy, did: str, signers: Sequence[str], time_ms: int, usage: UsageLookup) -> tuple[Charge, ...]:
    """The create of ``did`` whose proofs are by ``signers`` (DIDs, in proof order; its own among them).

    The create is *sponsored* by the first registrar among the other signers
    (controllers and endorsers) and counted against that registrar's quota.
    """
    others = [d for d in signers if d != did]
    by_governor = any(d in policy.governors for d in others)
    registrar = next((d for d in others if d in policy.registrars), "")
    if policy.create == GOVERNORS and not by_governor:
        raise NotARegistrar(f"this network ({policy.did}) admits creates signed by a governor only", did=did)
    if not registrar:
        if by_governor or policy.create == OPEN:
            return ()
        raise NotARegistrar(
            f"this network admits a create only when a listed registrar signs it (as controller or endorser); "
            f"no signer of {did} is one", did=did,
        )
    quota = policy.registrars[registrar]
    counted = usage(CREATES, registrar)
    if quota.total is not None and counted.total_count + 1 > quota.total:
        raise QuotaExceeded(
            f"registrar {registrar} has used its total quota of {quota.total} creates; the governors can raise it",
            did=registrar, quota="total", limit=quota.total,
        )
    if quota.per_window is not None and quota.window_s is not None:
        index = window_index(time_ms, quota.window_s)
        counted = counted.in_window(index)
        if counted.count + 1 > quota.per_window:
            reset = window_end_ms(index, quota.window_s)
            raise QuotaExceeded(
                f"registrar {registrar} has made {counted.count} creates in this window of {quota.window_s} s, its quota; "
                f"the window ends at {_utc(reset)}", did=registrar, quota="window", limit=quota.per_window, reset_time=reset,
            )
    return (Charge(CREATES, registrar, counted.plus(1, 0)),)


def _admit_publish(policy: Policy, op: Operation, time_ms: int, usage: UsageLookup) -> tuple[Charge, ...]:
    if policy.create == GOVERNORS and op.did not in policy.governors:
        raise NotARegistrar(f"this network ({policy.did}) admits publishes by governors only", did=op.did)
    size = len(op.payload)
    counted = usage(PUBLISHES, op.did)
    quota = policy.publish_quota(op.did)
    if quota is not None:
        index = window_index(time_ms, quota.window_s)
        counted = counted.in_window(index)
        reset = window_end_ms(index, quota.window_s)
        if quota.count is not None and counted.count + 1 > quota.count:
            raise QuotaExceeded(
                f"{op.did} has published {counted.count} resources in this window of {quota.window_s} s, its quota; "
                f"the window ends at {_utc(reset)}", did=op.did, quota="count", limit=quota.count, reset_time=reset,
            )
        if quota.bytes is not None and counted.bytes + size > quota.bytes:
            raise QuotaExceeded(
                f"{op.did} has published {counted.bytes} bytes in this window of {quota.window_s} s; {size} more would pass "
                f"its quota of {quota.bytes}; the window ends at {_utc(reset)}",
                did=op.did, quota="bytes", limit=quota.bytes, reset_time=reset,
            )
    return (Charge(PUBLISHES, op.did, counted.plus(1, size)),)


def _utc(ms: int) -> str:
    """An ordering time for people: ISO 8601 UTC to the second."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
