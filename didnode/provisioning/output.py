"""What a provisioning run leaves behind: the device bundles, the manifests, and the :class:`RunResult`.

Per chunk, once its outcomes are in, the finisher writes the chunk's bundles
(:func:`write_bundles`; the caller syncs the file system before the manifests
name them), then appends the chunk's rows (:func:`manifest_rows`) to
``manifest.csv`` and ``manifest.jsonl`` (:class:`Manifests`: fsync'd, and cut
back to the last ``done`` record when a run resumes). :class:`RunResult` is
what one invocation did. docs/provisioning.md has the formats.
"""

from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from didnode.core.credentials.status_url import DEFAULT_STATUS_BASE_URL, status_list_url
from didnode.errors import JournalCorrupted, ProvisioningError
from didnode.fileio import fsync_dir, write_all
from didnode.provisioning.bundle import BUNDLE_FORMAT, BUNDLE_VERSION
from didnode.provisioning.chunks import Chunk
from didnode.provisioning.spec import BUNDLES_DIR, CSV_COLUMNS, FILE_WORKERS, JOURNAL_NAME, MANIFEST_CSV, MANIFEST_JSONL, RunSpec


@dataclass
class RunResult:
    """What a run did (this invocation) and where its output is."""

    devices: int
    created: int
    existing: int
    resumed: bool
    seconds: float
    first_position: int
    last_position: int
    out: Path
    run_id: str
    checkpoint: dict[str, Any] | None

    @property
    def rate(self) -> float:
        return (self.created + self.existing) / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "created": self.created,
            "alreadyOnLedger": self.existing,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
            "devicesPerSecond": round(self.rate, 1),
            "firstPosition": self.first_position,
            "lastPosition": self.last_position,
            "run": self.run_id,
            "out": str(self.out),
            "manifest": {"csv": str(self.out / MANIFEST_CSV), "jsonl": str(self.out / MANIFEST_JSONL)},
            "bundles": str(self.out / BUNDLES_DIR),
            "journal": str(self.out / JOURNAL_NAME),
            "checkpoint": self.checkpoint,
        }


def write_bundles(
    pool: ThreadPoolExecutor,
    out: Path,
    spec: RunSpec,
    node_address: str,
    chunk: Chunk,
    positions: list[int],
    op_hashes: list[str],
    checkpoint: dict[str, Any] | None,
    trust: Mapping[str, Any] | None = None,
) -> None:
    """Write ``out/bundles/<serial>.json`` for every device of ``chunk`` (not synced), a slice
    per thread of ``pool``; raises :class:`ProvisioningError` naming the file on an I/O error.
    ``trust``: the trust policy JSON each bundle carries (member ``trust``; null without one)."""
    bundles = out / BUNDLES_DIR
    # The members every bundle of the chunk shares, encoded once; per device only
    # strings that JSON never escapes are joined in (serials, DIDs, hex, base64url,
    # and the "keys" object already encoded by the preparer).
    common = json.dumps(
        {
            "manufacturer": spec.manufacturer,
            "model": spec.model,
            "hardwareVersion": spec.hardware_version,
            "firmwareVersion": spec.firmware_version,
            "network": spec.network,
            "node": node_address,
            "checkpoint": checkpoint,
            "trust": trust,
        },
        separators=(",", ":"),
    )[1:-1]
    head = '{"format":"' + BUNDLE_FORMAT + '","version":' + str(BUNDLE_VERSION) + ',"serial":"'
    files = [
        (
            bundles / f"{serial}.json",
            (
                f'{head}{serial}","did":"{did}",{common},"position":{position},"opHash":"{op_hash}",'
                f'"credential":"{token}","keys":{keys}}}'
            ).encode("utf-8"),
        )
        for serial, did, position, op_hash, token, keys in zip(chunk.serials, chunk.dids, positions, op_hashes, chunk.tokens, chunk.keys)
    ]
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)

    def write_slice(items: list[tuple[Path, bytes]]) -> None:
        for path, data in items:
            try:
                fd = os.open(path, flags, 0o600)
                try:
                    write_all(fd, data)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise ProvisioningError(f"cannot write bundle {path}: {exc.strerror or exc}", file=str(path)) from None

    # Creating a file blocks while the file system commits its journal (the
    # node's and our own fsyncs): writer threads, a slice each, overlap the waits.
    step = -(-len(files) // FILE_WORKERS)
    for future in [pool.submit(write_slice, files[i : i + step]) for i in range(0, len(files), step)]:
        future.result()


def manifest_rows(spec: RunSpec, chunk: Chunk, positions: list[int], op_hashes: list[str]) -> list[dict[str, Any]]:
    """The manifest rows of ``chunk`` (in device order), keyed by :data:`CSV_COLUMNS`."""
    rows = []
    issuer = spec.manufacturer
    for j, did in enumerate(chunk.dids):
        list_no, index = chunk.status[j]
        rows.append(
            {
                "serial": chunk.serials[j],
                "did": did,
                "position": positions[j],
                "opHash": op_hashes[j],
                "manufacturer": spec.manufacturer,
                "model": spec.model,
                "bundle": f"{BUNDLES_DIR}/{chunk.serials[j]}.json",
                "statusListCredential": status_list_url(issuer, f"revocation-{list_no}", DEFAULT_STATUS_BASE_URL),
                "statusListIndex": index,
            }
        )
    return rows


class Manifests:
    """manifest.csv and manifest.jsonl, appended per chunk and fsync'd; cut back on resume."""

    def __init__(self, out: Path, sizes: list[int] | None) -> None:
        self.paths = (out / MANIFEST_CSV, out / MANIFEST_JSONL)
        header = (",".join(CSV_COLUMNS) + "\r\n").encode("ascii")
        self.fds: list[int] = []
        try:
            for i, path in enumerate(self.paths):
                existed = path.exists()
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
                self.fds.append(fd)
                if sizes is None:
                    # No chunk done yet: start over (a crash may have left a partial first chunk).
                    os.ftruncate(fd, 0)
                    if i == 0:
                        write_all(fd, header)
                else:
                    if os.fstat(fd).st_size < sizes[i]:
                        raise JournalCorrupted(f"{path} is shorter than the journal says it was ({sizes[i]} bytes); it was cut or replaced")
                    os.ftruncate(fd, sizes[i])
                os.fsync(fd)
                os.lseek(fd, 0, os.SEEK_END)
                if not existed:
                    fsync_dir(out)
        except OSError as exc:
            self.close()
            raise ProvisioningError(f"cannot prepare the manifests in {out}: {exc.strerror or exc}") from None

    def append(self, rows: list[dict[str, Any]]) -> list[int]:
        """Append ``rows`` to both files, durably; return their new sizes."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        for r in rows:
            writer.writerow([r[c] for c in CSV_COLUMNS])
        jsonl = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
        sizes = []
        try:
            for fd, data in zip(self.fds, (buf.getvalue().encode("utf-8"), jsonl.encode("utf-8"))):
                write_all(fd, data)
                os.fsync(fd)
                sizes.append(os.lseek(fd, 0, os.SEEK_CUR))
        except OSError as exc:
            raise ProvisioningError(f"cannot append to the manifests: {exc.strerror or exc}") from None
        return sizes

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
