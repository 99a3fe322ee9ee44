"""A read-only view of a node's LMDB store, for audits and offline tools.

By default opened with ``readonly=True, lock=False``: nothing is ever
written, not even the reader lock table, so it works on a copy, on read-only
media, or on the data directory of a *stopped* node. Without the lock table a
concurrent writer may reuse pages this reader still looks at, so on the store
of a running node either copy it first (:func:`snapshot`) or open it with
``live=True``: then each read transaction takes a slot in LMDB's reader
table, which the writer respects, exactly like a reader in the node's own
process (this is how the node's prepare workers read it).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import lmdb

from didnode.errors import StoreCorrupted
from didnode.store import layout
from didnode.store.datafile import check_data_file

LEDGER_SUBDIR = "ledger"


def ledger_path(data_dir: str) -> str:
    """The LMDB directory of a node data directory (``DATA/ledger``); a ledger directory itself also works."""
    inner = os.path.join(data_dir, LEDGER_SUBDIR)
    return inner if os.path.exists(os.path.join(inner, "data.mdb")) else data_dir


class ReadOnlyStore:
    """The named databases of :mod:`didnode.store.layout`, read-only.

    ``dbs`` lacks the names the store never created (e.g. ``checkpoints`` in a
    store written before checkpoints existed); ``has(name)`` tells.
    """

    def __init__(self, path: str, live: bool = False) -> None:
        """Open the store at ``path`` read-only; ``live=True`` when its node may be running (see module docstring)."""
        if not os.path.isfile(os.path.join(path, "data.mdb")):
            raise StoreCorrupted(f"no LMDB store at {path} (no data.mdb)")
        check_data_file(path, live=live)  # a truncated file would SIGBUS the first read
        self.path = path
        try:
            # A live reader shares the writer's reader table, which the node
            # sized (max_readers=512); LMDB takes that size from the lock file.
            self.env = lmdb.open(
                path, readonly=True, lock=live, max_dbs=len(layout.ALL_DBS) + 4, subdir=True,
                max_readers=512 if live else 16, readahead=False,
            )
        except lmdb.Error as exc:
            raise StoreCorrupted(f"cannot open the LMDB store at {path} read-only: {exc}") from None
        self.dbs: dict[bytes, object] = {}
        for name in layout.ALL_DBS:
            try:
                self.dbs[name] = self.env.open_db(name, create=False)
            except lmdb.NotFoundError:
                continue
            except lmdb.Error as exc:
                raise StoreCorrupted(f"cannot open table {name.decode()} of {path}: {exc}") from None

    def has(self, name: bytes) -> bool:
        return name in self.dbs

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A read transaction (values copied out as bytes)."""
        try:
            txn = self.env.begin(buffers=False)
        except lmdb.MapResizedError:
            # The running node grew the map since we opened it: adopt the new size.
            self.env.set_mapsize(0)
            txn = self.env.begin(buffers=False)
        with txn:
            yield txn

    def close(self) -> None:
        self.env.close()


def snapshot(data_dir: str, dest: str) -> str:
    """Copy the store of ``data_dir`` (even of a running node: a normal MVCC reader) to ``dest``.

    Returns the copy's ledger directory. The copy is compacted and consistent
    as of one read transaction.
    """
    src = ledger_path(data_dir)
    check_data_file(src, live=True)
    out = os.path.join(dest, LEDGER_SUBDIR)
    os.makedirs(out, mode=0o700, exist_ok=True)
    try:
        env = lmdb.open(src, readonly=True, max_dbs=len(layout.ALL_DBS) + 4)
    except lmdb.Error as exc:
        raise StoreCorrupted(f"cannot open the LMDB store at {src}: {exc}") from None
    try:
        env.copy(out, compact=True)
    finally:
        env.close()
    return out
