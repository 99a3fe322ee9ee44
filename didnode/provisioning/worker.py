"""The per-device cryptography of a provisioning run, in this process or in a helper process.

Per device a run generates three key pairs, builds the create, signs it
twice (the device's proof of possession, the manufacturer's vouching),
issues and signs the attestation credential, and seals the device's keys
for its bundle. That is most of the tool's CPU, and in one Python process
it shares one interpreter lock with the gRPC stream, the journal and the
file writes. :class:`PrepareProcess` runs :class:`Preparer` in a helper
process (:func:`main`), so on a multi-core
machine the two halves run in parallel.

The helper only computes: it writes no file and talks to no node, so if it
outlives a killed run it can do no harm (and on Linux it is killed with its
parent). Jobs and results travel as length-prefixed pickles over two
pipes of their own; both ends are this program, started by itself.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO, Sequence

from nacl.bindings import crypto_scalarmult_base, crypto_sign, crypto_sign_seed_keypair
from nacl.signing import SigningKey

from didnode.core.credentials import Issuer
from didnode.core.did import did_from_create_payload
from didnode.core.operations import next_commitment, signing_bytes
from didnode.errors import ProvisioningError
from didnode.provisioning.attestation import AttestationBatch, credential_id
from didnode.provisioning.bundle import Sealer, secrets_json
from didnode.provisioning.devices import FastCreate

SECRET_BYTES = 96  # per device: key-1 seed || next seed || ka-1 private key (zeros without ka-1)


@dataclass(frozen=True)
class Material:
    """Everything the per-device work of one run needs (sent once to a helper process).

    Preconditions: ``manufacturer_secret`` is the 64-byte libsodium secret key
    of the manufacturer's current authentication key; ``assertion_seed`` the
    seed of its assertionMethod key ``assertion_key_id``; ``sealer`` is None
    exactly when devices supply their own keys.
    """

    network: str
    manufacturer: str
    manufacturer_secret: bytes
    assertion_key_id: str
    assertion_seed: bytes
    model: str
    hardware_version: str
    firmware_version: str
    run_id: str
    key_agreement: bool
    credential_ns: bytes
    sealer_mode: str | None
    sealer_kdf: dict[str, Any] | None = None
    sealer_run_key: bytes | None = None
    sealer_recipient: str | None = None


@dataclass
class Prepared:
    """One chunk's per-device results, in device order.

    ``dids``/``payloads``/``sigs``/``secrets`` are the plan (journaled);
    ``tokens`` (credentials) and ``keys`` (each bundle's ``keys`` member as
    JSON text) are derived from it deterministically or freshly sealed, and
    recomputed when a journaled chunk is resumed.
    """

    dids: list[str]
    payloads: list[bytes]
    sigs: list[tuple[bytes, bytes]]
    secrets: bytes | None
    tokens: list[str]
    keys: list[str]


# A device-supplied key: (key-1 public, ka-1 public or None, next-key commitment, create signature).
DeviceKey = tuple[bytes, "bytes | None", str, bytes]


class Preparer:
    """Does the per-device work for one run (see the module docstring)."""

    def __init__(self, m: Material) -> None:
        self.m = m
        self.fast = FastCreate(m.network, m.manufacturer)
        self.prefix = signing_bytes(m.network, "create", b"")
        key = SigningKey(m.assertion_seed)
        self.issuer = Issuer(m.manufacturer, m.assertion_key_id, key)
        self.assertion_key = key
        self.ns = uuid.UUID(bytes=m.credential_ns)
        if m.sealer_mode == "passphrase":
            self.sealer: Sealer | None = Sealer("passphrase", m.sealer_kdf, m.sealer_run_key)
        elif m.sealer_mode == "recipient":
            assert m.sealer_recipient is not None
            self.sealer = Sealer.recipient(m.sealer_recipient)
        elif m.sealer_mode == "none":
            self.sealer = Sealer.plain()
        else:
            self.sealer = None
        self._batches: dict[int, AttestationBatch] = {}

    def generated(self, n: int, serials: Sequence[str], statuses: Sequence[tuple[int, int]], time_ms: int) -> Prepared:
        """Fresh keys for ``n`` devices, their creates, signatures, credentials and sealed keys."""
        material = os.urandom(SECRET_BYTES * n)  # one read of the OS CSPRNG per chunk
        payload_of, prefix, msk, ka = self.fast.payload, self.prefix, self.m.manufacturer_secret, self.m.key_agreement
        dids: list[str] = []
        payloads: list[bytes] = []
        sigs: list[tuple[bytes, bytes]] = []
        for j in range(n):
            s = material[j * SECRET_BYTES : (j + 1) * SECRET_BYTES]
            auth_pk, auth_sk = crypto_sign_seed_keypair(s[:32])
            next_pk = crypto_sign_seed_keypair(s[32:64])[0]
            payload = payload_of(auth_pk, next_commitment(next_pk), crypto_scalarmult_base(s[64:]) if ka else None)
            msg = prefix + payload
            dids.append(did_from_create_payload(payload))
            payloads.append(payload)
            sigs.append((crypto_sign(msg, auth_sk)[:64], crypto_sign(msg, msk)[:64]))
        return self.derived(dids, payloads, sigs, material, serials, statuses, time_ms)

    def devices(self, keys: Sequence[DeviceKey], serials: Sequence[str], statuses: Sequence[tuple[int, int]], time_ms: int) -> Prepared:
        """Creates of device-supplied keys (already checked), with the manufacturer's signature and credentials."""
        payloads = [self.fast.payload(auth, commitment, ka) for auth, ka, commitment, _ in keys]
        sigs = [(dev_sig, crypto_sign(self.prefix + p, self.m.manufacturer_secret)[:64]) for (_, _, _, dev_sig), p in zip(keys, payloads)]
        return self.derived([did_from_create_payload(p) for p in payloads], payloads, sigs, None, serials, statuses, time_ms)

    def derived(
        self,
        dids: list[str],
        payloads: list[bytes],
        sigs: list[tuple[bytes, bytes]],
        secrets: bytes | None,
        serials: Sequence[str],
        statuses: Sequence[tuple[int, int]],
        time_ms: int,
    ) -> Prepared:
        """Credentials and sealed bundle keys of a planned chunk."""
        batch = self._batches.get(time_ms)
        if batch is None:
            m = self.m
            batch = AttestationBatch(self.issuer, self.assertion_key, m.model, m.hardware_version, m.firmware_version, time_ms)
            self._batches = {time_ms: batch}
        tokens = [
            batch.issue(did, serials[j], credential_id(self.ns, self.m.run_id, did), statuses[j][0], statuses[j][1]) for j, did in enumerate(dids)
        ]
        keys = ["null"] * len(dids)
        if secrets is not None:
            assert self.sealer is not None
            dumps, seal, ka = _compact, self.sealer.seal, self.m.key_agreement
            for j, did in enumerate(dids):
                s = secrets[j * SECRET_BYTES : (j + 1) * SECRET_BYTES]
                keys[j] = dumps(seal(did, secrets_json(did, s[:32], s[64:] if ka else None)))
        return Prepared(dids, payloads, sigs, secrets, tokens, keys)


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


# --------------------------------------------------------------------------
# The helper process
# --------------------------------------------------------------------------


class PrepareProcess:
    """A helper process running a :class:`Preparer`; calls return in submission order.

    ``submit(method, *args)`` queues a call (it may be ahead of ``result``
    by any number of calls); ``result()`` returns the oldest outstanding
    result. A reader thread drains the helper's output all the time, so
    neither side can block the other on a full pipe. Raises
    :class:`ProvisioningError` if the helper dies.
    """

    def __init__(self, material: Material) -> None:
        # Dedicated pipes, not the helper's stdin/stdout: nothing a library might print
        # can corrupt the message stream.
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                # Not "-m didnode.provisioning.worker": its classes must pickle under their
                # module's own name, not "__main__", or this side could not load the results.
                [sys.executable, "-c", f"from didnode.provisioning.worker import main; main({job_r}, {res_w})"],
                stdin=subprocess.DEVNULL,
                pass_fds=(job_r, res_w),
            )
        finally:
            os.close(job_r)
            os.close(res_w)
        self._in: BinaryIO = os.fdopen(job_w, "wb")
        self._results: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(os.fdopen(res_r, "rb"),), name="provision-worker-reader", daemon=True)
        self._reader.start()
        self._send(("init", material))

    def _send(self, msg: tuple[Any, ...]) -> None:
        try:
            write_frame(self._in, msg)
        except OSError as exc:
            raise ProvisioningError(f"the provisioning helper process exited (exit code {self._proc.poll()}): {exc}") from None

    def _read(self, out: BinaryIO) -> None:
        while True:
            try:
                self._results.put((True, read_frame(out)))
            except Exception as exc:  # noqa: BLE001 - a thread boundary: every failure must reach result(), or it would wait forever
                self._results.put((False, exc))
                return

    def submit(self, method: str, *args: Any) -> None:
        self._send((method, *args))

    def result(self) -> Any:
        ok, value = self._results.get()
        if not ok:
            self._results.put((ok, value))  # every later call fails the same way
            raise ProvisioningError(
                f"the provisioning helper process failed ({type(value).__name__}: {value}; exit code {self._proc.poll()}); re-run to resume"
            )
        return value

    def close(self) -> None:
        """Ask the helper to exit (end of its input) and reap it."""
        try:
            self._in.close()
        except OSError:
            pass  # already gone: nothing to tell it
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so a killed run leaves no helper behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


_LEN = struct.Struct(">Q")


def write_frame(f: BinaryIO, obj: Any) -> None:
    """One message: 8-byte big-endian length, then the pickle."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(_LEN.pack(len(data)) + data)
    f.flush()


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = f.read(n - len(buf))
        if not part:
            raise EOFError(f"pipe closed after {len(buf)} of {n} bytes")
        buf += part
    return bytes(buf)


def read_frame(f: BinaryIO) -> Any:
    """The next message written by :func:`write_frame`; ``EOFError`` at the end of the stream."""
    (n,) = _LEN.unpack(_read_exactly(f, _LEN.size))
    return pickle.loads(_read_exactly(f, n))


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """The helper's loop: ``("init", Material)`` then ``(method, *args)`` calls, one result each, until EOF."""
    preparer: Preparer | None = None
    while True:
        try:
            method, *args = read_frame(inp)
        except EOFError:
            return
        if method == "init":
            preparer = Preparer(args[0])
            continue
        assert preparer is not None and method in ("generated", "devices", "derived"), method
        write_frame(out, getattr(preparer, method)(*args))


def main(jobs_fd: int, results_fd: int) -> None:
    """Entry point of the helper process (started by :class:`PrepareProcess` with its two pipe ends)."""
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)
    with os.fdopen(jobs_fd, "rb") as inp, os.fdopen(results_fd, "wb") as out:
        serve(inp, out)
