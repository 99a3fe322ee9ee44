"""The device side of data integrity: record readings, close and sign segments (docs/data.md, "Devices and gateways").

A :class:`Recorder` turns each reading into a record (a salted commitment to
its payload, :mod:`didnode.core.data.records`) and a leaf of the open
segment; every ``segment_size`` readings (or ``segment_seconds``, through
:meth:`Recorder.maybe_close`) it closes the segment and signs its head with
the device's current authentication key. Only heads are signed: the hot
path is two SHA-256 (the commitment and the leaf), a slice of the segment's salt stream and a buffered append.

Durability (files: :mod:`didnode.data.store`): readings of the open segment
are buffered and written without fsync, so a power loss may lose readings
not yet in a closed segment; a segment (its records and its secret) is
fsync'd before its head is signed (the signed head is appended to ``heads.log`` without fsync:
a restart that finds a closed segment without its head signs exactly that head again),
so a sequence number a signed head covered is never reused and the device
never signs two heads for the same readings (equivocation).

Imports only the core, the wire and the client (``tests/test_imports.py``).
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import BinaryIO, Callable

from nacl.signing import SigningKey

from didnode.core.data.heads import MAX_COUNT, ZERO_HASH, Head, SignedHead, sign_head
from didnode.core.data.records import COMMIT_CONTEXT, SALT_BYTES, check_stream, encode_record, salt_stream
from didnode.core.did import validate_did
from didnode.data.store import (
    HEADER,
    HEADS,
    OPEN,
    PLEN,
    READING,
    SegmentStore,
    append_durable,
    check_device,
    frame,
    parse_segment,
    segment_name,
)
from didnode.errors import DataStoreInvalid, InvalidArgument
from didnode.fileio import fsync_dir, write_atomic

SECRET_BYTES = 32
# Readings buffered in memory before one write() of one frame: a crash loses at most
# these (plus what the OS had not written), and the CRC and syscall are paid once per chunk.
FLUSH_EVERY = 256
_SALT_LEN = bytes((SALT_BYTES,))
_SEQ_TIME = struct.Struct(">QQ")


def fast_root(leaves: list[bytes]) -> bytes:
    """The RFC 6962 root of ``leaves`` (leaf hashes), level by level: an odd last node moves up unchanged,
    which gives the same root as the recursive split (``segment_root``, which tests compare it with) at half
    the cost. Precondition: ``leaves`` is non-empty."""
    level = leaves
    sha = hashlib.sha256
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class Recorder:
    """Records the readings of one stream of one device and signs its segment heads.

    Preconditions: ``did`` is the device's DID on ``network``; ``key_id`` names a
    current authentication key of it and ``signing_key`` is that key's secret;
    ``1 <= segment_size <= 65,536``. One recorder per (store, stream) at a time
    (the files are not locked). ``on_head`` is called with each signed head
    (for example to queue it for a gateway); the head is durable first.
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        network: str,
        did: str,
        key_id: str,
        signing_key: SigningKey,
        stream: str,
        segment_size: int = 1024,
        segment_seconds: float = 60.0,
        keep_payloads: bool = True,
        on_head: Callable[[SignedHead], None] | None = None,
    ) -> None:
        if not 1 <= segment_size <= MAX_COUNT:
            raise InvalidArgument(f"a segment holds 1 to {MAX_COUNT} readings, not {segment_size}", field="segment_size")
        if segment_seconds <= 0:
            raise InvalidArgument("segment_seconds must be positive", field="segment_seconds")
        self.network = network
        self.did = validate_did(did)
        self.stream = check_stream(stream)
        self.key_id = key_id
        self._key = signing_key
        self.segment_size = segment_size
        self.segment_ms = int(segment_seconds * 1000)
        self.keep_payloads = keep_payloads
        self.on_head = on_head
        self.root = Path(store_dir)
        check_device(self.root, self.did, network)
        self.dir = self.root / self.stream
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store = SegmentStore(self.root)
        # Record bytes are prefix || u64 seq || u64 time || commitment: the prefix is computed once
        # (bytes-identical to encode_record; tests/data/test_recorder.py holds that).
        self._prefix = encode_record(self.did, self.stream, 0, 0, ZERO_HASH)[:-48]
        self._file: BinaryIO | None = None
        self._set_secret(b"")
        self._leaf_state = hashlib.sha256(b"\x00" + self._prefix)
        self._commit_state = hashlib.sha256(COMMIT_CONTEXT + _SALT_LEN)
        self._leaves: list[bytes] = []
        self._buf: list[bytes] = []
        self._opened_at = 0
        heads = self.store.heads(self.stream)
        self._next = heads[-1].head.end if heads else 0
        self._prev = heads[-1].hash if heads else ZERO_HASH
        self._recover()

    # -- state -----------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The sequence number the next reading gets."""
        return self._next

    @property
    def open_count(self) -> int:
        """Readings in the open segment (not yet covered by a signed head)."""
        return len(self._leaves)

    def _recover(self) -> None:
        """Finish what a crash interrupted: sign closed segments without a head, reopen the open segment."""
        closed = sorted(p for p in self.dir.glob("seg-*.log"))
        for path in closed:
            seg = parse_segment(path)
            if seg is None or seg.first < self._next:
                continue  # signed already (or an empty file a crash left before its header)
            if seg.first != self._next or seg.head is None:
                raise DataStoreInvalid(f"{path} does not continue the stream's signed heads (next sequence number {self._next})")
            self._sign(seg.head)
        open_path = self.dir / OPEN
        seg = parse_segment(open_path)
        if seg is None or seg.first < self._next:
            # Nothing reached the disk, or a stale file of readings a signed head already covers.
            open_path.unlink(missing_ok=True)
            return
        if seg.first != self._next:
            raise DataStoreInvalid(f"{open_path} starts at {seg.first}; the stream's next sequence number is {self._next}")
        if seg.head is not None:  # closed and fsync'd, not yet renamed: finish the close
            os.replace(open_path, self.dir / segment_name(seg.first))
            fsync_dir(self.dir)
            self._sign(seg.head)
            return
        # Reopen: readings that reached the disk keep their sequence numbers; later ones are lost.
        self._set_secret(seg.secret)
        self.keep_payloads = seg.keep_payloads
        # Rewritten whole (atomically) so that appends never follow a torn frame the reader would stop at.
        entries = [READING.pack(t, c) + (PLEN.pack(len(p or b"")) + (p or b"") if seg.keep_payloads else b"") for t, c, p in seg.readings]
        data = frame(b"S" + HEADER.pack(int(seg.keep_payloads), seg.first, seg.secret)) + (frame(b"R" + b"".join(entries)) if entries else b"")
        write_atomic(open_path, data)
        self._file = open(open_path, "ab")
        for i, (t, commit, _payload) in enumerate(seg.readings):
            if i == 0:
                self._opened_at = t
            rec = self._prefix + (self._next + i).to_bytes(8, "big") + t.to_bytes(8, "big") + commit
            self._leaves.append(hashlib.sha256(b"\x00" + rec).digest())
        self._next += len(seg.readings)

    # -- recording (the hot path) ----------------------------------------

    def record(self, payload: bytes, device_time_ms: int) -> int:
        """Record one reading; returns its sequence number. Closes the segment when it is full.

        Preconditions: ``payload`` is bytes; ``0 <= device_time_ms < 2^64``.
        """
        if self._file is None:
            self._open(device_time_ms)
        seq = self._next
        leaves = self._leaves
        at = SALT_BYTES * len(leaves)
        if at >= len(self._salts):  # a segment reopened longer than this recorder's segment size
            self._salts = salt_stream(self._secret, 2 * len(leaves) + 1)
        # Precomputed hash states copied per reading (cheaper than rehashing the fixed prefixes); the
        # bytes hashed are exactly salt_stream / commitment / the leaf of encode_record.
        c = self._commit_state.copy()
        c.update(self._salts[at : at + SALT_BYTES])
        c.update(payload)
        commit = c.digest()
        leaf = self._leaf_state.copy()
        leaf.update(_SEQ_TIME.pack(seq, device_time_ms))
        leaf.update(commit)
        leaves.append(leaf.digest())
        buf = self._buf
        buf.append(READING.pack(device_time_ms, commit))
        if self.keep_payloads:
            buf.append(PLEN.pack(len(payload)))
            buf.append(payload)
        self._next = seq + 1
        if len(leaves) % FLUSH_EVERY == 0:
            self._flush()
        if len(leaves) >= self.segment_size:
            self.close_segment(device_time_ms)
        return seq

    def _set_secret(self, secret: bytes) -> None:
        self._secret = secret
        self._salts = salt_stream(secret, self.segment_size) if secret else b""

    def _open(self, now_ms: int) -> None:
        self._set_secret(os.urandom(SECRET_BYTES))
        self._opened_at = now_ms
        self._file = open(self.dir / OPEN, "wb")
        self._file.write(frame(b"S" + HEADER.pack(int(self.keep_payloads), self._next, self._secret)))

    def _flush(self) -> None:
        if self._buf and self._file is not None:
            self._file.write(frame(b"R" + b"".join(self._buf)))
            self._file.flush()  # to the OS, not to the disk: no fsync per reading
            self._buf.clear()

    # -- closing ---------------------------------------------------------

    def maybe_close(self, now_ms: int) -> SignedHead | None:
        """Close the open segment if it has been open ``segment_seconds`` or longer at device time ``now_ms``."""
        if self._leaves and now_ms - self._opened_at >= self.segment_ms:
            return self.close_segment(now_ms)
        return None

    def close_segment(self, device_time_ms: int) -> SignedHead | None:
        """Close the open segment and sign its head (None when it holds no reading).

        The segment's records and secret are fsync'd, with the head bytes, before
        the head is signed; the signed head is appended to ``heads.log`` (fsync'd).
        """
        if not self._leaves or self._file is None:
            return None
        first = self._next - len(self._leaves)
        head = Head(self.did, self.key_id, self.stream, first, len(self._leaves), fast_root(self._leaves), self._prev, device_time_ms)
        self._flush()
        f = self._file
        f.write(frame(b"C" + head.encode()))
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._file = None
        os.replace(self.dir / OPEN, self.dir / segment_name(first))
        fsync_dir(self.dir)
        self._leaves = []
        self._set_secret(b"")
        return self._sign(head)

    def _sign(self, head: Head) -> SignedHead:
        if head.key_id != self.key_id:
            raise DataStoreInvalid(
                f"the segment of {self.stream} from {head.first} was closed under key {head.key_id} but never signed; "
                f"open the recorder with that key to sign it (it holds {self.key_id})"
            )
        signed = sign_head(head, self.network, self._key)
        # Not fsync'd: if a crash loses this line, the restart finds the closed segment without its head
        # and signs the same head bytes again (Ed25519 is deterministic): the very same signed head.
        append_durable(self.dir / HEADS, signed.raw, sync=False)
        self._prev = signed.hash
        self._next = max(self._next, head.end)
        if self.on_head is not None:
            self.on_head(signed)
        return signed

    def use_key(self, key_id: str, signing_key: SigningKey, device_time_ms: int) -> SignedHead | None:
        """Switch to a new current authentication key (after a rotation): the open segment is closed and
        signed with the old key first, since a head is signed by one key. Returns that head, if any.

        Precondition: the old key is still current on the ledger when the head reaches it (a head signed by
        a rotated-out key is refused KEY_ROTATED), so rotate after the last head under the old key is anchored,
        or accept that its readings are lost.
        """
        head = self.close_segment(device_time_ms)
        self.key_id = key_id
        self._key = signing_key
        return head

    def close(self, device_time_ms: int | None = None) -> SignedHead | None:
        """Stop recording: with ``device_time_ms``, close and sign the open segment; else flush it to the OS only
        (it is reopened by the next recorder of this stream)."""
        if device_time_ms is not None:
            return self.close_segment(device_time_ms)
        self._flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        return None

    def pending_heads(self) -> list[SignedHead]:
        """This stream's signed heads not yet known to be anchored, in order."""
        return self.store.pending_heads(self.stream)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["FLUSH_EVERY", "Recorder", "SegmentStore", "fast_root"]
