"""Checking a checkpoint note against a trust policy: the log's signature and k of n witness cosignatures.

A checkpoint note (docs/transparency.md "Checkpoints as signed notes") is
accepted by :func:`verify_note` only when all of these hold:

1. it parses strictly (:class:`MalformedNote`), its body is a didnode
   checkpoint, and its origin is the policy's (:class:`ProofClaimMismatch`);
2. the log: valid Ed25519 note signatures (type 0x01) under the key name
   ``origin`` by at least ``threshold`` distinct checkpoint keys of the policy;
3. the witnesses: valid cosignature/v1 signatures by at least
   ``witnessThreshold`` distinct witness keys of the policy, none dated more
   than :data:`COSIGNATURE_MAX_SKEW_S` after ``now`` (:class:`CosignatureTimeSkew`).

Signatures are matched to keys by key name *and* key ID, as c2sp.org/signed-note
says: a signature of an unknown key is ignored (it neither counts nor fails),
even if it shares a name or an ID with a known one. A key counts once however
many signatures it made. A signature that claims a known key and does not
verify rejects the whole note (:class:`BadCheckpointSignature` for the log,
:class:`BadCosignature` for a witness): the specification's SHOULD, and the
only safe reading, since such a note was altered or forged on the way.

Pure: the time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from didnode.core import cosignature
from didnode.core import note as note_codec
from didnode.core.checkpoint import Checkpoint
from didnode.core.tlog_checkpoint import parse_body, to_checkpoint
from didnode.core.trust.policy import TrustPolicy
from didnode.errors import (
    BadCheckpointSignature,
    CheckpointBelowThreshold,
    ProofClaimMismatch,
    UntrustedCheckpointSigner,
)

COSIGNATURE_MAX_SKEW_S: Final = 300
"""A cosignature may be dated at most this many seconds after the verifier's clock."""


def verify_note(policy: TrustPolicy, data: bytes, now_ms: int) -> tuple[Checkpoint, int]:
    """Verify the checkpoint note ``data`` against ``policy`` (module docstring).

    Returns the checkpoint and the number of signature verifications made.
    Raises the errors of the module docstring or :class:`CheckpointBelowThreshold`.
    """
    checked = _verify(policy, data, now_ms)
    return checked.checkpoint, checked.checks


@dataclass(frozen=True, slots=True)
class NoteSigners:
    """A verified checkpoint note: its checkpoint, the signature checks made, and how many distinct
    trusted checkpoint keys signed it and trusted witnesses cosigned it."""

    checkpoint: Checkpoint
    checks: int
    signers: int
    cosigners: int


def verify_note_signers(policy: TrustPolicy, data: bytes, now_ms: int | None) -> NoteSigners:
    """:func:`verify_note`, returning who signed. ``now_ms`` None: a *historical* check (a receipt's
    checkpoint, years old): every signature, the origin, the network and both thresholds, but no
    bound on cosignature times, which only guards a live view against a witness's future clock."""
    return _verify(policy, data, now_ms)


def _verify(policy: TrustPolicy, data: bytes, now_ms: int | None) -> NoteSigners:
    note = note_codec.parse(data)
    body = parse_body(note.text)
    checkpoint = to_checkpoint(body)
    origin = policy.log_origin
    if body.origin != origin:
        raise ProofClaimMismatch(f"the checkpoint note is of origin {body.origin[:80]!r}; the trust policy's log is {origin!r}")
    if checkpoint.network != policy.network:
        raise ProofClaimMismatch(f"the checkpoint is of network {checkpoint.network!r}; the trust policy is for {policy.network!r}")
    checks = 0
    log_good: set[bytes] = set()
    witness_good: set[bytes] = set()
    for sig in note.signatures:
        if sig.name == origin:
            key = next((k for k in policy.keys if note_codec.matches(sig, origin, note_codec.ED25519, k.public_key)), None)
            if key is None:
                continue
            checks += 1
            if not note_codec.verify_ed25519(note.text, sig, key.public_key):
                raise BadCheckpointSignature(
                    f"the checkpoint note at size {checkpoint.tree_size} carries a signature of the trusted key {key.kid[:120]} that does not verify",
                    kid=key.kid[:200],
                )
            log_good.add(key.public_key)
            continue
        witness = next((w for w in policy.witnesses if cosignature.is_from(sig, w.name, w.public_key)), None)
        if witness is None:
            continue
        checks += 1
        timestamp = cosignature.verify_cosignature(note.text, sig, witness.public_key, witness.name)
        if now_ms is not None:
            cosignature.check_time(timestamp, now_ms // 1000, COSIGNATURE_MAX_SKEW_S, witness.name)
        witness_good.add(witness.public_key)
    if not log_good:
        raise UntrustedCheckpointSigner(
            f"the checkpoint note at size {checkpoint.tree_size} carries no signature of a checkpoint key this trust policy lists under {origin!r}"
        )
    if len(log_good) < policy.threshold:
        raise CheckpointBelowThreshold(
            f"the checkpoint note at size {checkpoint.tree_size} carries valid signatures of {len(log_good)} trusted checkpoint key(s); "
            f"the trust policy needs {policy.threshold}",
            valid=len(log_good),
            threshold=policy.threshold,
        )
    if len(witness_good) < policy.witness_threshold:
        raise CheckpointBelowThreshold(
            f"the checkpoint note at size {checkpoint.tree_size} carries valid cosignatures of {len(witness_good)} trusted witness(es); "
            f"the trust policy needs {policy.witness_threshold}",
            valid=len(witness_good),
            threshold=policy.witness_threshold,
            kind="witness",
        )
    return NoteSigners(checkpoint, checks, len(log_good), len(witness_good))
