"""k of n witness cosignatures in the trust policy (issue #17, item 3), with each bad case and its reason.

Checkpoints are real (MemLog's trees), signed as notes by the node key and
cosigned by witness keys through didnode.core.cosignature; the policy names
witnesses by vkey and a witness threshold.
"""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from nacl.signing import SigningKey

from didnode.core import cosignature, note
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.tlog_checkpoint import add_signatures, default_origin, sign_with_note
from didnode.core.trust import TrustedLog, TrustPolicy
from didnode.core.trust import policy as policy_codec
from didnode.core.trust.policy import WitnessKey
from didnode.core.trust.witnessed import COSIGNATURE_MAX_SKEW_S
from didnode.errors import (
    BadCheckpointSignature,
    BadCosignature,
    CheckpointBelowThreshold,
    CosignatureTimeSkew,
    MalformedNote,
    ProofClaimMismatch,
    TrustPolicyInvalid,
    UntrustedCheckpointSigner,
)
from tests.core.trust.memlog import KEY, KID, T0, MemLog

WITNESS_KEYS = [SigningKey(hashlib.sha256(f"witness {i}".encode()).digest()) for i in range(4)]
WITNESSES = [WitnessKey(f"witness{i}.example/w", bytes(k.verify_key)) for i, k in enumerate(WITNESS_KEYS)]
UNKNOWN = SigningKey(b"\x09" * 32)


@pytest.fixture(scope="module")
def log() -> MemLog:
    m = MemLog()
    m.grow(6)
    return m


def now(size: int) -> int:
    return T0 + size + 10


def policy(log: MemLog, k: int = 2, n: int = 3, origin: str | None = None) -> TrustPolicy:
    base = log.policy()
    return TrustPolicy.create(base.network, base.genesis, base.keys, 1, base.max_staleness_ms, None, origin, WITNESSES[:n], k)


def noted(log: MemLog, size: int, origin: str | None = None) -> SignedCheckpoint:
    cp = log.checkpoint(size).checkpoint
    return sign_with_note(cp, KEY, KID, origin or default_origin(log.network))


def cosigned(signed: SignedCheckpoint, *witnesses: int, at_s: int | None = None) -> SignedCheckpoint:
    text = note.parse(signed.note).text
    t = (signed.checkpoint.time_ms // 1000) if at_s is None else at_s
    return add_signatures(signed, *(cosignature.cosign(text, WITNESSES[i].name, WITNESS_KEYS[i], t) for i in witnesses))


def accept(log: MemLog, p: TrustPolicy, signed: SignedCheckpoint, size: int = 4) -> TrustedLog:
    trusted = TrustedLog(p)
    trusted.accept(signed, log.consistency(1, size), 1, now(size))
    return trusted


def test_k_of_n_accepted_and_remembered_with_its_note(log: MemLog) -> None:
    signed = cosigned(noted(log, 4), 0, 2)
    trusted = accept(log, policy(log), signed)
    assert trusted.policy.latest == signed and trusted.signatures_checked == 3
    # the policy (with the note in latestCheckpoint) round-trips through its file form
    again = policy_codec.loads(trusted.policy.dumps())
    assert again == trusted.policy and again.latest is not None and again.latest.note == signed.note


def test_verified_notes_are_cached(log: MemLog) -> None:
    signed = cosigned(noted(log, 4), 0, 1, 2)
    trusted = accept(log, policy(log), signed)
    checked = trusted.signatures_checked
    for _ in range(5):
        trusted.accept(signed, (), 4, now(4))
    assert trusted.signatures_checked == checked == 4


def test_below_threshold(log: MemLog) -> None:
    with pytest.raises(CheckpointBelowThreshold) as exc:
        accept(log, policy(log), cosigned(noted(log, 4), 1))
    assert exc.value.details == {"valid": "1", "threshold": "2", "kind": "witness"}


def test_one_key_twice_counts_once(log: MemLog) -> None:
    signed = cosigned(noted(log, 4), 1)
    twice = cosigned(signed, 1, at_s=signed.checkpoint.time_ms // 1000 + 1)  # a second, different, valid cosignature
    assert len(note.parse(twice.note).signatures) == 3
    with pytest.raises(CheckpointBelowThreshold):
        accept(log, policy(log), twice)


def test_unknown_key_cosignature_is_ignored(log: MemLog) -> None:
    signed = cosigned(noted(log, 4), 0)
    text = note.parse(signed.note).text
    stranger = cosignature.cosign(text, "stranger.example/w", UNKNOWN, 1)
    # same name as a trusted witness, another key: another key ID, so unknown too (neither counts nor fails)
    impostor = cosignature.cosign(text, WITNESSES[1].name, UNKNOWN, 1)
    with pytest.raises(CheckpointBelowThreshold):
        accept(log, policy(log), add_signatures(signed, stranger, impostor))
    accept(log, policy(log), add_signatures(cosigned(signed, 2), stranger, impostor))


def test_bad_cosignature_from_a_trusted_key_rejects_the_note(log: MemLog) -> None:
    signed = cosigned(noted(log, 4), 0, 1)
    good = note.parse(signed.note).signatures[-1]
    forged = note.NoteSignature(good.name, good.key_hash, good.signature[:-1] + bytes([good.signature[-1] ^ 1]))
    with pytest.raises(BadCosignature):
        accept(log, policy(log), add_signatures(cosigned(noted(log, 4), 0, 2), forged))  # 2 valid + 1 bad: still refused


def test_cosignature_of_another_checkpoint_does_not_count(log: MemLog) -> None:
    other = cosigned(noted(log, 5), 0, 1)
    sigs = note.parse(other.note).signatures[1:]
    with pytest.raises(BadCosignature):
        accept(log, policy(log), add_signatures(noted(log, 4), *sigs))


def test_skew_bound(log: MemLog) -> None:
    signed = noted(log, 4)
    at = now(4) // 1000
    accept(log, policy(log), cosigned(signed, 0, 1, at_s=at + COSIGNATURE_MAX_SKEW_S))
    with pytest.raises(CosignatureTimeSkew):
        accept(log, policy(log), cosigned(signed, 0, 1, at_s=at + COSIGNATURE_MAX_SKEW_S + 1))


def test_log_signature_required_and_checked(log: MemLog) -> None:
    signed = cosigned(noted(log, 4), 0, 1)
    n = note.parse(signed.note)
    without_log = SignedCheckpoint(signed.checkpoint, signed.kid, signed.signature, note.Note(n.text, n.signatures[1:]).encode())
    with pytest.raises(UntrustedCheckpointSigner):
        accept(log, policy(log), without_log)
    log_sig = n.signatures[0]
    bad = note.NoteSignature(log_sig.name, log_sig.key_hash, bytes(64))
    with pytest.raises(BadCheckpointSignature):
        accept(log, policy(log), SignedCheckpoint(signed.checkpoint, signed.kid, signed.signature, note.Note(n.text, (bad, *n.signatures[1:])).encode()))


def test_note_must_state_the_fields_and_the_origin(log: MemLog) -> None:
    signed = cosigned(noted(log, 4), 0, 1)
    mixed = SignedCheckpoint(log.checkpoint(5).checkpoint, signed.kid, log.checkpoint(5).signature, signed.note)
    with pytest.raises(ProofClaimMismatch):
        accept(log, policy(log), mixed, size=5)
    elsewhere = cosigned(noted(log, 4, origin="other.example/log"), 0, 1)
    with pytest.raises(ProofClaimMismatch):
        accept(log, policy(log), elsewhere)
    accept(log, policy(log, origin="other.example/log"), elsewhere)


def test_old_format_refused_only_when_witnesses_are_required(log: MemLog) -> None:
    old = log.checkpoint(4)
    with pytest.raises(CheckpointBelowThreshold):
        accept(log, policy(log), old)
    accept(log, log.policy(), old)  # no witnesses: old bundles in the field keep verifying
    accept(log, log.policy(), noted(log, 4))  # and a note without cosignatures too


@pytest.mark.parametrize("garbage", [b"x", b"\n", "\u2014 broken\n".encode()])
def test_trailing_garbage_or_malformed_line_in_note(log: MemLog, garbage: bytes) -> None:
    signed = cosigned(noted(log, 4), 0, 1)
    with pytest.raises(MalformedNote):
        accept(log, policy(log), SignedCheckpoint(signed.checkpoint, signed.kid, signed.signature, signed.note + garbage))


def test_policy_file_members(log: MemLog) -> None:
    p = policy(log, 2, 3, origin="ledger.example/main")
    d = p.to_json()
    assert d["witnesses"] == [w.vkey for w in WITNESSES[:3]] and d["witnessThreshold"] == 2 and d["origin"] == "ledger.example/main"
    assert policy_codec.from_json(d) == p
    plain = log.policy().to_json()
    assert "witnesses" not in plain and "origin" not in plain  # old policies keep their exact form
    bad = [
        {**d, "witnessThreshold": 4},
        {**d, "witnessThreshold": 0},
        {**d, "witnessThreshold": True},
        {k: v for k, v in d.items() if k != "witnessThreshold"},
        {**d, "witnesses": [d["witnesses"][0]] * 2, "witnessThreshold": 1},
        {**d, "witnesses": [note.verifier_key("w.example", bytes(32), note.ED25519)], "witnessThreshold": 1},  # not type 0x04
        {**d, "witnesses": ["nonsense"], "witnessThreshold": 1},
        {**d, "witnesses": [], "witnessThreshold": 0},
        {**d, "origin": "has space"},
    ]
    for item in bad:
        with pytest.raises(TrustPolicyInvalid):
            policy_codec.loads(json.dumps(item))


def test_cosignature_timestamp_layout(log: MemLog) -> None:
    signed = cosigned(noted(log, 4), 0, at_s=1234)
    assert note.parse(signed.note).signatures[1].signature[:8] == struct.pack(">Q", 1234)
