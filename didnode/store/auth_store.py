"""The handshake's used nonces and pending challenges in LMDB (a separate, small environment).

Why a separate environment (``DATA/auth`` on a node) and not the ledger's,
through the orderer's writer thread:

* the ledger's promise is "acknowledged means durable": every ledger
  commit fsyncs. Handshake state only has to stop replays across a restart,
  so it commits without fsync (``sync=False``, and ``writemap``: a commit
  writes the memory map, no syscall at all) and is flushed to disk once a
  second. Two small write transactions per handshake then cost a few µs
  instead of two fsyncs;
* handshake writes never queue behind a ledger batch (or its fsync), and a
  flood of hellos can never slow the ledger's writer down;
* the ledger stays a pure function of the log: no per-connection state in it.

What ``sync=False`` costs: after a *machine* crash (not a process crash:
committed pages are in the OS page cache then) the last second of nonces
may be lost, or the environment may not open. A store that cannot open is
moved aside and recreated, and then refuses every hello dated before the
moment it was recreated (:attr:`LmdbNonceStore.not_before_ms`), so that
nothing recorded in the lost window can be replayed.

Layout (``didnode.store.layout``): ``auth_nonces`` nonce -> expiry + origin;
``auth_expiry`` expiry + nonce (purge order); ``auth_pending`` challenge
nonce -> deadline + peer address. Thread rules: one event loop (or thread)
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
        self._pending = self.store.dbs[layout.DB_AUTH_PENDING]
        self._per_peer: dict[str, int] = {}
        self._pending_total = 0
        self._last_purge = 0
        self._last_sync = now_ms
        self._dirty = False
        self._closed = False
        self._mine: set[bytes] = set()
        self._retire_expired(now_ms)

    # -- helpers (inside one write transaction) ----------------------------------

    def _retire_expired(self, now_ms: int) -> None:
        """Challenges past their deadline (left by a run that stopped) become plain used nonces.

        Unexpired ones are left alone: another process may share this
        environment (``didctl auth`` next to ``didctl device serve`` for the
        same DID) and be waiting for their responses. A challenge of a
        stopped run can never be answered anyway (its stream and secrets are
        gone), and the purge retires it once its deadline has passed.
        """

        def run(txn: lmdb.Transaction) -> int:
            keys = [k for k, v in txn.cursor(db=self._pending) if _U64.unpack(v[:8])[0] < now_ms]
            for k in keys:
                txn.delete(k, db=self._pending)
                self._record(txn, k, Origin.OWN, now_ms)
            return len(keys)

        n = self.store.write(run)
        if n:
            log.info("handshake store: %d challenges left pending by an earlier run can no longer be answered", n)
        self.store.env.sync(True)

    def _check_claim(self, txn: lmdb.Transaction, nonce: bytes, origin: Origin, now_ms: int) -> None:
        raw = txn.get(nonce, db=self._nonces)
        have = Origin.ABSENT
        if raw is not None:
            expires, stored = _VALUE.unpack(raw)
            if expires > now_ms:
                have = Origin(stored)
        elif txn.get(nonce, db=self._pending) is not None:
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
        with self.store.read() as txn:
            if txn.get(nonce, db=self._pending) is not None:
                return Origin.OWN
            raw = txn.get(nonce, db=self._nonces)
        if raw is None:
            return Origin.ABSENT
        expires, stored = _VALUE.unpack(raw)
        return Origin(stored) if expires > now_ms else Origin.ABSENT

    def open_challenge(self, nonce_i: bytes, nonce_r: bytes, peer: str, now_ms: int, hello_time_ms: int = -1) -> int:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.open_challenge`; also refuses
        hellos dated before :attr:`not_before_ms` (after a lost store)."""
        if 0 <= hello_time_ms < self.not_before_ms:
            raise HandshakeStale("the hello is dated before this party's replay records begin (its store was recreated); send a fresh one")
        check_pending(self._pending_total, self._per_peer.get(peer, 0), peer, self.limits)
        deadline = now_ms + self.limits.timeout_ms

        def run(txn: lmdb.Transaction) -> None:
            self._check_claim(txn, nonce_i, Origin.PEER, now_ms)
            self._record(txn, nonce_i, Origin.PEER, now_ms)
            txn.put(nonce_r, _U64.pack(deadline) + peer.encode("utf-8"), db=self._pending)

        self._write(run)
        # The bounds count this process's half-open handshakes (the ones it holds state for).
        self._mine.add(nonce_r)
        self._pending_total += 1
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        return deadline

    def _close(self, nonce_r: bytes, now_ms: int) -> int:
        """Move a pending challenge to the used nonces; return its deadline, or -1 if it was not pending."""
        found: list[bytes] = []

        def run(txn: lmdb.Transaction) -> None:
            found.clear()
            raw = txn.get(nonce_r, db=self._pending)
            if raw is None:
                return
            found.append(raw)
            txn.delete(nonce_r, db=self._pending)
            self._record(txn, nonce_r, Origin.OWN, now_ms)

        self._write(run)
        if not found:
            return -1
        raw = found[0]
        if nonce_r in self._mine:
            self._mine.discard(nonce_r)
            peer = raw[8:].decode("utf-8")
            self._pending_total -= 1
            left = self._per_peer.get(peer, 1) - 1
            if left > 0:
                self._per_peer[peer] = left
            else:
                self._per_peer.pop(peer, None)
        return int(_U64.unpack(raw[:8])[0])

    def close_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.close_challenge`."""
        deadline = self._close(nonce_r, now_ms)
        if deadline < 0:
            raise HandshakeReplay("the response answers a challenge that is no longer pending (already answered)")
        if now_ms > deadline:
            raise HandshakeTimeout(f"the response came {now_ms - deadline} ms after the challenge's deadline")

    def abandon_challenge(self, nonce_r: bytes, now_ms: int) -> None:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.abandon_challenge`."""
        self._close(nonce_r, now_ms)

    def purge(self, now_ms: int, limit: int = PURGE_BATCH) -> int:
        """Forget up to ``limit`` expired nonces, and abandon challenges far past their deadline."""
        stale: list[bytes] = []
        with self.store.read() as txn:
            for k, v in txn.cursor(db=self._pending):
                if _U64.unpack(v[:8])[0] + self.limits.timeout_ms <= now_ms:
                    stale.append(k)
        for k in stale[:limit]:
            self._close(k, now_ms)
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
        return removed[0] + len(stale[:limit])

    def pending_count(self, peer: str | None = None) -> int:
        """See :meth:`didnode.core.handshake.nonces.NonceStore.pending_count`."""
        return self._pending_total if peer is None else self._per_peer.get(peer, 0)

    def __len__(self) -> int:
        with self.store.read() as txn:
            return int(txn.stat(self._nonces)["entries"])

    # -- upkeep ----------------------------------------------------------------------

    def maintenance_due(self, now_ms: int) -> bool:
        """Whether :meth:`maintain` has work (cheap; call after each handshake)."""
        return now_ms - self._last_purge >= PURGE_INTERVAL_MS

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
