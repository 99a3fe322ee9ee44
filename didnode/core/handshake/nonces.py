"""Single-use nonces and pending challenges: the interface and an in-memory store.

A *used nonce* is remembered with its origin (``OWN``: this party generated
it; ``PEER``: a peer sent it) until it expires. It must be remembered for as
long as a message carrying it could still be accepted: a hello is accepted
while its ``time_ms`` is within ``max_skew_ms`` of the responder's clock, so
``retention_ms = 2 * max_skew_ms + timeout_ms`` covers every replay that the
clock check lets through.

A *pending challenge* is a challenge (message 2) a responder sent and whose
response (message 3) it is waiting for: its nonce, the peer address it was
sent to and a deadline. Pending challenges are bounded per peer address and
in total, and the used-nonce table is bounded too, so a flood of hellos ends
in :class:`TooManyPending` instead of exhausting memory or disk.

:class:`MemoryNonceStore` keeps all of it in dictionaries (tests, and
devices without storage); :class:`didnode.store.auth_store.LmdbNonceStore`
keeps it in LMDB so that replays stay detected across a restart.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from didnode.errors import HandshakeReflection, HandshakeReplay, HandshakeStale, HandshakeTimeout, TooManyPending


class Origin(IntEnum):
    """Who put a nonce into the store."""

    ABSENT = 0
    PEER = 1
    OWN = 2


@dataclass(frozen=True, slots=True)
class HandshakeLimits:
    """Time limits and bounds of half-open handshakes (docs/authentication.md, "Limits").

    ``timeout_ms``: a handshake must complete within this (half-open ones
    are dropped). ``max_skew_ms``: how far a hello's clock may be from the
    responder's. The pending bounds cap half-open handshakes per peer
    address and in total; ``max_nonces`` caps the used-nonce table.
    """

    timeout_ms: int = 10_000
    max_skew_ms: int = 60_000
    max_pending_total: int = 1024
    max_pending_per_peer: int = 64
    max_nonces: int = 1_000_000

    @property
    def retention_ms(self) -> int:
        """How long a used nonce is remembered (see the module docstring)."""
        return 2 * self.max_skew_ms + self.timeout_ms


class NonceStore(Protocol):
    """Where a party remembers used nonces and its pending challenges.

    Every method takes the caller's ``now_ms`` (no clock inside). Methods
    raise; none returns a flag for a failure.
    """

    limits: HandshakeLimits

    def claim(self, nonce: bytes, origin: Origin, now_ms: int) -> None:
        """Record ``nonce`` as used. Raises :class:`HandshakeReplay` if it is already
        recorded (unexpired), :class:`HandshakeReflection` if a peer's nonce is one of
        our own, :class:`TooManyPending` when the table is full."""
        ...

    def origin(self, nonce: bytes, now_ms: int) -> Origin:
        """Who used ``nonce`` (ABSENT if nobody, or if its record expired); pending challenges are OWN."""
        ...

    def open_challenge(self, nonce_i: bytes, nonce_r: bytes, peer: str, now_ms: int, hello_time_ms: int = -1) -> int:
        """Atomically claim the peer's hello nonce ``nonce_i`` and record the pending challenge
        ``nonce_r`` for ``peer``; return its deadline (ms). Raises as :meth:`claim`,
        :class:`TooManyPending` when ``peer`` or everyone has too many pending challenges, and
        :class:`HandshakeStale` when the hello (``hello_time_ms``) is dated before the store's
        records begin (a store that forgot its history cannot vouch for older nonces)."""
        ...

    def close_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """The response to ``nonce_r`` verified: the challenge becomes a used OWN nonce.
        Raises :class:`HandshakeTimeout` past its deadline (it is closed all the same),
        :class:`HandshakeReplay` if it is not pending (already closed)."""
        ...

    def abandon_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """The handshake failed or timed out: release the pending slot; the nonce stays used. Idempotent."""
        ...

    def purge(self, now_ms: int, limit: int = 4096) -> int:
        """Forget up to ``limit`` expired nonces and pending challenges; return how many."""
        ...

    def pending_count(self, peer: str | None = None) -> int:
        """Pending challenges of ``peer`` (or of everyone)."""
        ...

    def maintenance_due(self, now_ms: int) -> bool:
        """Whether :meth:`maintain` has work to do (cheap; called after every handshake)."""
        ...

    def maintain(self, now_ms: int) -> bool:
        """Purge expired entries (a bounded amount); return whether a :meth:`sync` is due."""
        ...

    def sync(self) -> None:
        """Make recorded nonces durable (may be called from another thread)."""
        ...

    def close(self) -> None:
        """Flush and release the store (idempotent)."""
        ...


class MemoryNonceStore:
    """:class:`NonceStore` in memory. Not thread-safe: one per event loop."""

    def __init__(self, limits: HandshakeLimits = HandshakeLimits(), not_before_ms: int = 0) -> None:
        """``not_before_ms``: refuse hellos dated earlier (pass the start time: a memory
        store forgets every nonce when its process exits)."""
        self.limits = limits
        self.not_before_ms = not_before_ms
        self._used: dict[bytes, tuple[int, Origin]] = {}
        self._expiry: list[tuple[int, bytes]] = []
        self._pending: dict[bytes, tuple[int, str]] = {}
        self._per_peer: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._used)

    def _check_claim(self, nonce: bytes, origin: Origin, now_ms: int) -> None:
        have = self.origin(nonce, now_ms)
        if have is Origin.ABSENT:
            if len(self._used) >= self.limits.max_nonces and not self.purge(now_ms):
                raise TooManyPending(f"the nonce store holds {len(self._used)} unexpired nonces, its limit; retry later")
            return
        if have is Origin.OWN and origin is Origin.PEER:
            raise HandshakeReflection("the peer's nonce is one this party generated itself: its own message came back")
        raise HandshakeReplay("the nonce was already used by an earlier handshake")

    def _record(self, nonce: bytes, origin: Origin, now_ms: int) -> None:
        expires = now_ms + self.limits.retention_ms
        self._used[nonce] = (expires, origin)
        heapq.heappush(self._expiry, (expires, nonce))

    def claim(self, nonce: bytes, origin: Origin, now_ms: int) -> None:
        self._check_claim(nonce, origin, now_ms)
        self._record(nonce, origin, now_ms)

    def origin(self, nonce: bytes, now_ms: int) -> Origin:
        if nonce in self._pending:
            return Origin.OWN
        entry = self._used.get(nonce)
        if entry is None or entry[0] <= now_ms:
            return Origin.ABSENT
        return entry[1]

    def open_challenge(self, nonce_i: bytes, nonce_r: bytes, peer: str, now_ms: int, hello_time_ms: int = -1) -> int:
        if 0 <= hello_time_ms < self.not_before_ms:
            raise HandshakeStale("the hello is dated before this party's replay records begin; send a fresh one")
        self._check_claim(nonce_i, Origin.PEER, now_ms)
        _check_pending(len(self._pending), self._per_peer.get(peer, 0), peer, self.limits)
        self._record(nonce_i, Origin.PEER, now_ms)
        deadline = now_ms + self.limits.timeout_ms
        self._pending[nonce_r] = (deadline, peer)
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        return deadline

    def _release(self, nonce_r: bytes) -> tuple[int, str] | None:
        entry = self._pending.pop(nonce_r, None)
        if entry is not None:
            peer = entry[1]
            left = self._per_peer[peer] - 1
            if left:
                self._per_peer[peer] = left
            else:
                del self._per_peer[peer]
        return entry

    def close_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        entry = self._release(nonce_r)
        if entry is None:
            raise HandshakeReplay("the response answers a challenge that is no longer pending (already answered)")
        self._record(nonce_r, Origin.OWN, now_ms)
        if now_ms > entry[0]:
            raise HandshakeTimeout(f"the response came {now_ms - entry[0]} ms after the challenge's deadline")

    def abandon_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        if self._release(nonce_r) is not None:
            self._record(nonce_r, Origin.OWN, now_ms)

    def purge(self, now_ms: int, limit: int = 4096) -> int:
        n = 0
        while self._expiry and self._expiry[0][0] <= now_ms and n < limit:
            expires, nonce = heapq.heappop(self._expiry)
            entry = self._used.get(nonce)
            # A nonce re-recorded later has a later expiry: keep that record.
            if entry is not None and entry[0] == expires:
                del self._used[nonce]
                n += 1
        stale = [k for k, (deadline, _) in self._pending.items() if deadline + self.limits.timeout_ms <= now_ms]
        for k in stale[: max(0, limit - n)]:
            self.abandon_challenge(k, now_ms)
            n += 1
        return n

    def pending_count(self, peer: str | None = None) -> int:
        return len(self._pending) if peer is None else self._per_peer.get(peer, 0)

    def maintenance_due(self, now_ms: int) -> bool:
        return bool(self._expiry) and self._expiry[0][0] <= now_ms

    def maintain(self, now_ms: int) -> bool:
        self.purge(now_ms)
        return False

    def sync(self) -> None:
        """Nothing to flush: a memory store is gone with its process (see ``not_before_ms``)."""

    def close(self) -> None:
        """Nothing to release."""


def _check_pending(total: int, of_peer: int, peer: str, limits: HandshakeLimits) -> None:
    """Raise :class:`TooManyPending` when one more pending challenge would break a bound."""
    if of_peer >= limits.max_pending_per_peer:
        raise TooManyPending(
            f"{of_peer} handshakes from {peer} are half-open, the limit per peer address; retry later", peer=peer
        )
    if total >= limits.max_pending_total:
        raise TooManyPending(f"{total} handshakes are half-open, the limit; retry later")


check_pending = _check_pending
