"""The didnode client library (sync :class:`Client` and asyncio :class:`AsyncClient`).

Every failed call raises the same :mod:`didnode.errors` exception the node
raised (rebuilt from the ErrorInfo reason), or :class:`NodeUnavailable` when
the node cannot be reached. Nothing here returns protobuf objects.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable, Iterator, Sequence

import grpc

from didnode.api.v1 import ledger_pb2 as pb
from didnode.api.v1 import ledger_pb2_grpc
from didnode.api.v1 import node_pb2, node_pb2_grpc
from didnode.core.builder import SignedOperation
from didnode.core.keystate import DidState
from didnode.core.operations import Proof
from didnode.errors import DidnodeError, error_for_reason
from didnode.transport.status import from_rpc_error

DEFAULT_ADDRESS = "127.0.0.1:50051"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of acceptance: the operation is durable on the node at ``position``."""

    position: int
    time_ms: int
    op_hash: bytes
    did: str
    type: str
    seq: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    position: int
    time_ms: int
    type: str
    seq: int
    op_hash: bytes
    signers: tuple[str, ...]
    payload: bytes
    proofs: tuple[Proof, ...]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    network: str
    node_did: str
    log_size: int
    version: str
    did_count: int
    last_time_ms: int
    schema_version: int
    mode: str


@dataclass(frozen=True, slots=True)
class Resource:
    """The latest published content of a DID's resource (e.g. a status list credential)."""

    did: str
    id: str
    media_type: str
    content: str
    position: int
    seq: int
    time_ms: int
    op_hash: bytes


def _resource(r: pb.ResourceResponse) -> Resource:
    return Resource(r.did, r.id, r.media_type, r.content, r.position, r.seq, r.time_ms, r.op_hash)


@dataclass(frozen=True, slots=True)
class KeyState:
    """A DID's key state as the node holds it, plus the keys valid at a position if asked."""

    state: DidState
    valid_at: tuple[str, ...] | None


def _op_pb(op: SignedOperation) -> pb.Operation:
    return pb.Operation(payload=op.payload, proofs=[pb.Proof(kid=p.kid, signature=p.signature) for p in op.proofs])


def _receipt(r: pb.Receipt) -> Receipt:
    return Receipt(r.position, r.time_ms, r.op_hash, r.did, r.type, r.seq)


def _outcome(o: pb.BatchOutcome) -> Receipt | DidnodeError:
    if o.HasField("receipt"):
        return _receipt(o.receipt)
    rej = o.rejection
    return error_for_reason(rej.reason, rej.message, dict(rej.details))


def _history(resp: pb.HistoryResponse) -> list[HistoryEntry]:
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


def _resolve_req(did: str, version_id: int | None, version_time: str | None) -> pb.ResolveRequest:
    req = pb.ResolveRequest(did=did)
    if version_id is not None:
        req.version_id = version_id
    elif version_time is not None:
        req.version_time = version_time
    return req


def _key_state(resp: pb.KeyStateResponse, asked: bool) -> KeyState:
    return KeyState(DidState.from_record(resp.state_json.encode()), tuple(k.id for k in resp.valid_at) if asked else None)


def _info(i: node_pb2.NodeInfo) -> NodeInfo:
    return NodeInfo(i.network, i.node_did, i.log_size, i.version, i.did_count, i.last_time_ms, i.schema_version, i.mode)


def _translate(err: grpc.RpcError) -> DidnodeError:
    call = err  # grpc.RpcError raised by the sync stack is also a grpc.Call
    return from_rpc_error(call.code(), call.details() or "", call.trailing_metadata())  # type: ignore[attr-defined]


class Client:
    """A blocking client for one node. Use as a context manager or call :meth:`close`."""

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._ledger = ledger_pb2_grpc.LedgerServiceStub(self._channel)
        self._node = node_pb2_grpc.NodeServiceStub(self._channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise _translate(err) from None

    def submit(self, op: SignedOperation) -> Receipt:
        """Submit one operation; returns after it is durable, or raises its rejection."""
        return _receipt(self._call(self._ledger.Submit, pb.SubmitRequest(operation=_op_pb(op))).receipt)

    def submit_batch(
        self, ops: Iterable[SignedOperation], chunk_size: int = 256, window: int = 4
    ) -> Iterator[Receipt | DidnodeError]:
        """Stream ``ops`` in chunks; yield one outcome per operation, in order.

        At most ``window`` chunks are unacknowledged at a time, so memory
        stays bounded for any number of operations (backpressure).
        """
        credit = threading.Semaphore(window)
        failed = threading.Event()

        def chunks() -> Iterator[pb.SubmitBatchRequest]:
            buf: list[pb.Operation] = []
            for op in ops:
                buf.append(_op_pb(op))
                if len(buf) >= chunk_size:
                    while not credit.acquire(timeout=0.5):
                        if failed.is_set():
                            return
                    yield pb.SubmitBatchRequest(operations=buf)
                    buf = []
            if buf:
                while not credit.acquire(timeout=0.5):
                    if failed.is_set():
                        return
                yield pb.SubmitBatchRequest(operations=buf)

        try:
            for resp in self._ledger.SubmitBatch(chunks()):
                credit.release()
                for o in resp.outcomes:
                    yield _outcome(o)
        except grpc.RpcError as err:
            failed.set()
            raise _translate(err) from None

    def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        """The W3C DID Resolution result (document, document metadata, resolution metadata)."""
        resp = self._call(self._ledger.Resolve, _resolve_req(did, version_id, version_time))
        return json.loads(resp.result_json)

    def history(self, did: str) -> list[HistoryEntry]:
        return _history(self._call(self._ledger.History, pb.HistoryRequest(did=did)))

    def key_state(self, did: str, at_position: int | None = None) -> KeyState:
        req = pb.KeyStateRequest(did=did)
        if at_position is not None:
            req.at_position = at_position
        return _key_state(self._call(self._ledger.GetKeyState, req), at_position is not None)

    def state(self, did: str) -> DidState:
        """The DID's current state (seq, last operation hash, keys and fates, controllers)."""
        return self.key_state(did).state

    def resource(self, did: str, resource_id: str) -> Resource:
        """The latest content of a resource the DID published."""
        return _resource(self._call(self._ledger.GetResource, pb.ResourceRequest(did=did, id=resource_id)))

    def node_info(self) -> NodeInfo:
        return _info(self._call(self._node.GetInfo, node_pb2.GetInfoRequest()))


class AsyncClient:
    """The asyncio twin of :class:`Client` (for devices and services built on grpc.aio)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._ledger = ledger_pb2_grpc.LedgerServiceStub(self._channel)
        self._node = node_pb2_grpc.NodeServiceStub(self._channel)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err.code(), err.details() or "", err.trailing_metadata()) from None

    async def submit(self, op: SignedOperation) -> Receipt:
        return _receipt((await self._call(self._ledger.Submit, pb.SubmitRequest(operation=_op_pb(op)))).receipt)

    async def submit_batch(self, ops: Sequence[SignedOperation], chunk_size: int = 256) -> AsyncIterator[Receipt | DidnodeError]:
        """Stream ``ops``; yield one outcome per operation, in order."""

        async def chunks() -> AsyncIterator[pb.SubmitBatchRequest]:
            for i in range(0, len(ops), chunk_size):
                yield pb.SubmitBatchRequest(operations=[_op_pb(o) for o in ops[i : i + chunk_size]])

        try:
            async for resp in self._ledger.SubmitBatch(chunks()):
                for o in resp.outcomes:
                    yield _outcome(o)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err.code(), err.details() or "", err.trailing_metadata()) from None

    async def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        resp = await self._call(self._ledger.Resolve, _resolve_req(did, version_id, version_time))
        return json.loads(resp.result_json)

    async def history(self, did: str) -> list[HistoryEntry]:
        return _history(await self._call(self._ledger.History, pb.HistoryRequest(did=did)))

    async def key_state(self, did: str, at_position: int | None = None) -> KeyState:
        req = pb.KeyStateRequest(did=did)
        if at_position is not None:
            req.at_position = at_position
        return _key_state(await self._call(self._ledger.GetKeyState, req), at_position is not None)

    async def resource(self, did: str, resource_id: str) -> Resource:
        return _resource(await self._call(self._ledger.GetResource, pb.ResourceRequest(did=did, id=resource_id)))

    async def node_info(self) -> NodeInfo:
        return _info(await self._call(self._node.GetInfo, node_pb2.GetInfoRequest()))
