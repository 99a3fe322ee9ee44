"""Checking checkpoints against a trust policy, once each: the client's view of the log only moves forward.

A :class:`TrustedLog` holds a :class:`~didnode.core.trust.policy.TrustPolicy`
and the checkpoints verified under it. :meth:`TrustedLog.accept` takes a signed
checkpoint a node sent with the consistency proof from the size the client
asked it from (``known_size``: the latest verified checkpoint's, or 1, the
genesis, before any) and checks, in this order:

1. network: the policy's;
2. signatures: valid signatures of at least ``threshold`` trusted keys (a
   signer the policy does not list is :class:`UntrustedCheckpointSigner`, a
   trusted key's signature that does not verify :class:`BadCheckpointSignature`
   when no other counts, too few :class:`CheckpointBelowThreshold`);
3. the log only moves forward: a checkpoint smaller than the latest verified
   is :class:`LogRollback`, one of the same size with another log root is
   :class:`LogFork` (both name the two checkpoints), and a larger one must come
   with a consistency proof from the latest verified (:class:`LogFork` if it
   does not prove it; :class:`GenesisMismatch` when proven from the genesis);
4. freshness: at most ``max_staleness_ms`` old (:class:`StaleCheckpoint`).

A checkpoint that carries its C2SP note (``SignedCheckpoint.note``) is
checked by its note instead of step 2: the node's note signature and at least
``witnessThreshold`` witness cosignatures (:mod:`didnode.core.trust.witnessed`);
the note must state exactly the checkpoint's fields (:class:`ProofClaimMismatch`).
A policy with witnesses refuses a checkpoint without a note
(:class:`CheckpointBelowThreshold`: no cosignature can count); a policy
without witnesses still accepts old-format checkpoints (bundles in the field).

A checkpoint is verified once: the same signed bytes again skip steps 1-2
and the consistency proof (the cache holds only checkpoints that passed them);
the rollback check of step 3 and step 4 run every time, so a checkpoint this
client verified itself is refused once a larger one was verified. When the
latest verified checkpoint moved on between the request and the answer (the
request named an older ``known_size``), the proof is from an older size, or the
answer is older than the new latest, and :class:`ProofBaseMoved` tells the
caller to ask again with the new ``known_size`` (a local signal, never sent
anywhere).

Pure: the clock is passed in. Not thread-safe: one event loop or thread.
"""

from __future__ import annotations

import json

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from didnode.core.checkpoint import SIGNATURE_SIZE, Checkpoint, SignedCheckpoint
from didnode.core.merkle import proof_verify
from didnode.core.transparency_verify import check_fresh
from didnode.core.trust.policy import TrustPolicy
from didnode.core.trust.witnessed import verify_note
from didnode.errors import (
    BadCheckpointSignature,
    CheckpointBelowThreshold,
    GenesisMismatch,
    InvalidArgument,
    InvalidProof,
    LogFork,
    LogRollback,
    MalformedProof,
    ProofClaimMismatch,
    UntrustedCheckpointSigner,
)

CACHE_SIZE = 256


class ProofBaseMoved(Exception):
    """The answer's consistency proof is from a size that is no longer the latest verified: ask again.

    Not a :class:`~didnode.errors.DidnodeError` on purpose: it never leaves the
    client library, which retries with :attr:`TrustedLog.known_size`."""


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature over a checkpoint's signing bytes, by the key named ``kid``."""

    kid: str
    signature: bytes


def _describe(c: Checkpoint) -> str:
    return f"size {c.tree_size} root {c.log_root.hex()[:16]}…"


class TrustedLog:
    """The checkpoints verified under one trust policy (module docstring).

    ``on_advance(policy)`` is called with the policy holding each new latest
    verified checkpoint (the CLI persists it; devices may keep it in memory).
    """

    def __init__(self, policy: TrustPolicy, on_advance: Callable[[TrustPolicy], None] | None = None) -> None:
        self.policy = policy
        self.on_advance = on_advance
        self._verified: OrderedDict[bytes, Checkpoint] = OrderedDict()
        self.signatures_checked = 0  # for tests and benchmarks: how often step 2 ran

    @property
    def known_size(self) -> int:
        """The size to ask consistency proofs from: the latest verified checkpoint's, else 1 (the genesis)."""
        latest = self.policy.latest
        return latest.tree_size if latest is not None else 1

    def accept(self, signed: SignedCheckpoint, consistency: Sequence[bytes], proof_from: int, now_ms: int) -> Checkpoint:
        """Verify ``signed`` (with ``consistency``, the RFC 9162 proof from size ``proof_from`` to its
        size) against the policy; return its checkpoint. Raises the errors of the module docstring
        or :class:`ProofBaseMoved`."""
        if signed.note:
            return self.accept_note(signed.note, consistency, proof_from, now_ms, signed)
        return self.accept_signatures(signed.checkpoint, [Signature(signed.kid, signed.signature)], consistency, proof_from, now_ms, signed)

    def accept_note(
        self, note: bytes, consistency: Sequence[bytes], proof_from: int, now_ms: int, signed: SignedCheckpoint | None = None
    ) -> Checkpoint:
        """:meth:`accept` for a checkpoint note (the node's signature and the witnesses' cosignatures);
        ``signed``, when given, must state the same checkpoint and is what is remembered as the latest."""
        return self._accept(b"note\0" + note, None, note, consistency, proof_from, now_ms, signed)

    def accept_signatures(
        self,
        checkpoint: Checkpoint,
        signatures: Sequence[Signature],
        consistency: Sequence[bytes],
        proof_from: int,
        now_ms: int,
        signed: SignedCheckpoint | None = None,
    ) -> Checkpoint:
        """:meth:`accept` for a checkpoint with any number of signatures in the old format (``signed``: the
        form to remember as the latest, when there is one)."""
        try:
            cache_key = checkpoint.body() + b"".join(s.kid.encode() + b"\0" + s.signature for s in signatures)
        except InvalidArgument as exc:
            raise MalformedProof(f"checkpoint fields are malformed: {exc}") from None
        return self._accept(cache_key, (checkpoint, signatures), None, consistency, proof_from, now_ms, signed)

    def _accept(
        self,
        cache_key: bytes,
        old: tuple[Checkpoint, Sequence[Signature]] | None,
        note: bytes | None,
        consistency: Sequence[bytes],
        proof_from: int,
        now_ms: int,
        signed: SignedCheckpoint | None,
    ) -> Checkpoint:
        p = self.policy
        cached = self._verified.get(cache_key)
        if cached is not None:
            checkpoint = cached
            if signed is not None and signed.checkpoint != checkpoint:
                raise ProofClaimMismatch(f"the checkpoint's fields ({_describe(signed.checkpoint)}) are not what its note states")
            self._check_not_older(checkpoint, proof_from)
            self._verified.move_to_end(cache_key)
            check_fresh(checkpoint, now_ms, p.max_staleness_ms)
            return checkpoint
        if note is not None:
            checkpoint, checks = verify_note(p, note, now_ms)
            self.signatures_checked += checks
            if signed is not None and signed.checkpoint != checkpoint:
                raise ProofClaimMismatch(
                    f"the checkpoint's fields ({_describe(signed.checkpoint)}) are not what its note states ({_describe(checkpoint)})"
                )
        else:
            assert old is not None
            checkpoint, signatures = old
            if checkpoint.network != p.network:
                raise ProofClaimMismatch(f"the checkpoint is of network {checkpoint.network!r}; the trust policy is for {p.network!r}")
            if p.witness_threshold:
                raise CheckpointBelowThreshold(
                    f"the checkpoint at size {checkpoint.tree_size} carries no checkpoint note, so no witness cosignature; "
                    f"the trust policy needs {p.witness_threshold}",
                    valid=0,
                    threshold=p.witness_threshold,
                    kind="witness",
                )
            self._check_signatures(checkpoint, signatures)
        self._check_growth(checkpoint, consistency, proof_from, _evidence(signed, note))
        check_fresh(checkpoint, now_ms, p.max_staleness_ms)
        self._verified[cache_key] = checkpoint
        if len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)
        latest = p.latest
        if signed is not None and (latest is None or (checkpoint.tree_size, checkpoint.time_ms) > (latest.tree_size, latest.checkpoint.time_ms)):
            self.policy = p.with_latest(signed)
            if self.on_advance is not None:
                self.on_advance(self.policy)
        return checkpoint

    def _check_signatures(self, checkpoint: Checkpoint, signatures: Sequence[Signature]) -> None:
        p = self.policy
        message = checkpoint.signing_bytes()
        good: set[str] = set()
        untrusted = []
        bad = []
        for s in signatures:
            key = p.key_for(s.kid)
            if key is None:
                untrusted.append(s.kid)
                continue
            if len(s.signature) != SIGNATURE_SIZE:
                bad.append(s.kid)
                continue
            self.signatures_checked += 1
            try:
                crypto_sign_open(s.signature + message, key.public_key)
            except BadSignatureError:
                bad.append(s.kid)
                continue
            good.add(key.kid)
        if len(good) >= p.threshold:
            return
        if not good and bad:
            raise BadCheckpointSignature(
                f"the checkpoint at size {checkpoint.tree_size} names the trusted key {bad[0][:120]}, and its signature does not verify under it",
                kid=bad[0][:200],
            )
        if not good and untrusted and len(untrusted) == len(signatures):
            raise UntrustedCheckpointSigner(
                f"the checkpoint at size {checkpoint.tree_size} is signed by {untrusted[0][:120]}, a key this trust policy does not list",
                kid=untrusted[0][:200],
            )
        raise CheckpointBelowThreshold(
            f"the checkpoint at size {checkpoint.tree_size} carries valid signatures of {len(good)} trusted key(s); "
            f"the trust policy needs {p.threshold}",
            valid=len(good),
            threshold=p.threshold,
        )

    def _check_not_older(self, checkpoint: Checkpoint, proof_from: int) -> None:
        """LogRollback for a checkpoint smaller than the latest verified, unless the request was made
        before the latest moved there (then :class:`ProofBaseMoved`: an honest answer overtaken by
        another, asked again with the new size)."""
        latest = self.policy.latest.checkpoint if self.policy.latest is not None else None
        if latest is None or checkpoint.tree_size >= latest.tree_size:
            return
        if proof_from != latest.tree_size:
            raise ProofBaseMoved(f"answer at size {checkpoint.tree_size} to a request from size {proof_from}; the latest verified is {latest.tree_size}")
        raise LogRollback(
            f"the node answers under a checkpoint of {_describe(checkpoint)}, older than the one this client verified "
            f"({_describe(latest)}): a rolled-back or replayed view",
            size=checkpoint.tree_size,
            verified_size=latest.tree_size,
        )

    def _check_growth(self, checkpoint: Checkpoint, consistency: Sequence[bytes], proof_from: int, offered: str = "") -> None:
        """``offered``: the offered checkpoint as evidence (:func:`_evidence`); a :class:`LogFork` carries it and
        the latest verified one in its details ``offered`` and ``held`` (docs/trust.md "Evidence of a fork")."""
        p = self.policy
        latest = p.latest.checkpoint if p.latest is not None else None
        self._check_not_older(checkpoint, proof_from)
        if latest is not None and checkpoint.tree_size == latest.tree_size:
            if checkpoint.log_root != latest.log_root or checkpoint.state_root != latest.state_root:
                raise LogFork(
                    f"the node's checkpoint ({_describe(checkpoint)}) and the one this client verified ({_describe(latest)}) "
                    "have the same size and different roots: a fork",
                    size=checkpoint.tree_size,
                    held=_evidence(p.latest, None),
                    offered=offered,
                )
            return
        base_size, base_root = (latest.tree_size, latest.log_root) if latest is not None else (1, p.genesis)
        if proof_from != base_size:
            raise ProofBaseMoved(f"proof from size {proof_from}, the latest verified is {base_size}")
        try:
            proof_verify.verify_consistency(base_size, checkpoint.tree_size, base_root, checkpoint.log_root, list(consistency))
        except InvalidProof as exc:
            if latest is None:
                raise GenesisMismatch(
                    f"the node's log ({_describe(checkpoint)}) does not begin with the genesis {p.genesis.hex()} this trust policy "
                    f"names: another ledger ({exc})",
                    size=checkpoint.tree_size,
                ) from None
            raise LogFork(
                f"the node's checkpoint ({_describe(checkpoint)}) does not extend the one this client verified "
                f"({_describe(latest)}): {exc}",
                size=checkpoint.tree_size,
                verified_size=latest.tree_size,
                held=_evidence(p.latest, None),
                offered=offered,
            ) from None


def _evidence(signed: SignedCheckpoint | None, note: bytes | None) -> str:
    """A signed checkpoint as evidence: its JSON form (docs/transparency.md §3, the note included), or the bare note."""
    if signed is not None:
        return json.dumps(signed.to_json(), separators=(",", ":"), sort_keys=True)
    if note is not None:
        return json.dumps({"note": note.decode("utf-8", "replace")}, separators=(",", ":"))
    return ""
