"""The handshake's used nonces in LMDB: :class:`LmdbNonceStore`, in its own small environment.

The rules (claims, replays, reflections, expiry, bounds, pending challenges,
purge and flush schedule) are :class:`didnode.core.handshake.nonces.NonceBook`'s,
the same as :class:`~didnode.core.handshake.nonces.MemoryNonceStore`'s; this
module only stores and fetches rows (:class:`LmdbRows`). Pending challenges are
this process's memory (only the stream that carried a challenge can deliver its
response); a challenge's *nonce* is recorded as used (``OWN``) when the challenge
is opened, in the same write transaction that claims the hello nonce.

Self-contained on purpose: it opens its own environment and declares its own
key layout, and imports only ``lmdb``, ``didnode.core`` and ``didnode.errors``
(devices use it too, and the device SDK must not import ``didnode.store``). It
is the only handshake module that imports ``lmdb``.

Why a separate environment (``DATA/auth`` on a node) and not the ledger's,
through the orderer's writer thread:

* the ledger's promise is "acknowledged means durable": every ledger
  commit fsyncs. Handshake state only has to stop replays across a restart,
  so it commits without fsync (``sync=False``: a commit writes its pages to
  the file, the OS flushes them) and is flushed to disk once a second. (Not
  ``writemap``, although it saves the write syscalls: a memory-mapped store
  whose disk fills up takes its process down with SIGBUS, where a write
  call fails with ENOSPC, which becomes ``STORAGE_FULL``.) One small write transaction per responder handshake (two per
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

Layout (named databases of this environment; integers big-endian):

==============  ============================  ==========================================
database        key                           value
==============  ============================  ==========================================
meta            ``schema_version``            u64 :data:`AUTH_SCHEMA_VERSION`
auth_nonces     32-byte nonce                 u64 expiry ms + u8 origin (1 peer, 2 own)
auth_expiry     u64 expiry ms + nonce         empty (purge walks this index in time order)
==============  ============================  ==========================================

Schema versions: this environment has its own, :data:`AUTH_SCHEMA_VERSION`
(4). Before it, the environment was opened with the ledger's store code and
recorded the *ledger's* schema version (1 to 3), with a fourth table,
``auth_pending`` (challenge nonce -> u64 deadline + peer address), that only
versions older than the in-memory pending challenges wrote. Such a store is
migrated when it opens, in one write transaction: each ``auth_pending`` row
becomes a used ``OWN`` nonce (its stream is gone, so it can never be answered,
and it must never be accepted again), the table is dropped and version 4 is
written; its used nonces are kept. A version this code does not know (a newer
didnode's) is treated like a store that does not open: moved aside, with a
warning naming the version, and recreated (refusing older hellos).
Processes of an older didnode must not share an environment with this one
(an older one would move a version-4 store aside when it opens it).

Thread rules: one event loop (or thread) uses a store; :meth:`LmdbNonceStore.sync`
may run on another thread.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import time
from pathlib import Path
from typing import Callable, TypeVar

import lmdb

from didnode.core.handshake.nonces import HandshakeLimits, NonceBook, Origin
from didnode.errors import DidnodeError, Internal, StorageFull, StoreCorrupted

log = logging.getLogger("didnode.auth")

T = TypeVar("T")

AUTH_SCHEMA_VERSION = 4
# Versions an older didnode recorded (the ledger's numbers; the same two tables plus auth_pending).
MIGRATED_VERSIONS = (1, 2, 3)

AUTH_MAP_SIZE = 64 << 20
# max_nonces (1,000,000 by default) bounds the tables to about 150 MB; the map grows by doubling.
MAX_MAP_SIZE = 1 << 40

DB_META = b"meta"
DB_NONCES = b"auth_nonces"
DB_EXPIRY = b"auth_expiry"
DB_LEGACY_PENDING = b"auth_pending"  # read once, by the migration from versions 1-3
META_SCHEMA = b"schema_version"

_VALUE = struct.Struct(">QB")
_U64 = struct.Struct(">Q")


class LmdbRows:
    """:class:`~didnode.core.handshake.nonces.NonceRows` in an LMDB environment (see the module's layout).

    Open with :meth:`open`. ``txn`` arguments are ``lmdb.Transaction`` objects of this environment.
    """

    durable = True

    def __init__(self, env: lmdb.Environment, path: Path, nonces: lmdb._Database, expiry: lmdb._Database) -> None:
        """Precondition: made by :meth:`open` (schema checked, ``nonces`` and ``expiry`` the tables' handles)."""
        self.env = env
        self.path = path
        self._nonces = nonces
        self._expiry = expiry

    @classmethod
    def open(cls, path: Path, map_size: int, now_ms: int, retention_ms: int) -> LmdbRows:
        """Open (creating) the environment at ``path``, checking or migrating its schema version.

        ``now_ms`` and ``retention_ms`` date the used nonces a migration makes of
        ``auth_pending`` rows. Raises :class:`StoreCorrupted` (with LMDB's message,
        e.g. "... already open in this process") when the environment does not
        open, or when its schema version is unknown.
        """
        os.makedirs(path, mode=0o700, exist_ok=True)
        try:
            env = lmdb.open(
                os.fspath(path),
                map_size=map_size,
                max_dbs=8,
                max_readers=512,
                sync=False,
                metasync=False,
                readahead=False,
                meminit=False,
            )
        except lmdb.Error as exc:
            raise StoreCorrupted(f"cannot open the handshake store at {path}: {exc}") from None
        try:
            # Free reader slots of processes that died holding them (their pinned pages).
            env.reader_check()
            with env.begin(write=True) as txn:
                nonces, expiry = _check_schema(env, txn, path, now_ms + retention_ms)
            return cls(env, path, nonces, expiry)
        except lmdb.Error as exc:
            env.close()
            raise StoreCorrupted(f"the handshake store at {path} is unreadable: {exc}") from None
        except BaseException:
            env.close()
            raise

    def read(self) -> lmdb.Transaction:
        return self.env.begin()

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self._grow()
            except lmdb.Error as exc:
                raise _store_error(self.path, exc) from None

    def _grow(self) -> None:
        # Precondition (the store's thread rule): this process holds no transaction now.
        size = self.env.info()["map_size"] * 2
        if size > MAX_MAP_SIZE:
            raise Internal(f"the handshake store at {self.path} would exceed {MAX_MAP_SIZE} bytes")
        self.env.set_mapsize(size)

    def get(self, txn: lmdb.Transaction, nonce: bytes) -> tuple[int, int] | None:
        raw = txn.get(nonce, db=self._nonces)
        return None if raw is None else _VALUE.unpack(raw)

    def count(self, txn: lmdb.Transaction) -> int:
        return int(txn.stat(self._nonces)["entries"])

    def put(self, txn: lmdb.Transaction, nonce: bytes, expires_ms: int, origin: Origin) -> None:
        txn.put(nonce, _VALUE.pack(expires_ms, origin), db=self._nonces)
        txn.put(_U64.pack(expires_ms) + nonce, b"", db=self._expiry)

    def forget_expired(self, txn: lmdb.Transaction, now_ms: int, limit: int) -> int:
        bound = _U64.pack(now_ms + 1)
        removed = 0
        cur = txn.cursor(db=self._expiry)
        if not cur.first():
            return 0
        while removed < limit:
            key = cur.key()
            if not key or key[:8] >= bound:
                break
            nonce = key[8:]
            raw = txn.get(nonce, db=self._nonces)
            # Only the row this index entry was written for (a nonce recorded again later
            # has a later expiry and its own index entry).
            if raw is not None and raw[:8] == key[:8]:
                txn.delete(nonce, db=self._nonces)
            removed += 1
            if not cur.delete():
                break
        return removed

    def sync(self) -> None:
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            log.warning("handshake store %s: sync failed: %s", self.path, exc)

    def close(self) -> None:
        self.env.close()


def _check_schema(env: lmdb.Environment, txn: lmdb.Transaction, path: Path, migrated_expiry_ms: int) -> tuple[lmdb._Database, lmdb._Database]:
    """Create the tables, and check (or migrate, see the module docstring) the schema version, in
    the write transaction ``txn``; return the handles of ``auth_nonces`` and ``auth_expiry``
    (valid once ``txn`` commits). Raises :class:`StoreCorrupted` for an unknown version."""
    meta = env.open_db(DB_META, txn=txn)
    nonces = env.open_db(DB_NONCES, txn=txn)
    expiry = env.open_db(DB_EXPIRY, txn=txn)
    raw = txn.get(META_SCHEMA, db=meta)
    version: int | None = None  # None: a new store
    if raw is not None:
        if len(raw) != 8:
            raise StoreCorrupted(f"handshake store {path} has an unreadable schema version {raw!r}")
        version = _U64.unpack(raw)[0]
        if version == AUTH_SCHEMA_VERSION:
            return nonces, expiry
        if version not in MIGRATED_VERSIONS:
            raise StoreCorrupted(
                f"handshake store {path} has schema version {version}; this didnode reads version "
                f"{AUTH_SCHEMA_VERSION} and migrates versions {MIGRATED_VERSIONS[0]}-{MIGRATED_VERSIONS[-1]}"
            )
    # Named databases are keys of the main database: look before opening, so that a new
    # store never gets an auth_pending table.
    if txn.get(DB_LEGACY_PENDING) is not None:
        pending = env.open_db(DB_LEGACY_PENDING, txn=txn, create=False)
        keys = [k for k, _ in txn.cursor(db=pending)]
        for k in keys:
            txn.put(k, _VALUE.pack(migrated_expiry_ms, Origin.OWN), db=nonces)
            txn.put(_U64.pack(migrated_expiry_ms) + k, b"", db=expiry)
        txn.drop(pending, delete=True)
        if keys:
            log.info("handshake store %s: %d challenges an older version left pending are now used nonces", path, len(keys))
    txn.put(META_SCHEMA, _U64.pack(AUTH_SCHEMA_VERSION), db=meta)
    if version is not None:
        log.info("handshake store %s: migrated from schema version %d to %d", path, version, AUTH_SCHEMA_VERSION)
    return nonces, expiry


class LmdbNonceStore(NonceBook[lmdb.Transaction]):
    """A :class:`~didnode.core.handshake.nonces.NonceStore` in its own LMDB environment at ``path``:
    the :class:`~didnode.core.handshake.nonces.NonceBook` rules over :class:`LmdbRows`.

    ``now_ms`` is the opening time: it dates the used nonces a schema migration
    makes of an older store's pending challenges, and becomes
    :attr:`not_before_ms` if the store had to be recreated. Raises
    :class:`Internal` if ``path`` is already open in this process (LMDB allows
    one handle per process: share the object instead) or cannot hold an LMDB
    environment at all.
    """

    def __init__(self, path: str | os.PathLike[str], now_ms: int, limits: HandshakeLimits = HandshakeLimits(), map_size: int = AUTH_MAP_SIZE) -> None:
        self.path = Path(path)
        not_before_ms = 0
        try:
            rows = LmdbRows.open(self.path, map_size, now_ms, limits.retention_ms)
        except StoreCorrupted as exc:
            if "already open" in str(exc):
                # Not a damaged store: this process holds it.
                raise Internal(f"the handshake store {self.path} is already open in this process") from None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("handshake store %s does not open (%s); moved to %s and recreated", self.path, exc, aside)
            os.replace(self.path, aside)
            rows = LmdbRows.open(self.path, map_size, now_ms, limits.retention_ms)
            # Replays of hellos recorded in the lost store must stay impossible.
            not_before_ms = now_ms
        super().__init__(rows, limits, not_before_ms, now_ms)


def _store_error(path: Path, exc: lmdb.Error) -> DidnodeError:
    """The typed error of a failed write: a full disk is STORAGE_FULL (the node's store maps it alike), the rest INTERNAL."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc):
        return StorageFull(f"the handshake store at {path} cannot grow: the disk is full ({exc})", path=os.fspath(path))
    return Internal(f"the handshake store at {path} failed: {exc}")
