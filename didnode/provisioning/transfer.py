"""Fleet transfer: hand every device of a manifest to a new owner, resumably.

Each device gets one ``transfer`` operation setting its controllers to
exactly ``[owner]``, signed by a current controller (the manufacturer, or
whoever the fleet was last handed to) and by the new owner, as the method
requires. Both keys must be in the caller's keystore for now (see
docs/provisioning.md, "Two parties").

Journal (JSON lines, fsync'd per record, locked; default ``<manifest>.transfer.journal``)::

    {"t": "run", "format": "didctl-transfer-journal", "version": 1,
     "manifestSha256": HEX, "to": OWNER, "as": CONTROLLER, "count": N, "chunk": C}
    {"t": "plan", "chunk": k, "kids": [CONTROLLER_KID, OWNER_KID],
     "ops": [[DID, B64 payload, B64 controller sig, B64 owner sig], ...]}
    {"t": "replan", "chunk": k, "i": j, "kids": [...], "op": [DID, B64, B64, B64]}
    {"t": "done", "chunk": k, "positions": [...], "already": [j, ...]}

A fresh device's transfer is its operation 1 with ``prev`` = the create's
hash (from the manifest), so a chunk is planned without reading the
ledger. A device that changed since (rotated, say) comes back
SEQUENCE_MISMATCH / PREV_MISMATCH: its state is read, and either it already
has ``[owner]`` as controllers (done) or its transfer is rebuilt on the
current state (journaled as a ``replan``) and submitted alone. A transfer
that comes back DUPLICATE_OPERATION was accepted before a crash.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from nacl.signing import SigningKey

from didnode.client import Client, Receipt
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.did import validate_did
from didnode.core.operations import Proof
from didnode.errors import (
    DidnodeError,
    DuplicateOperation,
    InvalidDid,
    JournalCorrupted,
    ManifestInvalid,
    PrevMismatch,
    ProvisioningError,
    RunMismatch,
    SequenceMismatch,
)
from didnode.provisioning.bundle import b64d, b64e
from didnode.provisioning.journal import Journal

JOURNAL_FORMAT = "didctl-transfer-journal"
JOURNAL_VERSION = 1
DEFAULT_CHUNK = 1024
_HEX64 = frozenset("0123456789abcdef")

Signer = tuple[str, SigningKey]
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """One device of a manifest: what a transfer needs."""

    line: int
    did: str
    serial: str | None
    op_hash: str | None  # the create's hash: ``prev`` of a fresh device's first operation
    manufacturer: str | None


def read_manifest(path: Path) -> tuple[list[ManifestRow], str]:
    """The rows of a provisioning manifest (``manifest.jsonl`` or ``manifest.csv``) and the file's sha256.

    Only ``did`` is required (``serial``, ``opHash``, ``manufacturer`` are
    used when present), so a hand-made list of DIDs works too. Raises
    :class:`ManifestInvalid` naming the line (bad DID, DID listed twice, no rows).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestInvalid(f"cannot read {path}: {exc.strerror or exc}", file=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestInvalid(f"{path} is not UTF-8", file=str(path)) from None
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    items: list[tuple[int, dict[str, Any]]] = []
    if first.startswith("{"):
        for n, ln in enumerate(text.splitlines(), 1):
            if not ln.strip():
                continue
            try:
                obj = json.loads(ln)
            except ValueError:
                raise ManifestInvalid(f"{path}:{n}: not JSON", file=str(path), line=n) from None
            if not isinstance(obj, dict):
                raise ManifestInvalid(f"{path}:{n}: not a JSON object", file=str(path), line=n)
            items.append((n, obj))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or "did" not in reader.fieldnames:
            raise ManifestInvalid(f"{path}: a CSV manifest needs a header row with a 'did' column", file=str(path))
        for row in reader:
            items.append((reader.line_num, {k: v for k, v in row.items() if k is not None and v not in (None, "")}))
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    for n, obj in items:
        did = obj.get("did")
        try:
            validate_did(did)
        except InvalidDid as exc:
            raise ManifestInvalid(f"{path}:{n}: {exc}", file=str(path), line=n) from None
        assert isinstance(did, str)
        if did in seen:
            raise ManifestInvalid(f"{path}:{n}: {did} is listed twice (also line {seen[did]})", file=str(path), line=n)
        seen[did] = n
        op_hash = obj.get("opHash")
        if op_hash is not None and not (isinstance(op_hash, str) and len(op_hash) == 64 and set(op_hash) <= _HEX64):
            raise ManifestInvalid(f"{path}:{n}: opHash must be 64 lowercase hex characters", file=str(path), line=n)
        mfr = obj.get("manufacturer")
        serial = obj.get("serial")
        rows.append(ManifestRow(n, did, str(serial) if serial is not None else None, op_hash, str(mfr) if mfr is not None else None))
    if not rows:
        raise ManifestInvalid(f"{path} lists no device", file=str(path))
    return rows, hashlib.sha256(raw).hexdigest()


@dataclass
class TransferResult:
    """What a fleet transfer did."""

    devices: int
    transferred: int
    already: int
    resumed: bool
    seconds: float
    owner: str
    previous: str
    journal: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "transferred": self.transferred,
            "alreadyTransferred": self.already,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
            "to": self.owner,
            "from": self.previous,
            "journal": str(self.journal),
        }


@dataclass
class _Chunk:
    index: int
    rows: list[ManifestRow]
    ops: list[SignedOperation]
    outcomes: list[Receipt | DidnodeError]


class FleetTransfer:
    """Transfer every device of ``rows`` to ``owner`` (module docstring). Call :meth:`run` once.

    Preconditions: ``controller`` is (kid, key) of a current authentication
    key of a current controller of every device; ``owner_signer`` is (kid, key)
    of a current authentication key of ``owner``; ``network`` is the node's.
    """

    def __init__(
        self,
        *,
        client: Client,
        network: str,
        rows: list[ManifestRow],
        manifest_sha256: str,
        owner: str,
        controller: str,
        controller_signer: Signer,
        owner_signer: Signer,
        journal_path: Path,
        chunk: int = DEFAULT_CHUNK,
        window: int = 4,
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.network = network
        self.rows = rows
        self.manifest_sha256 = manifest_sha256
        self.owner = owner
        self.controller = controller
        self.signers = [controller_signer, owner_signer]
        self.kids = [controller_signer[0], owner_signer[0]]
        self.journal_path = journal_path
        self.chunk_size = chunk
        self.window = window
        self.progress = progress or (lambda done, total: None)
        self._stop = threading.Event()
        self._transferred = 0
        self._already = 0
        self._done = 0

    def run(self) -> TransferResult:
        """Transfer (or finish transferring) the fleet.

        Raises :class:`RunMismatch` when the journal belongs to another
        manifest, owner or controller, and the node's rejection (naming the
        device) for anything but "already done".
        """
        t0 = time.perf_counter()
        with Journal.open(self.journal_path) as journal:
            resumed = bool(journal.records)
            self._header(journal)
            plans: dict[int, dict[str, Any]] = {}
            replans: dict[tuple[int, int], dict[str, Any]] = {}
            dones: set[int] = set()
            for r in journal.records[1:]:
                kind = r.get("t")
                if kind == "plan":
                    plans[int(r["chunk"])] = r
                elif kind == "replan":
                    replans[(int(r["chunk"]), int(r["i"]))] = r
                elif kind == "done":
                    dones.add(int(r["chunk"]))
                    self._done += len(r["positions"])
                else:
                    raise JournalCorrupted(f"unknown record type {kind!r} in {journal.path}")
            n_chunks = -(-len(self.rows) // self.chunk_size)
            todo = [k for k in range(n_chunks) if k not in dones]
            self.progress(self._done, len(self.rows))
            if todo:
                self._pipeline(journal, todo, plans, replans)
        return TransferResult(
            len(self.rows), self._transferred, self._already, resumed, time.perf_counter() - t0, self.owner, self.controller, self.journal_path
        )

    def _header(self, journal: Journal) -> None:
        ours = {"manifestSha256": self.manifest_sha256, "to": self.owner, "as": self.controller, "count": len(self.rows)}
        if not journal.records:
            journal.append({"t": "run", "format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, **ours, "chunk": self.chunk_size})
            return
        header = journal.records[0]
        if header.get("format") != JOURNAL_FORMAT or header.get("version") != JOURNAL_VERSION:
            raise JournalCorrupted(f"{journal.path} is not a {JOURNAL_FORMAT} v{JOURNAL_VERSION} journal")
        diff = [k for k in ours if header.get(k) != ours[k]]
        if diff:
            raise RunMismatch(
                f"{journal.path} is the journal of another transfer ({', '.join(diff)} differ); "
                "resume it with the same manifest, --to and --as, or give another --journal",
                file=str(journal.path),
            )
        self.chunk_size = int(header["chunk"])

    # -- pipeline ------------------------------------------------------------------

    def _pipeline(self, journal: Journal, todo: list[int], plans: dict[int, dict[str, Any]], replans: dict[tuple[int, int], dict[str, Any]]) -> None:
        planned: queue.Queue[_Chunk | BaseException | None] = queue.Queue(maxsize=2)
        inflight: list[_Chunk] = []
        errors: list[BaseException] = []

        def put(item: _Chunk | BaseException | None) -> bool:
            while not self._stop.is_set():
                try:
                    planned.put(item, timeout=0.25)
                    return True
                except queue.Full:
                    continue
            return False

        def planner() -> None:
            try:
                for k in todo:
                    chunk = self._load(k, plans[k], replans) if k in plans else self._plan(journal, k)
                    if not put(chunk):
                        return
                put(None)
            except BaseException as exc:  # re-raised by the main thread
                put(exc)

        def ops() -> Iterator[SignedOperation]:
            while not self._stop.is_set():
                try:
                    item = planned.get(timeout=0.25)
                except queue.Empty:
                    continue
                if item is None or isinstance(item, BaseException):
                    if isinstance(item, BaseException):
                        errors.append(item)
                    return
                inflight.append(item)
                for op in item.ops:
                    if self._stop.is_set():
                        return
                    yield op

        thread = threading.Thread(target=planner, name="transfer-planner", daemon=True)
        thread.start()
        try:
            pos = 0
            for outcome in self.client.submit_batch(ops(), window=self.window):
                chunk = inflight[pos]
                chunk.outcomes.append(outcome)
                if len(chunk.outcomes) == len(chunk.ops):
                    self._finish(journal, chunk)
                    pos += 1
            if errors:
                raise errors[0]
            if pos != len(inflight):
                raise ProvisioningError("the node ended the batch stream before answering every transfer; re-run to resume")
        finally:
            self._stop.set()
            thread.join(timeout=30)

    def _sign(self, did: str, seq: int, prev: str) -> SignedOperation:
        return builder.sign(builder.transfer(self.network, did, seq, prev, [self.owner]), self.signers)

    def _plan(self, journal: Journal, k: int) -> _Chunk:
        rows = self.rows[k * self.chunk_size : (k + 1) * self.chunk_size]
        ops = []
        for row in rows:
            if row.op_hash is not None:
                ops.append(self._sign(row.did, 1, row.op_hash))
            else:
                state = self.client.state(row.did)
                ops.append(self._sign(row.did, state.seq + 1, state.last))
        journal.append({"t": "plan", "chunk": k, "kids": self.kids, "ops": [_op_json(op) for op in ops]})
        return _Chunk(k, rows, ops, [])

    def _load(self, k: int, r: dict[str, Any], replans: dict[tuple[int, int], dict[str, Any]]) -> _Chunk:
        rows = self.rows[k * self.chunk_size : (k + 1) * self.chunk_size]
        try:
            ops = [_op_from(entry, r["kids"], self.network) for entry in r["ops"]]
            for (c, i), rp in replans.items():
                if c == k:
                    ops[i] = _op_from(rp["op"], rp["kids"], self.network)
        except (KeyError, TypeError, ValueError, IndexError, DidnodeError) as exc:
            raise JournalCorrupted(f"plan of chunk {k} in {self.journal_path} does not decode: {exc}") from None
        if [op.did for op in ops] != [row.did for row in rows]:
            raise JournalCorrupted(f"plan of chunk {k} in {self.journal_path} names other devices than the manifest")
        return _Chunk(k, rows, ops, [])

    def _finish(self, journal: Journal, chunk: _Chunk) -> None:
        positions: list[int] = []
        already: list[int] = []
        for j, o in enumerate(chunk.outcomes):
            op = chunk.ops[j]
            if isinstance(o, Receipt):
                positions.append(o.position)
                self._transferred += 1
                continue
            if isinstance(o, DuplicateOperation):
                positions.append(self._position_of(op))
                already.append(j)
                self._already += 1
                continue
            if isinstance(o, (SequenceMismatch, PrevMismatch)):
                state = self.client.state(op.did)
                if state.controllers == (self.owner,):
                    positions.append(self._last_transfer_position(op.did))
                    already.append(j)
                    self._already += 1
                    continue
                # The device moved on since the manifest was written: rebuild on its current state.
                fresh = self._sign(op.did, state.seq + 1, state.last)
                journal.append({"t": "replan", "chunk": chunk.index, "i": j, "kids": self.kids, "op": _op_json(fresh)})
                positions.append(self.client.submit(fresh).position)
                self._transferred += 1
                continue
            self._stop.set()
            raise type(o)(f"transfer of {op.did} was rejected: {o.message}", **{**o.details, "did": op.did})
        journal.append({"t": "done", "chunk": chunk.index, "positions": positions, "already": already})
        self._done += len(chunk.ops)
        self.progress(self._done, len(self.rows))

    def _position_of(self, op: SignedOperation) -> int:
        want = hashlib.sha256(op.payload).digest()
        for e in self.client.history(op.did):
            if e.op_hash == want:
                return e.position
        raise ProvisioningError(f"the node says the transfer of {op.did} is a duplicate but its history does not hold it")

    def _last_transfer_position(self, did: str) -> int:
        transfers = [e.position for e in self.client.history(did) if e.type == "transfer"]
        if not transfers:
            raise ProvisioningError(f"{did} is controlled by {self.owner} but has no transfer in its history")
        return transfers[-1]


def _op_json(op: SignedOperation) -> list[str]:
    return [op.did, b64e(op.payload), *(b64e(p.signature) for p in op.proofs)]


def _op_from(entry: list[str], kids: list[str], network: str) -> SignedOperation:
    did, payload, *sigs = entry
    if len(sigs) != len(kids):
        raise ValueError("signature count does not match the key ids")
    return SignedOperation("transfer", network, did, b64d(payload, "payload"), tuple(Proof(k, b64d(s, "signature")) for k, s in zip(kids, sigs)))


__all__ = ["FleetTransfer", "ManifestRow", "TransferResult", "read_manifest"]
