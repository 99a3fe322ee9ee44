"""The provisioning run: plan, journal, submit, finish; resumable after a crash at any point.

Layout of a run's output directory (docs/provisioning.md)::

    <out>/provision.journal   the plan and progress (JSON lines, fsync'd, locked)
    <out>/manifest.csv        one row per provisioned device, in device order
    <out>/manifest.jsonl      the same rows as JSON lines
    <out>/bundles/<serial>.json

Devices go through the run in chunks of ``chunk`` (1,024 by default), in
order, through three stages joined by bounded queues (the slowest stage
sets the pace; memory stays bounded):

1. **plan** (planner thread): serials, status list indices (allocated in
   bulk on the ledger, each allocation journaled) and the chunk's
   manufacture time here; fresh keys (or the device-supplied public keys),
   the canonical creates, the device's and the manufacturer's signatures,
   credentials and sealed bundle keys in a :class:`~didnode.provisioning.worker.Preparer`
   (a helper process for big runs). The plan record is appended to the
   journal and fsync'd *before* anything of the chunk is submitted; its
   secrets (device seeds, next-key seeds) are in one secretbox under a key
   derived from the keystore's master key
   (:meth:`didnode.keystore.Keystore.purpose_key`). Then every device's next
   (recovery) key is written to the manufacturer's keystore, in the background.
2. **submit** (main thread): one streaming batch call for the whole run
   (:meth:`didnode.client.Client.submit_batch`), at most ``window``
   batches unacknowledged; this thread only reads the node's answers, so
   the window never waits on the disk.
3. **finish** (finisher thread, per chunk, once all its outcomes are in):
   ledger positions (a create that comes back DUPLICATE_OPERATION or
   DID_EXISTS was accepted before a crash: its position is read from the
   ledger), the recovery keys' keystore write, the latest signed checkpoint,
   the bundles (written, then one ``syncfs`` for the chunk), the manifest
   rows (appended, fsync'd), and a ``done`` record in the journal.

A re-run with the same arguments reads the journal, drops a torn last
record, cuts the manifests back to the last ``done`` record, and carries
on: chunks with a plan but no ``done`` are resubmitted exactly as planned
(the ledger accepts each create once), chunks without a plan are planned.
So a run killed at any point completes with exactly ``count`` devices, each
once in the manifests and once on the ledger.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import queue
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.utils
from nacl.bindings import crypto_secretbox, crypto_secretbox_open, crypto_sign, crypto_sign_seed_keypair
from nacl.signing import SigningKey

from didnode.client import Client, Receipt
from didnode.core.builder import SignedOperation
from didnode.core.credentials import Issuer
from didnode.core.operations import Proof, signing_bytes
from didnode.credentials_client import StatusLists, wall_ms
from didnode.errors import (
    DidAlreadyExists,
    DidnodeError,
    DuplicateOperation,
    InvalidArgument,
    JournalCorrupted,
    NotFound,
    ProvisioningError,
    RunMismatch,
)
from didnode.keystore import DidSecrets, KdfParams, Keystore
from didnode.provisioning.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, Sealer, b64d, b64e
from didnode.provisioning.devices import AUTH_KEY_ID, DevicePublicKeys
from didnode.provisioning.journal import Journal, fsync_dir, sync_filesystem, write_all
from didnode.provisioning.worker import SECRET_BYTES, Material, PrepareProcess, Prepared, Preparer

JOURNAL_NAME = "provision.journal"
MANIFEST_CSV = "manifest.csv"
MANIFEST_JSONL = "manifest.jsonl"
BUNDLES_DIR = "bundles"
JOURNAL_FORMAT = "didctl-provision-journal"
JOURNAL_VERSION = 1
DEFAULT_CHUNK = 1024
DEFAULT_WINDOW = 4
SUBMIT_BATCH = 1024  # the node accepts at most 1,024 operations per streamed chunk; bigger chunks cost it less per op
FILE_WORKERS = 8  # threads creating bundle and keystore files (see _write_bundles); more spin on the directory lock
MAX_STATUS_ALLOCATION = 131_072  # one Bitstring Status List (the spec's minimum size)
CSV_COLUMNS = ("serial", "did", "position", "opHash", "manufacturer", "model", "bundle", "statusListCredential", "statusListIndex")
RECOVERY_ROLE = "device-recovery"
NEXT_KEY_ID = "next"  # the keystore's id for a committed next key (as didctl's own entries)
HELPER_MIN_DEVICES = 4096  # below this a helper process costs more to start than it saves
_CHECK = b"didctl provision journal v1"
# Namespace of the credential ids of provisioned devices: uuid5(NS, run id + "/" + DID) makes
# a redone chunk issue byte-identical credentials.
CREDENTIAL_NS = uuid.UUID("5b0e6c1e-8f7a-4d55-9a0c-2f3b7c1d9e42")

Progress = Callable[[int, int], None]
Notify = Callable[[str], None]


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; a resumed run must present the same (compared field by field)."""

    manufacturer: str
    model: str
    count: int
    hardware_version: str
    firmware_version: str
    serial_prefix: str
    key_agreement: bool
    network: str
    keys: str  # "generated" | "device"
    input_sha256: str | None  # of the --from-public-keys file
    protection: str  # "passphrase" | "recipient" | "none" (plain) | "device" (no keys in bundles)
    recipient: str | None
    kdf: str | None  # Argon2id preset of the bundle passphrase

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Manufacturer:
    """The manufacturer's signing material (from its keystore).

    Preconditions: ``auth_kid``/``auth_key`` are a current authentication key
    of ``did``; ``issuer`` signs with a current assertionMethod key whose
    private half is ``assertion_key``.
    """

    did: str
    auth_kid: str
    auth_key: SigningKey
    issuer: Issuer
    assertion_key: SigningKey


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


@dataclass
class Chunk:
    """One planned chunk (from a new plan or the journal)."""

    index: int
    first: int
    time_ms: int
    kid: str
    serials: list[str]
    dids: list[str]
    payloads: list[bytes]
    sigs: list[tuple[bytes, bytes]]  # (device key-1, manufacturer)
    status: list[tuple[int, int]]  # (list number, index)
    secrets: bytes | None  # SECRET_BYTES per device, decrypted; None for device-supplied keys
    tokens: list[str] = field(default_factory=list)  # credentials (derived, not journaled)
    keys: list[str] = field(default_factory=list)  # each bundle's "keys" member as JSON (sealed now, not journaled)
    outcomes: list[Receipt | DidnodeError] = field(default_factory=list)
    recovery: "Future[None] | None" = None  # the keystore write of the chunk's recovery keys

    def __len__(self) -> int:
        return len(self.dids)

    def ops(self, network: str) -> Iterator[SignedOperation]:
        for did, payload, (dsig, msig) in zip(self.dids, self.payloads, self.sigs):
            yield SignedOperation("create", network, did, payload, (Proof(f"{did}#{AUTH_KEY_ID}", dsig), Proof(self.kid, msig)))

    def device_secrets(self, j: int) -> tuple[bytes, bytes, bytes]:
        assert self.secrets is not None
        s = self.secrets[j * SECRET_BYTES : (j + 1) * SECRET_BYTES]
        return s[:32], s[32:64], s[64:]


def serial_for(prefix: str, i: int, count: int) -> str:
    """The serial of device ``i`` (0-based) of a tool-numbered run: prefix + 1-based number, zero-padded."""
    return f"{prefix}{i + 1:0{max(6, len(str(count)))}d}"


class ProvisionRun:
    """One provisioning run into ``out`` (module docstring). Call :meth:`run` once.

    Preconditions: ``spec.network`` is the node's network; ``manufacturer``
    holds current keys of ``spec.manufacturer``; ``device_keys`` is given
    (checked by :func:`~didnode.provisioning.devices.read_public_keys`) iff
    ``spec.keys == "device"``, with ``spec.count`` entries; ``sealer`` is
    None iff ``spec.keys == "device"``, else matches ``spec.protection``
    (a passphrase sealer is built by :meth:`run` itself from
    ``bundle_passphrase``, because its salt lives in the journal).
    """

    def __init__(
        self,
        *,
        client: Client,
        keystore: Keystore,
        spec: RunSpec,
        manufacturer: Manufacturer,
        out: Path,
        node_address: str,
        device_keys: Sequence[DevicePublicKeys] | None = None,
        sealer: Sealer | None = None,
        bundle_passphrase: str | None = None,
        chunk: int = DEFAULT_CHUNK,
        window: int = DEFAULT_WINDOW,
        helper: bool | None = None,
        progress: Progress | None = None,
        notify: Notify | None = None,
    ) -> None:
        if chunk < 1 or window < 1:
            raise InvalidArgument(f"chunk ({chunk}) and window ({window}) must be >= 1")
        if (device_keys is None) != (spec.keys != "device") or (device_keys is not None and len(device_keys) != spec.count):
            raise InvalidArgument("device public keys must be given exactly for a device-keys run, one per device")
        self.client = client
        self.keystore = keystore
        self.spec = spec
        self.mfr = manufacturer
        self.out = out
        self.node_address = node_address
        self.device_keys = device_keys
        self.sealer = sealer
        self.bundle_passphrase = bundle_passphrase
        self.chunk_size = chunk
        self.window = window
        self.helper = helper
        self.progress = progress or (lambda done, total: None)
        self.notify = notify or (lambda msg: None)
        self._prefix = signing_bytes(spec.network, "create", b"")
        self._mfr_sk = crypto_sign_seed_keypair(bytes(manufacturer.auth_key))[1]
        self._stop = threading.Event()
        self.run_id = ""
        self._jkey = b""
        self._pool: list[tuple[int, int]] = []  # status (list, index) per device, in device order
        self._created = 0
        self._existing = 0
        self._done = 0
        self._last_checkpoint: dict[str, Any] | None = None
        self._files = ThreadPoolExecutor(1)  # replaced by the run's pools in run()
        self._keys_writer = ThreadPoolExecutor(1)

    # -- the run ---------------------------------------------------------------

    def run(self) -> RunResult:
        """Provision (or finish provisioning) all ``spec.count`` devices; see the module docstring.

        Raises :class:`RunMismatch` when ``out`` holds another run,
        :class:`RunLocked` when a run on ``out`` is going on, the node's
        rejection (naming the device) when a create is refused for any reason
        but "already there", and what the client raises when the node is unreachable.
        """
        t0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / BUNDLES_DIR).mkdir(mode=0o700, exist_ok=True)
        with Journal.open(self.out / JOURNAL_NAME) as journal:
            resumed = bool(journal.records)
            header = self._header(journal)
            self.chunk_size = int(header["chunk"])
            allocs, plans, dones = self._replay(journal.records[1:])
            for a in allocs:
                self._pool.extend((a["list"], a["first"] + i) for i in range(a["count"]))
            n_chunks = -(-self.spec.count // self.chunk_size)
            done_chunks = sorted(dones)
            if done_chunks != list(range(len(done_chunks))):
                raise JournalCorrupted(f"{journal.path}: done records are not a prefix of the chunks ({done_chunks[:5]}...)")
            self._done = sum(len(d["positions"]) for d in dones.values())
            positions = [p for k in done_chunks for p in dones[k]["positions"]]
            if done_chunks:
                self._last_checkpoint = dones[done_chunks[-1]].get("checkpoint")
            manifests = _Manifests(self.out, dones[done_chunks[-1]]["manifest"] if done_chunks else None)
            todo = [k for k in range(n_chunks) if k not in dones]
            if resumed and todo:
                self.notify(f"resuming run {self.run_id}: {self._done} of {self.spec.count} devices done, {len(todo)} chunk(s) to go")
            self.progress(self._done, self.spec.count)
            try:
                if todo:
                    prep = self._preparer(sum(min(self.chunk_size, self.spec.count - k * self.chunk_size) for k in todo))
                    try:
                        with ThreadPoolExecutor(FILE_WORKERS, thread_name_prefix="provision-files") as self._files, ThreadPoolExecutor(
                            1, thread_name_prefix="provision-keystore"
                        ) as self._keys_writer:
                            positions += self._pipeline(journal, todo, plans, manifests, prep)
                    finally:
                        prep.close()
            finally:
                manifests.close()
        first = positions[0] if positions else -1
        last = max(positions) if positions else -1
        return RunResult(
            self._done, self._created, self._existing, resumed, time.perf_counter() - t0, first, last, self.out, self.run_id, self._last_checkpoint
        )

    def _preparer(self, devices: int) -> "_Local | PrepareProcess":
        """Where the per-device cryptography runs: a helper process for big runs (a second
        core for the tool), this process for small ones (no start-up cost)."""
        sealer = self.sealer
        material = Material(
            network=self.spec.network,
            manufacturer=self.spec.manufacturer,
            manufacturer_secret=self._mfr_sk,
            assertion_key_id=self.mfr.issuer.key_id,
            assertion_seed=bytes(self.mfr.assertion_key),
            model=self.spec.model,
            hardware_version=self.spec.hardware_version,
            firmware_version=self.spec.firmware_version,
            run_id=self.run_id,
            key_agreement=self.spec.key_agreement,
            credential_ns=CREDENTIAL_NS.bytes,
            sealer_mode=None if sealer is None else sealer.mode,
            sealer_kdf=None if sealer is None or sealer.kdf is None else dict(sealer.kdf),
            sealer_run_key=None if sealer is None else sealer.run_key_bytes,
            sealer_recipient=None if sealer is None else sealer.recipient_multikey,
        )
        helper = self.helper if self.helper is not None else devices >= HELPER_MIN_DEVICES and (os.cpu_count() or 1) > 1
        return PrepareProcess(material) if helper else _Local(Preparer(material))

    def _header(self, journal: Journal) -> dict[str, Any]:
        """The journal's first record; written now for a new run, else checked against this run."""
        if journal.records:
            header = journal.records[0]
            if header.get("t") != "run" or header.get("format") != JOURNAL_FORMAT or header.get("version") != JOURNAL_VERSION:
                raise JournalCorrupted(f"{journal.path} is not a {JOURNAL_FORMAT} v{JOURNAL_VERSION} journal")
            theirs = header.get("spec", {})
            ours = self.spec.to_json()
            diff = [k for k in ours if theirs.get(k) != ours[k]]
            if diff:
                shown = "; ".join(f"{k}: journal {theirs.get(k)!r}, now {ours[k]!r}" for k in diff[:3])
                raise RunMismatch(
                    f"{self.out} holds run {header.get('run')} with other arguments ({shown}); "
                    "re-run with the same arguments to resume it, or use another --out",
                    out=str(self.out),
                )
            self.run_id = str(header["run"])
            self._jkey = self.keystore.purpose_key(f"didctl-provision-journal:{self.run_id}")
            try:
                box = b64d(header["check"], "journal check")
                ok = crypto_secretbox_open(box[24:], box[:24], self._jkey) == _CHECK
            except (nacl.exceptions.CryptoError, DidnodeError):
                ok = False
            if not ok:
                raise RunMismatch(
                    f"the journal of run {self.run_id} in {self.out} was written with another keystore; "
                    "resume it with the keystore (and passphrase) that started it",
                    out=str(self.out),
                )
            if self.spec.protection == "passphrase":
                self._bundle_sealer(header["bundleKdf"])
            return header
        self.run_id = nacl.utils.random(16).hex()
        self._jkey = self.keystore.purpose_key(f"didctl-provision-journal:{self.run_id}")
        nonce = nacl.utils.random(24)
        header: dict[str, Any] = {
            "t": "run",
            "format": JOURNAL_FORMAT,
            "version": JOURNAL_VERSION,
            "run": self.run_id,
            "spec": self.spec.to_json(),
            "chunk": self.chunk_size,
            "started": wall_ms(),
            "check": b64e(nonce + crypto_secretbox(_CHECK, nonce, self._jkey)),
        }
        if self.spec.protection == "passphrase":
            params = KdfParams.named(self.spec.kdf or "moderate")
            salt = nacl.utils.random(argon2id.SALTBYTES)
            kdf = {"alg": "argon2id", "salt": b64e(salt), "opslimit": params.opslimit, "memlimit": params.memlimit}
            header["bundleKdf"] = {**kdf, "check": self._bundle_sealer(kdf)}
        journal.append(header)
        return header

    def _bundle_sealer(self, kdf: dict[str, Any]) -> str:
        """Build the passphrase sealer of the run (one Argon2id) from the journaled salt and cost;
        return its check value, and if ``kdf`` carries one, require the same (one run, one passphrase)."""
        sealer = Sealer.passphrase(self.bundle_passphrase or "", b64d(kdf["salt"], "bundle salt"), KdfParams(kdf["opslimit"], kdf["memlimit"]))
        check = sealer.check_value()
        if "check" in kdf and kdf["check"] != check:
            raise RunMismatch(
                f"the bundle passphrase is not the one run {self.run_id} in {self.out} started with; "
                "its bundles must all open with one passphrase",
                out=str(self.out),
            )
        self.sealer = sealer
        return check

    def _replay(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        allocs: list[dict[str, Any]] = []
        plans: dict[int, dict[str, Any]] = {}
        dones: dict[int, dict[str, Any]] = {}
        for r in records:
            kind = r.get("t")
            if kind == "alloc":
                allocs.append(r)
            elif kind == "plan":
                plans[int(r["chunk"])] = r  # a later plan of a chunk (re-signed) replaces the earlier
            elif kind == "done":
                dones[int(r["chunk"])] = r
            else:
                raise JournalCorrupted(f"unknown journal record type {kind!r} in {self.out / JOURNAL_NAME}")
        return allocs, plans, dones

    # -- pipeline ----------------------------------------------------------------

    def _pipeline(
        self, journal: Journal, todo: list[int], plans: dict[int, dict[str, Any]], manifests: "_Manifests", prep: "_Local | PrepareProcess"
    ) -> list[int]:
        """Three stages joined by bounded queues, so the slowest one sets the pace and
        memory stays bounded: planner thread -> the batch stream (this thread reads the
        node's answers and nothing else, so the in-flight window never waits on disk) ->
        finisher thread."""
        planned: queue.Queue[Chunk | BaseException | None] = queue.Queue(maxsize=2)
        answered: queue.Queue[Chunk | None] = queue.Queue(maxsize=2)
        inflight: deque[Chunk] = deque()
        positions: list[int] = []
        errors: list[BaseException] = []  # first failure of any stage wins

        def fail(exc: BaseException) -> None:
            errors.append(exc)
            self._stop.set()

        def planner() -> None:
            try:
                # Keep the preparer one chunk ahead: it works on chunk k+1 while this
                # thread journals chunk k.
                waiting: deque[Chunk] = deque()
                for k in todo:
                    waiting.append(self._start(journal, k, plans.get(k), prep))
                    if len(waiting) >= 2 and not self._put(planned, self._complete(journal, waiting.popleft(), prep)):
                        return
                while waiting:
                    if not self._put(planned, self._complete(journal, waiting.popleft(), prep)):
                        return
                self._put(planned, None)
            except BaseException as exc:  # handed to the main thread, which re-raises it
                fail(exc)

        def finisher() -> None:
            try:
                while True:
                    chunk = self._get(answered)
                    if chunk is None:
                        return
                    positions.extend(self._finish(journal, chunk, manifests))
            except BaseException as exc:  # handed to the main thread, which re-raises it
                fail(exc)

        def ops() -> Iterator[SignedOperation]:
            while True:
                item = self._get(planned)
                if item is None or isinstance(item, BaseException):
                    return
                inflight.append(item)
                for op in item.ops(self.spec.network):
                    if self._stop.is_set():
                        return
                    yield op

        threads = [threading.Thread(target=f, name=f"provision-{f.__name__}", daemon=True) for f in (planner, finisher)]
        for t in threads:
            t.start()
        try:
            current: Chunk | None = None
            # One streamed message per planned chunk (up to the node's limit), so a chunk is
            # sent as soon as it is planned, never held back to fill a bigger message.
            for outcome in self.client.submit_batch(ops(), chunk_size=min(SUBMIT_BATCH, self.chunk_size), window=self.window):
                if current is None:
                    current = inflight.popleft()
                current.outcomes.append(outcome)
                if len(current.outcomes) == len(current):
                    if not self._put(answered, current):
                        break
                    current = None
            if not errors and (current is not None or inflight):
                raise ProvisioningError("the node ended the batch stream before answering every operation; re-run to resume")
            self._put(answered, None)
            threads[1].join()
        except BaseException as exc:
            fail(exc)
        finally:
            self._stop.set()
            for t in threads:
                t.join(timeout=30)
        if errors:
            raise errors[0]
        return positions

    def _get(self, q: "queue.Queue[Any]") -> Any:
        """The next item of ``q``, or None once the run is stopping."""
        while not self._stop.is_set():
            try:
                return q.get(timeout=0.25)
            except queue.Empty:
                continue
        return None

    def _put(self, q: "queue.Queue[Chunk | BaseException | None]", item: Chunk | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.25)
                return True
            except queue.Full:
                continue
        return False

    # -- plan ------------------------------------------------------------------

    def _statuses(self, journal: Journal, first: int, n: int) -> list[tuple[int, int]]:
        """Status (list, index) of devices first..first+n-1, allocating (and journaling) more when needed."""
        while len(self._pool) < first + n:
            want = min(self.spec.count - len(self._pool), MAX_STATUS_ALLOCATION)
            lists = StatusLists(self.client, self.mfr.issuer, self.mfr.assertion_key, self.spec.network)
            a = lists.allocate(want)
            # Journaled at once; a crash before this line only leaves those indices unused.
            journal.append({"t": "alloc", "list": a.number, "first": a.first, "count": a.count, "position": a.receipt.position})
            self._pool.extend((a.number, a.first + i) for i in range(a.count))
        return self._pool[first : first + n]

    def _start(self, journal: Journal, k: int, record: dict[str, Any] | None, prep: "_Local | PrepareProcess") -> Chunk:
        """Begin chunk ``k``: its journaled plan, or serials, status indices and time for a
        new one; the preparer is handed its per-device work (results come in :meth:`_complete`)."""
        if record is not None:
            chunk = self._load(journal, record)
            prep.submit("derived", chunk.dids, chunk.payloads, chunk.sigs, chunk.secrets, chunk.serials, chunk.status, chunk.time_ms)
            return chunk
        spec = self.spec
        first = k * self.chunk_size
        n = min(self.chunk_size, spec.count - first)
        status = self._statuses(journal, first, n)
        chunk = Chunk(k, first, wall_ms(), self.mfr.auth_kid, [], [], [], [], status, None)
        if self.device_keys is not None:
            devs = self.device_keys[first : first + n]
            chunk.serials = [d.serial if d.serial is not None else serial_for(spec.serial_prefix, first + j, spec.count) for j, d in enumerate(devs)]
            prep.submit("devices", [(d.auth_public, d.ka_public, d.commitment, d.signature) for d in devs], chunk.serials, status, chunk.time_ms)
        else:
            chunk.serials = [serial_for(spec.serial_prefix, first + j, spec.count) for j in range(n)]
            prep.submit("generated", n, chunk.serials, status, chunk.time_ms)
        chunk.dids = []  # filled by _complete; an empty plan marks a chunk to journal
        return chunk

    def _complete(self, journal: Journal, chunk: Chunk, prep: "_Local | PrepareProcess") -> Chunk:
        """Take the preparer's results for ``chunk``; journal a new plan (before anything is
        submitted) and store the recovery keys."""
        result: Prepared = prep.result()
        chunk.tokens, chunk.keys = result.tokens, result.keys
        if not chunk.dids:
            chunk.dids, chunk.payloads, chunk.sigs, chunk.secrets = result.dids, result.payloads, result.sigs, result.secrets
            self._journal_plan(journal, chunk)
        elif result.dids != chunk.dids:
            raise ProvisioningError(f"chunk {chunk.index}: derived material names other devices than the plan (a bug)")
        # The journal holds the recovery keys from now on; the keystore must hold them
        # before the chunk is done (the finisher waits), not before it is submitted.
        chunk.recovery = self._keys_writer.submit(self._store_recovery, chunk)
        return chunk

    def _journal_plan(self, journal: Journal, chunk: Chunk) -> None:
        box = None
        if chunk.secrets is not None:
            nonce = nacl.utils.random(24)
            box = b64e(nonce + crypto_secretbox(chunk.secrets, nonce, self._jkey))
        journal.append(
            {
                "t": "plan",
                "chunk": chunk.index,
                "first": chunk.first,
                "time": chunk.time_ms,
                "kid": chunk.kid,
                "serials": chunk.serials,
                "dids": chunk.dids,
                "payloads": [b64e(p) for p in chunk.payloads],
                "sigs": [[b64e(d), b64e(m)] for d, m in chunk.sigs],
                "status": [list(s) for s in chunk.status],
                "secrets": box,
            }
        )

    def _load(self, journal: Journal, r: dict[str, Any]) -> Chunk:
        """A chunk planned before a crash, exactly as journaled (re-signed if the manufacturer key changed)."""
        try:
            secrets = None
            if r["secrets"] is not None:
                box = b64d(r["secrets"], "plan secrets")
                secrets = crypto_secretbox_open(box[24:], box[:24], self._jkey)
            chunk = Chunk(
                int(r["chunk"]),
                int(r["first"]),
                int(r["time"]),
                str(r["kid"]),
                list(r["serials"]),
                list(r["dids"]),
                [b64d(p, "payload") for p in r["payloads"]],
                [(b64d(d, "signature"), b64d(m, "signature")) for d, m in r["sigs"]],
                [(int(a), int(b)) for a, b in r["status"]],
                secrets,
            )
        except (KeyError, TypeError, ValueError, DidnodeError, nacl.exceptions.CryptoError) as exc:
            raise JournalCorrupted(f"plan of chunk {r.get('chunk')} in {journal.path} does not decode: {exc}") from None
        if chunk.kid != self.mfr.auth_kid:
            # The manufacturer rotated its key since planning: the creates (and so the DIDs)
            # stay the same, only the manufacturer's proof is redone with the current key.
            self.notify(f"chunk {chunk.index}: re-signing with the manufacturer's current key {self.mfr.auth_kid} (planned with {chunk.kid})")
            chunk.kid = self.mfr.auth_kid
            chunk.sigs = [(d, crypto_sign(self._prefix + p, self._mfr_sk)[:64]) for (d, _), p in zip(chunk.sigs, chunk.payloads)]
            self._journal_plan(journal, chunk)
        return chunk

    def _store_recovery(self, chunk: Chunk) -> None:
        """Each device's next (pre-rotation) key into the manufacturer's keystore.

        "batch" durability: the journal holds the same keys (encrypted) until
        the chunk is done, so a crash mid-chunk is repaired by the re-run.
        """
        if chunk.secrets is None:
            return
        # Few labels: every byte here is sealed and written once per device. The run id
        # leads to the journal and manifests, which say everything else.
        labels = {"role": RECOVERY_ROLE, "provisionRun": self.run_id}
        entries = (
            DidSecrets(did=did, next_key_id=NEXT_KEY_ID, next_key_seed=chunk.device_secrets(j)[1], labels={**labels, "serial": chunk.serials[j]})
            for j, did in enumerate(chunk.dids)
        )
        self.keystore.put_many(entries, chunk_size=len(chunk) or 1, workers=FILE_WORKERS, durability="batch")

    # -- finish ----------------------------------------------------------------

    def _finish(self, journal: Journal, chunk: Chunk, manifests: "_Manifests") -> list[int]:
        positions: list[int] = []
        for j, o in enumerate(chunk.outcomes):
            if isinstance(o, Receipt):
                positions.append(o.position)
                self._created += 1
            elif isinstance(o, (DuplicateOperation, DidAlreadyExists)):
                # Accepted before a crash: same payload, so same DID; ask where it landed.
                positions.append(self.client.state(chunk.dids[j]).created_pos)
                self._existing += 1
            else:
                self._stop.set()
                raise type(o)(
                    f"device {chunk.serials[j]} ({chunk.dids[j]}) was rejected: {o.message}", **{**o.details, "serial": chunk.serials[j]}
                )
        if chunk.recovery is not None:
            chunk.recovery.result()  # recovery keys durable in the keystore (raises its failure)
        checkpoint = self._checkpoint()
        op_hashes = [hashlib.sha256(p).hexdigest() for p in chunk.payloads]
        self._write_bundles(chunk, positions, op_hashes, checkpoint)
        sync_filesystem(self.out)  # the chunk's bundles are durable before the manifest names them
        sizes = manifests.append(self._manifest_rows(chunk, positions, op_hashes))
        journal.append({"t": "done", "chunk": chunk.index, "positions": positions, "manifest": sizes, "checkpoint": checkpoint})
        self._done += len(chunk)
        self._last_checkpoint = checkpoint
        self.progress(self._done, self.spec.count)
        return positions

    def _checkpoint(self) -> dict[str, Any] | None:
        """The node's latest signed checkpoint as JSON, or None if it serves none."""
        get = getattr(self.client, "checkpoint", None)
        if get is None:
            return None
        try:
            return get().to_json()  # type: ignore[no-any-return]
        except NotFound:
            return None

    def _write_bundles(self, chunk: Chunk, positions: list[int], op_hashes: list[str], checkpoint: dict[str, Any] | None) -> None:
        spec = self.spec
        bundles = self.out / BUNDLES_DIR
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
                "node": self.node_address,
                "checkpoint": checkpoint,
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
        for future in [self._files.submit(write_slice, files[i : i + step]) for i in range(0, len(files), step)]:
            future.result()

    def _manifest_rows(self, chunk: Chunk, positions: list[int], op_hashes: list[str]) -> list[dict[str, Any]]:
        spec = self.spec
        rows = []
        issuer = self.spec.manufacturer
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
                    "statusListCredential": f"{issuer}?resource=revocation-{list_no}",
                    "statusListIndex": index,
                }
            )
        return rows


class _Local:
    """A :class:`Preparer` in this process behind :class:`PrepareProcess`'s interface."""

    def __init__(self, preparer: Preparer) -> None:
        self._p = preparer
        self._results: deque[Any] = deque()

    def submit(self, method: str, *args: Any) -> None:
        self._results.append(getattr(self._p, method)(*args))

    def result(self) -> Any:
        return self._results.popleft()

    def close(self) -> None:
        self._results.clear()


class _Manifests:
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


__all__ = [
    "BUNDLES_DIR",
    "CSV_COLUMNS",
    "DEFAULT_CHUNK",
    "JOURNAL_NAME",
    "MANIFEST_CSV",
    "MANIFEST_JSONL",
    "Manufacturer",
    "ProvisionRun",
    "RunResult",
    "RunSpec",
    "serial_for",
]
