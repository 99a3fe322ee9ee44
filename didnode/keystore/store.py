"""The open, unlocked keystore directory: :class:`Keystore`.

Opening (one Argon2id run, the header's check value), reading, listing,
writing (one file, or many with :meth:`Keystore.put_many`), deleting, and
:meth:`Keystore.purpose_key` for tools' own keys. The directory layout and
formats are in the package docstring (:mod:`didnode.keystore`).
"""

from __future__ import annotations

import builtins
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Callable, Final, Iterable, Literal

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from didnode.core.encoding import b64url, b64url_decode
from didnode.errors import InvalidArgument, KeyNotInKeystore, KeystoreCorrupted, KeystoreError, WrongPassphrase
from didnode.fileio import TMP_SUFFIX, fsync_dir, sync_filesystem, write_all
from didnode.keystore.didsecrets import DidSecrets
from didnode.keystore.encoding import (
    _HEADER_FORMAT,
    _KEYFILE_FORMAT,
    _VERSION,
    _expect_format,
    _json_bytes,
    _parse_json_object,
    _secrets_from_obj,
    _secrets_to_obj,
)
from didnode.keystore.files import (
    HEADER_NAME,
    KEY_SUFFIX,
    _did_stem,
    _read_small,
    _stem_to_did,
    _write_atomic,
    _write_new_or_replace,
)
from didnode.keystore.kdf import KdfName, KdfParams, _argon2id, _kdf_from_obj, _kdf_to_obj, _normalize_passphrase, _subkey

#: The command named in the "no keystore" error; the CLI owns the wording.
CREATE_HINT: Final = "didctl keystore init"

#: Fixed plaintext of the header's check value (format version 1).
CHECK_PLAINTEXT: Final = b"didnode keystore check v1"


def read_header(raw: bytes, where: str) -> tuple[bytes, KdfParams, bytes]:
    """(salt, KDF parameters, check box) of ``keystore.json`` bytes; :class:`KeystoreCorrupted` for any others.

    Parsing only: the parameters are bounded, no Argon2id runs here.
    """
    obj = _parse_json_object(raw, where, KeystoreCorrupted)
    _expect_format(obj, _HEADER_FORMAT, where, KeystoreCorrupted)
    if set(obj) != {"format", "version", "kdf", "check"}:
        raise KeystoreCorrupted(f"{where}: unexpected members {sorted(obj)}", file=where)
    salt, params = _kdf_from_obj(obj["kdf"], where, KeystoreCorrupted)
    return salt, params, b64url_decode(obj["check"], f"{where}: check", KeystoreCorrupted)


class Keystore:
    """An open, unlocked keystore directory. Obtain one with :meth:`open`.

    Methods are safe to call from several threads, and several processes may
    use one keystore: every write is an atomic whole-file replace (the last
    writer of a DID wins). Usable as a context manager (closes on exit).
    """

    def __init__(self, path: Path, files_key: bytes, params: KdfParams, purpose_root: bytes | None = None) -> None:
        """Internal: use :meth:`open`. ``files_key`` is the derived "files" subkey,
        ``purpose_root`` the "purpose" subkey (see :meth:`purpose_key`)."""
        self._path = path
        self._box: nacl.secret.SecretBox | None = nacl.secret.SecretBox(files_key)
        self._params = params
        self._purpose_root: bytes | None = purpose_root

    # -- opening -----------------------------------------------------------

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` holds a keystore header (no passphrase needed)."""
        return (Path(path) / HEADER_NAME).is_file()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        passphrase: str | bytes,
        create: bool = False,
        kdf: KdfName = "moderate",
    ) -> Keystore:
        """Unlock the keystore at ``path``, creating it first if ``create``.

        Runs Argon2id once, with the parameters stored in the keystore's
        header (``kdf`` only chooses them for a keystore created by this call;
        use :func:`kdf_from_env` to honour ``$DIDCTL_KDF``).

        With ``create=True`` an existing keystore is simply opened; a missing
        directory is created with mode 0700 (parents as by ``mkdir -p``);
        an existing directory without ``keystore.json`` is initialized (and
        chmod'ed 0700) unless it already holds ``.key`` files, which a new
        salt would orphan.

        Raises :class:`WrongPassphrase` if the passphrase does not decrypt the
        header's check value; :class:`KeystoreError` if there is no keystore
        and ``create`` is false, or on I/O errors; :class:`KeystoreCorrupted`
        if the header is malformed; :class:`InvalidArgument` for an empty
        passphrase or unknown ``kdf``.
        """
        root = Path(path)
        secret = _normalize_passphrase(passphrase)
        params = KdfParams.named(kdf)  # validate even when opening
        header = root / HEADER_NAME
        try:
            if not root.exists():
                if not create:
                    raise KeystoreError(
                        f"no keystore at {root}; create one with `{CREATE_HINT} --keystore {root}`", path=str(root)
                    )
                os.makedirs(root, mode=0o700, exist_ok=True)
            if not root.is_dir():
                raise KeystoreError(f"keystore path {root} is not a directory", path=str(root))
            if not header.exists():
                if not create:
                    raise KeystoreError(
                        f"{root} holds no {HEADER_NAME}; create a keystore with `{CREATE_HINT} --keystore {root}`",
                        path=str(root),
                    )
                cls._initialize(root, secret, params)
            raw = _read_small(header)
        except FileNotFoundError as e:
            raise KeystoreError(f"no keystore at {root} ({e.filename} vanished while opening)", path=str(root)) from e
        except OSError as e:
            raise KeystoreError(f"cannot open keystore {root}: {e.strerror or e}", path=str(root)) from e

        where = str(header)
        salt, stored, check = read_header(raw, where)

        master = _argon2id(secret, salt, stored, where)
        try:
            plain = nacl.secret.SecretBox(_subkey(master, b"check")).decrypt(check)
        except nacl.exceptions.CryptoError as e:
            raise WrongPassphrase(
                f"wrong passphrase for keystore {root} (it does not decrypt the check value in {HEADER_NAME})",
                path=str(root),
            ) from e
        if plain != CHECK_PLAINTEXT:
            # Decrypts under our key yet says something else: written by a
            # different (future?) program, not a wrong passphrase.
            raise KeystoreCorrupted(f"{where}: check value decrypts to an unexpected plaintext", file=where)
        return cls(root, _subkey(master, b"files"), stored, _subkey(master, b"purpose"))

    @staticmethod
    def _initialize(root: Path, secret: bytes, params: KdfParams) -> None:
        """Write a fresh header into ``root``; tolerates a concurrent creator."""
        stray = [e.name for e in os.scandir(root) if e.name.endswith(KEY_SUFFIX) and not e.name.startswith(".")]
        if stray:
            raise KeystoreCorrupted(
                f"{root} has {len(stray)} .key file(s) (e.g. {stray[0]}) but no {HEADER_NAME}; "
                "refusing to create a new keystore that could not decrypt them",
                path=str(root),
            )
        os.chmod(root, 0o700)
        salt = nacl.utils.random(argon2id.SALTBYTES)
        master = _argon2id(secret, salt, params, str(root / HEADER_NAME))
        check = nacl.secret.SecretBox(_subkey(master, b"check")).encrypt(CHECK_PLAINTEXT)
        data = _json_bytes(
            {
                "format": _HEADER_FORMAT,
                "version": _VERSION,
                "kdf": _kdf_to_obj(salt, params),
                "check": b64url(bytes(check)),
            }
        )
        # Write a complete temp file, then link() it into place: unlike
        # os.replace this fails if another process created the header
        # meanwhile, and we then open theirs instead of clobbering it.
        tmp = root / f".{HEADER_NAME}.{nacl.utils.random(8).hex()}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, root / HEADER_NAME)
            except FileExistsError:
                return
            fsync_dir(root)
        finally:
            tmp.unlink(missing_ok=True)

    # -- properties --------------------------------------------------------

    @property
    def path(self) -> Path:
        """The keystore directory."""
        return self._path

    @property
    def kdf_params(self) -> KdfParams:
        """The Argon2id cost this keystore was created with."""
        return self._params

    def __repr__(self) -> str:
        state = "closed" if self._box is None else "open"
        return f"Keystore({str(self._path)!r}, {state}, opslimit={self._params.opslimit}, memlimit={self._params.memlimit})"

    def close(self) -> None:
        """Drop the derived keys; every later call raises :class:`KeystoreError`."""
        self._box = None
        self._purpose_root = None

    def __enter__(self) -> Keystore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def purpose_key(self, purpose: str) -> bytes:
        """A 32-byte secret key for an application ``purpose``, derived from this keystore's master key.

        The same passphrase and keystore give the same key on every open, and
        no one without the passphrase can compute it, so a tool can encrypt
        its own durable state (e.g. ``didctl provision``'s journal) without
        adding a key file or running Argon2id again. Keys for different
        purposes are independent (keyed BLAKE2b of the "purpose" subkey over
        ``b"purpose:" + purpose``), and none equals the files or check key.

        Preconditions: the keystore is open; ``purpose`` is a non-empty string
        naming the use (include a run or file id to scope it). Raises
        :class:`KeystoreError` if closed, :class:`InvalidArgument` for an empty purpose.
        """
        self._secretbox()
        root = self._purpose_root
        if root is None:
            raise KeystoreError(f"keystore {self._path} is closed", path=str(self._path))
        if not isinstance(purpose, str) or not purpose:
            raise InvalidArgument("a purpose key needs a non-empty purpose string")
        return _subkey(root, b"purpose:" + purpose.encode("utf-8"))

    def _secretbox(self) -> nacl.secret.SecretBox:
        box = self._box
        if box is None:
            raise KeystoreError(f"keystore {self._path} is closed", path=str(self._path))
        return box

    # -- reading -----------------------------------------------------------

    def file_for(self, did: str) -> Path:
        """The path of ``did``'s key file (whether or not it exists).
        Raises :class:`InvalidDid` if ``did`` is not a DID."""
        return self._path / (_did_stem(did) + KEY_SUFFIX)

    def has(self, did: str) -> bool:
        """Whether the keystore holds a file for ``did`` (not decrypted).
        Raises :class:`InvalidDid` if ``did`` is not a DID."""
        self._secretbox()
        return self.file_for(did).is_file()

    def get(self, did: str) -> DidSecrets:
        """The secrets stored for ``did``.

        Raises :class:`KeyNotInKeystore` (naming the DID) if absent,
        :class:`KeystoreCorrupted` (naming the file) if the file does not
        parse, does not decrypt under this keystore's key (tampered, or copied
        from another keystore) or holds another DID's secrets, and
        :class:`InvalidDid` if ``did`` is not a DID.
        """
        box = self._secretbox()
        path = self.file_for(did)
        where = str(path)
        try:
            raw = _read_small(path)
        except FileNotFoundError as e:
            raise KeyNotInKeystore(f"no secrets for {did} in keystore {self._path}", did=did) from e
        except OSError as e:
            raise KeystoreError(f"cannot read {path}: {e.strerror or e}", file=where) from e
        obj = _parse_json_object(raw, where, KeystoreCorrupted)
        _expect_format(obj, _KEYFILE_FORMAT, where, KeystoreCorrupted)
        if set(obj) != {"format", "version", "did", "box"}:
            raise KeystoreCorrupted(f"{where}: unexpected members {sorted(obj)}", file=where)
        if obj["did"] != did:
            raise KeystoreCorrupted(f"{where}: names {obj['did']!r} but its file name is for {did}", file=where)
        sealed = b64url_decode(obj["box"], f"{where}: box", KeystoreCorrupted)
        try:
            plaintext = box.decrypt(sealed)
        except nacl.exceptions.CryptoError as e:
            raise KeystoreCorrupted(
                f"{where} does not decrypt with this keystore's key: altered, or copied from another keystore",
                file=where,
            ) from e
        secrets = _secrets_from_obj(_parse_json_object(plaintext, where, KeystoreCorrupted), where, KeystoreCorrupted)
        if secrets.did != did:
            # Authentic file of another DID renamed over this one.
            raise KeystoreCorrupted(f"{where}: holds the secrets of {secrets.did}, not {did}", file=where)
        return secrets

    def list(self) -> builtins.list[str]:
        """The DIDs with a key file, sorted. Reads names only (nothing is
        decrypted); temporary files and names that are not the canonical
        encoding of a DID are ignored."""
        self._secretbox()
        try:
            entries = [e.name for e in os.scandir(self._path)]
        except OSError as e:
            raise KeystoreError(f"cannot list keystore {self._path}: {e.strerror or e}", path=str(self._path)) from e
        dids = []
        for name in entries:
            if name.startswith(".") or not name.endswith(KEY_SUFFIX):
                continue
            did = _stem_to_did(name[: -len(KEY_SUFFIX)])
            if did is not None:
                dids.append(did)
        return sorted(dids)

    # -- writing -----------------------------------------------------------

    def _seal(self, box: nacl.secret.SecretBox, secrets: DidSecrets) -> tuple[str, bytes]:
        if not isinstance(secrets, DidSecrets):
            raise InvalidArgument(f"keystore stores DidSecrets, not {type(secrets).__name__}")
        sealed = box.encrypt(_json_bytes(_secrets_to_obj(secrets)))  # random 24-byte nonce
        doc = {"format": _KEYFILE_FORMAT, "version": _VERSION, "did": secrets.did, "box": b64url(bytes(sealed))}
        return _did_stem(secrets.did) + KEY_SUFFIX, _json_bytes(doc)

    def put(self, secrets: DidSecrets) -> None:
        """Store ``secrets`` (replacing any earlier file for its DID), durably
        and atomically. Raises :class:`KeystoreError` naming the file on I/O errors."""
        name, data = self._seal(self._secretbox(), secrets)
        _write_atomic(self._path, name, data, sync_dir=True)

    def put_many(
        self,
        items: Iterable[DidSecrets],
        *,
        progress: Callable[[int], None] | None = None,
        chunk_size: int = 512,
        workers: int = 8,
        durability: Literal["file", "batch"] = "file",
    ) -> int:
        """Store many entries; returns how many files were written.

        Each file is written atomically exactly as :meth:`put` does, but
        ``workers`` threads overlap the per-file fsyncs and the directory is
        fsync'd once per chunk of ``chunk_size`` instead of once per file.
        ``items`` is consumed lazily (a generator of 20,000 is fine). When a
        chunk repeats a DID, its last entry wins. After each chunk is durable
        ``progress(total_written_so_far)`` is called (for a progress bar, or
        to checkpoint a resumable run).

        On the first failure the writes already started finish and are made
        durable, then the error is raised: :class:`KeystoreError` naming the
        file for an I/O error, :class:`InvalidArgument` for an item that is
        not a :class:`DidSecrets` (the items before it are stored first).
        Earlier chunks stay stored, so a rerun can skip DIDs for which
        :meth:`has` is true.

        ``durability="batch"`` is for bulk writers that keep their own
        durable, encrypted copy of every entry until the call returns (a
        journal; ``didctl provision`` is one): the files of a chunk are
        written and renamed into place (by ``workers`` threads, each taking
        a slice) without a per-file fsync, then the whole file system is
        synced once (``syncfs``) before ``progress`` is called: about ten
        times less CPU than one fsync per file. A file that does not exist
        yet is created in place (no temporary file and rename: creating files
        is most of this mode's cost), an existing one is replaced atomically.
        A chunk that returned is exactly as durable as in "file" mode. Until
        then a new entry may be seen half-written, and a crash *during* a
        chunk can leave a new entry (or, on file systems that do not order
        data before renames, a replaced one) whose content did not reach the
        disk: it then fails :meth:`get` with :class:`KeystoreCorrupted` (never
        silently wrong) until it is written again. So the caller must be able
        to redo the chunk, and nobody may rely on these entries before the
        call returns. Never use it to replace entries the caller cannot
        rewrite.
        """
        box = self._secretbox()
        if chunk_size < 1 or workers < 1:
            raise InvalidArgument(f"chunk_size ({chunk_size}) and workers ({workers}) must be >= 1")
        if durability not in ("file", "batch"):
            raise InvalidArgument(f"durability must be 'file' or 'batch', not {durability!r}")
        if durability == "batch":
            return self._put_many_batch(box, items, progress, chunk_size, workers)
        written = 0

        def write(entry: tuple[str, bytes]) -> None:
            _write_atomic(self._path, entry[0], entry[1], sync_dir=False)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keystore-put") as pool:

            def flush(chunk: dict[str, bytes]) -> None:
                nonlocal written
                if not chunk:
                    return
                futures = [pool.submit(write, entry) for entry in chunk.items()]
                chunk.clear()
                try:
                    for future in futures:
                        future.result()  # re-raises the first failure
                finally:
                    # Let every started write finish, then make this chunk's
                    # renames durable whether or not one of them failed.
                    for future in futures:
                        future.exception()
                    try:
                        fsync_dir(self._path)
                    except OSError as e:
                        raise KeystoreError(f"cannot fsync keystore {self._path}: {e.strerror or e}") from e
                written += len(futures)
                if progress is not None:
                    progress(written)

            pending: dict[str, bytes] = {}
            for secrets in items:
                try:
                    name, data = self._seal(box, secrets)
                except InvalidArgument:
                    flush(pending)
                    raise
                pending.pop(name, None)  # a repeated DID: the last occurrence wins
                pending[name] = data
                if len(pending) >= chunk_size:
                    flush(pending)
            flush(pending)
        return written

    def _put_many_batch(
        self, box: nacl.secret.SecretBox, items: Iterable[DidSecrets], progress: Callable[[int], None] | None, chunk_size: int, workers: int
    ) -> int:
        """:meth:`put_many` with ``durability="batch"`` (see there)."""
        written = 0
        pending: dict[str, bytes] = {}

        def write_slice(entries: builtins.list[tuple[str, bytes]]) -> None:
            for name, data in entries:
                _write_new_or_replace(self._path, name, data)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keystore-put") as pool:

            def flush() -> None:
                nonlocal written
                if not pending:
                    return
                # Creating a file can block for a while when the file system is
                # committing its journal (other processes' fsyncs): a few threads,
                # each writing a contiguous slice, overlap those waits.
                entries = builtins.list(pending.items())
                step = -(-len(entries) // workers)
                futures = [pool.submit(write_slice, entries[i : i + step]) for i in range(0, len(entries), step)]
                try:
                    for future in futures:
                        future.result()  # re-raises the first failure
                finally:
                    for future in futures:
                        future.exception()
                    # Whatever was renamed so far becomes durable before we report or raise.
                    try:
                        sync_filesystem(self._path)
                    except OSError as e:
                        raise KeystoreError(f"cannot sync the file system of {self._path}: {e.strerror or e}", path=str(self._path)) from e
                written += len(entries)
                pending.clear()
                if progress is not None:
                    progress(written)

            for secrets in items:
                try:
                    name, data = self._seal(box, secrets)
                except InvalidArgument:
                    flush()
                    raise
                pending.pop(name, None)  # a repeated DID: the last occurrence wins
                pending[name] = data
                if len(pending) >= chunk_size:
                    flush()
            flush()
        return written

    def delete(self, did: str) -> None:
        """Remove ``did``'s file durably. Raises :class:`KeyNotInKeystore` if absent."""
        self._secretbox()
        path = self.file_for(did)
        try:
            path.unlink()
            fsync_dir(self._path)
        except FileNotFoundError as e:
            raise KeyNotInKeystore(f"no secrets for {did} in keystore {self._path}", did=did) from e
        except OSError as e:
            raise KeystoreError(f"cannot delete {path}: {e.strerror or e}", file=str(path)) from e
