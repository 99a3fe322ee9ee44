"""Stateless preparation of submissions: parse, then verify signatures early.

Signature verification dominates the cost of an operation, and libsodium
releases the GIL, so it runs here, in a worker pool, in parallel with the
single writer that applies batches. A key id names the same public key for
ever (key ids are never reused within a DID), so a signature verified here
against a snapshot's key stays verified when the writer applies the
operation; the writer still checks the key's *fate* against the state it
applies to. Keys that the snapshot does not know yet (e.g. a controller
created earlier in the same batch) are simply verified later by the writer.
"""

from __future__ import annotations

from typing import Sequence

import lmdb

from didnode.core.did import PREFIX
from didnode.core.operations import NEXT_FRAGMENT, Operation, Proof, parse
from didnode.errors import DidnodeError, InvalidDid, UnknownDid, UnknownKey
from didnode.store.ledger_tables import LedgerTables


def prepare(payload: bytes, proofs: Sequence[Proof], network: str, tables: LedgerTables, txn: lmdb.Transaction | None) -> Operation:
    """Parse one submission and verify every signature whose key is known statelessly or in ``txn``.

    Raises the parse error or :class:`didnode.errors.InvalidSignature`.
    """
    op = parse(payload, proofs, network)
    own_keys = {f"{op.did}#{k.id}": k.raw for k in op.keys} if op.type == "create" else {}
    for proof in op.proofs:
        did, _, frag = proof.kid.partition("#")
        if frag == NEXT_FRAGMENT and did == op.did:
            if op.next_key:
                op.check_signature(proof, op.next_key)
            continue
        raw = own_keys.get(proof.kid)
        if raw is None and txn is not None and did.startswith(PREFIX):
            try:
                raw = tables.get_state(txn, did).key(frag).raw
            except (UnknownDid, UnknownKey, InvalidDid):
                continue
        if raw is not None:
            op.check_signature(proof, raw)
    return op


def prepare_many(
    items: Sequence[tuple[bytes, Sequence[Proof]]], network: str, tables: LedgerTables
) -> list[Operation | DidnodeError]:
    """:func:`prepare` for a group, under one read snapshot; failures become outcomes."""
    out: list[Operation | DidnodeError] = []
    with tables.store.read() as txn:
        for payload, proofs in items:
            try:
                out.append(prepare(payload, proofs, network, tables, txn))
            except DidnodeError as exc:
                out.append(exc)
    return out
