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

The pieces: :mod:`.spec` (the run spec, output names, defaults and limits),
:mod:`.chunks` (chunks and their journal records), :mod:`.output` (bundles,
manifests and the :class:`RunResult`); this module holds the run itself.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.utils
from nacl.bindings import crypto_secretbox, crypto_secretbox_open, crypto_sign, crypto_sign_seed_keypair

from didnode.client import Client, Receipt, StatusLists
from didnode.clock import wall_ms
from didnode.core.builder import SignedOperation
from didnode.core.encoding import b64url, b64url_decode
from didnode.core.operations import signing_bytes
from didnode.errors import (
    BundleInvalid,
    DidAlreadyExists,
    DidnodeError,
    DuplicateOperation,
    InvalidArgument,
    JournalCorrupted,
    NotFound,
    ProvisioningError,
    RunMismatch,
)
from didnode.fileio import sync_filesystem
from didnode.keystore import DidSecrets, KdfParams, Keystore
from didnode.provisioning.bundle import Sealer
from didnode.provisioning.chunks import JOURNAL_CHECK, JOURNAL_FORMAT, JOURNAL_VERSION, Chunk, alloc_record, alloc_statuses, chunk_from_plan, plan_record, replay
from didnode.provisioning.devices import DevicePublicKeys
from didnode.provisioning.journal import Journal
from didnode.provisioning.output import Manifests, RunResult, manifest_rows, write_bundles
from didnode.provisioning.spec import (
    BUNDLES_DIR,
    CREDENTIAL_NS,
    CSV_COLUMNS,
    DEFAULT_CHUNK,
    DEFAULT_WINDOW,
    FILE_WORKERS,
    HELPER_MIN_DEVICES,
    JOURNAL_NAME,
    MANIFEST_CSV,
    MANIFEST_JSONL,
    MAX_STATUS_ALLOCATION,
    NEXT_KEY_ID,
    RECOVERY_ROLE,
    SUBMIT_BATCH,
    Manufacturer,
    RunSpec,
    serial_for,
)
from didnode.provisioning.worker import Material, PrepareProcess, Prepared, Preparer

Progress = Callable[[int, int], None]
Notify = Callable[[str], None]


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
        trust: Mapping[str, Any] | None = None,
    ) -> None:
        """``trust``: the trust policy (JSON, docs/trust.md) every bundle carries for its device, or None."""
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
        self.trust = trust
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
            allocs, plans, dones = replay(journal.records[1:], journal.path)
            for a in allocs:
                self._pool.extend(alloc_statuses(a, journal.path))
            n_chunks = -(-self.spec.count // self.chunk_size)
            done_chunks = sorted(dones)
            if done_chunks != list(range(len(done_chunks))):
                raise JournalCorrupted(f"{journal.path}: done records are not a prefix of the chunks ({done_chunks[:5]}...)")
            self._done = sum(len(d["positions"]) for d in dones.values())
            positions = [p for k in done_chunks for p in dones[k]["positions"]]
            if done_chunks:
                self._last_checkpoint = dones[done_chunks[-1]].get("checkpoint")
            manifests = Manifests(self.out, dones[done_chunks[-1]]["manifest"] if done_chunks else None)
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
                box = b64url_decode(header["check"], "journal check", BundleInvalid)
                ok = crypto_secretbox_open(box[24:], box[:24], self._jkey) == JOURNAL_CHECK
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
            "check": b64url(nonce + crypto_secretbox(JOURNAL_CHECK, nonce, self._jkey)),
        }
        if self.spec.protection == "passphrase":
            params = KdfParams.named(self.spec.kdf or "moderate")
            salt = nacl.utils.random(argon2id.SALTBYTES)
            kdf = {"alg": "argon2id", "salt": b64url(salt), "opslimit": params.opslimit, "memlimit": params.memlimit}
            header["bundleKdf"] = {**kdf, "check": self._bundle_sealer(kdf)}
        journal.append(header)
        return header

    def _bundle_sealer(self, kdf: dict[str, Any]) -> str:
        """Build the passphrase sealer of the run (one Argon2id) from the journaled salt and cost;
        return its check value, and if ``kdf`` carries one, require the same (one run, one passphrase)."""
        sealer = Sealer.passphrase(self.bundle_passphrase or "", b64url_decode(kdf["salt"], "bundle salt", BundleInvalid), KdfParams(kdf["opslimit"], kdf["memlimit"]))
        check = sealer.check_value()
        if "check" in kdf and kdf["check"] != check:
            raise RunMismatch(
                f"the bundle passphrase is not the one run {self.run_id} in {self.out} started with; "
                "its bundles must all open with one passphrase",
                out=str(self.out),
            )
        self.sealer = sealer
        return check

    # -- pipeline ----------------------------------------------------------------

    def _pipeline(
        self, journal: Journal, todo: list[int], plans: dict[int, dict[str, Any]], manifests: Manifests, prep: "_Local | PrepareProcess"
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
            journal.append(alloc_record(a))
            self._pool.extend((a.number, i) for i in a.indices)
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
            journal.append(plan_record(chunk, self._jkey))
        elif result.dids != chunk.dids:
            raise ProvisioningError(f"chunk {chunk.index}: derived material names other devices than the plan (a bug)")
        # The journal holds the recovery keys from now on; the keystore must hold them
        # before the chunk is done (the finisher waits), not before it is submitted.
        chunk.recovery = self._keys_writer.submit(self._store_recovery, chunk)
        return chunk

    def _load(self, journal: Journal, r: dict[str, Any]) -> Chunk:
        """A chunk planned before a crash, exactly as journaled (re-signed if the manufacturer key changed)."""
        chunk = chunk_from_plan(r, self._jkey, journal.path)
        if chunk.kid != self.mfr.auth_kid:
            # The manufacturer rotated its key since planning: the creates (and so the DIDs)
            # stay the same, only the manufacturer's proof is redone with the current key.
            self.notify(f"chunk {chunk.index}: re-signing with the manufacturer's current key {self.mfr.auth_kid} (planned with {chunk.kid})")
            chunk.kid = self.mfr.auth_kid
            chunk.sigs = [(d, crypto_sign(self._prefix + p, self._mfr_sk)[:64]) for (d, _), p in zip(chunk.sigs, chunk.payloads)]
            journal.append(plan_record(chunk, self._jkey))
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

    def _finish(self, journal: Journal, chunk: Chunk, manifests: Manifests) -> list[int]:
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
        write_bundles(self._files, self.out, self.spec, self.node_address, chunk, positions, op_hashes, checkpoint, self.trust)
        try:
            sync_filesystem(self.out)  # the chunk's bundles are durable before the manifest names them
        except OSError as exc:
            raise ProvisioningError(f"cannot sync the file system of {self.out}: {exc.strerror or exc}", path=str(self.out)) from None
        sizes = manifests.append(manifest_rows(self.spec, chunk, positions, op_hashes))
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
