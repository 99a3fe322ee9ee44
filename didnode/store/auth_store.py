"""The handshake's used nonces and pending challenges in LMDB (a separate, small environment).

Why a separate environment (``DATA/auth`` on a node) and not the ledger's,
through the orderer's writer thread:

* the ledger's promise is "acknowledged means durable": every ledger
  commit fsyncs. Handshake state only has to stop replays across a restart,
  so it commits without fsync (``sync=False``, and ``writemap``: a commit
  writes the memory map, no syscall at all) and is flushed to disk once a
  second. One small write transaction per responder handshake (two per
  initiator handshake) then costs a few µs instead of an fsync;
* handshake writes never queue behind a ledger batch (or its fsync), and a
  flood of hellos can never slow the ledger's writer down;
* the ledger stays a pure function of the log: no per-connection state in it.

What ``sync=False`` costs: after a *machine* crash (not a process crash:
committed pages are in the OS page cache then) the last second of nonces
may be lost, or the environment may not open. A store that cannot open is
moved aside and recreated, and then refuses every hello dated before the
moment it was recreated (:attr:`LmdbNonceStore.not_before_ms`), so that
nothing recorded in the lost window can be replayed. (A lost record could
not make a replay *succeed* anyway: a replayed hello gets a fresh challenge
the replayer cannot sign, a replayed challenge cannot echo the initiator's
fresh nonce; the store makes replays fail early, with ``REPLAY``.)

Pending challenges (deadline, peer address) are this process's memory: only
the stream that carried a challenge can deliver its response, so nothing
about it must outlive the process; its nonce is recorded as used (``OWN``)
when the challenge is opened, in the same transaction that claims the hello
nonce.

Layout (``didnode.store.layout``): ``auth_nonces`` nonce -> expiry + origin;
``auth_expiry`` expiry + nonce (purge order); ``auth_pending`` (challenge
nonce -> deadline + peer address) is only read, for rows an older version
left there. Thread rules: one event loop (or thread)
uses a store; :meth:`sync` may run on another thread.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from pathlib import Path
from typing import Callable

import lmdb

from didnode.core.handshake.nonces import HandshakeLimits, Origin, check_pending
from didnode.errors import HandshakeReflection, HandshakeReplay, HandshakeStale, HandshakeTimeout, Internal, StoreCorrupted, TooManyPending
from didnode.store import layout
from didnode.store.env import Store

log = logging.getLogger("didnode.auth")

AUTH_MAP_SIZE = 64 << 20
SYNC_INTERVAL_MS = 1000
PURGE_INTERVAL_MS = 1000
# While a purge finds a full batch of expired nonces, the next one comes after
# BACKLOG_INTERVAL_MS instead: a busy responder records two nonces per handshake
# (3,000/s at 1,500 handshakes/s), more than one batch a second could forget, and
# a table that only grows ends in TOO_MANY_PENDING. One batch is one write
# transaction of a few ms, so the event loop is never held long.
BACKLOG_INTERVAL_MS = 100
PURGE_BATCH = 2048
_VALUE = struct.Struct(">QB")
_U64 = struct.Struct(">Q")


class LmdbNonceStore:
    """A :class:`~didnode.core.handshake.nonces.NonceStore` in its own LMDB environment at ``path``.

    ``now_ms`` (the opening time) decides what pending challenges left by a
    previous run become: used nonces, since their streams are gone. Raises
    :class:`Internal` if ``path`` cannot hold an LMDB environment at all.
    """

    def __init__(self, path: str | os.PathLike[str], now_ms: int, limits: HandshakeLimits = HandshakeLimits(), map_size: int = AUTH_MAP_SIZE) -> None:
        self.limits = limits
        self.path = Path(path)
        self.not_before_ms = 0
        try:
            self.store = Store(self.path, map_size=map_size, sync=False, dbs=layout.AUTH_DBS, writemap=True)
        except (StoreCorrupted, lmdb.Error) as exc:
            if "already open" in str(exc):
                # Not a damaged store: this process holds it (LMDB allows one handle per process).
                raise Internal(f"the handshake store {self.path} is already open in this process") from None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("handshake store %s does not open (%s); moved to %s and recreated", self.path, exc, aside)
            os.replace(self.path, aside)
            self.store = Store(self.path, map_size=map_size, sync=False, dbs=layout.AUTH_DBS, writemap=True)
            # Replays of hellos recorded in the lost store must stay impossible.
            self.not_before_ms = now_ms
        self._nonces = self.store.dbs[layout.DB_AUTH_NONCES]
        self._expiry = self.store.dbs[layout.DB_AUTH_EXPIRY]
        self._legacy_pending = self.store.dbs[layout.DB_AUTH_PENDING]
        self._pending: dict[bytes, tuple[int, str]] = {}  # this process's half-open handshakes: nonce -> (deadline, peer)
        self._per_peer: dict[str, int] = {}
        self._pending_total = 0
        self._backlog = False
        self._last_purge = 0
        self._last_sync = now_ms
        self._dirty = False
        self._closed = False
        self._retire_expired(now_ms)

    # -- helpers (inside one write transaction) ----------------------------------

    def _retire_expired(self, now_ms: int, sync: bool = True) -> None:
        """Challenges past their deadline that an earlier version left in ``auth_pending`` become plain used nonces.

        (This version records a challenge nonce as used when it opens the
        challenge and keeps the pending part in memory, so it writes no rows
        there; older stores may still hold some.)

        Unexpired ones are left alone: another process may share this
        environment (``didctl auth`` next to ``didctl device serve`` for the
        same DID) and be waiting for their responses. A challenge of a
        stopped run can never be answered anyway (its stream and secrets are
        gone), and the purge retires it once its deadline has passed.
        """

        def run(txn: lmdb.Transaction) -> int:
            keys = [k for k, v in txn.cursor(db=self._legacy_pending) if _U64.unpack(v[:8])[0] < now_ms]
            for k in keys:
                txn.delete(k, db=self._legacy_pending)
                self._record(txn, k, Origin.OWN, now_ms)
            return len(keys)

        with self.store.read() as txn:
            if not txn.stat(self._legacy_pending)["entries"]:
                return
        n = self.store.write(run)
        if n:
            log.info("handshake store: %d challenges left pending by an earlier run can no longer be answered", n)
        if sync:
            self.store.env.sync(True)

    def _check_claim(self, txn: lmdb.Transaction, nonce: bytes, origin: Origin, now_ms: int) -> None:
        raw = txn.get(nonce, db=self._nonces)
        have = Origin.ABSENT
        if raw is not None:
            expires, stored = _VALUE.unpack(raw)
            if expires > now_ms:
                have = Origin(stored)
        elif nonce in self._pending or txn.get(nonce, db=self._legacy_pending) is not None:
            have = Origin.OWN
        if have is Origin.ABSENT:
            if txn.stat(self._nonces)["entries"] >= self.limits.max_nonces:
                raise TooManyPending("the nonce store is full of unexpired nonces; retry later")
            return
        if have is Origin.OWN and origin is Origin.PEER:
            raise HandshakeReflection("the peer's nonce is one this party generated itself: its own message came back")
        raise HandshakeReplay("the nonce was already used by an earlier handshake")

    def _record(self, txn: lmdb.Transaction, nonce: bytes, origin: Origin, now_ms: int) -> None:
        expires = now_ms + self.limits.retention_ms
        txn.put(nonce, _VALUE.pack(expires, origin), db=self._nonces)
        txn.put(_U64.pack(expires) + nonce, b"", db=self._expiry)

    def _write(self, fn: Callable[[lmdb.Transaction], None]) -> None:
        try:
            self.store.write(fn)
        except lmdb.Error as exc:
            raise Internal(f"the handshake store at {self.path} failed: {exc}") from None
        self._dirty = True

    # -- NonceStore ----------------------------------------------------------------

    def claim(self, nonce: bytes, origin: Origin, now_ms: int) -> None:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.claim`."""

        def run(txn: lmdb.Transaction) -> None:
            self._check_claim(txn, nonce, origin, now_ms)
            self._record(txn, nonce, origin, now_ms)

        self._write(run)

    def origin(self, nonce: bytes, now_ms: int) -> Origin:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.origin`."""
        if nonce in self._pending:
            return Origin.OWN
        with self.store.read() as txn:
            if txn.get(nonce, db=self._legacy_pending) is not None:
                return Origin.OWN
            raw = txn.get(nonce, db=self._nonces)
        if raw is None:
            return Origin.ABSENT
        expires, stored = _VALUE.unpack(raw)
        return Origin(stored) if expires > now_ms else Origin.ABSENT

    def open_challenge(self, nonce_i: bytes, nonce_r: bytes, peer: str, now_ms: int, hello_time_ms: int = -1) -> int:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.open_challenge`; also refuses
        hellos dated before :attr:`not_before_ms` (after a lost store).

        One write transaction per handshake: the hello nonce is claimed and the
        challenge nonce recorded as used (``OWN``) together. The *pending* part
        (deadline, peer address) lives in this process's memory: only the
        stream that carried the challenge can ever deliver its response, so a
        pending challenge means nothing once its process is gone, while its
        nonce is remembered like any other (another process sharing the
        environment sees it as this party's own; no restart accepts it again).
        """
        if 0 <= hello_time_ms < self.not_before_ms:
            raise HandshakeStale("the hello is dated before this party's replay records begin (its store was recreated); send a fresh one")
        check_pending(self._pending_total, self._per_peer.get(peer, 0), peer, self.limits)
        deadline = now_ms + self.limits.timeout_ms

        def run(txn: lmdb.Transaction) -> None:
            self._check_claim(txn, nonce_i, Origin.PEER, now_ms)
            if txn.get(nonce_r, db=self._nonces) is not None or nonce_r in self._pending:
                # 32 fresh random bytes seen before: a broken RNG, never a peer's doing.
                raise Internal("a fresh challenge nonce is already in use; the random number generator is broken")
            self._record(txn, nonce_i, Origin.PEER, now_ms)
            self._record(txn, nonce_r, Origin.OWN, now_ms)

        self._write(run)
        # The bounds count this process's half-open handshakes (the ones it holds state for).
        self._pending[nonce_r] = (deadline, peer)
        self._pending_total += 1
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        return deadline

    def _close(self, nonce_r: bytes) -> int:
        """Release a pending challenge (its nonce stays used); return its deadline, or -1 if it was not pending."""
        entry = self._pending.pop(nonce_r, None)
        if entry is None:
            return -1
        deadline, peer = entry
        self._pending_total -= 1
        left = self._per_peer.get(peer, 1) - 1
        if left > 0:
            self._per_peer[peer] = left
        else:
            self._per_peer.pop(peer, None)
        return deadline

    def close_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.close_challenge` (no storage write:
        the nonce was recorded as used when the challenge was opened)."""
        deadline = self._close(nonce_r)
        if deadline < 0:
            raise HandshakeReplay("the response answers a challenge that is no longer pending (already answered)")
        if now_ms > deadline:
            raise HandshakeTimeout(f"the response came {now_ms - deadline} ms after the challenge's deadline")

    def abandon_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.abandon_challenge`."""
        self._close(nonce_r)

    def purge(self, now_ms: int, limit: int = PURGE_BATCH) -> int:
        """Forget up to ``limit`` expired nonces, and abandon challenges far past their deadline."""
        stale = [k for k, (deadline, _) in self._pending.items() if deadline + self.limits.timeout_ms <= now_ms][:limit]
        for k in stale:
            self._close(k)
        self._retire_expired(now_ms, sync=False)  # rows an earlier version left in auth_pending (normally none)
        bound = _U64.pack(now_ms + 1)
        removed: list[int] = [0]

        def run(txn: lmdb.Transaction) -> None:
            removed[0] = 0
            cur = txn.cursor(db=self._expiry)
            if not cur.first():
                return
            while removed[0] < limit:
                key = cur.key()
                if not key or key[:8] >= bound:
                    break
                nonce = key[8:]
                raw = txn.get(nonce, db=self._nonces)
                # Only the record this index entry was written for (a nonce re-recorded
                # later has a later expiry and its own index entry).
                if raw is not None and raw[:8] == key[:8]:
                    txn.delete(nonce, db=self._nonces)
                removed[0] += 1
                if not cur.delete():
                    break

        self._write(run)
        self._backlog = removed[0] >= limit
        return removed[0] + len(stale)

    def pending_count(self, peer: str | None = None) -> int:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.pending_count`."""
        return self._pending_total if peer is None else self._per_peer.get(peer, 0)

    def __len__(self) -> int:
        with self.store.read() as txn:
            return int(txn.stat(self._nonces)["entries"])

    # -- upkeep ----------------------------------------------------------------------

    def maintenance_due(self, now_ms: int) -> bool:
        """Whether :meth:`maintain` has work (cheap; call after each handshake)."""
        return now_ms - self._last_purge >= (BACKLOG_INTERVAL_MS if self._backlog else PURGE_INTERVAL_MS)

    def maintain(self, now_ms: int) -> bool:
        """Purge expired entries (bounded); return whether a :meth:`sync` is due."""
        self._last_purge = now_ms
        self.purge(now_ms)
        if self._dirty and now_ms - self._last_sync >= SYNC_INTERVAL_MS:
            self._last_sync = now_ms
            self._dirty = False
            return True
        return False

    def sync(self) -> None:
        """Flush committed transactions to disk (may run on another thread)."""
        try:
            self.store.env.sync(True)
        except lmdb.Error as exc:
            log.warning("handshake store %s: sync failed: %s", self.path, exc)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.sync()
        self.store.close()
