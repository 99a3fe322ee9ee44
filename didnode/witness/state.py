"""The witness's durable state: one file per log, an evidence directory, a lock (docs/witness.md, "State").

Layout under the data directory::

    witness.lock                       flock'd by the one witness process using DIR
    logs/<sha256(origin) hex>.note     the latest cosigned checkpoint: the log's note with the
                                       log signatures that verified and the witness's cosignature
    evidence/<sha256(origin) hex>/<kind>-<held size>-<offered size>-<16 hex>.json

Why files and not LMDB: a witness holds one small record per log and writes
it once per cosignature; each record is replaced whole. An fsync'd temporary
file renamed over the old one, then the directory fsync'd
(:func:`didnode.fileio.write_atomic`), leaves the old or the new checkpoint
after kill -9 or power loss, with no map size to tune and a format an
operator can read with ``cat``. The state file is written *before* the
cosignature is returned, so a restarted witness never cosigns anything
inconsistent with what it has answered.

The state file is itself a signed note, so the monitoring endpoint serves it
as it is. Its body is re-parsed on load and must name the origin its file
name hashes (else :class:`~didnode.errors.WitnessStateCorrupted`).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from didnode.core import note as note_codec
from didnode.core.tlog_checkpoint import parse_body
from didnode.errors import DidnodeError, WitnessDataLocked, WitnessStateCorrupted
from didnode.fileio import fsync_dir, write_atomic
from didnode.witness.core import Held

EVIDENCE_FORMAT = "didnode-witness-evidence/1"


def origin_hash(origin: str) -> str:
    """The lowercase hex SHA-256 of the origin line: file names and the monitoring URL."""
    return hashlib.sha256(origin.encode()).hexdigest()


@dataclass(frozen=True)
class Latest:
    """A log's latest cosigned checkpoint: its size and root, and the cosigned note's bytes."""

    held: Held
    note: bytes


class WitnessStore:
    """The files of one witness data directory; open it once per process (it is locked)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir)
        self.logs = self.dir / "logs"
        self.evidence = self.dir / "evidence"
        for d in (self.dir, self.logs, self.evidence):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / "witness.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise WitnessDataLocked(f"another witness process uses {self.dir} (its witness.lock is held)", path=str(self.dir)) from None

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _log_path(self, origin: str) -> Path:
        return self.logs / f"{origin_hash(origin)}.note"

    def load(self, origin: str) -> Latest | None:
        """The latest cosigned checkpoint of ``origin``, or None when the witness never cosigned one."""
        path = self._log_path(origin)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            note = note_codec.parse(data)
            cp = parse_body(note.text)
        except DidnodeError as err:
            raise WitnessStateCorrupted(f"{path} is not a signed checkpoint: {err}", path=str(path)) from None
        if cp.origin != origin:
            raise WitnessStateCorrupted(f"{path} holds a checkpoint of {cp.origin!r}, not {origin!r}", path=str(path))
        return Latest(Held(cp.tree_size, cp.root_hash), data)

    def load_by_hash(self, hex_hash: str) -> bytes | None:
        """The cosigned note stored for the origin whose SHA-256 is ``hex_hash`` (the monitoring endpoint)."""
        if len(hex_hash) != 64 or any(c not in "0123456789abcdef" for c in hex_hash):
            return None
        try:
            return (self.logs / f"{hex_hash}.note").read_bytes()
        except FileNotFoundError:
            return None

    def save(self, origin: str, cosigned_note: bytes) -> None:
        """Replace ``origin``'s latest cosigned checkpoint durably (fsync'd file, renamed, directory fsync'd)."""
        write_atomic(self._log_path(origin), cosigned_note, mode=0o600)

    def record_evidence(
        self, origin: str, kind: str, held: Latest, offered_note: bytes, old: int, proof: Sequence[bytes], offered_size: int, received_at: str
    ) -> Path:
        """Keep both signed notes of a refused checkpoint (docs/witness.md, "Evidence"); returns the file.

        The name ends with a hash of the two notes, so the same offer made
        again writes nothing new.
        """
        directory = self.evidence / origin_hash(origin)
        fresh = not directory.exists()
        directory.mkdir(mode=0o700, exist_ok=True)
        if fresh:
            fsync_dir(self.evidence)
        digest = hashlib.sha256(len(held.note).to_bytes(8, "big") + held.note + offered_note).hexdigest()[:16]
        path = directory / f"{kind}-{held.held.size}-{offered_size}-{digest}.json"
        if path.exists():
            return path
        doc = {
            "format": EVIDENCE_FORMAT,
            "kind": kind,
            "origin": origin,
            "received_at": received_at,
            "held": held.note.decode("utf-8"),
            "offered": offered_note.decode("utf-8"),
            "old": old,
            "proof": [base64.b64encode(h).decode() for h in proof],
        }
        write_atomic(path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode(), mode=0o600)
        return path

    def evidence_files(self, origin: str) -> list[Path]:
        """The evidence recorded for ``origin``, by name."""
        directory = self.evidence / origin_hash(origin)
        return sorted(directory.glob("*.json")) if directory.exists() else []


__all__ = ["EVIDENCE_FORMAT", "Latest", "WitnessStore", "origin_hash"]
