"""Verified reads: every answer a decision depends on, checked against the client's trust policy.

A node's answer is believed only once it is proven under a checkpoint that the
client's :class:`~didnode.core.trust.TrustedLog` accepted (signed by enough
trusted keys, of the policy's network, fresh, and extending every checkpoint
the client verified before; docs/trust.md):

* a DID's current state (:meth:`VerifiedClient.state`, :meth:`~VerifiedClient.key_state`):
  its state record with a state proof, the checkpoint and the consistency proof
  from the client's latest verified size, in one RPC (``GetStateProof`` with
  ``known_size``); a proof of absence is a verified :class:`UnknownDid`;
* the current resolution: recomputed from the proven record, and the node's
  own rendering must equal it (:class:`ProofClaimMismatch` otherwise); a node
  answering that the DID does not exist must prove its absence;
* history and every past version: the DID's operations, each proven in the
  log at the checkpoint's size and replayed into exactly the proven state
  (:mod:`didnode.core.trust.history`); past versions, keys valid at a position
  and an issuer's key times are computed from them here, never taken from a node;
* a resource (status lists): the publish operation the proven state names,
  by its hash;
* the network's governance record (:meth:`VerifiedClient.governance`): the
  current one by its state proof (it lives in the state table under the
  governance identifier), a past one from the identifier's ``govern``
  operations, each proven in the log and replayed into exactly the proven
  record (:mod:`didnode.core.trust.governance_history`). The identifier itself
  is the node's claim (``GetInfo``) unless the caller names it; the usage
  counts of :meth:`didnode.client.Client.governance` are derived from the log,
  not committed to by the state tree: they stay the node's advice.

:class:`VerifiedClient` wraps the blocking :class:`~didnode.client.Client`,
:class:`AsyncVerifiedClient` the :class:`~didnode.client.AsyncClient`; both
share :class:`Checks`, which does no I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from didnode.clock import wall_ms
from didnode.core import canonical
from didnode.core.checkpoint import Checkpoint
from didnode.core.credentials.resolver import IssuerRecord, record_from_versions
from didnode.core.governance.policy import Policy
from didnode.core.document import resolution_result
from didnode.core.keystate import DidState
from didnode.core.keystate.state import ED25519
from didnode.core.proof_bundle import InclusionProof
from didnode.core.results import HistoryEntry, HistoryPage, KeyState, ProvenResolution, ProvenState, Resource
from didnode.core.transparency_verify import verify_inclusion_at, verify_state_at
from didnode.core.trust import ProofBaseMoved, TrustedLog, TrustPolicy
from didnode.core.trust.governance_history import policy_at, verify_governance_at, verify_governance_history
from didnode.core.trust.history import ProvenOperation, Version, pick_version, verify_history
from didnode.errors import (
    HistoryMismatch,
    InvalidArgument,
    MalformedProof,
    NodeUnavailable,
    NoGovernance,
    ProofClaimMismatch,
    UnknownDid,
    UnknownResource,
)

if TYPE_CHECKING:
    from didnode.client.aio import AsyncClient
    from didnode.client.sync import Client

# How often a read is asked before giving up when the latest verified checkpoint keeps moving while it is in flight.
ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class Proven:
    """A DID's state (None: proven absent) and the verified checkpoint it is proven under."""

    did: str
    state: DidState | None
    record: bytes
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class ProvenGovernance:
    """The network's governance record and the verified checkpoint it is proven under."""

    policy: Policy
    record: bytes
    checkpoint: Checkpoint


class Checks:
    """The checks of the module docstring over answers already fetched (no I/O; the clock passed in)."""

    def __init__(self, log: TrustedLog, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.log = log
        self.clock_ms = clock_ms

    @property
    def policy(self) -> TrustPolicy:
        return self.log.policy

    def state(self, did: str, proven: ProvenState, proof_from: int) -> Proven:
        """The state ``proven`` proves for ``did``. Raises the trust and proof errors, or :class:`ProofBaseMoved`."""
        p = proven.proof
        if p.did != did:
            raise ProofClaimMismatch(f"the node answered with the state proof of {p.did[:80]}, not of {did}", did=did)
        checkpoint = self.log.accept(p.checkpoint, proven.consistency, proof_from, self.clock_ms())
        if not p.present:
            verify_state_at(checkpoint, did, None, p.proof)
            return Proven(did, None, b"", checkpoint)
        return Proven(did, verify_state_at(checkpoint, did, p.state_record, p.proof), p.state_record, checkpoint)

    def resolution(self, did: str, proven: ProvenResolution, proof_from: int) -> dict[str, Any]:
        """The resolution result recomputed from the proven record; the node's own must be the same."""
        got = self.state(did, ProvenState(proven.proof, proven.consistency), proof_from)
        state = present(got)
        result = resolution_result(state, state.created_time)
        if result != proven.result:
            raise ProofClaimMismatch(f"the node's resolution of {did} differs from the one its proven state record gives", did=did)
        return result

    def history(self, proven: Proven, entries: list[HistoryEntry]) -> list[Version]:
        """The versions of a proven DID from its entries (proved at the checkpoint's size)."""
        ops = [ProvenOperation(e.position, e.time_ms, e.seq, e.payload, e.proofs, e.inclusion) for e in entries]
        for e in entries:
            if hashlib.sha256(e.payload).digest() != e.op_hash:
                raise HistoryMismatch(f"the node's history of {proven.did} names a hash for operation {e.seq} that is not its payload's", did=proven.did)
        return verify_history(proven.record, self.policy.network, ops, proven.checkpoint)

    def governance(self, governance: str, proven: ProvenState, proof_from: int) -> ProvenGovernance:
        """The governance record ``proven`` proves for identifier ``governance``; a proof of its absence is a
        verified :class:`NoGovernance`. Raises the trust and proof errors, or :class:`ProofBaseMoved`."""
        p = proven.proof
        if p.did != governance:
            raise ProofClaimMismatch(f"the node answered with the state proof of {p.did[:80]}, not of {governance}", did=governance)
        checkpoint = self.log.accept(p.checkpoint, proven.consistency, proof_from, self.clock_ms())
        if not p.present:
            verify_state_at(checkpoint, governance, None, p.proof)
            raise NoGovernance(f"{governance} is no governance record on this ledger (verified: a proof of absence)", did=governance)
        return ProvenGovernance(verify_governance_at(checkpoint, governance, p.state_record, p.proof), p.state_record, checkpoint)

    def governance_at(self, proven: ProvenGovernance, entries: list[HistoryEntry], position: int) -> Policy:
        """The record in effect once the log holds ``position``, from the governance record's operations
        (proved at the checkpoint's size) replayed into the proven record."""
        did = proven.policy.did
        if not 0 <= position < proven.checkpoint.tree_size:
            raise InvalidArgument(f"position {position} is beyond the verified log: positions are 0..{proven.checkpoint.tree_size - 1}", position=position)
        for e in entries:
            if hashlib.sha256(e.payload).digest() != e.op_hash:
                raise HistoryMismatch(f"the node's history of {did} names a hash for operation {e.seq} that is not its payload's", did=did)
        ops = [ProvenOperation(e.position, e.time_ms, e.seq, e.payload, e.proofs, e.inclusion) for e in entries]
        return policy_at(verify_governance_history(proven.record, self.policy.network, ops, proven.checkpoint), position)

    def issuer_record(self, proven: Proven, proofs: list[InclusionProof]) -> IssuerRecord:
        """A proven issuer's record, its key times read from the log entries at its key positions,
        each proven included under the same checkpoint."""
        state = present(proven)
        times = {}
        for proof in proofs:
            if proof.tree_size != proven.checkpoint.tree_size:
                raise ProofClaimMismatch(f"an inclusion proof at size {proof.tree_size}, not the checkpoint's {proven.checkpoint.tree_size}")
            entry = verify_inclusion_at(proven.checkpoint, proof.entry, proof.index, proof.hashes)
            times[entry.position] = entry.time
        missing = [p for p in key_positions(state) if p not in times]
        if missing:
            raise ProofClaimMismatch(f"no proven log entry at positions {missing[:4]} where keys of {state.did} begin or end", did=state.did)
        return record_from_versions(state, times)

    def resource(self, proven: Proven, resource_id: str, entry_proof: InclusionProof) -> Resource:
        """The resource ``resource_id`` of a proven DID, from the log entry its state names."""
        state = present(proven)
        named = next((r for r in state.resources if r["id"] == resource_id), None)
        if named is None:
            raise UnknownResource(f"{state.did} has published no resource {resource_id!r} (verified)", did=state.did, id=resource_id)
        if entry_proof.index != named["pos"]:
            raise ProofClaimMismatch(f"the node sent log entry {entry_proof.index}, not the publish of {resource_id!r} at {named['pos']}", did=state.did)
        # Proven in the log at the checkpoint's size: the entry's time, not covered by the
        # operation hash the state names, is then proven too.
        e = verify_inclusion_at(proven.checkpoint, entry_proof.entry, entry_proof.index, entry_proof.hashes)
        op_hash = hashlib.sha256(e.payload).digest()
        if op_hash.hex() != named["hash"] or e.position != named["pos"]:
            raise ProofClaimMismatch(f"the node sent another operation than the publish of {resource_id!r} that {state.did}'s proven state names", did=state.did)
        body = canonical.loads(e.payload, MalformedProof, "the publish operation")
        res = body.get("resource") if isinstance(body, dict) else None
        if not isinstance(res, dict) or res.get("id") != resource_id or not isinstance(res.get("content"), str):
            raise MalformedProof(f"the publish of {resource_id!r} carries no such resource")
        return Resource(state.did, resource_id, str(res.get("mediaType", "")), res["content"], e.position, int(named["seq"]), e.time, op_hash)


def key_positions(state: DidState) -> list[int]:
    """The ledger positions where the DID's Ed25519 keys were added or ended (what an issuer record needs the times of)."""
    positions = {k.added_pos for k in state.keys if k.kind == ED25519} | {k.ended_pos for k in state.keys if k.kind == ED25519 and k.ended_pos >= 0}
    return sorted(positions)


def present(proven: Proven) -> DidState:
    """The state of a proven DID; raises :class:`UnknownDid` when the proof shows it does not exist."""
    if proven.state is None:
        raise UnknownDid(f"{proven.did} does not exist on this ledger (verified: a proof of absence)", did=proven.did)
    return proven.state


def _trusted(trust: TrustedLog | TrustPolicy) -> TrustedLog:
    return trust if isinstance(trust, TrustedLog) else TrustedLog(trust)


def _kept_moving(did: str) -> NodeUnavailable:
    """Every attempt's answer was overtaken: other reads kept moving the latest verified checkpoint
    (a ledger growing faster than a round trip). Transient: ask again."""
    return NodeUnavailable(
        f"the latest verified checkpoint moved on {ATTEMPTS} times while {did} was asked for; ask again", did=did
    )


def _claimed_absent(proven: Proven) -> NoReturn:
    """A node answered that a DID does not exist: believed only with its proof of absence (then the
    verified :class:`UnknownDid`); a DID the proof shows present is :class:`ProofClaimMismatch`."""
    present(proven)
    raise ProofClaimMismatch(f"the node says {proven.did} does not exist, and its state proof shows it does", did=proven.did)


def _next_page(proven: Proven, entries: list[HistoryEntry], page: HistoryPage) -> int | None:
    """Add ``page`` to ``entries``; the ``after_seq`` of the next page to ask, or None when done. A node
    cannot keep a client paging: it stops once the operations the proven state is due are there
    (the check then finds any lie; pages are never empty and their seqs go up: :func:`didnode.wire.ledger.history_from_pb`)."""
    entries.extend(page.entries)
    if page.next_after_seq is None or len(entries) > present(proven).seq:
        return None
    return page.next_after_seq


def _version_result(did: str, versions: list[Version], version_id: int | None, version_time: str | None) -> dict[str, Any]:
    index = pick_version(did, [v.time_ms for v in versions], version_id, version_time)
    following = versions[index + 1] if index + 1 < len(versions) else None
    nxt = (following.seq, following.time_ms) if following is not None else None
    return resolution_result(versions[index].state, versions[0].time_ms, nxt)


def _key_state(proven: Proven, network: str, at_position: int | None) -> KeyState:
    state = present(proven)
    valid = None if at_position is None else tuple(k.id for k in state.keys_valid_at(at_position))
    return KeyState(state, network, valid)


class VerifiedClient:
    """The blocking :class:`~didnode.client.Client`'s reads, verified (module docstring).

    ``trust``: a :class:`TrustPolicy` or a :class:`TrustedLog` (shared, so its
    verified checkpoints are cached across clients). ``client`` stays usable
    for writes and unverified calls; this class never closes it.
    """

    def __init__(self, client: "Client", trust: TrustedLog | TrustPolicy, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.client = client
        self.checks = Checks(_trusted(trust), clock_ms)

    @property
    def log(self) -> TrustedLog:
        return self.checks.log

    def proven(self, did: str) -> Proven:
        """``did``'s state, or its proven absence, under a verified checkpoint."""
        for _ in range(ATTEMPTS):
            known = self.log.known_size
            try:
                return self.checks.state(did, self.client.proven_state(did, known), known)
            except ProofBaseMoved:
                continue
        raise _kept_moving(did)

    def state(self, did: str) -> DidState:
        """``did``'s current state, verified; :class:`UnknownDid` when proven absent."""
        return present(self.proven(did))

    def key_state(self, did: str, at_position: int | None = None) -> KeyState:
        """As :meth:`Client.key_state`, verified; the keys valid at ``at_position`` are computed here from the proven state."""
        return _key_state(self.proven(did), self.log.policy.network, at_position)

    def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        """The DID Resolution result of the current version, or of a past one computed from the verified history."""
        if version_id is None and version_time is None:
            for _ in range(ATTEMPTS):
                known = self.log.known_size
                try:
                    return self.checks.resolution(did, self._resolve_with_proof(did, known), known)
                except ProofBaseMoved:
                    continue
            raise _kept_moving(did)
        return _version_result(did, self.versions(did), version_id, version_time)

    def _resolve_with_proof(self, did: str, known: int) -> ProvenResolution:
        try:
            return self.client.resolve_with_proof(did, known)
        except UnknownDid:
            _claimed_absent(self.proven(did))

    def history_of(self, proven: Proven) -> tuple[list[HistoryEntry], list[Version]]:
        """The verified history of a proven DID: its entries and the version after each."""
        size = proven.checkpoint.tree_size
        entries: list[HistoryEntry] = []
        after = None
        while True:
            page = self.client.history_page(proven.did, after, prove_at_size=size)
            after = _next_page(proven, entries, page)
            if after is None:
                break
        return entries, self.checks.history(proven, entries)

    def history(self, did: str) -> list[HistoryEntry]:
        """Every operation of ``did``, each proven in the log and chained to its verified state."""
        proven = self.proven(did)
        present(proven)
        return self.history_of(proven)[0]

    def versions(self, did: str) -> list[Version]:
        """The state after each operation of ``did``, computed from its verified history."""
        proven = self.proven(did)
        present(proven)
        return self.history_of(proven)[1]

    def resource(self, did: str, resource_id: str) -> Resource:
        """The latest content of a resource, as the DID's proven state names it."""
        proven = self.proven(did)
        position = next((r["pos"] for r in present(proven).resources if r["id"] == resource_id), None)
        if position is None:
            raise UnknownResource(f"{did} has published no resource {resource_id!r} (verified)", did=did, id=resource_id)
        return self.checks.resource(proven, resource_id, self.client.inclusion_proof(position=position, tree_size=proven.checkpoint.tree_size))

    def issuer_record(self, did: str) -> IssuerRecord:
        """An issuer's verified state with its keys' ledger times: the times of the log entries at the
        positions its proven key records name, each proven included (not its whole history, which
        grows with every status list it publishes)."""
        proven = self.proven(did)
        size = proven.checkpoint.tree_size
        proofs = [self.client.inclusion_proof(position=p, tree_size=size) for p in key_positions(present(proven))]
        return self.checks.issuer_record(proven, proofs)

    def proven_governance(self, governance: str | None = None) -> ProvenGovernance:
        """The network's current governance record under a verified checkpoint; ``governance`` names the
        identifier (None: the one the node names in ``GetInfo``). :class:`NoGovernance` when there is none."""
        gid = governance if governance is not None else self.client.node_info().governance
        if not gid:
            raise NoGovernance("the node says its network has no governance record: anyone may create and publish")
        for _ in range(ATTEMPTS):
            known = self.log.known_size
            try:
                return self.checks.governance(gid, self.client.proven_state(gid, known), known)
            except ProofBaseMoved:
                continue
        raise _kept_moving(gid)

    def governance(self, at_position: int | None = None, governance: str | None = None) -> Policy:
        """The governance record, verified: the current one, or the one in effect once the log holds
        ``at_position`` (replayed here from its proven operations, never taken from a node)."""
        proven = self.proven_governance(governance)
        if at_position is None or at_position >= proven.policy.updated_pos and at_position < proven.checkpoint.tree_size:
            return proven.policy
        entries: list[HistoryEntry] = []
        after = None
        while True:
            page = self.client.history_page(proven.policy.did, after, prove_at_size=proven.checkpoint.tree_size)
            after = _governance_done(proven, entries, page)
            if after is None:
                break
        return self.checks.governance_at(proven, entries, at_position)


def _governance_done(proven: ProvenGovernance, entries: list[HistoryEntry], page: HistoryPage) -> int | None:
    """As :func:`_next_page` for the governance record's history: done once its seq 0..seq are there."""
    entries.extend(page.entries)
    if page.next_after_seq is None or len(entries) > proven.policy.seq:
        return None
    return page.next_after_seq


class AsyncVerifiedClient:
    """:class:`VerifiedClient` over the :class:`~didnode.client.AsyncClient` (the device SDK's)."""

    def __init__(self, client: "AsyncClient", trust: TrustedLog | TrustPolicy, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.client = client
        self.checks = Checks(_trusted(trust), clock_ms)

    @property
    def log(self) -> TrustedLog:
        return self.checks.log

    async def proven(self, did: str) -> Proven:
        """See :meth:`VerifiedClient.proven`."""
        for _ in range(ATTEMPTS):
            known = self.log.known_size
            try:
                return self.checks.state(did, await self.client.proven_state(did, known), known)
            except ProofBaseMoved:
                continue
        raise _kept_moving(did)

    async def state(self, did: str) -> DidState:
        return present(await self.proven(did))

    async def key_state(self, did: str, at_position: int | None = None) -> KeyState:
        return _key_state(await self.proven(did), self.log.policy.network, at_position)

    async def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        if version_id is None and version_time is None:
            for _ in range(ATTEMPTS):
                known = self.log.known_size
                try:
                    return self.checks.resolution(did, await self._resolve_with_proof(did, known), known)
                except ProofBaseMoved:
                    continue
            raise _kept_moving(did)
        return _version_result(did, await self.versions(did), version_id, version_time)

    async def _resolve_with_proof(self, did: str, known: int) -> ProvenResolution:
        try:
            return await self.client.resolve_with_proof(did, known)
        except UnknownDid:
            _claimed_absent(await self.proven(did))

    async def history_of(self, proven: Proven) -> tuple[list[HistoryEntry], list[Version]]:
        size = proven.checkpoint.tree_size
        entries: list[HistoryEntry] = []
        after = None
        while True:
            page = await self.client.history_page(proven.did, after, prove_at_size=size)
            after = _next_page(proven, entries, page)
            if after is None:
                break
        return entries, self.checks.history(proven, entries)

    async def history(self, did: str) -> list[HistoryEntry]:
        proven = await self.proven(did)
        present(proven)
        return (await self.history_of(proven))[0]

    async def versions(self, did: str) -> list[Version]:
        proven = await self.proven(did)
        present(proven)
        return (await self.history_of(proven))[1]

    async def resource(self, did: str, resource_id: str) -> Resource:
        proven = await self.proven(did)
        position = next((r["pos"] for r in present(proven).resources if r["id"] == resource_id), None)
        if position is None:
            raise UnknownResource(f"{did} has published no resource {resource_id!r} (verified)", did=did, id=resource_id)
        return self.checks.resource(proven, resource_id, await self.client.inclusion_proof(position=position, tree_size=proven.checkpoint.tree_size))

    async def issuer_record(self, did: str) -> IssuerRecord:
        """See :meth:`VerifiedClient.issuer_record`."""
        proven = await self.proven(did)
        size = proven.checkpoint.tree_size
        # The key positions' entries are independent reads: asked at once, not one after the other.
        proofs = list(await asyncio.gather(*(self.client.inclusion_proof(position=p, tree_size=size) for p in key_positions(present(proven)))))
        return self.checks.issuer_record(proven, proofs)

    async def proven_governance(self, governance: str | None = None) -> ProvenGovernance:
        """See :meth:`VerifiedClient.proven_governance`."""
        gid = governance if governance is not None else (await self.client.node_info()).governance
        if not gid:
            raise NoGovernance("the node says its network has no governance record: anyone may create and publish")
        for _ in range(ATTEMPTS):
            known = self.log.known_size
            try:
                return self.checks.governance(gid, await self.client.proven_state(gid, known), known)
            except ProofBaseMoved:
                continue
        raise _kept_moving(gid)

    async def governance(self, at_position: int | None = None, governance: str | None = None) -> Policy:
        """See :meth:`VerifiedClient.governance`."""
        proven = await self.proven_governance(governance)
        if at_position is None or at_position >= proven.policy.updated_pos and at_position < proven.checkpoint.tree_size:
            return proven.policy
        entries: list[HistoryEntry] = []
        after = None
        while True:
            page = await self.client.history_page(proven.policy.did, after, prove_at_size=proven.checkpoint.tree_size)
            after = _governance_done(proven, entries, page)
            if after is None:
                break
        return self.checks.governance_at(proven, entries, at_position)
