"""Durable file writes shared by the keystore, provisioning and the node (the core does no I/O).

Every function raises ``OSError`` as the operating system reports it; the
caller turns it into its own typed error (``KeystoreError``,
``ProvisioningError``, ...) naming what it was writing.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Callable

TMP_SUFFIX = ".tmp"


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until everything is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make renames, creations and unlinks in ``directory`` durable (not just the files' data)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    # syncfs(2) flushes one file system (not every mounted one, as sync does);
    # it is Linux-only and not in the os module.
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_SYNCFS = _load_syncfs()


def sync_filesystem(directory: str | os.PathLike[str]) -> None:
    """Make everything written on ``directory``'s file system durable with one ``syncfs``
    (Linux; ``sync`` elsewhere): one call for a whole chunk of files instead of an
    fsync per file."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS is None:
            os.sync()
        elif _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, sync_file: bool = True, sync_dir: bool = True) -> None:
    """Write ``path`` (exactly ``mode``, whatever the umask) so that a crash leaves the old or the new file.

    The data goes to ``.<name>.<16 hex>.tmp`` next to ``path`` (created with
    ``O_EXCL | O_NOFOLLOW``: never through a planted file or symlink), is
    fsync'd, renamed over ``path``, and the directory is fsync'd. With
    ``sync_dir=False`` the caller must fsync the directory before reporting
    the write as durable; with ``sync_file=False`` the data is not fsync'd
    before the rename either (the caller syncs the file system afterwards and
    gives up the old-or-new guarantee for a crash before that). On failure the
    temporary file is removed (best effort).
    """
    tmp = path.with_name(f".{path.name}.{os.urandom(8).hex()}{TMP_SUFFIX}")
    renamed = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), mode)
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            if sync_file:
                os.fsync(fd)  # data on disk before the rename can make it visible
        finally:
            os.close(fd)
        os.replace(tmp, path)
        renamed = True
        if sync_dir:
            fsync_dir(path.parent)
    finally:
        if not renamed:
            try:
                tmp.unlink()
            except OSError:
                pass  # best effort: a leftover temporary file is harmless


__all__ = ["TMP_SUFFIX", "fsync_dir", "sync_filesystem", "write_all", "write_atomic"]
