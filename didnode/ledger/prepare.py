"""Stateless preparation of submissions: parse, then verify signatures in bulk.

Signature verification dominates the cost of an operation, so it happens
here, before the single writer applies a batch, and in bulk through a
:class:`~didnode.ledger.verifier.Verifier` (a worker process in the node).
A key id names the same public key for ever (key ids are never reused
within a DID), so a signature verified here against a snapshot's key stays
verified when the writer applies the operation; the writer still checks the
key's *fate* against the state it applies to. Keys the snapshot does not
know yet (e.g. a controller created earlier in the same batch) are verified
later by the writer itself.
"""

from __future__ import annotations

import logging
from typing import Sequence, Union

import lmdb

from didnode.core import entry as entry_codec
from didnode.core.data.anchoring import verified_tag
from didnode.core.data.heads import signing_bytes as head_signing_bytes
from didnode.core.did import PREFIX
from didnode.core.operations import NEXT_FRAGMENT, Operation, Proof, parse, signing_bytes
from didnode.errors import DidnodeError, Internal, InvalidDid, InvalidSignature, TooLarge, UnknownDid, UnknownKey
from didnode.ledger.verifier import InlineVerifier, Triple, Verifier
from didnode.store.ledger_tables import LedgerTables

_INLINE = InlineVerifier()
log = logging.getLogger("didnode.ledger")

# What a group holds: a submission (payload, proofs), or the error that already rejects
# it (the transport could not even read it), which passes through to its outcome.
Item = Union[tuple[bytes, Sequence[Proof]], DidnodeError]


def _known_head_keys(op: Operation, tables: LedgerTables, txn: lmdb.Transaction) -> list[tuple[bytes, bytes, bytes]]:
    """(public key, signed bytes, signature) of every segment head of an anchor whose device key the snapshot knows."""
    out = []
    for signed in op.heads:
        h = signed.head
        try:
            raw = tables.get_state(txn, h.did).key(h.key_id).raw
        except (UnknownDid, UnknownKey, InvalidDid):
            continue
        out.append((raw, head_signing_bytes(op.network, signed.head_bytes), signed.signature))
    return out


def _known_keys(op: Operation, tables: LedgerTables, txn: lmdb.Transaction) -> list[tuple[Proof, bytes]]:
    """(proof, public key) for every proof whose key is known without applying the operation."""
    own_keys = {f"{op.did}#{k.id}": k.raw for k in op.keys} if op.type == "create" else {}
    out = []
    for proof in op.proofs:
        did, _, frag = proof.kid.partition("#")
        if frag == NEXT_FRAGMENT and did == op.did:
            if op.next_key:
                out.append((proof, op.next_key))
            continue
        raw = own_keys.get(proof.kid)
        if raw is None and did.startswith(PREFIX):
            try:
                raw = tables.get_state(txn, did).key(frag).raw
            except (UnknownDid, UnknownKey, InvalidDid):
                continue
        if raw is not None:
            out.append((proof, raw))
    return out


def _check_entry_size(payload: bytes, proofs: Sequence[Proof]) -> None:
    """A new submission must make a log entry a tlog-tiles bundle can carry (operations already on a
    ledger or in a cluster's stream are not held to it: ``new=False``)."""
    size = entry_codec.encoded_size(payload, proofs)
    if size > entry_codec.MAX_NEW_ENTRY_BYTES:
        raise TooLarge(
            f"this operation would make a log entry of {size} bytes; at most {entry_codec.MAX_NEW_ENTRY_BYTES} "
            "(what a tile's entry bundle carries): shorten the payload",
            field="entry", length=size,
        )


def prepare_many(
    items: Sequence[Item], network: str, tables: LedgerTables, verifier: Verifier = _INLINE, *, new: bool = True
) -> list[Operation | DidnodeError]:
    """Parse a group under one read snapshot and verify its signatures in one bulk call.

    ``new``: the items are new submissions, so their log entries must fit a tile bundle
    (operations already ordered, a cluster follower's, are not held to that).

    Returns one entry per item, always: the parsed operation (its ``verified``
    set filled in) or the error that rejects it (the item itself when it is
    one, a parse error, a bad signature). One item can never fail the group:
    an exception that is not a :class:`DidnodeError` (a parser bug) is logged
    and rejects that item alone as :class:`Internal`.
    """
    out: list[Operation | DidnodeError] = []
    checks: list[tuple[int, Proof, bytes]] = []
    triples: list[Triple] = []
    with tables.store.read() as txn:
        for item in items:
            if isinstance(item, DidnodeError):
                out.append(item)
                continue
            payload, proofs = item
            try:
                if new:
                    _check_entry_size(payload, proofs)
                op = parse(payload, proofs, network)
                msg = signing_bytes(op.network, op.type, op.payload)
                known = _known_keys(op, tables, txn)
            except DidnodeError as exc:
                out.append(exc)
                continue
            except Exception:  # noqa: BLE001 -- one operation's bug must not take its group down
                log.exception("preparing an operation of %d bytes failed", len(payload))
                out.append(Internal("internal error while parsing this operation; see the node log"))
                continue
            for proof, raw in known:
                checks.append((len(out), proof, raw))
                triples.append((raw, msg, proof.signature))
            if op.heads:
                # Segment heads verify in the same bulk call; one that fails is judged (and named)
                # when the anchor is applied, not here: an anchor's verdict is per head.
                for raw, signed, sig in _known_head_keys(op, tables, txn):
                    # Recorded bound to the bytes it verified over (verified_tag), never the signature alone.
                    checks.append((len(out), Proof("", verified_tag(sig, signed)), raw))
                    triples.append((raw, signed, sig))
            out.append(op)
    if triples:
        for (index, proof, raw), ok in zip(checks, verifier.verify(triples)):
            op = out[index]
            if not isinstance(op, Operation):
                continue
            if ok:
                op.verified.add((raw, proof.signature))
            elif proof.kid:  # a head's failure is the anchor rules' to report
                out[index] = InvalidSignature(f"signature by {proof.kid} does not verify", kid=proof.kid)
    return out

