"""The LMDB environment of a node: open, named databases, read and write transactions.

One environment per node. Commits are durable (``sync=True``: the commit
fsyncs), so a write transaction that returned has survived ``kill -9``.
When the map is full the environment grows (doubling) and the batch is
retried: LMDB only allows resizing while this process holds no transaction,
so read transactions pass a gate that a resize closes for its duration.

Failures of the storage itself get their own reasons (:func:`storage_error`):
a full disk is :class:`StorageFull`, a read-only data directory or file
system :class:`StoreReadOnly`; a file that does not open as this store is
:class:`StoreCorrupted`.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import lmdb

from didnode.errors import DidnodeError, Internal, StorageFull, StoreCorrupted, StoreReadOnly
from didnode.store import layout
from didnode.store.datafile import check_data_file

T = TypeVar("T")
DEFAULT_MAP_SIZE = 1 << 30
MAX_MAP_SIZE = 1 << 40

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def _errno(exc: BaseException) -> int | None:
    """The operating-system error number behind ``exc``: ``OSError.errno``, py-lmdb's
    ``Error.code`` (an errno or an ``MDB_*`` code), or, for a py-lmdb without
    ``code``, the errno whose text ends LMDB's message."""
    if isinstance(exc, OSError):
        return exc.errno
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    text = str(exc)
    return next((n for n in _FULL | _READ_ONLY if text.endswith(os.strerror(n))), None)


# A file system with less room than this after a failed write is taken as full (see storage_error).
FULL_BELOW = 1 << 20


def _file_system_full(path: str) -> bool:
    """Whether the file system holding ``path`` has (next to) no room left for this process."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail  # root may write the reserved blocks
    return blocks * st.f_frsize < FULL_BELOW


def storage_error(exc: BaseException, doing: str, path: str | None = None) -> DidnodeError:
    """The typed error for an ``OSError`` or ``lmdb.Error`` raised while ``doing`` (e.g. "commit to /data/ledger").

    A full disk or quota is :class:`StorageFull` (``lmdb.DiskError`` is
    LMDB's ENOSPC), a read-only file system or a permission refused
    :class:`StoreReadOnly` (``lmdb.ReadonlyError`` is LMDB's EACCES), anything
    else :class:`Internal`. LMDB 0.9 reports a *short* write as EIO (a write
    that filled the disk is short rather than failed), so an EIO while writing
    under ``path`` on a file system left with no room is :class:`StorageFull`
    as well.
    """
    code = _errno(exc)
    detail = os.strerror(code) if code in _FULL | _READ_ONLY else str(exc)
    if code == errno.EIO and path is not None and _file_system_full(path):
        code, detail = errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (LMDB: {exc})"
    if isinstance(exc, lmdb.DiskError) or code in _FULL:
        return StorageFull(f"cannot {doing}: {detail}; free space on the node's disk (nothing of it was written)")
    if isinstance(exc, lmdb.ReadonlyError) or code in _READ_ONLY:
        return StoreReadOnly(f"cannot {doing}: {detail}; the data directory must be writable by the node")
    return Internal(f"cannot {doing}: {detail}")


class Store:
    """An open LMDB environment with the named databases of :mod:`didnode.store.layout`.

    Thread rules: any thread may call :meth:`read`; :meth:`write` must be
    called from one writer thread at a time (LMDB has one writer anyway).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        map_size: int = DEFAULT_MAP_SIZE,
        sync: bool = True,
    ) -> None:
        """Open (creating) the environment at ``path`` with the named databases of :mod:`didnode.store.layout`."""
        self.path = os.fspath(path)
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, f"create the store directory {self.path}") from None
        # Before LMDB maps it: a page past the end of a truncated file is a SIGBUS, not an error.
        # An empty file is what LMDB initializes as a new environment.
        check_data_file(self.path, allow_empty=True)
        try:
            self.env = lmdb.open(
                self.path,
                map_size=map_size,
                max_dbs=len(layout.ALL_DBS) + 4,
                max_readers=512,
                sync=sync,
                metasync=sync,
                readahead=False,
                meminit=False,
            )
        except lmdb.Error as exc:
            err = storage_error(exc, f"open the LMDB store at {self.path}")
            if type(err) is Internal:
                raise StoreCorrupted(f"cannot open the LMDB store at {self.path}: {exc}") from None
            raise err from None
        # Told the seconds each durable commit took (LMDB's page writes and fsync), e.g. by the
        # node's metrics (didnode.http.metrics); called on the writing thread, must not block.
        self.on_commit: Callable[[float], None] | None = None
        self._gate = threading.Condition()
        self._readers = 0
        self._resizing = False
        try:
            self.dbs = {name: self.env.open_db(name) for name in layout.ALL_DBS}
            # Free reader slots left by processes that died holding them (e.g. a
            # prepare worker of a node killed with -9): the writer would otherwise
            # keep the pages those readers pinned.
            self.env.reader_check()
            self._check_schema()
        except lmdb.Error as exc:
            self.env.close()
            raise storage_error(exc, f"prepare the LMDB store at {self.path}", self.path) from None
        except BaseException:
            self.env.close()
            raise

    def _check_schema(self) -> None:
        with self.env.begin(write=True) as txn:
            meta = self.dbs[layout.DB_META]
            raw = txn.get(layout.META_SCHEMA, db=meta)
            if raw is None:
                txn.put(layout.META_SCHEMA, layout.u64(layout.SCHEMA_VERSION), db=meta)
            elif layout.read_u64(raw) != layout.SCHEMA_VERSION:
                raise StoreCorrupted(
                    f"store {self.path} has schema version {layout.read_u64(raw)}; this didnode reads version {layout.SCHEMA_VERSION}"
                )

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A read-only snapshot (MVCC: never blocks and is never blocked by the writer)."""
        with self._gate:
            while self._resizing:
                self._gate.wait()
            self._readers += 1
        try:
            with self.env.begin(buffers=False) as txn:
                yield txn
        finally:
            with self._gate:
                self._readers -= 1
                if self._readers == 0:
                    self._gate.notify_all()

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one write transaction and commit it durably.

        ``fn`` may be run again (from scratch, on a fresh transaction) when
        the map had to grow, so it must not have effects outside ``txn``
        before it returns. An exception from ``fn`` aborts everything it wrote;
        a failure of the storage (disk full, read-only, I/O) is raised as
        :func:`storage_error` says, after the abort.
        """
        while True:
            try:
                txn = self.env.begin(write=True, buffers=False)
                try:
                    result = fn(txn)
                except BaseException:
                    txn.abort()
                    raise
                started = time.perf_counter()
                txn.commit()
                if self.on_commit is not None:
                    self.on_commit(time.perf_counter() - started)
                return result
            except lmdb.MapFullError:
                self._grow()
            except lmdb.Error as exc:
                raise storage_error(exc, f"commit to the store at {self.path}", self.path) from None

    def _grow(self) -> None:
        size = self.env.info()["map_size"] * 2
        if size > MAX_MAP_SIZE:
            raise Internal(f"LMDB store at {self.path} would exceed {MAX_MAP_SIZE} bytes")
        with self._gate:
            self._resizing = True
            try:
                while self._readers:
                    self._gate.wait()
                self.env.set_mapsize(size)
            finally:
                self._resizing = False
                self._gate.notify_all()

    def close(self) -> None:
        self.env.close()
