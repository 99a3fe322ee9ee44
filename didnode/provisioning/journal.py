"""An append-only, fsync'd, locked JSON-lines journal (provisioning runs and fleet transfers).

Each record is one compact JSON object on one line. :meth:`Journal.append`
returns only after the line is on disk (``fdatasync``), so a record read
back after any crash was complete when it was written. A process killed in
the middle of an append leaves at most one torn last line (no newline, or
not JSON): :meth:`Journal.open` drops it and truncates the file back to
the last complete record. Anything else that does not parse is corruption
and is reported, never skipped.

One writer at a time: the journal holds an exclusive ``flock`` for as long
as it is open, so a second run on the same directory fails at once
(:class:`RunLocked`) instead of interleaving records.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping

from didnode.core import canonical
from didnode.errors import JournalCorrupted, ProvisioningError, RunLocked
from didnode.fileio import fsync_dir, write_all

MAX_JOURNAL_BYTES = 4 << 30


class Journal:
    """An open journal file; records are plain dicts. Use :meth:`open`."""

    def __init__(self, path: Path, fd: int, records: list[dict[str, Any]], dropped_tail: bool) -> None:
        self.path = path
        self._lock = threading.Lock()  # the planner and the finisher both append
        self._fd: int | None = fd
        self.records = records
        """The complete records found at open time, in order (appended ones are not added)."""
        self.dropped_tail = dropped_tail
        """Whether open() found and removed a torn last record (a crash mid-append)."""

    @classmethod
    def open(cls, path: Path) -> "Journal":
        """Open (creating it, mode 0600) and lock the journal at ``path``; read its records.

        Raises :class:`RunLocked` if another process holds it,
        :class:`JournalCorrupted` if a record other than the last does not
        parse, :class:`ProvisioningError` on I/O errors.
        """
        try:
            existed = path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise ProvisioningError(f"cannot open journal {path}: {exc.strerror or exc}", file=str(path)) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(f"{path} is locked: another didctl provision run is using it", file=str(path)) from None
            if not existed:
                fsync_dir(path.parent)
            size = os.fstat(fd).st_size
            if size > MAX_JOURNAL_BYTES:
                raise JournalCorrupted(f"{path} is {size} bytes; not a journal this tool wrote", file=str(path))
            data = os.pread(fd, size, 0) if size else b""
            records, good_end = _parse(path, data)
            dropped = good_end < len(data)
            if dropped:
                # A torn last append: cut it off so the next record starts on a clean line.
                os.ftruncate(fd, good_end)
                os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_END)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, records, dropped)

    def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as one line and make it durable before returning.

        Raises :class:`ProvisioningError` on I/O errors (the record may or may not be on disk then).
        """
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"
        try:
            with self._lock:
                fd = self._fd
                if fd is None:
                    raise ProvisioningError(f"journal {self.path} is closed")
                write_all(fd, line)
                os.fdatasync(fd)
        except OSError as exc:
            raise ProvisioningError(f"cannot write journal {self.path}: {exc.strerror or exc}", file=str(self.path)) from None

    def close(self) -> None:
        """Release the lock and close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _parse(path: Path, data: bytes) -> tuple[list[dict[str, Any]], int]:
    """(complete records, byte offset after the last complete one)."""
    records: list[dict[str, Any]] = []
    pos = 0
    n = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        n += 1
        if end < 0:
            return records, pos  # torn tail: no newline yet
        try:
            obj = canonical.loads(data[pos:end], JournalCorrupted, "record")
        except JournalCorrupted:
            obj = None
        if not isinstance(obj, dict):
            if data.find(b"\n", end + 1) < 0 and not data[end + 1 :].strip():
                # Only the last line may be torn (a crash between write and fdatasync on
                # a file system that reorders): drop it like a missing newline.
                return records, pos
            raise JournalCorrupted(f"{path}: record {n} does not parse; the journal is damaged", file=str(path), record=n)
        records.append(obj)
        pos = end + 1
    return records, pos


__all__ = ["Journal"]
