"""Check an LMDB ``data.mdb`` against its meta pages before anything maps it.

LMDB maps the data file into memory. A page past the end of a truncated file
is not an error LMDB can report: the first touch kills the process with
SIGBUS. So every opener of a ledger (:class:`~didnode.store.env.Store`,
:class:`~didnode.store.readonly.ReadOnlyStore`,
:func:`~didnode.store.readonly.snapshot`) first calls :func:`check_data_file`,
which reads the file with ``pread`` only (never a mapping, so the check itself
cannot fault) and raises :class:`~didnode.errors.StoreCorrupted` with one line
saying what is missing.

The file starts with two meta pages (LMDB 0.9, 64-bit, native byte order): a
16-byte page header, then ``MDB_meta``: magic ``0xBEEFC0DE``, format version
1, the free-page and main B-tree descriptors (the free one's ``md_pad`` holds
the page size) and ``mm_last_pg``, the last page number in use, and
``mm_txnid``. LMDB uses the meta with the larger ``mm_txnid``.

A file shorter than ``(mm_last_pg + 1) * page size`` is *not* necessarily
truncated: LMDB never writes a page that a transaction allocated from the end
of the file and freed again before committing (a "loose" page), so a healthy
file may end before its last page numbers when those are free. Such pages are
never read. The check therefore only refuses a short file when a page past its
end is not in the free-page B-tree (or when that tree itself is cut): exactly
the files on which LMDB could touch a missing page.
"""

from __future__ import annotations

import os
import struct
import time

from didnode.errors import StoreCorrupted

DATA_FILE = "data.mdb"

MDB_MAGIC = 0xBEEFC0DE
MDB_DATA_VERSION = 1
PAGE_HEADER = 16  # mp_pgno u64, mp_pad u16, mp_flags u16, mp_lower u16, mp_upper u16 (mp_pages u32 on overflow pages)
P_BRANCH, P_LEAF, P_OVERFLOW, P_META = 0x01, 0x02, 0x04, 0x08
F_BIGDATA = 0x01
P_INVALID = (1 << 64) - 1
MAX_DEPTH = 64

_HEADER = struct.Struct("=QHHHH")  # pgno, pad, flags, lower, upper
# MDB_meta after the page header: magic, version, address, mapsize, 2 x MDB_db, last_pg, txnid.
_DB = "IHHQQQQQ"  # md_pad, md_flags, md_depth, branch, leaf, overflow pages, entries, root
_META = struct.Struct("=IIQQ" + _DB + _DB + "QQ")
_NODE = struct.Struct("=HHHH")  # mn_lo, mn_hi, mn_flags, mn_ksize
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")


class _Meta:
    __slots__ = ("psize", "free_root", "last_pg", "txnid")

    def __init__(self, psize: int, free_root: int, last_pg: int, txnid: int) -> None:
        self.psize = psize
        self.free_root = free_root
        self.last_pg = last_pg
        self.txnid = txnid


class _Truncated(Exception):
    """A page of the free-page tree lies (partly) past the end of the file: ``args[0]`` is the first missing page."""


class _Damaged(Exception):
    """The free-page tree does not parse: ``args[0]`` says where."""


def check_data_file(env_dir: str, *, allow_empty: bool = False, live: bool = False) -> None:
    """Raise :class:`StoreCorrupted` if ``env_dir/data.mdb`` is truncated or is no LMDB 0.9 data file.

    A missing file passes (a new environment). An empty one passes only with
    ``allow_empty`` (LMDB initializes an empty file opened for writing as a
    new environment; a reader would find nothing). With ``live=True`` (a node
    may be committing meanwhile) a failed check is repeated a few times: a
    writer's pages reach the file before the meta page naming them, and the
    file only grows, so a live healthy store passes on a second reading while
    a truncated one stays truncated.
    """
    path = os.path.join(env_dir, DATA_FILE)
    attempts = 3 if live else 1
    for attempt in range(attempts):
        try:
            _check(path, allow_empty)
            return
        except StoreCorrupted:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _check(path: str, allow_empty: bool) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreCorrupted(f"cannot read {path}: {exc.strerror}") from None
    try:
        _check_fd(fd, path, allow_empty)
    finally:
        os.close(fd)


def _check_fd(fd: int, path: str, allow_empty: bool) -> None:
    size = os.fstat(fd).st_size
    if size == 0:
        if allow_empty:
            return
        raise StoreCorrupted(f"{path} is empty (0 bytes): the store was truncated or never written; restore it from a backup")
    head = os.pread(fd, 64, 0)
    magic_at = [off for off in range(0, len(head) - 3, 4) if _U32.unpack_from(head, off)[0] == MDB_MAGIC]
    if PAGE_HEADER not in magic_at:
        if magic_at:
            return  # an LMDB file of another layout (LMDB 1.0, another word size): LMDB itself judges it
        raise StoreCorrupted(f"{path} is not an LMDB data file (no LMDB magic at its start; {size} bytes)")
    m0 = _meta(fd, path, 0, 0, size)
    m1 = _meta(fd, path, 1, m0.psize, size)
    if m1.psize != m0.psize:
        raise StoreCorrupted(f"{path} is damaged: its meta pages disagree on the page size ({m0.psize} and {m1.psize})")
    meta = m1 if m1.txnid > m0.txnid else m0
    psize = meta.psize
    frontier = (meta.last_pg + 1) * psize
    if size >= frontier:
        return
    # Short: every page from the first one the file does not hold entirely must be free.
    first_missing = size // psize
    try:
        free = _free_pages(fd, meta, size)
        missing = next((p for p in range(first_missing, meta.last_pg + 1) if p not in free), None)
    except _Truncated as exc:
        missing = exc.args[0]
    except _Damaged as exc:
        raise StoreCorrupted(f"{path} is damaged and {size} bytes short of its last page: its free-page tree {exc.args[0]}") from None
    if missing is not None:
        raise StoreCorrupted(
            f"{path} is truncated: it holds {size} bytes, but its last transaction (txn {meta.txnid}) uses pages up to "
            f"{meta.last_pg} of {psize} bytes ({frontier} bytes) and page {missing} is missing; restore the store from a backup"
        )


def _meta(fd: int, path: str, index: int, psize: int, size: int) -> _Meta:
    off = index * psize
    raw = os.pread(fd, PAGE_HEADER + _META.size, off)
    if len(raw) < PAGE_HEADER + _META.size:
        raise StoreCorrupted(
            f"{path} is truncated: it holds {size} bytes, which ends inside meta page {index}; restore the store from a backup"
        )
    _pgno, _pad, flags, _lower, _upper = _HEADER.unpack_from(raw, 0)
    f = _META.unpack_from(raw, PAGE_HEADER)
    magic, version = f[0], f[1]
    free_pad, free_root = f[4], f[11]
    last_pg, txnid = f[20], f[21]
    if magic != MDB_MAGIC or not flags & P_META:
        raise StoreCorrupted(f"{path} is damaged: meta page {index} is not an LMDB meta page")
    if version != MDB_DATA_VERSION:
        raise StoreCorrupted(f"{path} has LMDB data format {version}; this didnode reads format {MDB_DATA_VERSION}")
    if index == 0:
        psize = free_pad
        if psize < 512 or psize > 1 << 16 or psize & (psize - 1):
            raise StoreCorrupted(f"{path} is damaged: meta page 0 records an impossible page size {psize}")
    if last_pg < 1:
        raise StoreCorrupted(f"{path} is damaged: meta page {index} records last page {last_pg}")
    return _Meta(psize, free_root, last_pg, txnid)


def _read_page(fd: int, meta: _Meta, pgno: int, size: int, npages: int = 1) -> bytes:
    if pgno < 2 or pgno + npages - 1 > meta.last_pg:
        raise _Damaged(f"names page {pgno}, outside 2..{meta.last_pg}")
    off = pgno * meta.psize
    if off + npages * meta.psize > size:
        raise _Truncated(max(pgno, size // meta.psize))
    return os.pread(fd, npages * meta.psize, off)


def _free_pages(fd: int, meta: _Meta, size: int) -> set[int]:
    """Every page number listed in the free-page B-tree of ``meta``.

    Raises :class:`_Truncated` naming the first missing page if a page of
    that tree lies past the end of the file.
    """
    free: set[int] = set()
    if meta.free_root == P_INVALID:
        return free
    stack = [(meta.free_root, 0)]
    seen: set[int] = set()
    while stack:
        pgno, depth = stack.pop()
        if pgno in seen or depth > MAX_DEPTH:
            raise _Damaged(f"is damaged at page {pgno}")
        seen.add(pgno)
        page = _read_page(fd, meta, pgno, size)
        _p, _pad, flags, lower, _upper = _HEADER.unpack_from(page, 0)
        n = (lower - PAGE_HEADER) >> 1
        if not 0 <= n <= (meta.psize - PAGE_HEADER) // 2:
            raise _Damaged(f"is damaged at page {pgno}")
        for i in range(n):
            (ptr,) = _U16.unpack_from(page, PAGE_HEADER + 2 * i)
            if ptr + _NODE.size > meta.psize:
                raise _Damaged(f"is damaged at page {pgno}")
            lo, hi, nflags, ksize = _NODE.unpack_from(page, ptr)
            if flags & P_BRANCH:
                stack.append((lo | hi << 16 | nflags << 32, depth + 1))
                continue
            if not flags & P_LEAF:
                raise _Damaged(f"is damaged at page {pgno}")
            dsize = lo | hi << 16
            start = ptr + _NODE.size + ksize
            if nflags & F_BIGDATA:
                (ov,) = _U64.unpack_from(page, start)
                npages = (PAGE_HEADER + dsize + meta.psize - 1) // meta.psize
                data = _read_page(fd, meta, ov, size, npages)[PAGE_HEADER : PAGE_HEADER + dsize]
            else:
                data = page[start : start + dsize]
            if len(data) != dsize or dsize % 8:
                raise _Damaged(f"is damaged at page {pgno}")
            ids = struct.unpack(f"={dsize // 8}Q", data)
            if not ids or ids[0] != len(ids) - 1:
                raise _Damaged(f"is damaged at page {pgno}")
            free.update(ids[1:])
    return free


__all__ = ["DATA_FILE", "check_data_file"]
