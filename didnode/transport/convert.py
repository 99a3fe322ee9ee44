"""Conversions between protobuf messages and domain objects (the only place that knows both)."""

from __future__ import annotations

from typing import Sequence

from didnode.api.v1 import ledger_pb2 as pb
from didnode.core.keystate import DidState, KeyRecord
from didnode.core.operations import Proof
from didnode.errors import DidnodeError, MalformedMessage
from didnode.ledger.batch import Accepted, Outcome
from didnode.service.ledger import HistoryItem
from didnode.transport.status import rejection_code


def operation_in(msg: pb.Operation) -> tuple[bytes, tuple[Proof, ...]]:
    """(payload, proofs) of an Operation message."""
    if not msg.payload:
        raise MalformedMessage("operation has an empty payload")
    return msg.payload, tuple(Proof(p.kid, p.signature) for p in msg.proofs)


def operation_out(payload: bytes, proofs: Sequence[Proof]) -> pb.Operation:
    return pb.Operation(payload=payload, proofs=[pb.Proof(kid=p.kid, signature=p.signature) for p in proofs])


def receipt_out(a: Accepted) -> pb.Receipt:
    return pb.Receipt(position=a.position, time_ms=a.time, op_hash=a.op_hash, did=a.did, type=a.type, seq=a.seq)


def outcome_out(o: Outcome) -> pb.BatchOutcome:
    if isinstance(o, DidnodeError):
        return pb.BatchOutcome(
            rejection=pb.Rejection(reason=o.reason, message=o.message, details=o.details, grpc_code=rejection_code(o))
        )
    return pb.BatchOutcome(receipt=receipt_out(o))


def history_out(items: Sequence[HistoryItem]) -> pb.HistoryResponse:
    return pb.HistoryResponse(
        entries=[
            pb.HistoryEntry(
                position=h.position,
                time_ms=h.time,
                type=h.type,
                seq=h.seq,
                op_hash=h.op_hash,
                signers=list(h.signers),
                operation=operation_out(h.payload, h.proofs),
            )
            for h in items
        ]
    )


def key_out(k: KeyRecord) -> pb.KeyInfo:
    return pb.KeyInfo(
        id=k.id,
        type=k.kind,
        public_key_multibase=k.multibase,
        purposes=list(k.purposes),
        fate=k.fate,
        added_position=k.added_pos,
        ended_position=k.ended_pos,
        reason=k.reason,
    )


def key_state_out(state: DidState, at_position: int | None) -> pb.KeyStateResponse:
    resp = pb.KeyStateResponse(
        did=state.did,
        seq=state.seq,
        status=state.status,
        next_commitment=state.next,
        controllers=list(state.controllers),
        keys=[key_out(k) for k in state.keys],
        state_json=state.to_json_text(),
    )
    if at_position is not None:
        resp.valid_at.extend(key_out(k) for k in state.keys_valid_at(at_position))
    return resp
