"""Status list administration on the issuer's side: allocate indices, revoke, suspend and reinstate on the ledger.

Issuers sign their lists locally and publish only signed list credentials; no
private key is ever sent to a node. :class:`StatusLists` needs only three ledger
calls (:class:`LedgerAccess`), so it runs over the blocking client or any
other implementation of them.

Indices are handed out at random (a secret permutation per list; the
bookkeeping is the issuer's sealed ``allocation-N`` resource, see
:mod:`didnode.core.credentials.allocation`), so neither an index nor a
published list tells how many credentials were issued, or in which order.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from nacl.signing import SigningKey

from didnode.clock import wall_ms
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.credentials import Issuer
from didnode.core.credentials import allocation as alloc
from didnode.core.credentials.allocation import AllocationRecord, allocation_resource, new_record, open_record, seal_record
from didnode.core.credentials.jose import decode_json_object, parse_compact
from didnode.core.credentials.model import parse_claims
from didnode.core.credentials.status_list import MIN_ENTRIES, Bitstring, StatusList, list_number, read_list, resource_id
from didnode.core.credentials.verify import MAX_STATUS_LIST_TOKEN
from didnode.core.keystate import DidState
from didnode.core.results import Receipt, Resource
from didnode.errors import DuplicateOperation, InvalidArgument, PrevMismatch, SequenceMismatch, StatusListInvalid, UnknownResource

MEDIA_TYPE = "application/vc+jwt"
CAS_ATTEMPTS = 8
SCAN_LISTS = 4  # lists looked at (newest first) for one this issuer can still allocate in


class LedgerAccess(Protocol):
    """The ledger calls status list administration makes (blocking)."""

    def state(self, did: str) -> DidState:
        """The DID's current state; raises :class:`~didnode.errors.UnknownDid`."""
        ...

    def resource(self, did: str, resource_id: str) -> Resource:
        """The latest content of a resource; raises :class:`~didnode.errors.UnknownResource`."""
        ...

    def submit(self, op: SignedOperation) -> Receipt:
        """Submit one operation; returns once it is durable, or raises its rejection."""
        ...


@dataclass(frozen=True, slots=True)
class Allocation:
    """Indices handed out in list ``number`` (the same index in its revocation and suspension lists).

    ``record`` is the list's allocation record after this allocation; the
    indices are its permutation's positions ``start .. start+count-1``.
    """

    number: int
    record: AllocationRecord
    start: int
    count: int
    receipt: Receipt

    @property
    def indices(self) -> tuple[int, ...]:
        """The status list indices handed out, in the order handed out."""
        return self.record.indices(self.start, self.count)


class StatusLists:
    """An issuer's revocation and suspension lists on the ledger, updated with compare-and-set.

    Every change reads the latest state, changes it, signs the new version
    locally and publishes it with the DID's next ``seq``/``prev``. When
    another writer (a second device issuing for the same DID) got there
    first, the node answers SEQUENCE_MISMATCH / PREV_MISMATCH and the change
    is redone on the new state, so indices are never handed out twice.

    ``random_bytes`` draws the permutation keys and nonces. ``keys`` are
    further assertionMethod keys (by key id) whose sealed allocation records
    this issuer may open, e.g. keys rotated out but still in the keystore; a
    list whose record none of them opens is left alone and allocation goes
    on in a new list.
    """

    def __init__(
        self,
        client: LedgerAccess,
        issuer: Issuer,
        signing_key: SigningKey,
        network: str,
        clock_ms: Callable[[], int] = wall_ms,
        random_bytes: Callable[[int], bytes] = os.urandom,
        keys: Mapping[str, SigningKey] | None = None,
    ) -> None:
        """``client``: anything with the three ledger calls of :class:`LedgerAccess` (a :class:`didnode.client.Client`)."""
        self.client = client
        self.issuer = issuer
        self.key = signing_key
        self.network = network
        self.clock_ms = clock_ms
        self.random_bytes = random_bytes
        self._seeds = {**{k: bytes(v) for k, v in (keys or {}).items()}, issuer.key_id: bytes(signing_key)}

    @property
    def did(self) -> str:
        return self.issuer.did

    # -- reading ---------------------------------------------------------------

    def _read(self, purpose: str, number: int) -> StatusList | None:
        """The latest published list ``<purpose>-<number>``, or None if it was never published."""
        try:
            content = self.client.resource(self.did, resource_id(purpose, number)).content
        except UnknownResource:
            return None
        jws = parse_compact(content, MAX_STATUS_LIST_TOKEN)
        if jws.header.did != self.did:
            raise StatusListInvalid(f"the published {resource_id(purpose, number)} of {self.did} is signed by {jws.header.did}; republish it")
        return read_list(parse_claims(decode_json_object(jws.payload, "status list payload")))

    def record(self, number: int) -> AllocationRecord | None:
        """List ``number``'s allocation record, or None (none published, or sealed with a key not held here)."""
        rid = allocation_resource(number)
        try:
            content = self.client.resource(self.did, rid).content
        except UnknownResource:
            return None
        return open_record(content, self.did, rid, self._seeds)

    # -- publishing ------------------------------------------------------------

    def _submit(self, state: DidState, rid: str, media_type: str, content: str) -> Receipt:
        unsigned = builder.publish(self.network, self.did, state.seq + 1, state.last, rid, media_type, content)
        return self.client.submit(builder.sign(unsigned, [(self.issuer.signer_kid, self.key)]))

    def _publish(self, state: DidState, purpose: str, number: int, bits: Bitstring, allocated: int | None = None, url: str | None = None) -> Receipt:
        token = self.issuer.status_list(purpose, number, bits, self.clock_ms(), allocated, url)
        return self._submit(state, resource_id(purpose, number), MEDIA_TYPE, token)

    def _publish_record(self, state: DidState, number: int, record: AllocationRecord) -> Receipt:
        rid = allocation_resource(number)
        content = seal_record(record, self.did, rid, self.issuer.key_id, self._seeds[self.issuer.key_id], self.random_bytes(alloc.NONCE_BYTES))
        return self._submit(state, rid, alloc.MEDIA_TYPE, content)

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

    # -- allocation ------------------------------------------------------------

    def current_number(self, state: DidState) -> int:
        """The highest revocation list number the DID has published (0: none yet)."""
        return max((list_number(r["id"], "revocation") for r in state.resources), default=0)

    def _choose(self, state: DidState, count: int) -> tuple[int, AllocationRecord]:
        """(list number, its record before this allocation): the newest list this issuer can allocate
        ``count`` indices in, else a new list (its record fresh)."""
        ids = {r["id"] for r in state.resources}
        numbers = sorted({n for rid in ids if (n := list_number(rid, "revocation"))}, reverse=True)
        for n in numbers[:SCAN_LISTS]:
            if allocation_resource(n) in ids:
                rec = self.record(n)
                if rec is not None and rec.free >= count:
                    return n, rec
            elif n == numbers[0]:
                # The newest list has no record: created by an allocation that stopped before its
                # record was published (no index of it was handed out), unless it is a list of
                # sequential allocation (``allocated`` in the list), which is never allocated in again.
                lst = self._read("revocation", n)
                if lst is not None and lst.allocated is None:
                    return n, new_record(self.random_bytes)
        return (numbers[0] if numbers else 0) + 1, new_record(self.random_bytes)

    def allocate(self, count: int = 1) -> Allocation:
        """Hand out ``count`` indices of one list, at random, creating (and publishing) the list as needed."""
        if not 1 <= count <= MIN_ENTRIES:
            raise InvalidArgument(f"allocate 1 to {MIN_ENTRIES} indices (one list) at a time")

        def attempt() -> Allocation:
            state = self.client.state(self.did)
            number, before = self._choose(state, count)
            ids = {r["id"] for r in state.resources}
            # The lists exist before any credential names them (suspension twin first).
            for purpose in ("suspension", "revocation"):
                if resource_id(purpose, number) not in ids:
                    self._publish(state, purpose, number, Bitstring(size=before.size))
                    state = self.client.state(self.did)
            after = before.taking(count)
            receipt = self._publish_record(state, number, after)  # the compare-and-set that hands them out
            return Allocation(number, after, before.allocated, count, receipt)

        return self._retry(attempt)  # type: ignore[no-any-return]

    # -- status changes ----------------------------------------------------------

    def _check_allocated(self, state: DidState, number: int, index: int, revocation: StatusList | None) -> None:
        """Raise :class:`InvalidArgument` if ``index`` of list ``number`` was certainly never handed out."""
        if any(r["id"] == allocation_resource(number) for r in state.resources):
            rec = self.record(number)
            if rec is not None and not rec.is_allocated(index):
                raise InvalidArgument(f"index {index} of list {number} was never allocated", index=index)
            return  # allocated, or the record is sealed with a key not held here: cannot tell
        rev = revocation if revocation is not None else self._read("revocation", number)
        in_use = rev.allocated if rev is not None else None
        if in_use is not None and index >= in_use:
            raise InvalidArgument(f"index {index} of list {number} was never allocated (allocated: {in_use})", index=index)

    def set_status(self, purpose: str, number: int, index: int, value: bool) -> Receipt:
        """Set (revoke / suspend) or clear (reinstate) bit ``index`` of list ``<purpose>-<number>``.

        The list keeps its ``id`` (the URL it was first published under).
        Raises :class:`InvalidArgument` for clearing a revocation (final by
        definition) or an index never allocated, :class:`UnknownResource` when the list does not exist.
        """
        if purpose == "revocation" and not value:
            raise InvalidArgument("a revocation is final; only a suspension can be lifted")

        def attempt() -> Receipt:
            state = self.client.state(self.did)
            current = self._read(purpose, number)
            if current is None:
                raise UnknownResource(f"{self.did} has published no list {resource_id(purpose, number)}", resource=resource_id(purpose, number))
            self._check_allocated(state, number, index, current if purpose == "revocation" else None)
            current.bits.set(index, value)
            return self._publish(state, purpose, number, current.bits, current.allocated, current.url)

        return self._retry(attempt)  # type: ignore[no-any-return]


__all__ = ["Allocation", "LedgerAccess", "StatusLists"]
