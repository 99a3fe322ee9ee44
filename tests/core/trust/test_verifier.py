"""TrustedLog.accept, pure: honest growth is accepted; each mutation (transparency-dev/merkle style) fails with its own reason.

Checkpoints are signed with :func:`didnode.core.checkpoint.sign` over real log
and state trees (:mod:`tests.core.trust.memlog`); the clock is passed in.
"""

from __future__ import annotations

import json

from dataclasses import replace
from typing import Callable

import pytest

from didnode.core.checkpoint import from_json, Checkpoint, SignedCheckpoint, sign
from didnode.core.trust import ProofBaseMoved, Signature, TrustedLog, TrustPolicy
from didnode.core.trust import verifier as verifier_mod
from didnode.errors import (
    BadCheckpointSignature,
    CheckpointBelowThreshold,
    GenesisMismatch,
    InvalidProof,
    LogFork,
    LogRollback,
    MalformedProof,
    ProofClaimMismatch,
    StaleCheckpoint,
    UntrustedCheckpointSigner,
)
from tests.core.trust.memlog import KEY, KID, T0, MemLog, signer

ATTACKER, ATTACKER_KID = signer("attacker")


@pytest.fixture(scope="module")
def log() -> MemLog:
    m = MemLog()
    m.grow(20)
    return m


def now(size: int) -> int:
    """A clock just after the checkpoint at ``size`` was signed (MemLog dates it T0 + size)."""
    return T0 + size + 10


def first(log: MemLog, size: int) -> tuple[TrustedLog, Checkpoint]:
    """A fresh TrustedLog that accepted the checkpoint at ``size`` (first contact, from the genesis)."""
    trusted = TrustedLog(log.policy())
    return trusted, trusted.accept(log.checkpoint(size), log.consistency(1, size), 1, now(size))


# -- honest ----------------------------------------------------------------------------------------


def test_honest_growth_is_accepted_and_latest_follows(log: MemLog) -> None:
    advanced: list[TrustPolicy] = []
    trusted = TrustedLog(log.policy(), on_advance=advanced.append)
    assert trusted.known_size == 1
    previous = 1
    for size in (1, 2, 3, 7, 8, 16, 20):
        cp = trusted.accept(log.checkpoint(size), log.consistency(previous, size), previous, now(size))
        assert cp == log.checkpoint(size).checkpoint
        assert trusted.known_size == size and trusted.policy.latest == log.checkpoint(size)
        previous = size
    assert [p.latest.tree_size for p in advanced if p.latest] == [1, 2, 3, 7, 8, 16, 20]
    assert advanced[-1] is trusted.policy


def test_first_contact_at_size_one_needs_no_proof(log: MemLog) -> None:
    trusted, cp = first(log, 1)
    assert cp.log_root == log.genesis


def test_a_resigned_checkpoint_of_the_same_size_is_accepted_and_is_the_newer_latest(log: MemLog) -> None:
    trusted, _ = first(log, 10)
    later = log.checkpoint(10, time_ms=T0 + 500)
    trusted.accept(later, (), 10, T0 + 510)
    assert trusted.policy.latest == later
    trusted.accept(log.checkpoint(10), (), 10, now(10))  # the earlier signature, still fresh: not a rollback
    assert trusted.policy.latest == later


def test_a_policy_with_a_latest_checkpoint_resumes_from_it(log: MemLog) -> None:
    trusted = TrustedLog(log.policy().with_latest(log.checkpoint(12)))
    assert trusted.known_size == 12
    trusted.accept(log.checkpoint(18), log.consistency(12, 18), 12, now(18))
    with pytest.raises(LogRollback):
        TrustedLog(log.policy().with_latest(log.checkpoint(12))).accept(log.checkpoint(9), (), 12, now(9))


# -- mutations: each its own reason ----------------------------------------------------------------


def _accept(trusted: TrustedLog, signed: SignedCheckpoint, proof: tuple[bytes, ...], proof_from: int, at: int) -> Callable[[], object]:
    return lambda: trusted.accept(signed, proof, proof_from, at)


def _resign(cp: Checkpoint, **changes: object) -> SignedCheckpoint:
    return sign(replace(cp, **changes), KEY, KID)  # type: ignore[arg-type]


MUTATIONS: dict[str, tuple[type[InvalidProof], Callable[[MemLog], Callable[[], object]]]] = {
    "untrusted signer": (
        UntrustedCheckpointSigner,
        lambda m: _accept(TrustedLog(m.policy()), m.checkpoint(8, key=ATTACKER, kid=ATTACKER_KID), m.consistency(1, 8), 1, now(8)),
    ),
    "trusted kid, another key's signature": (
        BadCheckpointSignature,
        lambda m: _accept(TrustedLog(m.policy()), m.checkpoint(8, key=ATTACKER, kid=KID), m.consistency(1, 8), 1, now(8)),
    ),
    "signature bit flipped": (
        BadCheckpointSignature,
        lambda m: _accept(
            TrustedLog(m.policy()),
            replace(m.checkpoint(8), signature=bytes([m.checkpoint(8).signature[0] ^ 1]) + m.checkpoint(8).signature[1:]),
            m.consistency(1, 8),
            1,
            now(8),
        ),
    ),
    "signature truncated": (
        BadCheckpointSignature,
        lambda m: _accept(TrustedLog(m.policy()), replace(m.checkpoint(8), signature=m.checkpoint(8).signature[:63]), m.consistency(1, 8), 1, now(8)),
    ),
    "signed field altered (time)": (
        BadCheckpointSignature,
        lambda m: _accept(
            TrustedLog(m.policy()),
            replace(m.checkpoint(8), checkpoint=replace(m.checkpoint(8).checkpoint, time_ms=T0 + 9)),
            m.consistency(1, 8),
            1,
            now(8),
        ),
    ),
    "wrong network": (
        ProofClaimMismatch,
        lambda m: _accept(TrustedLog(m.policy()), m.checkpoint(8, network="prod"), m.consistency(1, 8), 1, now(8)),
    ),
    "stale": (
        StaleCheckpoint,
        lambda m: _accept(TrustedLog(m.policy()), m.checkpoint(8), m.consistency(1, 8), 1, now(8) + 120_001),
    ),
    "future-dated": (
        StaleCheckpoint,
        lambda m: _accept(TrustedLog(m.policy()), m.checkpoint(8, time_ms=T0 + 3_600_000), m.consistency(1, 8), 1, now(8)),
    ),
    "rollback": (
        LogRollback,
        lambda m: _accept(first(m, 12)[0], m.checkpoint(9), (), 12, now(12)),
    ),
    "fork: same size, other log root": (
        LogFork,
        lambda m: _accept(first(m, 12)[0], _resign(m.checkpoint(12).checkpoint, log_root=b"\x07" * 32), (), 12, now(12)),
    ),
    "fork: same size, other state root": (
        LogFork,
        lambda m: _accept(first(m, 12)[0], _resign(m.checkpoint(12).checkpoint, state_root=b"\x07" * 32), (), 12, now(12)),
    ),
    "fork: consistency proof that does not prove": (
        LogFork,
        lambda m: _accept(first(m, 12)[0], _resign(m.checkpoint(15).checkpoint, log_root=m.root(16)), m.consistency(12, 15), 12, now(15)),
    ),
    "fork: a proof hash altered": (
        LogFork,
        lambda m: _accept(first(m, 12)[0], m.checkpoint(15), (b"\x00" * 32,) + m.consistency(12, 15)[1:], 12, now(15)),
    ),
    "fork: no proof at all": (
        LogFork,
        lambda m: _accept(first(m, 12)[0], m.checkpoint(15), (), 12, now(15)),
    ),
    "genesis mismatch: another first entry": (
        GenesisMismatch,
        lambda m: _accept(TrustedLog(replace(m.policy(), genesis=b"\x05" * 32)), m.checkpoint(8), m.consistency(1, 8), 1, now(8)),
    ),
    "genesis mismatch: a log of one other entry": (
        GenesisMismatch,
        lambda m: _accept(TrustedLog(replace(m.policy(), genesis=b"\x05" * 32)), m.checkpoint(1), (), 1, now(1)),
    ),
    "malformed checkpoint fields": (
        MalformedProof,
        lambda m: _accept(TrustedLog(m.policy()), replace(m.checkpoint(8), checkpoint=replace(m.checkpoint(8).checkpoint, log_root=b"\x00")), (), 1, now(8)),
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutation_is_refused_with_its_reason(log: MemLog, name: str) -> None:
    error, make = MUTATIONS[name]
    with pytest.raises(error) as e:
        make(log)()
    assert type(e.value) is error, f"{name}: {type(e.value).__name__}: {e.value}"


def test_a_refused_checkpoint_leaves_the_log_where_it_was(log: MemLog) -> None:
    trusted, _ = first(log, 12)
    before, checked = trusted.policy, trusted.signatures_checked
    refused = [
        lambda: trusted.accept(log.checkpoint(15), (), 12, now(15)),
        lambda: trusted.accept(log.checkpoint(9), (), 12, now(12)),
        lambda: trusted.accept(log.checkpoint(15), log.consistency(12, 15), 12, now(15) + 200_000),
        lambda: trusted.accept(log.checkpoint(15, key=ATTACKER, kid=ATTACKER_KID), log.consistency(12, 15), 12, now(15)),
        lambda: trusted.accept(replace(log.checkpoint(15), signature=bytes(64)), log.consistency(12, 15), 12, now(15)),
    ]
    for attempt in refused:
        with pytest.raises(InvalidProof):
            attempt()
    assert trusted.policy is before and trusted.known_size == 12
    # None of them was cached: the honest checkpoint of size 15 is verified in full.
    trusted.accept(log.checkpoint(15), log.consistency(12, 15), 12, now(15))
    assert trusted.signatures_checked > checked and trusted.known_size == 15


def test_rollback_and_fork_errors_name_both_checkpoints(log: MemLog) -> None:
    trusted, _ = first(log, 12)
    with pytest.raises(LogRollback) as e:
        trusted.accept(log.checkpoint(9), (), 12, now(12))
    assert e.value.details == {"size": "9", "verified_size": "12"}
    assert "size 9" in str(e.value) and "size 12" in str(e.value)
    with pytest.raises(LogFork) as f:
        trusted.accept(_resign(log.checkpoint(12).checkpoint, log_root=b"\x07" * 32), (), 12, now(12))
    assert str(f.value).count("size 12") == 2 and log.root(12).hex()[:16] in str(f.value)
    # both signed checkpoints travel with the error as evidence (JSON form, notes included)
    held, offered = (from_json(json.loads(f.value.details[k])) for k in ("held", "offered"))
    assert held == log.checkpoint(12) and offered.checkpoint.log_root == b"\x07" * 32
    with pytest.raises(LogFork) as g:
        trusted.accept(log.checkpoint(15), (), 12, now(15))
    assert {k: g.value.details[k] for k in ("size", "verified_size")} == {"size": "15", "verified_size": "12"}
    assert from_json(json.loads(g.value.details["held"])) == log.checkpoint(12)
    assert from_json(json.loads(g.value.details["offered"])) == log.checkpoint(15)


def test_untrusted_signer_and_threshold_errors_say_who_and_how_many(log: MemLog) -> None:
    with pytest.raises(UntrustedCheckpointSigner) as e:
        MUTATIONS["untrusted signer"][1](log)()
    assert e.value.details["kid"] == ATTACKER_KID
    k2, kid2 = signer("key-2")
    k3, kid3 = signer("key-3")
    trusted = TrustedLog(log.policy((KEY, KID), (k2, kid2), (k3, kid3), threshold=2))
    cp = log.checkpoint(8).checkpoint
    one = [Signature(KID, sign(cp, KEY, KID).signature)]
    with pytest.raises(CheckpointBelowThreshold) as t:
        trusted.accept_signatures(cp, one, log.consistency(1, 8), 1, now(8))
    assert t.value.details == {"valid": "1", "threshold": "2"}


# -- thresholds ------------------------------------------------------------------------------------


def test_two_of_three(log: MemLog) -> None:
    k2, kid2 = signer("key-2")
    k3, kid3 = signer("key-3")
    policy = log.policy((KEY, KID), (k2, kid2), (k3, kid3), threshold=2)
    cp = log.checkpoint(8).checkpoint
    sig = {kid: sign(cp, k, kid).signature for k, kid in ((KEY, KID), (k2, kid2), (k3, kid3), (ATTACKER, ATTACKER_KID))}
    proof = log.consistency(1, 8)

    def accept(*kids: str) -> Checkpoint:
        return TrustedLog(policy).accept_signatures(cp, [Signature(k, sig[k]) for k in kids], proof, 1, now(8))

    assert accept(KID, kid3) == cp
    assert accept(kid2, ATTACKER_KID, kid3) == cp  # an extra untrusted signature does not hurt
    with pytest.raises(CheckpointBelowThreshold):
        accept(KID)
    with pytest.raises(CheckpointBelowThreshold):
        accept(KID, KID)  # one key counted once
    with pytest.raises(CheckpointBelowThreshold):
        accept(KID, ATTACKER_KID)
    with pytest.raises(CheckpointBelowThreshold):
        TrustedLog(policy).accept_signatures(cp, [Signature(KID, sig[KID]), Signature(kid2, sig[kid3])], proof, 1, now(8))
    with pytest.raises(UntrustedCheckpointSigner):
        accept(ATTACKER_KID)
    with pytest.raises(CheckpointBelowThreshold):
        accept()


def test_accept_signatures_without_a_signed_form_does_not_move_latest(log: MemLog) -> None:
    trusted = TrustedLog(log.policy())
    cp = log.checkpoint(8)
    trusted.accept_signatures(cp.checkpoint, [Signature(cp.kid, cp.signature)], log.consistency(1, 8), 1, now(8))
    assert trusted.policy.latest is None and trusted.known_size == 1


# -- the cache -------------------------------------------------------------------------------------


def test_a_checkpoint_signature_is_verified_once(log: MemLog) -> None:
    trusted, _ = first(log, 12)
    assert trusted.signatures_checked == 1
    for _ in range(50):
        trusted.accept(log.checkpoint(12), (), 12, now(12))
    assert trusted.signatures_checked == 1
    trusted.accept(log.checkpoint(14), log.consistency(12, 14), 12, now(14))
    assert trusted.signatures_checked == 2


def test_the_cache_still_checks_freshness(log: MemLog) -> None:
    trusted, _ = first(log, 12)
    with pytest.raises(StaleCheckpoint):
        trusted.accept(log.checkpoint(12), (), 12, now(12) + 200_000)


def test_a_cached_checkpoint_is_a_rollback_once_a_newer_one_was_verified(log: MemLog) -> None:
    trusted, _ = first(log, 12)
    trusted.accept(log.checkpoint(16), log.consistency(12, 16), 12, now(16))
    with pytest.raises(LogRollback):
        trusted.accept(log.checkpoint(12), (), 16, now(16))


def test_a_cached_entry_is_not_a_free_pass_for_other_signatures(log: MemLog) -> None:
    trusted, _ = first(log, 12)
    cp = log.checkpoint(12)
    with pytest.raises(BadCheckpointSignature):
        trusted.accept(replace(cp, signature=bytes(64)), (), 12, now(12))


def test_the_cache_is_bounded(log: MemLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verifier_mod, "CACHE_SIZE", 3)
    trusted, _ = first(log, 12)
    for t in range(1, 6):
        trusted.accept(log.checkpoint(12, time_ms=T0 + 12 + t), (), 12, now(12) + t)
    assert len(trusted._verified) == 3
    checked = trusted.signatures_checked
    trusted.accept(log.checkpoint(12), (), 12, now(12) + 6)  # evicted: verified again
    assert trusted.signatures_checked == checked + 1


# -- the proof base moved --------------------------------------------------------------------------


def test_a_proof_from_an_outdated_size_asks_again(log: MemLog) -> None:
    trusted, _ = first(log, 12)
    trusted.accept(log.checkpoint(14), log.consistency(12, 14), 12, now(14))
    # An answer to a request made while 12 was the latest, arriving after 14 was verified:
    with pytest.raises(ProofBaseMoved):
        trusted.accept(log.checkpoint(18), log.consistency(12, 18), 12, now(18))
    with pytest.raises(ProofBaseMoved):
        trusted.accept(log.checkpoint(13), log.consistency(12, 13), 12, now(14))  # overtaken, not rolled back
    assert trusted.known_size == 14
    trusted.accept(log.checkpoint(18), log.consistency(14, 18), 14, now(18))
    assert not issubclass(ProofBaseMoved, InvalidProof)


def test_latest_only_moves_forward(log: MemLog) -> None:
    trusted, _ = first(log, 12)
    newer = log.checkpoint(12, time_ms=T0 + 100)
    trusted.accept(newer, (), 12, T0 + 110)
    older_time = log.checkpoint(12, time_ms=T0 + 50)
    trusted.accept(older_time, (), 12, T0 + 110)
    assert trusted.policy.latest == newer
    with pytest.raises(LogRollback):
        trusted.accept(log.checkpoint(11), (), 12, T0 + 110)
    assert trusted.policy.latest == newer
