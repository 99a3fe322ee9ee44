"""The device's segment store: its streams' readings, segment secrets and signed heads, on disk (docs/data.md).

One directory per device (``store_dir``), one subdirectory per stream::

    device.json             {"did": ..., "network": ...}: a store never mixes devices
    <stream>/open.log       the open segment (appended without fsync: see below)
    <stream>/seg-<first>.log  a closed segment (fsync'd before its head is signed)
    <stream>/heads.log      the stream's signed heads, in order (fsync'd)
    <stream>/anchored.log   (head hash, ledger position) of the heads anchored (fsync'd)

A segment log is a sequence of *frames*: ``u32 length, u32 CRC-32 of the
body, body``. A torn last frame (a crash while appending) is dropped on
reading; anything else that does not parse is :class:`DataStoreInvalid`.
Frame bodies (big-endian):

* ``S`` (first frame): u8 payloads kept (0/1), u64 first sequence number, 32-byte segment secret;
* ``R`` (a chunk of readings, in sequence order): per reading u64 device
  time (ms), 32-byte commitment, and when payloads are kept u32 length + payload;
* ``C`` (last frame, written when the segment closes): the head bytes (unsigned).

``heads.log`` frames hold signed heads; ``anchored.log`` frames 32-byte head
hash + u64 position. Durability: readings of the open segment are buffered
and written without fsync (a power loss may lose readings not yet in a
closed segment); a segment is fsync'd with its ``C`` frame and renamed to
``seg-<first>.log`` before its head is signed, so a restart re-signs the
very same head bytes (Ed25519 is deterministic) and never signs a different
head for the same sequence numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from didnode.core.data.heads import Head, SignedHead, decode_signed_head, reading_proof, segment_tree
from didnode.core.data.reading import ReadingProof
from didnode.core.data.records import check_stream, derive_salt, encode_record
from didnode.errors import DataStoreInvalid, DidnodeError, UnknownAnchor
from didnode.fileio import fsync_dir, write_atomic

FRAME = struct.Struct(">II")
HEADER = struct.Struct(">BQ32s")
READING = struct.Struct(">Q32s")
PLEN = struct.Struct(">I")
ANCHORED = struct.Struct(">32sQ")
OPEN = "open.log"
HEADS = "heads.log"
ANCHORED_LOG = "anchored.log"


def frame(body: bytes) -> bytes:
    """One frame around ``body``."""
    return FRAME.pack(len(body), zlib.crc32(body)) + body


def read_frames(path: Path) -> list[bytes]:
    """The bodies of the frames of ``path`` (a torn or garbled last frame dropped; missing file: none)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DataStoreInvalid(f"cannot read {path}: {exc.strerror}") from None
    out, o = [], 0
    while o + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, o)
        body = data[o + FRAME.size : o + FRAME.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break  # a crash while appending: only the tail can be torn
        out.append(body)
        o += FRAME.size + length
    return out


def append_durable(path: Path, body: bytes, *, sync: bool = True) -> None:
    """Append one frame to ``path`` and fsync it (the file and, when new, its directory); ``sync=False``
    hands it to the OS only (for what a restart can rebuild, such as a re-signable head)."""
    new = not path.exists()
    with open(path, "ab") as f:
        f.write(frame(body))
        f.flush()
        if sync:
            os.fsync(f.fileno())
    if new and sync:
        fsync_dir(path.parent)


@dataclass(slots=True)
class Segment:
    """A segment log as read back: its first seq, secret, readings (device time, commitment, payload) and head."""

    first: int
    secret: bytes
    keep_payloads: bool
    readings: list[tuple[int, bytes, bytes | None]]
    head: Head | None  # the C frame's head, when the segment was closed


def parse_segment(path: Path) -> Segment | None:
    """Read a segment log; None when even its first frame is missing (a segment that never reached the disk)."""
    frames = read_frames(path)
    if not frames:
        return None
    first_frame = frames[0]
    if first_frame[:1] != b"S" or len(first_frame) != 1 + HEADER.size:
        raise DataStoreInvalid(f"{path} does not start with a segment header")
    keep, first, secret = HEADER.unpack_from(first_frame, 1)
    seg = Segment(first, secret, bool(keep), [], None)
    for body in frames[1:]:
        kind = body[:1]
        if seg.head is not None:
            raise DataStoreInvalid(f"{path} has frames after its close frame")
        if kind == b"R":
            _parse_readings(path, body, seg)
        elif kind == b"C":
            # The C frame holds unsigned head bytes: decode them with a placeholder signature.
            try:
                seg.head = decode_signed_head(body[1:] + bytes(64)).head
            except DidnodeError as exc:
                raise DataStoreInvalid(f"{path}: close frame: {exc}") from None
        else:
            raise DataStoreInvalid(f"{path} has a frame of unknown kind {kind!r}")
    return seg


def _parse_readings(path: Path, body: bytes, seg: Segment) -> None:
    o, n = 1, len(body)
    try:
        while o < n:
            t, commit = READING.unpack_from(body, o)
            o += READING.size
            payload = None
            if seg.keep_payloads:
                (plen,) = PLEN.unpack_from(body, o)
                payload = body[o + PLEN.size : o + PLEN.size + plen]
                if len(payload) != plen:
                    raise struct.error("payload runs past its frame")
                o += PLEN.size + plen
            seg.readings.append((t, commit, payload))
    except struct.error as exc:
        raise DataStoreInvalid(f"{path}: a readings frame does not parse: {exc}") from None


def segment_name(first: int) -> str:
    return f"seg-{first:016d}.log"


def check_device(store_dir: Path, did: str, network: str) -> None:
    """Create ``device.json`` for (did, network), or check that the store is that device's on that network."""
    path = store_dir / "device.json"
    want = {"did": did, "network": network}
    if not path.exists():
        store_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(want).encode())
        return
    try:
        have = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataStoreInvalid(f"{path} does not parse: {exc}") from None
    if have != want:
        raise DataStoreInvalid(f"{store_dir} is the store of {have.get('did')} on {have.get('network')!r}, not of {did} on {network!r}")


class SegmentStore:
    """Read side of a device's store: signed heads, what is anchored, and the proofs of readings.

    Shares its files with :class:`didnode.data.recorder.Recorder` (which writes them); safe to open
    while the recorder runs, as every file it reads is appended whole-frame and fsync'd, or renamed into place.
    """

    def __init__(self, store_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(store_dir)

    def streams(self) -> list[str]:
        """The streams this store holds, sorted."""
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir() if p.is_dir())

    def _stream_dir(self, stream: str) -> Path:
        return self.dir / check_stream(stream)

    def heads(self, stream: str) -> list[SignedHead]:
        """The stream's signed heads in sequence order (each continues the last; checked)."""
        out: list[SignedHead] = []
        path = self._stream_dir(stream) / HEADS
        for body in read_frames(path):
            try:
                signed = decode_signed_head(body)
            except DidnodeError as exc:
                raise DataStoreInvalid(f"{path}: {exc}") from None
            if out and (signed.head.first != out[-1].head.end or signed.head.prev != out[-1].hash):
                raise DataStoreInvalid(f"{path}: the head from {signed.head.first} does not continue the one before it")
            out.append(signed)
        return out

    def anchored(self, stream: str) -> dict[bytes, int]:
        """Head hash -> ledger position of the stream's heads known to be anchored."""
        out = {}
        for body in read_frames(self._stream_dir(stream) / ANCHORED_LOG):
            if len(body) == ANCHORED.size:
                h, pos = ANCHORED.unpack(body)
                out[h] = pos
        return out

    def pending_heads(self, stream: str | None = None) -> list[SignedHead]:
        """Signed heads not yet known to be anchored (of one stream, or of all), each stream in order."""
        out: list[SignedHead] = []
        for name in [stream] if stream is not None else self.streams():
            done = self.anchored(name)
            out.extend(h for h in self.heads(name) if h.hash not in done)
        return out

    def mark_anchored(self, head_hash: bytes, position: int) -> None:
        """Record that the head ``head_hash`` is anchored at ledger ``position`` (durable); unknown heads are refused."""
        for name in self.streams():
            if any(h.hash == head_hash for h in self.heads(name)):
                if head_hash not in self.anchored(name):
                    append_durable(self._stream_dir(name) / ANCHORED_LOG, ANCHORED.pack(head_hash, position))
                return
        raise DataStoreInvalid(f"no stream of {self.dir} holds the head {head_hash.hex()}")

    def reading_proof(self, stream: str, seq: int, with_payload: bool = True) -> ReadingProof:
        """The device's half of a receipt for reading ``seq`` of ``stream``: record, salt, payload (when kept and
        asked for), index, Merkle proof and the signed head. Raises :class:`UnknownAnchor` when no signed head
        covers ``seq`` (the reading is in the open segment, or was never recorded)."""
        signed = next((h for h in self.heads(stream) if h.head.first <= seq < h.head.end), None)
        if signed is None:
            raise UnknownAnchor(f"no signed segment head of stream {stream} covers sequence number {seq} (yet)", seq=seq)
        head = signed.head
        path = self._stream_dir(stream) / segment_name(head.first)
        seg = parse_segment(path)
        if seg is None or seg.head != head or len(seg.readings) != head.count:
            raise DataStoreInvalid(f"{path} does not hold the segment its signed head covers")
        leaves = [encode_record(head.did, head.stream, head.first + i, t, c) for i, (t, c, _) in enumerate(seg.readings)]
        tree = segment_tree([hashlib.sha256(b"\x00" + r).digest() for r in leaves])
        index = seq - head.first
        payload = seg.readings[index][2] if with_payload else None
        salt = derive_salt(seg.secret, index)
        return ReadingProof(leaves[index], salt, payload, index, tuple(reading_proof(tree, index, head.count)), signed.raw)

    def iter_segments(self, stream: str) -> Iterator[tuple[SignedHead, Segment]]:
        """Each signed head of ``stream`` with its segment log (for exports and checks)."""
        for signed in self.heads(stream):
            seg = parse_segment(self._stream_dir(stream) / segment_name(signed.head.first))
            if seg is None:
                raise DataStoreInvalid(f"the segment from {signed.head.first} of {stream} is missing")
            yield signed, seg
