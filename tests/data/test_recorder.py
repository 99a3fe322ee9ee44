"""The device recorder (didnode.data.recorder): records, segments, signed heads, restarts, proofs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from didnode.core.data.heads import ZERO_HASH, decode_signed_head, segment_root, verify_head
from didnode.core.data.records import commitment, decode_record, derive_salt, encode_record
from didnode.core.merkle.proof_verify import root_from_inclusion_proof
from didnode.data import Recorder, SegmentStore
from didnode.data.recorder import fast_root
from didnode.data.store import HEADS, OPEN, read_frames
from didnode.errors import DataStoreInvalid, InvalidArgument, UnknownAnchor
from tests.factory import NET, new_create

T0 = 1_700_000_000_000


@pytest.fixture
def ident():  # type: ignore[no-untyped-def]
    return new_create()[0]


def recorder(path: Path, ident, **kw) -> Recorder:  # type: ignore[no-untyped-def]
    return Recorder(path, NET, ident.did, ident.current, ident.key, "temp", **{"segment_size": 4, **kw})


def test_segments_close_at_size_and_chain(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    heads = []
    r = recorder(tmp_path, ident, on_head=heads.append)
    seqs = [r.record(f'{{"t":{i}}}'.encode(), T0 + i) for i in range(10)]
    assert seqs == list(range(10))
    assert [(h.head.first, h.head.count) for h in heads] == [(0, 4), (4, 4)]
    assert heads[0].head.prev == ZERO_HASH and heads[1].head.prev == heads[0].hash
    for h in heads:
        verify_head(decode_signed_head(h.raw), NET, bytes(ident.key.verify_key))
    assert r.open_count == 2
    last = r.close_segment(T0 + 99)
    assert last is not None and (last.head.first, last.head.count, last.head.close_time) == (8, 2, T0 + 99)
    assert r.close_segment(T0 + 100) is None  # nothing open
    assert heads[-1] == last and [h.hash for h in r.pending_heads()] == [h.hash for h in heads]


def test_records_are_the_core_codec_and_the_root_is_rfc6962(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    r = recorder(tmp_path, ident, segment_size=7)
    payloads = [f"reading {i}".encode() for i in range(7)]
    for i, p in enumerate(payloads):
        r.record(p, T0 + i)
    (signed,) = r.pending_heads()
    store = SegmentStore(tmp_path)
    leaves = []
    for seq in range(7):
        proof = store.reading_proof("temp", seq)
        rec = decode_record(proof.record)
        assert proof.payload == payloads[seq] and rec.commitment == commitment(proof.salt, payloads[seq])
        assert proof.record == encode_record(ident.did, "temp", seq, T0 + seq, rec.commitment)
        leaf = hashlib.sha256(b"\x00" + proof.record).digest()
        leaves.append(leaf)
        assert root_from_inclusion_proof(leaf, seq, 7, list(proof.proof)) == signed.head.root
        assert proof.signed_head == signed.raw
    assert segment_root(leaves) == signed.head.root
    for n in range(1, 40):
        ls = [hashlib.sha256(bytes([i])).digest() for i in range(n)]
        assert fast_root(ls) == segment_root(ls)


def test_salts_come_from_the_segment_secret_and_payloads_can_be_withheld(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    r = recorder(tmp_path, ident, keep_payloads=False)
    for i in range(4):
        r.record(b"same", T0)
    store = SegmentStore(tmp_path)
    proofs = [store.reading_proof("temp", s) for s in range(4)]
    assert all(p.payload is None for p in proofs)
    assert len({decode_record(p.record).commitment for p in proofs}) == 4  # equal payloads, different commitments
    assert len({p.salt for p in proofs}) == 4
    with pytest.raises(UnknownAnchor):
        store.reading_proof("temp", 4)


def test_restart_resumes_the_stream_without_reusing_a_sequence_number(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    r = recorder(tmp_path, ident)
    for i in range(6):
        r.record(b"x", T0 + i)
    r.close()  # open segment (4, 5) flushed, not signed
    r2 = recorder(tmp_path, ident)
    assert (r2.next_seq, r2.open_count) == (6, 2)
    assert r2.record(b"y", T0 + 6) == 6
    assert r2.record(b"y", T0 + 7) == 7  # closes 4..7
    heads = SegmentStore(tmp_path).heads("temp")
    assert [(h.head.first, h.head.count) for h in heads] == [(0, 4), (4, 4)]
    assert SegmentStore(tmp_path).reading_proof("temp", 5).payload == b"x"


def test_power_loss_of_the_open_segment_loses_readings_never_signed_seqs(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    r = recorder(tmp_path, ident)
    for i in range(6):
        r.record(b"x", T0 + i)
    r.close()
    (tmp_path / "temp" / OPEN).write_bytes((tmp_path / "temp" / OPEN).read_bytes()[:-7])  # torn tail
    r2 = recorder(tmp_path, ident)
    assert r2.next_seq == 4 and r2.open_count == 0  # the unsigned readings are gone, the signed ones stay
    assert r2.record(b"z", T0) == 4


def test_crash_between_closing_and_signing_re_signs_the_same_head(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    r = recorder(tmp_path, ident)
    for i in range(8):
        r.record(b"x", T0 + i)
    heads_path = tmp_path / "temp" / HEADS
    signed = read_frames(heads_path)
    # The head of segment 4..7 never reached heads.log (crash after the segment's fsync and rename).
    data = heads_path.read_bytes()
    heads_path.write_bytes(data[: len(data) - 8 - len(signed[-1])])
    r2 = recorder(tmp_path, ident)
    assert read_frames(heads_path) == signed  # byte for byte: Ed25519 is deterministic, no second head
    assert r2.next_seq == 8


def test_a_new_key_closes_the_open_segment_first(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    from nacl.signing import SigningKey

    r = recorder(tmp_path, ident)
    r.record(b"a", T0)
    new = SigningKey.generate()
    old_head = r.use_key("key-2", new, T0 + 1)
    assert old_head is not None and old_head.head.key_id == ident.current
    r.record(b"b", T0 + 2)
    h = r.close_segment(T0 + 3)
    assert h is not None and h.head.key_id == "key-2" and h.head.prev == old_head.hash
    verify_head(h, NET, bytes(new.verify_key))


def test_time_closes_a_segment(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    r = recorder(tmp_path, ident, segment_size=100, segment_seconds=1)
    r.record(b"a", T0)
    assert r.maybe_close(T0 + 999) is None
    h = r.maybe_close(T0 + 1000)
    assert h is not None and h.head.count == 1


def test_bad_inputs_are_typed_errors(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument):
        recorder(tmp_path, ident, segment_size=0)
    recorder(tmp_path, ident).close()
    other = new_create()[0]
    with pytest.raises(DataStoreInvalid):
        recorder(tmp_path, other)  # the store belongs to another device
    (tmp_path / "temp" / HEADS).write_bytes(b"\x00\x00\x00\x05\x00\x00\x00\x00garbage-but-valid-crc?")
    # a frame whose CRC does not match is a torn tail (dropped), not an error
    assert SegmentStore(tmp_path).heads("temp") == []


def test_salt_matches_core(tmp_path: Path, ident) -> None:  # type: ignore[no-untyped-def]
    r = recorder(tmp_path, ident, segment_size=1)
    r.record(b"p", T0)
    seg_secret_salt = SegmentStore(tmp_path).reading_proof("temp", 0).salt
    assert len(seg_secret_salt) == 16
    from didnode.data.store import parse_segment, segment_name

    seg = parse_segment(tmp_path / "temp" / segment_name(0))
    assert seg is not None and derive_salt(seg.secret, 0) == seg_secret_salt
