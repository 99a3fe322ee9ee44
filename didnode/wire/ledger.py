"""Ledger and node messages <-> the result types of :mod:`didnode.core.results`.

Both ends use these: the node's servicers build replies with ``*_to_pb`` and
the client reads them with ``*_from_pb``, so a field is named and converted in
one place. Nothing here knows the store or the service layer.
"""

from __future__ import annotations

from typing import Sequence

from didnode.api.v1 import ledger_pb2 as pb
from didnode.api.v1 import node_pb2
from didnode.core.keystate import DidState
from didnode.core.operations import Proof
from didnode.core.results import HistoryEntry, KeyState, NodeInfo, Receipt, Resource
from didnode.errors import DidnodeError, MalformedMessage, StoreCorrupted, error_for_reason
from didnode.wire.status import rejection_code


def operation_from_pb(msg: pb.Operation) -> tuple[bytes, tuple[Proof, ...]]:
    """(payload, proofs) of an Operation message; raises :class:`MalformedMessage` for an empty payload."""
    if not msg.payload:
        raise MalformedMessage("operation has an empty payload")
    return msg.payload, tuple(Proof(p.kid, p.signature) for p in msg.proofs)


def operation_to_pb(payload: bytes, proofs: Sequence[Proof]) -> pb.Operation:
    return pb.Operation(payload=payload, proofs=[pb.Proof(kid=p.kid, signature=p.signature) for p in proofs])


def receipt_to_pb(r: Receipt) -> pb.Receipt:
    return pb.Receipt(position=r.position, time_ms=r.time_ms, op_hash=r.op_hash, did=r.did, type=r.type, seq=r.seq)


def receipt_from_pb(m: pb.Receipt) -> Receipt:
    return Receipt(m.position, m.time_ms, m.op_hash, m.did, m.type, m.seq)


def outcome_to_pb(o: Receipt | DidnodeError) -> pb.BatchOutcome:
    """One operation's outcome in a batch: its receipt, or its rejection with the reason a unary call would carry."""
    if isinstance(o, DidnodeError):
        return pb.BatchOutcome(rejection=pb.Rejection(reason=o.reason, message=o.message, details=o.details, grpc_code=rejection_code(o)))
    return pb.BatchOutcome(receipt=receipt_to_pb(o))


def outcome_from_pb(o: pb.BatchOutcome) -> Receipt | DidnodeError:
    """The receipt, or the rejection rebuilt as the same error class the node raised."""
    if o.HasField("receipt"):
        return receipt_from_pb(o.receipt)
    rej = o.rejection
    return error_for_reason(rej.reason, rej.message, dict(rej.details))


def history_to_pb(entries: Sequence[HistoryEntry]) -> pb.HistoryResponse:
    return pb.HistoryResponse(
        entries=[
            pb.HistoryEntry(
                position=h.position,
                time_ms=h.time_ms,
                type=h.type,
                seq=h.seq,
                op_hash=h.op_hash,
                signers=list(h.signers),
                operation=operation_to_pb(h.payload, h.proofs),
            )
            for h in entries
        ]
    )


def history_from_pb(resp: pb.HistoryResponse) -> list[HistoryEntry]:
    return [
        HistoryEntry(
            e.position,
            e.time_ms,
            e.type,
            e.seq,
            e.op_hash,
            tuple(e.signers),
            e.operation.payload,
            tuple(Proof(p.kid, p.signature) for p in e.operation.proofs),
        )
        for e in resp.entries
    ]


def state_from_record(record: bytes, what: str) -> DidState:
    """A state record received from a node; bytes that do not decode are the node's fault: :class:`MalformedMessage`."""
    try:
        return DidState.from_record(record)
    except StoreCorrupted as exc:
        raise MalformedMessage(f"{what} carries a state record that does not decode: {exc.message}") from None


def key_state_to_pb(ks: KeyState) -> pb.KeyStateResponse:
    resp = pb.KeyStateResponse(did=ks.state.did, network=ks.network, state_record=ks.state.to_record())
    if ks.valid_at is not None:
        resp.valid_at_key_ids.extend(ks.valid_at)
    return resp


def key_state_from_pb(resp: pb.KeyStateResponse, asked_position: bool) -> KeyState:
    """The key state of a reply; ``asked_position`` says whether ``valid_at`` was asked for (proto3 cannot tell an empty list)."""
    state = state_from_record(resp.state_record, "the key state reply")
    if state.did != resp.did:
        raise MalformedMessage(f"the key state reply for {resp.did} carries the state of {state.did}")
    return KeyState(state, resp.network, tuple(resp.valid_at_key_ids) if asked_position else None)


def key_state_request_to_pb(did: str, at_position: int | None) -> pb.KeyStateRequest:
    req = pb.KeyStateRequest(did=did)
    if at_position is not None:
        req.at_position = at_position
    return req


def resolve_request_to_pb(did: str, version_id: int | None, version_time: str | None) -> pb.ResolveRequest:
    """A resolution of the current version, or of ``version_id`` (precedence) or the one in force at ``version_time``."""
    req = pb.ResolveRequest(did=did)
    if version_id is not None:
        req.version_id = version_id
    elif version_time is not None:
        req.version_time = version_time
    return req


def resource_to_pb(r: Resource) -> pb.ResourceResponse:
    return pb.ResourceResponse(
        did=r.did, id=r.id, media_type=r.media_type, content=r.content, position=r.position, seq=r.seq, time_ms=r.time_ms, op_hash=r.op_hash
    )


def resource_from_pb(m: pb.ResourceResponse) -> Resource:
    return Resource(m.did, m.id, m.media_type, m.content, m.position, m.seq, m.time_ms, m.op_hash)


def node_info_to_pb(i: NodeInfo) -> node_pb2.NodeInfo:
    return node_pb2.NodeInfo(
        network=i.network,
        node_did=i.node_did,
        log_size=i.log_size,
        version=i.version,
        did_count=i.did_count,
        last_time_ms=i.last_time_ms,
        schema_version=i.schema_version,
        mode=i.mode,
        stream=i.stream,
        stream_seq=i.stream_seq,
        stream_last_seq=i.stream_last_seq,
        lag=i.lag,
        writable=i.writable,
        not_writable_reason=i.not_writable_reason,
    )


def node_info_from_pb(i: node_pb2.NodeInfo) -> NodeInfo:
    return NodeInfo(
        i.network,
        i.node_did,
        i.log_size,
        i.version,
        i.did_count,
        i.last_time_ms,
        i.schema_version,
        i.mode,
        i.stream,
        i.stream_seq,
        i.stream_last_seq,
        i.lag,
        # An embedded node leaves the field unset (false): it always accepts writes.
        i.writable or i.mode != "cluster",
        i.not_writable_reason,
    )
