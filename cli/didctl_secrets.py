"""The keystore side of ``didctl``: fresh keys and crash-safe staging.

(Finding a DID's secrets, signer and state is :mod:`cli.signing`.)

Crash safety. An operation that installs new keys (create, rotate, recover,
update with a new key-agreement key) must never lose a secret, whatever
moment the process dies at. So the new secrets are written *before* the
operation is submitted, in a *staged* entry that also keeps everything
needed to go back, and only after the node's answer is the entry made final:

1. ``put(staged)``: the new secrets ("after") in the entry's slots, plus
   journal labels (below) holding the previous secrets ("before") and the
   signed operation itself;
2. ``submit(op)``;
3. accepted: ``put(after)``; rejected by the node: ``put(before)`` (or delete
   the entry when there was none, as for a create).

A crash after 1 leaves a staged entry. The next ``didctl`` command that
needs that DID's secrets *settles* it first by submitting the journaled
operation again: a receipt, ``DUPLICATE_OPERATION`` (it was accepted before
the crash) or ``DID_EXISTS`` (a create) make "after" final; a conflict or an
authorization failure proves it is not and can no longer be on the ledger,
so "before" comes back. Any other answer (unreachable node, a node of
another network, an unknown DID) decides nothing and leaves the entry as it
is. Resubmitting is always safe: the ledger accepts an operation at most once.

Journal labels (inside the encrypted ``DidSecrets``; other labels are the
user's and are carried over unchanged)::

    didctl.pending        {"op": TYPE, "did": DID, "network": NET, "opHash": HEX, "existed": BOOL}
    didctl.op.<i>         consecutive chunks of {"payload": B64, "proofs": [[KID, B64], ...]}
    didctl.prev.sign.<i>  "<key id> <B64 seed>"   one per signing key before the operation
    didctl.prev.next      "<key id> <B64 seed>"   the next (rotation) key before the operation
    didctl.prev.ka        "<key id> <B64 key>"    the key-agreement key before the operation

``B64`` is unpadded base64url. The next key is stored under the key id
:data:`NEXT_KEY_ID` (it is revealed by the operation it signs, never
installed as a verification method).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from didnode.client import Client, Receipt
from didnode.core.builder import NewAgreementKey, NewKey, SignedOperation
from didnode.core.encoding import b64url, b64url_decode
from didnode.core.keystate import DidState
from didnode.core.operations import PURPOSES, Proof
from didnode.errors import (
    Conflict,
    DidAlreadyExists,
    DidnodeError,
    DuplicateOperation,
    Internal,
    KeyNotInKeystore,
    KeystoreCorrupted,
    Unauthorized,
    Unavailable,
)
from didnode.keystore import DidSecrets, Keystore

NEXT_KEY_ID = "next"
JOURNAL_PREFIX = "didctl."
PENDING = "didctl.pending"
OP_CHUNK = "didctl.op."
PREV_SIGN = "didctl.prev.sign."
PREV_NEXT = "didctl.prev.next"
PREV_KA = "didctl.prev.ka"
CHUNK_CHARS = 1000

Notify = Callable[[str], None]

_SUFFIX_RE = re.compile(r"(\d+)$")


# --------------------------------------------------------------------------
# Fresh keys
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class FreshKeys:
    """Newly generated key material for a create, rotate or recover."""

    auth_id: str
    auth: SigningKey
    next: SigningKey
    purposes: tuple[str, ...] = PURPOSES
    ka_id: str | None = None
    ka: PrivateKey | None = None

    @classmethod
    def generate(cls, index: int, key_agreement: bool, purposes: tuple[str, ...] = PURPOSES) -> FreshKeys:
        """``key-<index>`` (Ed25519), optionally ``ka-<index>`` (X25519), and a next key."""
        ka = PrivateKey.generate() if key_agreement else None
        return cls(
            f"key-{index}",
            SigningKey.generate(),
            SigningKey.generate(),
            tuple(sorted(set(purposes))),
            f"ka-{index}" if key_agreement else None,
            ka,
        )

    def new_keys(self) -> list[NewKey]:
        """The verification key to install, as the builder wants it."""
        return [NewKey(self.auth_id, bytes(self.auth.verify_key), self.purposes)]

    def agreement(self) -> NewAgreementKey | None:
        """The key-agreement key to install, if any."""
        if self.ka is None or self.ka_id is None:
            return None
        return NewAgreementKey(self.ka_id, bytes(self.ka.public_key))

    @property
    def next_public(self) -> bytes:
        return bytes(self.next.verify_key)

    def secrets(self, did: str, labels: Mapping[str, str]) -> DidSecrets:
        """The keystore entry holding exactly these keys (user ``labels`` kept)."""
        return DidSecrets(
            did=did,
            signing_keys={self.auth_id: bytes(self.auth)},
            next_key_id=NEXT_KEY_ID,
            next_key_seed=bytes(self.next),
            key_agreement_id=self.ka_id,
            key_agreement_key=bytes(self.ka) if self.ka is not None else None,
            labels=user_labels(labels),
        )


def secrets_with(
    base: DidSecrets,
    *,
    signing_keys: dict[str, bytes] | None = None,
    next_seed: bytes | None = None,
    ka: tuple[str, bytes] | None = None,
) -> DidSecrets:
    """``base`` with some slots replaced (journal labels dropped)."""
    ka_id, ka_key = ka if ka is not None else (base.key_agreement_id, base.key_agreement_key)
    return DidSecrets(
        did=base.did,
        signing_keys=dict(base.signing_keys) if signing_keys is None else signing_keys,
        next_key_id=NEXT_KEY_ID if next_seed is not None else base.next_key_id,
        next_key_seed=next_seed if next_seed is not None else base.next_key_seed,
        key_agreement_id=ka_id,
        key_agreement_key=ka_key,
        labels=user_labels(base.labels),
    )


def next_index(state: DidState) -> int:
    """One more than the highest numeric suffix of any key id the DID ever had."""
    numbers = [int(m.group(1)) for k in state.keys if (m := _SUFFIX_RE.search(k.id))]
    return max(numbers, default=0) + 1


# --------------------------------------------------------------------------
# Staging
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Staged:
    """A staged keystore entry, decoded: the operation in flight and both outcomes."""

    op: SignedOperation
    before: DidSecrets | None
    after: DidSecrets


def user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that are not didctl's journal."""
    return {k: v for k, v in labels.items() if not k.startswith(JOURNAL_PREFIX)}


def is_staged(secrets: DidSecrets) -> bool:
    """Whether ``secrets`` is a staged entry awaiting settlement."""
    return PENDING in secrets.labels


def _pair(key_id: str, secret: bytes) -> str:
    return f"{key_id} {b64url(secret)}"


def _unpair(value: str, where: str) -> tuple[str, bytes]:
    key_id, sep, b64 = value.partition(" ")
    if not sep:
        raise KeystoreCorrupted(f"staged keystore entry: {where} is not '<key id> <base64url>'")
    return key_id, b64url_decode(b64, f"staged keystore entry: {where}", KeystoreCorrupted)


def stage(before: DidSecrets | None, after: DidSecrets, op: SignedOperation) -> DidSecrets:
    """The entry to write before submitting ``op``: ``after`` plus the journal to settle either way."""
    op_text = json.dumps(
        {"payload": b64url(op.payload), "proofs": [[p.kid, b64url(p.signature)] for p in op.proofs]},
        separators=(",", ":"),
    )
    labels = user_labels(after.labels)
    labels[PENDING] = json.dumps(
        {
            "op": op.type,
            "did": op.did,
            "network": op.network,
            "opHash": _op_hash(op.payload),
            "existed": before is not None,
        },
        separators=(",", ":"),
    )
    for i in range(0, len(op_text), CHUNK_CHARS):
        labels[f"{OP_CHUNK}{i // CHUNK_CHARS}"] = op_text[i : i + CHUNK_CHARS]
    if before is not None:
        for i, (key_id, seed) in enumerate(sorted(before.signing_keys.items())):
            labels[f"{PREV_SIGN}{i}"] = _pair(key_id, seed)
        if before.next_key_id is not None and before.next_key_seed is not None:
            labels[PREV_NEXT] = _pair(before.next_key_id, before.next_key_seed)
        if before.key_agreement_id is not None and before.key_agreement_key is not None:
            labels[PREV_KA] = _pair(before.key_agreement_id, before.key_agreement_key)
    return DidSecrets(
        did=after.did,
        signing_keys=after.signing_keys,
        next_key_id=after.next_key_id,
        next_key_seed=after.next_key_seed,
        key_agreement_id=after.key_agreement_id,
        key_agreement_key=after.key_agreement_key,
        labels=labels,
    )


def _op_hash(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def read_stage(secrets: DidSecrets) -> Staged:
    """Decode a staged entry; :class:`KeystoreCorrupted` if its journal does not parse."""
    labels = secrets.labels
    try:
        pending = json.loads(labels[PENDING])
        chunks = []
        i = 0
        while f"{OP_CHUNK}{i}" in labels:
            chunks.append(labels[f"{OP_CHUNK}{i}"])
            i += 1
        body = json.loads("".join(chunks))
        payload = b64url_decode(body["payload"], "staged keystore entry: payload", KeystoreCorrupted)
        proofs = tuple(Proof(kid, b64url_decode(sig, "staged keystore entry: proof", KeystoreCorrupted)) for kid, sig in body["proofs"])
        op = SignedOperation(pending["op"], pending["network"], pending["did"], payload, proofs)
        existed = bool(pending["existed"])
    except (KeyError, TypeError, ValueError) as exc:
        raise KeystoreCorrupted(f"staged keystore entry of {secrets.did} does not decode: {exc}", did=secrets.did) from None
    if op.did != secrets.did or _op_hash(payload) != pending.get("opHash"):
        raise KeystoreCorrupted(f"staged keystore entry of {secrets.did} names another operation", did=secrets.did)
    kept = user_labels(labels)
    after = DidSecrets(
        did=secrets.did,
        signing_keys=secrets.signing_keys,
        next_key_id=secrets.next_key_id,
        next_key_seed=secrets.next_key_seed,
        key_agreement_id=secrets.key_agreement_id,
        key_agreement_key=secrets.key_agreement_key,
        labels=kept,
    )
    return Staged(op, _before(secrets, kept) if existed else None, after)


def _before(secrets: DidSecrets, kept: Mapping[str, str]) -> DidSecrets:
    labels = secrets.labels
    signing = dict(_unpair(v, k) for k, v in labels.items() if k.startswith(PREV_SIGN))
    next_id, next_seed = _unpair(labels[PREV_NEXT], PREV_NEXT) if PREV_NEXT in labels else (None, None)
    ka_id, ka_key = _unpair(labels[PREV_KA], PREV_KA) if PREV_KA in labels else (None, None)
    return DidSecrets(
        did=secrets.did,
        signing_keys=signing,
        next_key_id=next_id,
        next_key_seed=next_seed,
        key_agreement_id=ka_id,
        key_agreement_key=ka_key,
        labels=kept,
    )


def _restore(ks: Keystore, did: str, before: DidSecrets | None) -> None:
    if before is None:
        ks.delete(did)
    else:
        ks.put(before)


def submit_staged(
    ks: Keystore,
    client: Client,
    op: SignedOperation,
    before: DidSecrets | None,
    after: DidSecrets,
    notify: Notify,
) -> Receipt:
    """Stage, submit, then make the keystore final (see the module docstring).

    A rejection restores ``before`` (deletes the entry when ``before`` is
    None) and re-raises; an unknown outcome (unreachable node, internal
    error) keeps the staged entry for the next command to settle.
    """
    ks.put(stage(before, after, op))
    try:
        receipt = client.submit(op)
    except DuplicateOperation:
        ks.put(after)
        raise
    except (Unavailable, Internal):
        notify(
            f"the outcome of this {op.type} is unknown; the keystore keeps the old and the new keys of {op.did}, "
            "and the next didctl command that signs for it settles the operation"
        )
        raise
    except DidnodeError:
        _restore(ks, op.did, before)
        raise
    ks.put(after)
    return receipt


def settle(ks: Keystore, client: Client, secrets: DidSecrets, notify: Notify) -> DidSecrets:
    """Finish an operation that a crash interrupted, returning the entry as it now stands.

    Raises :class:`KeyNotInKeystore` when the interrupted operation was a
    create (or a recover into an empty slot) that can no longer be applied:
    its unused keys are removed. Errors that decide nothing propagate and
    leave the entry staged.
    """
    if not is_staged(secrets):
        return secrets
    staged = read_stage(secrets)
    op = staged.op
    try:
        receipt = client.submit(op)
        notify(f"completed the interrupted {op.type} of {op.did} (ledger position {receipt.position})")
    except (DuplicateOperation, DidAlreadyExists):
        notify(f"the interrupted {op.type} of {op.did} had been accepted; the keystore now holds its keys")
    except (Conflict, Unauthorized) as err:
        _restore(ks, op.did, staged.before)
        if staged.before is None:
            raise KeyNotInKeystore(
                f"the interrupted {op.type} of {op.did} can no longer be applied ({err}); its unused keys were removed",
                did=op.did,
            ) from None
        notify(f"the interrupted {op.type} of {op.did} was never applied ({err.reason}); restored its previous keys")
        return staged.before
    ks.put(staged.after)
    return staged.after

