"""Ledger and node messages <-> the result types of :mod:`didnode.core.results`.

Both ends use these: the node's servicers build replies with ``*_to_pb`` and
the client reads them with ``*_from_pb``, so a field is named and converted in
one place. Nothing here knows the store or the service layer.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from didnode.api.v1 import ledger_pb2 as pb
from didnode.api.v1 import node_pb2
from didnode.core import canonical
from didnode.core.builder import SignedOperation
from didnode.core.keystate import DidState
from didnode.core.operations import Proof
from didnode.core.governance.policy import OPEN, Policy, Usage
from didnode.core.results import USAGE_KINDS, GovernanceInfo, HistoryEntry, HistoryPage, KeyState, NodeInfo, Receipt, Resource
from didnode.errors import DidnodeError, MalformedMessage, StoreCorrupted, error_for_reason
from didnode.wire.limits import MAX_BATCH_CHUNK_BYTES
from didnode.wire.status import rejection_code


def operation_from_pb(msg: pb.Operation) -> tuple[bytes, tuple[Proof, ...]]:
    """(payload, proofs) of an Operation message; raises :class:`MalformedMessage` for an empty payload."""
    if not msg.payload:
        raise MalformedMessage("operation has an empty payload")
    return msg.payload, tuple(Proof(p.kid, p.signature) for p in msg.proofs)


def operation_to_pb(payload: bytes, proofs: Sequence[Proof]) -> pb.Operation:
    return pb.Operation(payload=payload, proofs=[pb.Proof(kid=p.kid, signature=p.signature) for p in proofs])


def batch_chunks(ops: Iterable[SignedOperation], chunk_size: int) -> Iterator[list[pb.Operation]]:
    """``ops`` as Operation messages in chunks of at most ``chunk_size`` operations and MAX_BATCH_CHUNK_BYTES
    bytes (an operation larger than that is sent alone: the node names its limit)."""
    per_chunk = max(1, chunk_size)
    buf: list[pb.Operation] = []
    size = 0
    for op in ops:
        msg = operation_to_pb(op.payload, op.proofs)
        n = msg.ByteSize() + 8  # with its tag and length prefix
        if buf and (len(buf) >= per_chunk or size + n > MAX_BATCH_CHUNK_BYTES):
            yield buf
            buf, size = [], 0
        buf.append(msg)
        size += n
    if buf:
        yield buf


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


def history_request_to_pb(did: str, after_seq: int | None, page_size: int, prove_at_size: int | None = None) -> pb.HistoryRequest:
    """A request for the page of ``did``'s history after ``after_seq`` (None: from the create); with
    ``prove_at_size``, as of the log of that size, each entry with its inclusion proof there."""
    req = pb.HistoryRequest(did=did, page_size=page_size)
    if after_seq is not None:
        req.after_seq = after_seq
    if prove_at_size is not None:
        req.prove_at_size = prove_at_size
    return req


def history_to_pb(page: HistoryPage) -> pb.HistoryResponse:
    resp = pb.HistoryResponse(
        entries=[
            pb.HistoryEntry(
                position=h.position,
                time_ms=h.time_ms,
                type=h.type,
                seq=h.seq,
                op_hash=h.op_hash,
                signers=list(h.signers),
                operation=operation_to_pb(h.payload, h.proofs),
                inclusion=list(h.inclusion),
            )
            for h in page.entries
        ]
    )
    if page.next_after_seq is not None:
        resp.next_after_seq = page.next_after_seq
    return resp


def history_from_pb(resp: pb.HistoryResponse, after_seq: int | None = None) -> HistoryPage:
    """The page of a reply; MalformedMessage when its entries are not in seq order after ``after_seq`` or its token goes back."""
    entries = tuple(
        HistoryEntry(
            e.position,
            e.time_ms,
            e.type,
            e.seq,
            e.op_hash,
            tuple(e.signers),
            e.operation.payload,
            tuple(Proof(p.kid, p.signature) for p in e.operation.proofs),
            tuple(e.inclusion),
        )
        for e in resp.entries
    )
    expected = 0 if after_seq is None else after_seq + 1
    if [e.seq for e in entries] != list(range(expected, expected + len(entries))):
        raise MalformedMessage(f"a history page after seq {after_seq} carries seqs {[e.seq for e in entries][:8]}: not the next ones in order")
    nxt = resp.next_after_seq if resp.HasField("next_after_seq") else None
    if nxt is not None and (not entries or nxt != entries[-1].seq):
        raise MalformedMessage(f"a history page ends at seq {entries[-1].seq if entries else after_seq} but names {nxt} as the next page's start")
    return HistoryPage(entries, nxt)


def resolution_from_json(text: str) -> dict[str, Any]:
    """The DID Resolution result a node sent as JSON text; anything else is the node's fault: :class:`MalformedMessage`."""
    value = canonical.loads(text, MalformedMessage, "the node's resolution result")
    if not isinstance(value, dict):
        raise MalformedMessage("the node's resolution result is not a JSON object")
    return value


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
        governance=i.governance,
        create_policy=i.create_policy,
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
        i.governance,
        # A node from before governance leaves it unset: its network is open.
        i.create_policy or (OPEN if not i.governance else ""),
    )


# --------------------------------------------------------------------------
# Governance (GetGovernance)
# --------------------------------------------------------------------------

_KIND_NAMES = set(USAGE_KINDS.values())


def governance_request_to_pb(at_position: int | None, usage_of: Sequence[str]) -> pb.GetGovernanceRequest:
    """The record in effect once the log holds ``at_position`` (None: the current one), with the usage of ``usage_of``."""
    req = pb.GetGovernanceRequest(usage_of=list(usage_of))
    if at_position is not None:
        req.at_position = at_position
    return req


def governance_to_pb(g: GovernanceInfo) -> pb.GetGovernanceResponse:
    return pb.GetGovernanceResponse(
        record=g.policy.to_record(),
        record_position=g.record_position,
        log_size=g.log_size,
        last_time_ms=g.last_time_ms,
        usage=[
            pb.GovernanceUsage(
                did=did,
                kind=kind,
                window_index=u.window,
                window_count=u.count,
                window_bytes=u.bytes,
                total_count=u.total_count,
                total_bytes=u.total_bytes,
            )
            for (kind, did), u in g.usage.items()
        ],
    )


def governance_from_pb(m: pb.GetGovernanceResponse) -> GovernanceInfo:
    """The governance a node sent (not verified: :mod:`didnode.client.verified` proves the record);
    a record that does not decode is the node's fault: :class:`MalformedMessage`."""
    try:
        policy = Policy.from_record(m.record)
    except StoreCorrupted as exc:
        raise MalformedMessage(f"the governance reply carries a record that does not decode: {exc.message}") from None
    usage: dict[tuple[str, str], Usage] = {}
    for u in m.usage:
        if u.kind not in _KIND_NAMES:
            raise MalformedMessage(f"the governance reply counts usage of an unknown kind {u.kind[:20]!r}")
        usage[u.kind, u.did] = Usage(u.window_index, u.window_count, u.window_bytes, u.total_count, u.total_bytes)
    return GovernanceInfo(policy, m.record_position, m.log_size, m.last_time_ms, usage)
