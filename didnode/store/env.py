"""The LMDB environment of a node: open, named databases, read and write transactions.

One environment per node. Commits are durable (``sync=True``: the commit
fsyncs), so a write transaction that returned has survived ``kill -9``.
When the map is full the environment grows (doubling) and the batch is
retried: LMDB only allows resizing while this process holds no transaction,
so read transactions pass a gate that a resize closes for its duration.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import lmdb

from didnode.errors import Internal, StoreCorrupted
from didnode.store import layout

T = TypeVar("T")
DEFAULT_MAP_SIZE = 1 << 30
MAX_MAP_SIZE = 1 << 40


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
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.path = os.fspath(path)
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
            raise StoreCorrupted(f"cannot open the LMDB store at {self.path}: {exc}") from None
        self.dbs = {name: self.env.open_db(name) for name in layout.ALL_DBS}
        # Free reader slots left by processes that died holding them (e.g. a
        # prepare worker of a node killed with -9): the writer would otherwise
        # keep the pages those readers pinned.
        self.env.reader_check()
        self._gate = threading.Condition()
        self._readers = 0
        self._resizing = False
        self._check_schema()

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
        before it returns. An exception from ``fn`` aborts everything it wrote.
        """
        while True:
            try:
                with self.env.begin(write=True, buffers=False) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self._grow()

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
