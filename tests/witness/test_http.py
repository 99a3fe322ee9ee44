"""The standalone witness over real HTTP on loopback: c2sp.org/tlog-witness add-checkpoint, every status."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

from nacl.signing import SigningKey

from didnode.core import note as note_codec
from didnode.core.cosignature import verify_cosignature
from didnode.core.note import COSIGNATURE_V1
from didnode.core.tlog_checkpoint import TlogCheckpoint
from didnode.witness.request import encode_add_checkpoint
from tests.witness.conftest import Reply, RunningWitness, TestLog, start_witness


def _cosignature(w: RunningWitness, log: TestLog, size: int, reply: Reply) -> int:
    """Verify a 200 reply as a log would: appended to the checkpoint, one cosignature of the witness's vkey."""
    assert reply.status == 200, reply.body
    assert reply.body.startswith("\u2014 ".encode()) and reply.body.endswith(b"\n")
    name, kh, b64 = w.vkey.split("+", 2)  # the vkey's base64 may hold "+": split at the first two only
    raw = base64.b64decode(b64)
    sig_type, public_key = raw[0], raw[1:]
    assert sig_type == COSIGNATURE_V1 and bytes.fromhex(kh) == note_codec.key_hash(name, COSIGNATURE_V1, public_key)
    note = note_codec.parse(log.note(size) + reply.body)
    cosigs = [s for s in note.signatures if s.name == name]
    assert len(cosigs) == 1
    return verify_cosignature(log.body(size), cosigs[0], public_key, name)


def _evidence(w: RunningWitness, log: TestLog) -> list[dict[str, object]]:
    d = w.data_dir / "evidence" / hashlib.sha256(log.origin.encode()).hexdigest()
    return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] if d.exists() else []


def test_honest_sequence_is_cosigned(witness: RunningWitness, log: TestLog) -> None:
    log.grow(1)
    assert _cosignature(witness, log, 1, witness.post(log.request(0))) > 1_600_000_000
    old = 1
    for n in (1, 2, 5, 1, 13):
        log.grow(n)
        _cosignature(witness, log, len(log.leaves), witness.post(log.request(old)))
        old = len(log.leaves)
    # the same checkpoint again (old = size): cosigned again
    _cosignature(witness, log, old, witness.post(log.request(old)))
    # monitor retrieval: the latest note, with the log's signature and the witness's cosignature
    reply = witness.get(f"/{hashlib.sha256(log.origin.encode()).hexdigest()}/checkpoint")
    assert reply.status == 200
    note = note_codec.parse(reply.body)
    assert note.text == log.body()
    assert {s.name for s in note.signatures} == {log.origin, "witness.test/w1"}
    assert witness.get(f"/{'0' * 64}/checkpoint").status == 404
    assert _evidence(witness, log) == []
    key = witness.data_dir / "witness.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_stale_old_size_is_409_with_the_held_size(witness: RunningWitness, log: TestLog) -> None:
    log.grow(4)
    _cosignature(witness, log, 4, witness.post(log.request(0)))
    log.grow(3)
    for old in (0, 3, 5):
        reply = witness.post(encode_add_checkpoint(old, log.proof(old) if old else [], log.note()))
        assert (reply.status, reply.content_type, reply.body) == (409, "text/x.tlog.size", b"4\n")
    _cosignature(witness, log, 7, witness.post(log.request(4)))
    assert _evidence(witness, log) == []  # a stale client is not evidence


def test_rollback_is_refused_and_kept_as_evidence(witness: RunningWitness, log: TestLog) -> None:
    log.grow(8)
    _cosignature(witness, log, 8, witness.post(log.request(0)))
    reply = witness.post(log.request(3, 5))  # a validly signed checkpoint of size 5 < 8
    assert (reply.status, reply.content_type, reply.body) == (409, "text/x.tlog.size", b"8\n")
    reply = witness.post(encode_add_checkpoint(8, [], log.note(5)))  # old above the size: 400, still evidence
    assert reply.status == 400
    ev = _evidence(witness, log)
    assert [e["kind"] for e in ev] == ["rollback"]  # one file per pair of notes, however offered
    held = note_codec.parse(str(ev[0]["held"]).encode())
    assert held.text == log.body(8) and len(held.signatures) == 2  # the log's signature and the cosignature
    assert ev[0]["offered"] == log.note(5).decode()
    fork = log.fork(4)
    fork.grow(1, b"other")
    assert witness.post(fork.request(3)).status == 409
    assert [e["kind"] for e in _evidence(witness, log)] == ["rollback", "rollback"]
    _cosignature(witness, log, 8, witness.post(log.request(8)))  # the witness still holds 8


def test_fork_of_the_same_size_is_422_with_evidence(witness: RunningWitness, log: TestLog) -> None:
    log.grow(6)
    _cosignature(witness, log, 6, witness.post(log.request(0)))
    fork = log.fork(4)
    fork.grow(2, b"other")
    reply = witness.post(fork.request(6))
    assert reply.status == 422
    assert b"INCONSISTENT_CHECKPOINT" in reply.body
    reply = witness.post(fork.request(2))  # the same fork with a stale old size: 409, evidence too
    assert (reply.status, reply.body) == (409, b"6\n")
    ev = _evidence(witness, log)
    assert [e["kind"] for e in ev] == ["fork"]  # the same pair of notes: one file
    held = note_codec.parse(str(ev[0]["held"]).encode())
    assert held.text == log.body(6)
    assert note_codec.parse(str(ev[0]["offered"]).encode()).text == fork.body(6)


def test_larger_fork_fails_its_proof_with_evidence(witness: RunningWitness, log: TestLog) -> None:
    log.grow(6)
    _cosignature(witness, log, 6, witness.post(log.request(0)))
    fork = log.fork(5)
    fork.grow(5, b"other")  # size 10, not an extension of the held 6
    reply = witness.post(encode_add_checkpoint(6, fork.proof(6), fork.note()))
    assert reply.status == 422 and b"ROOT_MISMATCH" in reply.body
    ev = _evidence(witness, log)
    assert [e["kind"] for e in ev] == ["inconsistent"]
    assert ev[0]["old"] == 6 and len(ev[0]["proof"]) == len(fork.proof(6))  # type: ignore[arg-type]
    log.grow(4)
    _cosignature(witness, log, 10, witness.post(log.request(6)))  # the honest log goes on


def test_bad_consistency_proofs_are_422(witness: RunningWitness, log: TestLog) -> None:
    log.grow(5)
    _cosignature(witness, log, 5, witness.post(log.request(0)))
    log.grow(6)
    good = log.proof(5)
    flipped = [bytes([good[0][0] ^ 1]) + good[0][1:], *good[1:]]
    for proof, reason in ((flipped, b"ROOT_MISMATCH"), (good[:-1], b"MALFORMED_PROOF"), ([*good, good[0]], b"MALFORMED_PROOF")):
        reply = witness.post(encode_add_checkpoint(5, proof, log.note()))
        assert reply.status == 422 and reason in reply.body, reply.body
    # a proof from size 0, and a proof when old = size
    other = TestLog(key=log.key)
    other.origin = "example.org/second"
    w2 = start_witness(witness.data_dir.parent / "w2", [f"{other.origin}={other.vkey}"])
    try:
        other.grow(3)
        assert w2.post(encode_add_checkpoint(0, [b"\x00" * 32], other.note())).status == 422
        assert w2.post(encode_add_checkpoint(0, [], other.note())).status == 200
        assert w2.post(encode_add_checkpoint(3, [b"\x00" * 32], other.note())).status == 422
        # a size-0 checkpoint must have the empty root
        text = TlogCheckpoint(other.origin, 0, b"\x01" * 32, ()).body()
        bad = note_codec.Note(text, (note_codec.sign_ed25519(text, other.origin, other.key),)).encode()
        assert w2.post(encode_add_checkpoint(0, [], bad)).status == 422
    finally:
        w2.stop()
    _cosignature(witness, log, 11, witness.post(encode_add_checkpoint(5, good, log.note())))


def test_unknown_origin_is_404(witness: RunningWitness, log: TestLog) -> None:
    stranger = TestLog(origin="example.org/unknown")
    stranger.grow(2)
    reply = witness.post(stranger.request(0))
    assert reply.status == 404 and b"UNKNOWN_LOG_ORIGIN" in reply.body


def test_bad_log_signatures_are_403(witness: RunningWitness, log: TestLog) -> None:
    log.grow(3)
    # signed by another key under the log's name: no trusted signature (the key ID differs)
    assert witness.post(encode_add_checkpoint(0, [], log.note(key=SigningKey(b"\x22" * 32)))).status == 403
    # the trusted key's name and ID, but a signature that does not verify
    text = log.body()
    sig = note_codec.sign_ed25519(text, log.origin, log.key)
    broken = note_codec.NoteSignature(sig.name, sig.key_hash, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    assert witness.post(encode_add_checkpoint(0, [], note_codec.Note(text, (broken,)).encode())).status == 403
    # a valid signature next to a bad one of the same key: still 403
    both = note_codec.Note(text, (sig, broken)).encode()
    assert witness.post(encode_add_checkpoint(0, [], both)).status == 403
    # another key's signature is ignored next to a valid one
    other = note_codec.sign_ed25519(text, "someone.else/key", SigningKey(b"\x33" * 32))
    reply = witness.post(encode_add_checkpoint(0, [], note_codec.Note(text, (other, sig)).encode()))
    _cosignature(witness, log, 3, reply)
    assert _evidence(witness, log) == []


def test_malformed_requests_are_400(witness: RunningWitness, log: TestLog) -> None:
    log.grow(2)
    note = log.note()
    bodies = [
        b"",
        b"old 0\n",
        b"old 0\n" + note,  # no empty line
        b"old 00\n\n" + note,
        b"old -1\n\n" + note,
        b"old 1 \n\n" + note,
        b"new 0\n\n" + note,
        b"old 0\nnot base64\n\n" + note,
        b"old 0\n" + b"AAAA\n" + b"\n" + note,  # not 32 bytes
        b"old 0\n" + b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" * 64 + b"\n" + note,  # 64 lines
        b"old 0\n\n",
        b"old 0\n\n" + note + b"garbage",
        b"old 0\n\n" + note.replace(b"\n\n", b"\n"),
        b"old 3\n\n" + note,  # old above the size
        b"old 0\n\n" + b"\xff" + note,
    ]
    for body in bodies:
        reply = witness.post(body)
        assert reply.status == 400, (body[:40], reply.status, reply.body)
        assert b"WITNESS_REQUEST_MALFORMED" in reply.body
    assert witness.post(b"old 0\n\n" + b"x" * (70 * 1024)).status == 413
    assert witness.get("/add-checkpoint").status == 405
    _cosignature(witness, log, 2, witness.post(log.request(0)))  # still serving, nothing held from the above


def test_two_keys_for_one_origin_and_two_logs(tmp_path: Path) -> None:
    a, b = TestLog(), TestLog(origin="example.org/b", key=SigningKey(b"\x45" * 32))
    rotated = SigningKey(b"\x55" * 32)
    rotated_vkey = note_codec.verifier_key(a.origin, bytes(rotated.verify_key))
    w = start_witness(tmp_path / "w", [f"{a.origin}={a.vkey}", f"{a.origin}={rotated_vkey}", f"{b.origin}={b.vkey}"])
    try:
        a.grow(2)
        b.grow(3)
        _cosignature(w, a, 2, w.post(a.request(0)))
        _cosignature(w, b, 3, w.post(b.request(0)))
        a.grow(1)
        _cosignature(w, a, 3, w.post(encode_add_checkpoint(2, a.proof(2), a.note(key=rotated))))
    finally:
        w.stop()


def test_concurrent_adds_never_both_pass(witness: RunningWitness, log: TestLog) -> None:
    """Many requests from old size 0 at once: exactly one is cosigned, the others get 409."""
    from concurrent.futures import ThreadPoolExecutor

    log.grow(3)
    bodies = []
    for n in range(8):
        variant = log.fork(0)
        variant.grow(1 + n, b"v%d" % n)
        bodies.append(variant.request(0))
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(r.status for r in pool.map(witness.post, bodies))
    assert statuses.count(200) == 1 and all(s in (409, 422) for s in statuses if s != 200), statuses


def test_unusable_options_fail_at_start(tmp_path: Path, log: TestLog) -> None:
    import subprocess

    from tests.conftest import BIN, ROOT

    for extra, words in (
        (["--log", "no-equals-sign"], "ORIGIN=VKEY"),
        (["--log", f"{log.origin}=not-a-vkey"], "verifier key"),
        (["--log", f"{log.origin}={log.vkey}", "--http", "0.0.0.0:0"], "INSECURE_LISTEN"),
    ):
        proc = subprocess.run([str(BIN / "didnode"), "witness", "--data", str(tmp_path / "x"), "--name", "w.test/x", *extra], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "x" / "witness.key")  # nothing generated before the options are checked
