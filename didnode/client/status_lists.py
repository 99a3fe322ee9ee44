"""Status list administration on the issuer's side: revoke, suspend and reinstate credentials on the ledger.

Issuers sign their lists locally and publish only signed list credentials; no
private key is ever sent to a node. :class:`StatusLists` needs only three ledger
calls (:class:`LedgerAccess`), so it runs over the blocking client or any
other implementation of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from nacl.signing import SigningKey

from didnode.clock import wall_ms
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.credentials import Issuer
from didnode.core.credentials.jose import decode_json_object, parse_compact
from didnode.core.credentials.model import parse_claims
from didnode.core.credentials.status_list import Bitstring, list_number, read_list, resource_id
from didnode.core.credentials.verify import MAX_STATUS_LIST_TOKEN
from didnode.core.keystate import DidState
from didnode.core.results import Receipt, Resource
from didnode.errors import DuplicateOperation, InvalidArgument, PrevMismatch, SequenceMismatch, StatusListInvalid, UnknownResource

MEDIA_TYPE = "application/vc+jwt"
CAS_ATTEMPTS = 8


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
    """Indices handed out in list ``number`` (the same index in the revocation and suspension lists)."""

    number: int
    first: int
    count: int
    receipt: Receipt


class StatusLists:
    """An issuer's revocation and suspension lists on the ledger, updated with compare-and-set.

    Every change reads the latest list, changes it, signs the new version
    locally and publishes it with the DID's next ``seq``/``prev``. When
    another writer (a second device issuing for the same DID) got there
    first, the node answers SEQUENCE_MISMATCH / PREV_MISMATCH and the change
    is redone on the new state, so indices are never handed out twice.
    """

    def __init__(self, client: LedgerAccess, issuer: Issuer, signing_key: SigningKey, network: str, clock_ms: Callable[[], int] = wall_ms) -> None:
        """``client``: anything with the three ledger calls of :class:`LedgerAccess` (a :class:`didnode.client.Client`)."""
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

    def _publish(self, state: DidState, purpose: str, number: int, bits: Bitstring, allocated: int | None) -> Receipt:
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

    def set_status(self, purpose: str, number: int, index: int, value: bool) -> Receipt:
        """Set (revoke / suspend) or clear (reinstate) bit ``index`` of list ``<purpose>-<number>``.

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
            bits, allocated = current
            rev = self._read("revocation", number) if purpose != "revocation" else current
            in_use = rev[1] if rev is not None else 0
            if index >= in_use:
                raise InvalidArgument(f"index {index} of list {number} was never allocated (allocated: {in_use})", index=index)
            bits.set(index, value)
            return self._publish(state, purpose, number, bits, allocated if purpose == "revocation" else None)

        return self._retry(attempt)  # type: ignore[no-any-return]


__all__ = ["Allocation", "LedgerAccess", "StatusLists"]
