"""Fleet transfer: hand every device of a manifest to a new owner, resumably.

Each device gets one ``transfer`` operation setting its controllers to
exactly ``[owner]``, signed by a current controller (the manufacturer, or
whoever the fleet was last handed to) and by the new owner, as the method
requires. Either both keys are in the caller's keystore, or the two parties
sign apart: the controller writes an *offer* (:func:`write_offer`: every
transfer signed by itself only) and the owner accepts it (:func:`read_offer`
and :class:`FleetTransfer` with ``offer``: it adds its signature and submits).

Journal (JSON lines, fsync'd per record, locked; default ``<manifest or offer>.transfer.journal``)::

    {"t": "run", "format": "didctl-transfer-journal", "version": 1,
     "manifestSha256": HEX, "to": OWNER, "as": CONTROLLER, "count": N, "chunk": C}
    {"t": "plan", "chunk": k, "ops": [[DID, B64 payload, [[KID, B64 signature], ...]], ...]}
    {"t": "replan", "chunk": k, "i": j, "op": [DID, B64 payload, [[KID, B64 signature], ...]]}
    {"t": "done", "chunk": k, "positions": [...], "already": [j, ...]}

Offer file (JSON lines)::

    {"format": "didctl-transfer-offer", "version": 1, "network": NET, "from": CONTROLLER, "to": OWNER, "count": N}
    {"did": DID, "payload": B64, "proofs": [[CONTROLLER_KID, B64 signature]]}     one per device

A fresh device's transfer is its operation 1 with ``prev`` = the create's
hash (from the manifest), so a chunk is planned without reading the
ledger. A device that changed since (rotated, say) comes back
SEQUENCE_MISMATCH / PREV_MISMATCH: its state is read, and either it already
has ``[owner]`` as controllers (done) or its transfer is rebuilt on the
current state (journaled as a ``replan``) and submitted alone; when
accepting an offer it cannot be rebuilt here, and the run stops naming the
device. A transfer that comes back DUPLICATE_OPERATION was accepted before a crash.
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
from didnode.core import builder, canonical
from didnode.core.builder import SignedOperation
from didnode.core.did import validate_did
from didnode.core.encoding import b64url, b64url_decode
from didnode.core.operations import Proof, parse, signing_bytes
from didnode.errors import (
    DidnodeError,
    DuplicateOperation,
    InvalidArgument,
    InvalidDid,
    JournalCorrupted,
    ManifestInvalid,
    PrevMismatch,
    ProvisioningError,
    RunMismatch,
    SequenceMismatch,
)
from didnode.fileio import write_atomic
from didnode.provisioning.journal import Journal

JOURNAL_FORMAT = "didctl-transfer-journal"
OFFER_FORMAT = "didctl-transfer-offer"
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
            obj = canonical.loads(ln, lambda msg, n=n: ManifestInvalid(f"{path}:{n}: not JSON ({msg})", file=str(path), line=n), "the line")
            if not isinstance(obj, dict):
                raise ManifestInvalid(f"{path}:{n}: not a JSON object", file=str(path), line=n)
            items.append((n, obj))
    else:
        reader = csv.DictReader(io.StringIO(text))
        try:
            if reader.fieldnames is None or "did" not in reader.fieldnames:
                raise ManifestInvalid(f"{path}: a CSV manifest needs a header row with a 'did' column", file=str(path))
            for row in reader:
                items.append((reader.line_num, {k: v for k, v in row.items() if k is not None and v not in (None, "")}))
        except csv.Error as exc:  # a bare CR inside a field, a field over csv's size limit, ...
            raise ManifestInvalid(f"{path}:{reader.line_num}: not CSV ({exc})", file=str(path), line=reader.line_num) from None
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

    Preconditions: ``controller_signer`` is (kid, key) of a current
    authentication key of ``controller``, a current controller of every
    device, or None with an ``offer`` that controller signed (then only the
    owner signs here); ``owner_signer`` is (kid, key) of a current
    authentication key of ``owner``; ``network`` is the node's.
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
        controller_signer: Signer | None,
        owner_signer: Signer,
        journal_path: Path,
        offer: Offer | None = None,
        chunk: int = DEFAULT_CHUNK,
        window: int = 4,
        progress: Progress | None = None,
    ) -> None:
        if (controller_signer is None) == (offer is None):
            raise InvalidArgument("a transfer is signed here by the controller, or accepts an offer the controller signed: exactly one")
        self.client = client
        self.network = network
        self.rows = rows
        self.manifest_sha256 = manifest_sha256
        self.owner = owner
        self.controller = controller
        self.controller_signer = controller_signer
        self.owner_signer = owner_signer
        self.offer = offer
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
        assert self.controller_signer is not None
        return builder.sign(builder.transfer(self.network, did, seq, prev, [self.owner]), [self.controller_signer, self.owner_signer])

    def _countersign(self, op: SignedOperation) -> SignedOperation:
        """The controller's offered transfer with the owner's signature added."""
        kid, key = self.owner_signer
        sig = key.sign(signing_bytes(self.network, "transfer", op.payload)).signature
        return SignedOperation("transfer", self.network, op.did, op.payload, (*op.proofs, Proof(kid, sig)))

    def _plan(self, journal: Journal, k: int) -> _Chunk:
        rows = self.rows[k * self.chunk_size : (k + 1) * self.chunk_size]
        ops = []
        for row in rows:
            if self.offer is not None:
                ops.append(self._countersign(self.offer.ops[row.did]))
            elif row.op_hash is not None:
                ops.append(self._sign(row.did, 1, row.op_hash))
            else:
                state = self.client.state(row.did)
                ops.append(self._sign(row.did, state.seq + 1, state.last))
        journal.append({"t": "plan", "chunk": k, "ops": [_op_json(op) for op in ops]})
        return _Chunk(k, rows, ops, [])

    def _load(self, k: int, r: dict[str, Any], replans: dict[tuple[int, int], dict[str, Any]]) -> _Chunk:
        rows = self.rows[k * self.chunk_size : (k + 1) * self.chunk_size]
        try:
            ops = [_op_from(entry, self.network) for entry in r["ops"]]
            for (c, i), rp in replans.items():
                if c == k:
                    ops[i] = _op_from(rp["op"], self.network)
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
                if self.controller_signer is None:
                    self._stop.set()
                    raise ProvisioningError(
                        f"the offer for {op.did} is stale (the device changed after {self.controller} signed it); "
                        "ask for a new offer and accept that one",
                        did=op.did,
                    )
                # The device moved on since the manifest was written: rebuild on its current state.
                fresh = self._sign(op.did, state.seq + 1, state.last)
                journal.append({"t": "replan", "chunk": chunk.index, "i": j, "op": _op_json(fresh)})
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


def _op_json(op: SignedOperation) -> list[Any]:
    return [op.did, b64url(op.payload), [[p.kid, b64url(p.signature)] for p in op.proofs]]


def _op_from(entry: list[Any], network: str) -> SignedOperation:
    did, payload, proofs = entry
    return SignedOperation("transfer", network, str(did), b64url_decode(payload, "payload"), tuple(Proof(str(k), b64url_decode(s, "signature")) for k, s in proofs))


# --------------------------------------------------------------------------
# Two parties: the controller signs an offer, the new owner accepts it
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """A transfer offer: each device's transfer to ``owner``, signed by the current controller only."""

    controller: str
    owner: str
    network: str
    ops: dict[str, SignedOperation]
    rows: list[ManifestRow]
    sha256: str


def write_offer(
    path: Path,
    client: Client,
    network: str,
    rows: list[ManifestRow],
    owner: str,
    controller: str,
    controller_signer: Signer,
    progress: Progress | None = None,
) -> int:
    """Write an offer file (docs/provisioning.md, section 9): one transfer per device,
    signed by ``controller_signer`` only; atomically (temporary file, fsync, rename).

    Precondition: ``controller_signer`` is a current authentication key of a current
    controller of every device. Returns the number of devices. Nothing is submitted.
    """
    report = progress or (lambda done, total: None)
    lines = [json.dumps({"format": OFFER_FORMAT, "version": JOURNAL_VERSION, "network": network, "from": controller, "to": owner, "count": len(rows)})]
    for i, row in enumerate(rows):
        if row.op_hash is not None:
            seq, prev = 1, row.op_hash
        else:
            state = client.state(row.did)
            seq, prev = state.seq + 1, state.last
        op = builder.sign(builder.transfer(network, row.did, seq, prev, [owner]), [controller_signer])
        lines.append(json.dumps({"did": row.did, "payload": b64url(op.payload), "proofs": [[p.kid, b64url(p.signature)] for p in op.proofs]}))
        if i % 1024 == 0:
            report(i, len(rows))
    data = ("\n".join(lines) + "\n").encode("ascii")
    try:
        write_atomic(path, data, mode=0o644)
    except OSError as exc:
        raise ProvisioningError(f"cannot write offer {path}: {exc.strerror or exc}", file=str(path)) from None
    report(len(rows), len(rows))
    return len(rows)


def read_offer(path: Path, network: str) -> Offer:
    """Parse and check an offer: every operation is a well-formed transfer of the named
    device to exactly the offer's owner on ``network``. Raises :class:`ManifestInvalid`
    naming the line (signatures are checked by the node when submitted)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestInvalid(f"cannot read {path}: {exc.strerror or exc}", file=str(path)) from None
    lines = raw.decode("utf-8", "replace").splitlines()
    try:
        header = canonical.loads(lines[0], ManifestInvalid, "the header")
        if not isinstance(header, dict) or header.get("format") != OFFER_FORMAT or header.get("version") != JOURNAL_VERSION:
            raise ValueError(f"not a {OFFER_FORMAT} v{JOURNAL_VERSION} file")
        owner, controller = validate_did(header["to"]), validate_did(header["from"])
    except (IndexError, KeyError, ValueError, InvalidDid, ManifestInvalid) as exc:
        raise ManifestInvalid(f"{path}:1: {exc}", file=str(path), line=1) from None
    if header.get("network") != network:
        raise ManifestInvalid(f"{path} is an offer on network {header.get('network')!r}; this node serves {network!r}", file=str(path))
    ops: dict[str, SignedOperation] = {}
    rows: list[ManifestRow] = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        try:
            entry = canonical.loads(line, ManifestInvalid, "the line")
            did = str(entry["did"])
            op = _op_from([did, entry["payload"], entry["proofs"]], network)
            parsed = parse(op.payload, op.proofs, network)
        except (KeyError, TypeError, ValueError, DidnodeError) as exc:
            raise ManifestInvalid(f"{path}:{n}: {exc}", file=str(path), line=n) from None
        if parsed.type != "transfer" or parsed.did != did or parsed.controllers != (owner,):
            raise ManifestInvalid(f"{path}:{n}: not a transfer of {did} to exactly {owner}", file=str(path), line=n)
        if did in ops:
            raise ManifestInvalid(f"{path}:{n}: {did} is offered twice", file=str(path), line=n)
        ops[did] = op
        rows.append(ManifestRow(n, did, None, None, controller))
    if len(rows) != header.get("count"):
        raise ManifestInvalid(f"{path} holds {len(rows)} transfers; its header says {header.get('count')} (truncated?)", file=str(path))
    return Offer(controller, owner, network, ops, rows, hashlib.sha256(raw).hexdigest())


__all__ = ["FleetTransfer", "ManifestRow", "Offer", "TransferResult", "read_manifest", "read_offer", "write_offer"]
