"""Keystore files on disk: the DID <-> file-name encoding and the atomic, durable writes.

A key file is named after its DID (:func:`_did_stem`, reversibly, so
:meth:`~didnode.keystore.Keystore.list` needs no decryption); every write
goes to a temporary file that is fsync'd and renamed over the target, and
the directory is fsync'd (package docstring, on writes and put_many's
"batch" durability).
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Final

from didnode.errors import InvalidDid, KeystoreCorrupted, KeystoreError
from didnode.fileio import write_all, write_atomic
from didnode.keystore.didsecrets import _check_did
from didnode.keystore.encoding import _MAX_FILE_BYTES

HEADER_NAME: Final = "keystore.json"
KEY_SUFFIX: Final = ".key"

# File-name stems above this are refused: with the ".<stem>.<16 hex>.tmp"
# temporary name they must still fit the usual 255-byte NAME_MAX.
_MAX_STEM: Final = 200

# Characters kept as-is in file names. ':' becomes '_', everything else
# (including '_' and '%' themselves) becomes %XX, so the mapping is injective
# and list() can recover the DID from the name alone.
_FILENAME_SAFE: Final = frozenset(string.ascii_letters + string.digits + ".-")


def _did_stem(did: str) -> str:
    # Note: on a case-insensitive file system (macOS default) two DIDs that
    # differ only in case share a file. For hash-derived ids (did:dnode) that
    # cannot happen by chance; get() would still catch it, since the DID
    # sealed inside the file is compared with the one asked for.
    _check_did(did)
    out: list[str] = []
    for byte in did.encode("utf-8"):
        ch = chr(byte)
        if ch in _FILENAME_SAFE:
            out.append(ch)
        elif ch == ":":
            out.append("_")
        else:
            out.append(f"%{byte:02X}")
    stem = "".join(out)
    if len(stem) > _MAX_STEM:
        raise InvalidDid(f"DID is too long for a keystore file name ({len(stem)} > {_MAX_STEM}): {did[:60]}...", did=did)
    return stem


def _stem_to_did(stem: str) -> str | None:
    """The DID a file-name stem encodes, or ``None`` for a name that is not ours
    (a query answer for :meth:`Keystore.list`, not a failure signal)."""
    raw = bytearray()
    i = 0
    while i < len(stem):
        ch = stem[i]
        if ch == "_":
            raw += b":"
        elif ch == "%" and i + 2 < len(stem) and all(c in string.hexdigits for c in stem[i + 1 : i + 3]):
            raw.append(int(stem[i + 1 : i + 3], 16))
            i += 2
        elif ch in _FILENAME_SAFE:
            raw += ch.encode("ascii")
        else:
            return None
        i += 1
    try:
        did = raw.decode("utf-8")
        # Only the canonical spelling of a valid DID counts (e.g. not "%3A" for ':').
        return did if _did_stem(did) == stem else None
    except (UnicodeDecodeError, InvalidDid):
        return None


def _read_small(path: Path) -> bytes:
    """Read a keystore file; FileNotFoundError propagates (callers map it)."""
    with open(path, "rb") as f:
        data = f.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise KeystoreCorrupted(f"{path}: larger than {_MAX_FILE_BYTES} bytes; not a keystore file", file=str(path))
    return data


def _write_new_or_replace(directory: Path, name: str, data: bytes) -> None:
    """put_many's "batch" mode: create ``directory/name`` in place if it does not exist
    (mode 0600, no fsync), else replace it as :func:`_write_atomic` does (without fsync).
    Raises :class:`KeystoreError` naming the file on any OS error."""
    target = directory / name
    try:
        # O_EXCL: never write through a pre-planted file or symlink; an existing file
        # (an earlier, interrupted attempt) is replaced atomically instead.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        _write_atomic(directory, name, data, sync_dir=False, sync_file=False)
        return
    except OSError as e:
        raise KeystoreError(f"cannot write {target}: {e.strerror or e}", file=str(target)) from e
    try:
        try:
            os.fchmod(fd, 0o600)  # exact mode whatever the umask
            write_all(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        raise KeystoreError(f"cannot write {target}: {e.strerror or e}", file=str(target)) from e


def _write_atomic(directory: Path, name: str, data: bytes, *, sync_dir: bool, sync_file: bool = True) -> None:
    """Write ``directory/name`` (mode 0600) so that a crash leaves the old or the new file.

    With ``sync_dir=False`` the caller must fsync the directory before
    reporting the write as durable (:meth:`Keystore.put_many` does it per chunk).
    With ``sync_file=False`` the data is not fsync'd before the rename either:
    the caller syncs the file system afterwards (put_many's "batch" mode) and
    gives up the old-or-new guarantee for a crash before that sync.
    Raises :class:`KeystoreError` naming the file on any OS error.
    """
    target = directory / name
    try:
        write_atomic(target, data, sync_dir=sync_dir, sync_file=sync_file)
    except OSError as e:
        raise KeystoreError(f"cannot write {target}: {e.strerror or e}", file=str(target)) from e
