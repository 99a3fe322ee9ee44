"""The light-client verifier: checkpoints, inclusion, consistency and state proofs.

Needs nothing but the checkpoint signer's Ed25519 public key (32 raw bytes)
and the pure hash-only verifiers of :mod:`didnode.core.merkle`. It shares no
code with the side that *builds* proofs (``proof_build``, ``sparse``), so a
bug there cannot be masked by the same bug here.

Procedure (docs/transparency.md, "Verifying"):

1. :func:`verify_checkpoint` -- Ed25519 over ``CHECKPOINT_CONTEXT || body``
   with the pinned key; optionally the kid must name the expected signer DID.
2. :func:`check_fresh` -- optionally, the checkpoint is recent enough.
3. Against the verified checkpoint:
   :func:`verify_inclusion_at` (leaf = entry bytes, entry's own position field
   = leaf index), :func:`verify_consistency_between` (two checkpoints of one
   network), :func:`verify_state_at` (key ``sha256(DID)``, value
   ``sha256(state record)``, or absence).

Every function returns normally on success and raises an
:class:`~didnode.errors.InvalidProof` subclass otherwise; none returns a bool.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from didnode.core import canonical
from didnode.core import entry as entry_codec
from didnode.core.checkpoint import SIGNATURE_SIZE, Checkpoint, SignedCheckpoint
from didnode.core.entry import LogEntry
from didnode.core.keystate import DidState
from didnode.core.merkle import proof_verify, sparse_verify
from didnode.core.merkle.encoding import SparseProof
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.proof_bundle import Bundle, ConsistencyProof, InclusionProof, StateProof
from didnode.errors import (
    BadCheckpointSignature,
    InvalidArgument,
    InvalidKey,
    MalformedProof,
    ProofClaimMismatch,
    StaleCheckpoint,
    StoreCorrupted,
)

DEFAULT_MAX_SKEW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Verified:
    """What a bundle was verified to prove (for reports); the newest checkpoint checked."""

    kind: str
    checkpoint: Checkpoint
    summary: str


def verify_checkpoint(signed: SignedCheckpoint, public_key: bytes, signer_did: str | None = None) -> Checkpoint:
    """Check the signature of ``signed`` under ``public_key``; return the checkpoint it signs.

    ``public_key`` is the raw 32-byte Ed25519 key the caller trusts for this
    signer (:class:`InvalidKey` otherwise). With ``signer_did``, the kid must
    also be a key of that DID. Raises :class:`BadCheckpointSignature`.
    """
    if len(public_key) != 32:
        raise InvalidKey(f"checkpoint signer key is {len(public_key)} bytes; Ed25519 keys have 32")
    if signer_did is not None and signed.signer_did != signer_did:
        raise BadCheckpointSignature(f"checkpoint is signed by {signed.kid}, not by a key of {signer_did}", kid=signed.kid)
    if len(signed.signature) != SIGNATURE_SIZE:
        raise BadCheckpointSignature(f"checkpoint signature is {len(signed.signature)} bytes, want {SIGNATURE_SIZE}")
    try:
        message = signed.checkpoint.signing_bytes()
    except InvalidArgument as exc:
        raise MalformedProof(f"checkpoint fields are malformed: {exc}") from None
    try:
        crypto_sign_open(signed.signature + message, public_key)
    except BadSignatureError:
        raise BadCheckpointSignature(
            f"checkpoint at tree size {signed.checkpoint.tree_size} does not verify under the signer key of {signed.kid}",
            kid=signed.kid,
        ) from None
    return signed.checkpoint


def check_fresh(checkpoint: Checkpoint, now_ms: int, max_age_ms: int, max_skew_ms: int = DEFAULT_MAX_SKEW_MS) -> None:
    """Check that ``checkpoint`` was signed at most ``max_age_ms`` before ``now_ms``
    (and at most ``max_skew_ms`` after it). Raises :class:`StaleCheckpoint`.

    Precondition: the checkpoint's signature was verified (its time is signed).
    """
    age = now_ms - checkpoint.time_ms
    if age > max_age_ms:
        raise StaleCheckpoint(f"checkpoint is {age} ms old; the bound is {max_age_ms} ms", age_ms=age)
    if -age > max_skew_ms:
        raise StaleCheckpoint(f"checkpoint is dated {-age} ms in the future", age_ms=age)


def verify_inclusion_at(checkpoint: Checkpoint, entry: bytes, index: int, hashes: Sequence[bytes]) -> LogEntry:
    """Check that ``entry`` is log entry ``index`` under ``checkpoint``; return it decoded.

    Preconditions: ``checkpoint`` is verified. The leaf is the entry bytes
    (leaf hash ``SHA-256(0x00 || entry)``); the entry's own position field must
    equal ``index`` and its operation's network the checkpoint's network.
    """
    try:
        decoded = entry_codec.decode(entry)
    except StoreCorrupted as exc:
        raise MalformedProof(f"entry bytes do not decode: {exc}") from None
    if decoded.position != index:
        raise ProofClaimMismatch(f"entry says position {decoded.position}, the proof is for leaf {index}", index=index)
    proof_verify.verify_inclusion(leaf_hash(entry), index, checkpoint.tree_size, list(hashes), checkpoint.log_root)
    network = _payload_network(decoded.payload)
    if network != checkpoint.network:
        raise ProofClaimMismatch(f"entry is an operation of network {network!r}, the checkpoint is of {checkpoint.network!r}")
    return decoded


def _payload_network(payload: bytes) -> str:
    body = canonical.loads(payload, MalformedProof, "entry payload")
    network = body.get("network") if isinstance(body, dict) else None
    if not isinstance(network, str):
        raise MalformedProof("entry payload names no network")
    return network


def verify_consistency_between(old: Checkpoint, new: Checkpoint, hashes: Sequence[bytes]) -> None:
    """Check that the log of ``old`` is a prefix of the log of ``new``.

    Preconditions: both checkpoints are verified. Same network required.
    """
    if old.network != new.network:
        raise ProofClaimMismatch(f"checkpoints are of networks {old.network!r} and {new.network!r}")
    proof_verify.verify_consistency(old.tree_size, new.tree_size, old.log_root, new.log_root, list(hashes))


def verify_state_at(checkpoint: Checkpoint, did: str, state_record: bytes | None, proof: SparseProof) -> DidState | None:
    """Check ``did``'s state under ``checkpoint``: its record is ``state_record``,
    or (``None``) the DID has no state there. Returns the decoded state (None for an absence).

    Preconditions: ``checkpoint`` is verified. The key is ``SHA-256(UTF-8 DID)``,
    the value ``SHA-256(state record)``; a present record must decode (else
    :class:`MalformedProof`) and name ``did``.
    """
    key = hashlib.sha256(did.encode("utf-8")).digest()
    if state_record is None:
        sparse_verify.verify_absent(checkpoint.state_root, key, proof)
        return None
    sparse_verify.verify_present(checkpoint.state_root, key, hashlib.sha256(state_record).digest(), proof)
    try:
        state = DidState.from_record(state_record)
    except StoreCorrupted as exc:
        raise MalformedProof(f"state record does not decode: {exc}") from None
    if state.did != did:
        raise ProofClaimMismatch(f"state record is of {str(state.did)[:80]!r}, not of {did}", did=did)
    return state


def _require(signed: SignedCheckpoint | None, what: str) -> SignedCheckpoint:
    if signed is None:
        raise MalformedProof(f"the bundle carries no {what}; verify it against a checkpoint you trust instead")
    return signed


def verify_bundle(bundle: Bundle, public_key: bytes, signer_did: str | None = None) -> Verified:
    """Verify a whole bundle: its checkpoint signature(s), then its claim.

    ``public_key`` and ``signer_did`` as for :func:`verify_checkpoint`.
    Returns what was proven; raises :class:`InvalidProof` subclasses.
    """
    if isinstance(bundle, InclusionProof):
        cp = verify_checkpoint(_require(bundle.checkpoint, "checkpoint"), public_key, signer_did)
        if cp.tree_size != bundle.tree_size:
            raise ProofClaimMismatch(f"proof is at tree size {bundle.tree_size}, the checkpoint at {cp.tree_size}")
        e = verify_inclusion_at(cp, bundle.entry, bundle.index, bundle.hashes)
        op_hash = hashlib.sha256(e.payload).hexdigest()
        return Verified("inclusion", cp, f"entry {bundle.index} (operation {op_hash}) is in the log of {cp.tree_size} entries")
    if isinstance(bundle, ConsistencyProof):
        old = verify_checkpoint(_require(bundle.checkpoint1, "checkpoint1"), public_key, signer_did)
        new = verify_checkpoint(_require(bundle.checkpoint2, "checkpoint2"), public_key, signer_did)
        if (old.tree_size, new.tree_size) != (bundle.size1, bundle.size2):
            raise ProofClaimMismatch(
                f"proof is for sizes {bundle.size1} -> {bundle.size2}, the checkpoints are at {old.tree_size} -> {new.tree_size}"
            )
        verify_consistency_between(old, new, bundle.hashes)
        return Verified("consistency", new, f"the log of {old.tree_size} entries is a prefix of the log of {new.tree_size}")
    if isinstance(bundle, StateProof):
        cp = verify_checkpoint(bundle.checkpoint, public_key, signer_did)
        verify_state_at(cp, bundle.did, bundle.state_record if bundle.present else None, bundle.proof)
        what = "has the given state" if bundle.present else "does not exist"
        return Verified("state", cp, f"{bundle.did} {what} at tree size {cp.tree_size}")
    raise MalformedProof(f"not a proof bundle: {type(bundle).__name__}")
