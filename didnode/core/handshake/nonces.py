"""Single-use nonces and pending challenges: the rules, once, over two storage backends.

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
in :class:`TooManyPending` instead of exhausting memory or disk. A full
table does not lock newcomers out: a new challenge takes the place of the
oldest pending challenge of the address that holds the most, if that is more
than the newcomer's address holds (:meth:`NonceBook.open_challenge`); and from
``cookie_threshold`` pending challenges on, a responder admits only hellos that
carry a valid cookie from an address that holds its share of the threshold or
more (:meth:`NonceStore.cookie_required`, :mod:`didnode.core.handshake.cookies`).

Who decides what: :class:`NonceBook` holds every rule (what a pending
challenge is and its bounds, when a nonce is a replay or a reflection, when
a record expires, when the table is full, when to purge and flush) and the
pending challenges themselves, which are always this process's memory: only
the stream that carried a challenge can deliver its response, so nothing
about a pending challenge must outlive the process. Its *nonce* is a used
nonce like any other, recorded when the challenge is opened. The used-nonce
rows go to a :class:`NonceRows` backend, which only stores and fetches them:

* :class:`MemoryNonceStore`: a dict and a heap (tests, devices without
  storage; forgets everything with its process, hence ``not_before_ms``);
* :class:`didnode.auth.lmdb_nonces.LmdbNonceStore`: an LMDB environment, so
  that replays stay detected across a restart.

Both are a :class:`NonceBook` over their rows, so they refuse, accept, expire
and purge alike; ``tests/auth/test_nonce_store.py`` runs one contract against
both.
"""

from __future__ import annotations

import heapq
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Generic, Protocol, TypeVar

from didnode.errors import HandshakeReflection, HandshakeReplay, HandshakeStale, HandshakeTimeout, Internal, TooManyPending

# Upkeep (see NonceBook.maintenance_due): purge expired records about once a
# second, in bounded batches so that the event loop is never held long (one
# batch is one write transaction of a few ms in LMDB). While a batch comes back
# full, the next one is due after BACKLOG_INTERVAL_MS instead: a busy responder
# records two nonces per handshake (3,000/s at 1,500 handshakes/s), more than
# one batch a second could forget, and a table that only grows ends in
# TOO_MANY_PENDING. A durable backend is flushed at most once a second.
PURGE_BATCH = 2048
PURGE_INTERVAL_MS = 1000
BACKLOG_INTERVAL_MS = 100
SYNC_INTERVAL_MS = 1000


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
    ``cookie_threshold``: from this many pending challenges on (or the
    total bound, if lower), a hello must carry a valid cookie to open one if
    its address holds at least its share of them (the threshold divided
    among the addresses holding any; 0: every hello, always).
    """

    timeout_ms: int = 10_000
    max_skew_ms: int = 60_000
    max_pending_total: int = 1024
    max_pending_per_peer: int = 64
    max_nonces: int = 1_000_000
    cookie_threshold: int = 256

    @property
    def retention_ms(self) -> int:
        """How long a used nonce is remembered (see the module docstring)."""
        return 2 * self.max_skew_ms + self.timeout_ms


class NonceStore(Protocol):
    """Where a party remembers used nonces and its pending challenges (what the handshake machines call).

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

    def open_challenge(
        self, nonce_i: bytes, nonce_r: bytes, peer: str, now_ms: int, hello_time_ms: int = -1, on_evict: Callable[[bytes], None] | None = None
    ) -> int:
        """Atomically claim the peer's hello nonce ``nonce_i`` and record the challenge nonce
        ``nonce_r`` as used (``OWN``, from now on), and open the pending challenge for ``peer``;
        return its deadline (ms). When every pending slot is taken, the oldest pending challenge
        of the address holding the most gives its place, if that address holds more than ``peer``
        does; ``on_evict(nonce)`` is told of it (its response will be refused with
        :class:`TooManyPending`). Raises as :meth:`claim`, :class:`TooManyPending` when ``peer``
        has too many pending challenges or holds as many as anyone while all slots are taken,
        and :class:`HandshakeStale` when the hello (``hello_time_ms``) is dated before the
        store's records begin (a store that forgot its history cannot vouch for older nonces)."""
        ...

    def cookie_required(self, peer: str) -> bool:
        """Whether a hello from ``peer`` must carry a valid cookie to open a challenge now: the
        responder is under load (``cookie_threshold`` challenges pending) and ``peer`` holds at
        least its share of the threshold (divided among the addresses holding any), so an address
        with no challenge pending, or fewer than the flood's addresses hold, is admitted at once."""
        ...

    def close_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """The response to ``nonce_r`` verified: the challenge is no longer pending (its nonce
        stays used). Raises :class:`HandshakeTimeout` past its deadline (it is closed all the
        same), :class:`HandshakeReplay` if it is not pending (already closed)."""
        ...

    def abandon_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """The handshake failed or timed out: release the pending slot; the nonce stays used. Idempotent."""
        ...

    def purge(self, now_ms: int, limit: int = PURGE_BATCH) -> int:
        """Forget up to ``limit`` expired nonces, and release challenges far past their deadline; return how many."""
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


Txn = TypeVar("Txn")
T = TypeVar("T")


class NonceRows(Protocol[Txn]):
    """The storage a :class:`NonceBook` keeps used-nonce rows in: ``nonce -> (expires_ms, origin)``,
    plus an index in expiry order to forget them by. A backend decides nothing: no rule, no clock.

    ``Txn`` is the backend's transaction handle (an LMDB transaction; nothing for memory): every
    row method gets the one of the :meth:`read` or :meth:`write` it runs in.
    """

    durable: bool
    """Whether :meth:`sync` does anything (whether a flush is ever due)."""

    def read(self) -> AbstractContextManager[Txn]:
        """A read-only view for :meth:`get` and :meth:`count`."""
        ...

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in one atomic write and return its result.

        Preconditions on ``fn``: it has no effect outside the rows (a backend
        may run it again from scratch, as LMDB does after growing its map), and
        it raises only before its first :meth:`put` (the memory backend cannot
        roll back; an LMDB transaction is aborted). Storage failures raise
        :class:`didnode.errors.Internal`.
        """
        ...

    def get(self, txn: Txn, nonce: bytes) -> tuple[int, int] | None:
        """``(expires_ms, origin)`` of ``nonce``'s row, expired or not; None if it has none."""
        ...

    def count(self, txn: Txn) -> int:
        """How many rows there are (expired ones not yet forgotten included)."""
        ...

    def put(self, txn: Txn, nonce: bytes, expires_ms: int, origin: Origin) -> None:
        """Write ``nonce``'s row (replacing any) and its expiry index entry. Only inside :meth:`write`."""
        ...

    def forget_expired(self, txn: Txn, now_ms: int, limit: int) -> int:
        """Walk the expiry index from the oldest entry: remove up to ``limit`` entries with expiry
        ``<= now_ms``, and each one's row if the row still has that expiry (a nonce recorded again
        later has a later expiry and its own entry). Return how many entries it removed. Only
        inside :meth:`write`."""
        ...

    def sync(self) -> None:
        """Flush committed writes to disk (may run on another thread; never raises)."""
        ...

    def close(self) -> None:
        """Release the storage (called once, after a final :meth:`sync`)."""
        ...


class NonceBook(Generic[Txn]):
    """:class:`NonceStore`: every rule of used nonces and pending challenges, over a :class:`NonceRows`.

    Not thread-safe: one event loop (or thread) uses a store; only :meth:`sync`
    may run on another thread. Transactions: :meth:`claim` and
    :meth:`open_challenge` are one write each, :meth:`origin` one read,
    :meth:`close_challenge` and :meth:`abandon_challenge` none (the challenge
    nonce was recorded when the challenge was opened), :meth:`purge` one write.
    """

    def __init__(self, rows: NonceRows[Txn], limits: HandshakeLimits, not_before_ms: int = 0, now_ms: int = 0) -> None:
        """``not_before_ms``: refuse hellos dated earlier (the moment the rows' history begins,
        for a store that lost or never had older records). ``now_ms``: the opening time (the
        flush schedule counts from it)."""
        self.rows = rows
        self.limits = limits
        self.not_before_ms = not_before_ms
        # This process's half-open handshakes: challenge nonce -> (deadline, peer). Never stored:
        # only the stream that carried a challenge can deliver its response.
        # In insertion order: the first entry is the oldest (eviction walks from there).
        self._pending: dict[bytes, tuple[int, str]] = {}
        self._per_peer: dict[str, int] = {}
        # Challenges that gave their place to newer ones (bounded): their responses are refused
        # as TooManyPending rather than as a replay.
        self._evicted: dict[bytes, None] = {}
        self._cookies_from = min(limits.cookie_threshold, limits.max_pending_total)
        self._backlog = False
        self._last_purge = 0
        self._last_sync = now_ms
        self._dirty = False
        self._closed = False

    # -- the rules (inside one write) -----------------------------------------------

    def _origin_of(self, row: tuple[int, int] | None, nonce: bytes, now_ms: int) -> int:
        if row is not None and row[0] > now_ms:
            return row[1]
        # A pending challenge's nonce has a row from the moment it was opened; this only
        # matters if that row expired first (a retention shorter than a pending challenge's
        # life), and keeps the nonce of a challenge still in flight from being accepted.
        return Origin.OWN if nonce in self._pending else Origin.ABSENT

    @staticmethod
    def _refuse_used(have: int, origin: Origin) -> None:
        """Raise unless ``have`` is ABSENT: a replay, or a reflection when a peer presents our own nonce."""
        if have == Origin.ABSENT:
            return
        if have == Origin.OWN and origin is Origin.PEER:
            raise HandshakeReflection("the peer's nonce is one this party generated itself: its own message came back")
        raise HandshakeReplay("the nonce was already used by an earlier handshake")

    def _room(self, txn: Txn, need: int, now_ms: int) -> bool:
        """Whether ``need`` more rows fit under ``max_nonces``, after forgetting a batch of
        expired ones if they do not (only unexpired nonces may fill the table: forgetting an
        unexpired one early would reopen replay)."""
        rows, most = self.rows, self.limits.max_nonces
        if rows.count(txn) + need <= most:
            return True
        rows.forget_expired(txn, now_ms, PURGE_BATCH)
        return rows.count(txn) + need <= most

    def _write(self, fn: Callable[[Txn], T]) -> T:
        result = self.rows.write(fn)
        self._dirty = True
        return result

    def _full(self) -> TooManyPending:
        return TooManyPending(f"the nonce store holds {self.limits.max_nonces} unexpired nonces, its limit; retry later")

    # -- NonceStore -----------------------------------------------------------------

    def claim(self, nonce: bytes, origin: Origin, now_ms: int) -> None:
        """See :meth:`NonceStore.claim`. One write."""
        rows, expires = self.rows, now_ms + self.limits.retention_ms

        def run(txn: Txn) -> bool:
            row = rows.get(txn, nonce)
            self._refuse_used(self._origin_of(row, nonce, now_ms), origin)
            # A full table returns (committing the batch _room forgot) rather than raising.
            if not self._room(txn, 1 if row is None else 0, now_ms):
                return False
            rows.put(txn, nonce, expires, origin)
            return True

        if not self._write(run):
            raise self._full()

    def origin(self, nonce: bytes, now_ms: int) -> Origin:
        """See :meth:`NonceStore.origin`. At most one read."""
        if nonce in self._pending:
            return Origin.OWN
        with self.rows.read() as txn:
            row = self.rows.get(txn, nonce)
        return Origin(row[1]) if row is not None and row[0] > now_ms else Origin.ABSENT

    def open_challenge(
        self, nonce_i: bytes, nonce_r: bytes, peer: str, now_ms: int, hello_time_ms: int = -1, on_evict: Callable[[bytes], None] | None = None
    ) -> int:
        """See :meth:`NonceStore.open_challenge`; also refuses hellos dated before :attr:`not_before_ms`.

        Precondition: ``nonce_r`` is fresh (32 random bytes drawn for this
        challenge); one already recorded raises :class:`Internal` (a broken
        random number generator, never a peer's doing).

        The challenge nonce is recorded as used *here*, in the same write that
        claims the hello nonce, and not when the challenge closes: so a crash,
        a lost pending entry or a handshake nobody closes can never leave an
        issued challenge nonce unrecorded, its retention counts from when it
        was issued, and closing or abandoning costs no write (one write per
        responder handshake). The pending part (deadline, peer) is memory.

        A full table (``max_pending_total``) evicts rather than refuses when it is fair: the
        victim is the oldest pending challenge among those of the addresses holding the most,
        and only if they hold more than ``peer``. So an address never loses a challenge to one
        that holds as many, and an address with ``k`` pending challenges keeps them as long as
        some address holds more than ``k`` (see docs/authentication.md, "Floods", for the bound).
        """
        if 0 <= hello_time_ms < self.not_before_ms:
            raise HandshakeStale("the hello is dated before this party's replay records begin; send a fresh one")
        # The bounds first: no I/O, so a flood over them is refused before any write.
        victim = _check_pending(self._pending, self._per_peer, peer, self.limits)
        if nonce_i == nonce_r:
            # The hello carries the nonce just drawn for this challenge (the machine refuses this
            # earlier); one row for two nonces would break the table's accounting.
            raise HandshakeReflection("the hello's nonce is this party's own challenge nonce")
        rows, expires = self.rows, now_ms + self.limits.retention_ms

        def run(txn: Txn) -> bool:
            row = rows.get(txn, nonce_i)
            self._refuse_used(self._origin_of(row, nonce_i, now_ms), Origin.PEER)
            if rows.get(txn, nonce_r) is not None or nonce_r in self._pending:
                raise Internal("a fresh challenge nonce is already in use; the random number generator is broken")
            if not self._room(txn, 2 if row is None else 1, now_ms):
                return False
            rows.put(txn, nonce_i, expires, Origin.PEER)
            rows.put(txn, nonce_r, expires, Origin.OWN)
            return True

        if not self._write(run):
            raise self._full()
        if victim is not None:
            self._release(victim)
            if len(self._evicted) >= self.limits.max_pending_total:
                del self._evicted[next(iter(self._evicted))]
            self._evicted[victim] = None
            if on_evict is not None:
                on_evict(victim)
        deadline = now_ms + self.limits.timeout_ms
        self._pending[nonce_r] = (deadline, peer)
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        return deadline

    def _release(self, nonce_r: bytes) -> int:
        """Release a pending challenge (its nonce stays used); return its deadline, or -1 if it was not pending."""
        entry = self._pending.pop(nonce_r, None)
        if entry is None:
            return -1
        deadline, peer = entry
        left = self._per_peer[peer] - 1
        if left:
            self._per_peer[peer] = left
        else:
            del self._per_peer[peer]
        return deadline

    def close_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """See :meth:`NonceStore.close_challenge`. No write: the nonce was recorded when the challenge opened."""
        deadline = self._release(nonce_r)
        if deadline < 0:
            if nonce_r in self._evicted:
                raise TooManyPending("the response answers a challenge that gave its place to a newer one (too many half-open handshakes)")
            raise HandshakeReplay("the response answers a challenge that is no longer pending (already answered)")
        if now_ms > deadline:
            raise HandshakeTimeout(f"the response came {now_ms - deadline} ms after the challenge's deadline")

    def abandon_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """See :meth:`NonceStore.abandon_challenge`. No write."""
        self._release(nonce_r)

    def purge(self, now_ms: int, limit: int = PURGE_BATCH) -> int:
        """See :meth:`NonceStore.purge`: releases up to ``limit`` challenges a whole timeout past
        their deadline (their drivers should have released them; this is the backstop) and
        forgets up to ``limit`` expired rows, in one write."""
        grace = self.limits.timeout_ms
        stale = [k for k, (deadline, _) in self._pending.items() if deadline + grace <= now_ms][:limit]
        for k in stale:
            self._release(k)
        rows = self.rows
        removed = self._write(lambda txn: rows.forget_expired(txn, now_ms, limit))
        self._backlog = removed >= limit
        return removed + len(stale)

    def pending_count(self, peer: str | None = None) -> int:
        """See :meth:`NonceStore.pending_count`."""
        return len(self._pending) if peer is None else self._per_peer.get(peer, 0)

    def cookie_required(self, peer: str) -> bool:
        """See :meth:`NonceStore.cookie_required`."""
        threshold = self._cookies_from
        if len(self._pending) < threshold:
            return False
        # held >= threshold / addresses, in integers; an address holding none is asked only when
        # the threshold is 0 (cookies always). Over TCP the address is already validated by TCP's
        # own handshake, so the cookie's work is to make an address that holds more than its share
        # pay a round trip per further half-open handshake (docs/authentication.md, "Floods").
        return self._per_peer.get(peer, 0) * len(self._per_peer) >= threshold

    def __len__(self) -> int:
        """How many used-nonce rows the backend holds (expired ones not yet purged included)."""
        with self.rows.read() as txn:
            return self.rows.count(txn)

    # -- upkeep -----------------------------------------------------------------------

    def maintenance_due(self, now_ms: int) -> bool:
        """See :meth:`NonceStore.maintenance_due`: once a second, every 100 ms while purges come back full."""
        return now_ms - self._last_purge >= (BACKLOG_INTERVAL_MS if self._backlog else PURGE_INTERVAL_MS)

    def maintain(self, now_ms: int) -> bool:
        """See :meth:`NonceStore.maintain`: a flush is due at most once a second, and only for a durable backend."""
        self._last_purge = now_ms
        self.purge(now_ms)
        if self.rows.durable and self._dirty and now_ms - self._last_sync >= SYNC_INTERVAL_MS:
            self._last_sync = now_ms
            self._dirty = False
            return True
        return False

    def sync(self) -> None:
        """See :meth:`NonceStore.sync`."""
        self.rows.sync()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Flush and release the rows (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.rows.sync()
        self.rows.close()


def _check_pending(pending: dict[bytes, tuple[int, str]], per_peer: dict[str, int], peer: str, limits: HandshakeLimits) -> bytes | None:
    """Raise :class:`TooManyPending` when one more pending challenge of ``peer`` would break a bound;
    return the challenge it takes the place of when the table is full (None when there is room)."""
    of_peer = per_peer.get(peer, 0)
    if of_peer >= limits.max_pending_per_peer:
        raise TooManyPending(
            f"{of_peer} handshakes from {peer} are half-open, the limit per peer address; retry later", peer=peer
        )
    if len(pending) < limits.max_pending_total:
        return None
    # Full: the oldest challenge among those of the addresses holding the most, if they hold more.
    # (Only under a flood; O(pending) at most, no I/O.)
    most = max(per_peer.values())
    if most <= of_peer:
        raise TooManyPending(f"{len(pending)} handshakes are half-open, the limit, and no address holds more than {peer}; retry later")
    for nonce, (_, holder) in pending.items():
        if per_peer[holder] == most:
            return nonce
    raise AssertionError("unreachable: some pending challenge belongs to the address holding the most")  # pragma: no cover


class MemoryRows:
    """:class:`NonceRows` in a dict and a heap (the expiry index). Its "transaction" is None."""

    durable = False

    def __init__(self) -> None:
        self._rows: dict[bytes, tuple[int, int]] = {}
        self._expiry: list[tuple[int, bytes]] = []

    # read() returns the rows themselves as a context manager: no allocation per read.
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self) -> MemoryRows:
        return self

    def write(self, fn: Callable[[None], T]) -> T:
        return fn(None)

    def get(self, txn: None, nonce: bytes) -> tuple[int, int] | None:
        return self._rows.get(nonce)

    def count(self, txn: None) -> int:
        return len(self._rows)

    def put(self, txn: None, nonce: bytes, expires_ms: int, origin: Origin) -> None:
        self._rows[nonce] = (expires_ms, origin)
        heapq.heappush(self._expiry, (expires_ms, nonce))

    def forget_expired(self, txn: None, now_ms: int, limit: int) -> int:
        n = 0
        heap, rows = self._expiry, self._rows
        while n < limit and heap and heap[0][0] <= now_ms:
            expires, nonce = heapq.heappop(heap)
            row = rows.get(nonce)
            if row is not None and row[0] == expires:
                del rows[nonce]
            n += 1
        return n

    def sync(self) -> None:
        """Nothing to flush: memory rows are gone with their process (see ``not_before_ms``)."""

    def close(self) -> None:
        """Nothing to release."""


class MemoryNonceStore(NonceBook[None]):
    """:class:`NonceStore` in memory: the :class:`NonceBook` rules over :class:`MemoryRows`. Not thread-safe: one per event loop."""

    def __init__(self, limits: HandshakeLimits = HandshakeLimits(), not_before_ms: int = 0) -> None:
        """``not_before_ms``: refuse hellos dated earlier (pass the start time: a memory
        store forgets every nonce when its process exits)."""
        super().__init__(MemoryRows(), limits, not_before_ms)
