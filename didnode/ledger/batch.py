"""Validate and apply a batch of operations in one LMDB write transaction.

This is the one state machine of didnode: the embedded orderer and the
JetStream follower both call :func:`apply_batch`, so every node applies the
same log with the same code. A rejected operation writes nothing; its
neighbours in the batch are unaffected (validation is pure and happens
before any write of that operation).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Protocol, Sequence

import lmdb

from didnode.core import entry as entry_codec
from didnode.core.data.anchoring import AnchorRow, StreamState, judge_anchor
from didnode.core.governance.policy import Usage
from didnode.core.governance.rules import Charge, admit, govern
from didnode.core.keystate import ApplyContext, DidState, apply
from didnode.core.operations import Operation
from didnode.core.results import Receipt
from didnode.errors import DidnodeError, DuplicateOperation, Internal, UnknownDid
from didnode.store import layout
from didnode.store.ledger_tables import BatchWrites, LedgerTables


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    """What a batch hook sees of each accepted operation."""

    position: int
    entry: bytes
    did: str
    state_record: bytes


class BatchHook(Protocol):
    """Extra tables maintained in the same transaction (e.g. the Merkle log and state tree)."""

    def on_batch(self, txn: lmdb.Transaction, applied: Sequence[AppliedEntry]) -> None: ...


Outcome = Receipt | DidnodeError
log = logging.getLogger("didnode.ledger")


def apply_batch(
    tables: LedgerTables,
    txn: lmdb.Transaction,
    ops: Sequence[Operation | DidnodeError],
    now_ms: int,
    hooks: Sequence[BatchHook] = (),
    times: Sequence[int] | None = None,
) -> list[Outcome]:
    """Apply ``ops`` in order inside ``txn``; return one outcome per input, in order.

    ``ops`` items that are already errors (parse failures) pass through as
    rejections. The ordering time of the batch is ``max(now_ms, last time)``
    so that log times never go backwards; an orderer that assigns a time to
    each operation itself (JetStream's message timestamps) passes ``times``
    (one per op), which are clamped the same way. Precondition: ``txn`` is a
    write transaction that the caller commits after this returns.
    """
    position = tables.log_size(txn)
    time = max(now_ms, tables.last_time(txn))
    cache: dict[str, DidState | None] = {}
    policy = tables.governance(txn)
    usage: dict[tuple[bytes, str], Usage] = {}
    seen: dict[bytes, int] = {}
    applied: list[AppliedEntry] = []
    out: list[Outcome] = []
    writes = BatchWrites()

    def lookup(did: str) -> DidState | None:
        if did in cache:
            return cache[did]
        state = tables.state_if_exists(txn, did)
        cache[did] = state
        return state

    def counted(kind: bytes, did: str) -> Usage:
        key = (kind, did)
        if key not in usage:
            usage[key] = tables.usage(txn, kind, did)
        return usage[key]

    streams: dict[tuple[str, str], StreamState | None] = {}
    covers: dict[tuple[str, str], list[tuple[int, AnchorRow]]] = {}

    def stream_of(did: str, stream: str) -> StreamState | None:
        key = (did, stream)
        if key not in streams:
            streams[key] = tables.stream_state(txn, did, stream)
        return streams[key]

    def covering(did: str, stream: str, seq: int) -> AnchorRow | None:
        for first, row in reversed(covers.get((did, stream), [])):
            if first <= seq < first + row.count:
                return row
        found = tables.covering_anchor(txn, did, stream, seq)
        return None if found is None else found[1]

    def resolve(did: str) -> DidState:
        state = lookup(did)
        if state is None:
            raise UnknownDid(f"{did} does not exist on this ledger", did=did)
        return state

    for i, op in enumerate(ops):
        if times is not None:
            time = max(time, times[i])
        if isinstance(op, DidnodeError):
            out.append(op)
            continue
        try:
            create = op.type == "create"
            if not create and (op.hash in seen or tables.has_indexed_operation(txn, op.hash)):
                at = seen.get(op.hash)
                _duplicate(op.hash, at if at is not None else tables.position_of(txn, op.hash))
            ctx = ApplyContext(position, time, resolve)
            if op.type == "govern":
                # The network's governance record (core.governance): it lives in the state
                # table under its identifier, so the state tree and state proofs cover it.
                policy = govern(policy, op, ctx)
                record = policy.to_record()
                charges: tuple[Charge, ...] = ()
            else:
                state = lookup(op.did)
                # A create's hash is its DID: the DID existing means this very create is on the ledger.
                if create and state is not None:
                    _duplicate(op.hash, state.created_pos)
                new = apply(state, op, ctx)
                verdict = None
                if op.type == "anchor":
                    verdict = judge_anchor(op.heads, op.network, position, resolve, stream_of, covering, op.verified)
                    for ev in verdict.evidence:  # kept even though the anchor is refused: the device's two signatures
                        key = layout.anchor_key(ev.did, ev.stream, ev.first) + hashlib.sha256(ev.signed_head).digest()
                        writes.evidence[key] = ev.signed_head + layout.u64(max(ev.anchored_position, 0))
                    verdict.raise_if_rejected()
                charges = admit(policy, op, time, counted)
                record = new.to_record()
        except DidnodeError as exc:
            out.append(exc)
            continue
        except lmdb.Error:
            raise  # the store failed: the whole batch does (the orderer answers every waiter)
        except Exception:  # noqa: BLE001 -- a bug one operation triggers rejects it alone, on every node alike
            log.exception("applying operation %s of %s failed", op.hash.hex(), op.did)
            out.append(Internal(f"internal error while applying operation {op.hash.hex()}; see the node log"))
            continue
        data = entry_codec.encode(position, time, op.payload, op.proofs)
        writes.accepted(position, data, op.hash, op.did, record, create)
        if op.type == "govern":
            writes.governance = op.did
        else:
            cache[op.did] = new
            if verdict is not None:
                for (did, stream), st in verdict.streams.items():
                    streams[did, stream] = st
                    writes.streams[layout.stream_key(did, stream)] = st.encode()
                for did, stream, first, row in verdict.rows:
                    covers.setdefault((did, stream), []).append((first, row))
                    writes.anchors[layout.anchor_key(did, stream, first)] = row.encode()
        for charge in charges:
            usage[charge.kind, charge.did] = charge.usage
            writes.usage[layout.usage_key(charge.kind, charge.did)] = charge.usage.encode()
        seen[op.hash] = position
        applied.append(AppliedEntry(position, data, op.did, record))
        out.append(Receipt(position, time, op.hash, op.did, op.type, op.seq))
        position += 1
    if applied or writes.evidence:
        tables.write_batch(txn, writes)
    if applied:
        tables.set_log_end(txn, position, time)
        for hook in hooks:
            hook.on_batch(txn, applied)
    return out


def _duplicate(op_hash: bytes, position: int) -> None:
    raise DuplicateOperation(f"operation {op_hash.hex()} is already on the ledger at position {position}", position=position)
