"""grpc.aio servicers: decode requests, call the service layer, encode replies or statuses."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import grpc

from didnode.api.v1 import ledger_pb2 as pb
from didnode.api.v1 import node_pb2 as node_pb
from didnode.core.did_url import DID_ERROR_NS, error_type
from didnode.errors import DidnodeError, Internal, MalformedMessage
from didnode.service.governance import GovernanceService
from didnode.service.ledger import HISTORY_PAGE, MAX_BATCH_CHUNK, Item, LedgerService
from didnode.wire import ledger as convert
from didnode.wire.handlers import Malformed
from didnode.wire.status import to_status

log = logging.getLogger("didnode.transport")
DID_ERROR_DETAIL = "did_error_type"  # ErrorInfo metadata key of a failed Resolve: https://www.w3.org/ns/did#NOT_FOUND, ...
T = TypeVar("T")
MAX_INFLIGHT_CHUNKS = 4


async def _abort(context: grpc.aio.ServicerContext, err: DidnodeError) -> None:
    await context.abort_with_status(to_status(err))


def unary(fn: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Map didnode errors (and malformed requests) of a unary handler to rich gRPC statuses."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        if isinstance(request, Malformed):
            await _abort(context, request.error)
        try:
            return await fn(self, request, context)
        except DidnodeError as err:
            await _abort(context, err)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:  # the transport boundary: a bug must become INTERNAL, never a dropped call
            log.exception("internal error in %s", fn.__name__)
            await _abort(context, Internal(f"internal error in {fn.__name__}; see the node log"))
        raise AssertionError("unreachable: abort raises")

    return wrapper


class LedgerServicer:
    """didnode.v1.LedgerService."""

    def __init__(self, ledger: LedgerService) -> None:
        self.ledger = ledger
        self.governance = GovernanceService(ledger.node)

    @unary
    async def Submit(self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext) -> pb.SubmitResponse:
        payload, proofs = convert.operation_from_pb(request.operation)
        accepted = await self.ledger.submit(payload, proofs)
        return pb.SubmitResponse(receipt=convert.receipt_to_pb(accepted))

    async def SubmitBatch(
        self, requests: AsyncIterator[pb.SubmitBatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SubmitBatchResponse]:
        """Chunks are applied in stream order and answered as soon as each is durable.

        A reader task takes chunks off the stream while earlier ones are being
        applied; at most MAX_INFLIGHT_CHUNKS wait for their answer, beyond
        which the reader stops reading (flow control pushes back on the client).
        """
        pending: asyncio.Queue[tuple[int, asyncio.Task[list[Any]]] | None] = asyncio.Queue(MAX_INFLIGHT_CHUNKS)
        tasks: list[asyncio.Task[list[Any]]] = []

        async def reader() -> None:
            index = 0
            previous: asyncio.Event | None = None
            try:
                async for req in requests:
                    if isinstance(req, Malformed):
                        raise req.error
                    if len(req.operations) > MAX_BATCH_CHUNK:
                        raise MalformedMessage(f"a chunk holds at most {MAX_BATCH_CHUNK} operations, not {len(req.operations)}")
                    items = [_batch_item(op) for op in req.operations]
                    enqueued = asyncio.Event()
                    task = asyncio.create_task(self.ledger.submit_many(items, after=previous, enqueued=enqueued))
                    tasks.append(task)
                    previous = enqueued
                    await pending.put((index, task))
                    index += len(items)
            finally:
                await pending.put(None)

        read_task = asyncio.create_task(reader())
        try:
            while (item := await pending.get()) is not None:
                yield await _chunk_response(*item)
            await read_task
        except DidnodeError as err:
            await _abort(context, err)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:  # the transport boundary: a bug must become INTERNAL, never a dropped stream
            log.exception("internal error in SubmitBatch")
            await _abort(context, Internal("internal error in SubmitBatch; see the node log"))
        finally:
            read_task.cancel()
            for task in tasks:
                task.cancel()

    @unary
    async def Resolve(self, request: pb.ResolveRequest, context: grpc.aio.ServicerContext) -> pb.ResolveResponse:
        which = request.WhichOneof("version")
        try:
            result = self.ledger.resolve(
                request.did,
                version_id=request.version_id if which == "version_id" else None,
                version_time=request.version_time if which == "version_time" else None,
            )
        except DidnodeError as err:
            # The W3C DID Resolution error type beside didnode's reason (docs/http.md, "Errors"):
            # the same semantics as the HTTP binding's didResolutionMetadata.error.type.
            err.details.setdefault(DID_ERROR_DETAIL, DID_ERROR_NS + error_type(err, request.did))
            raise
        return pb.ResolveResponse(result_json=json.dumps(result, separators=(",", ":")))

    @unary
    async def History(self, request: pb.HistoryRequest, context: grpc.aio.ServicerContext) -> pb.HistoryResponse:
        after = request.after_seq if request.HasField("after_seq") else None
        # page_size 0 without after_seq: a client from before paging asks for everything (or TOO_LARGE).
        size = request.page_size or (HISTORY_PAGE if after is not None else None)
        prove = request.prove_at_size if request.HasField("prove_at_size") else None
        return convert.history_to_pb(self.ledger.history(request.did, after, size, prove))

    @unary
    async def GetKeyState(self, request: pb.KeyStateRequest, context: grpc.aio.ServicerContext) -> pb.KeyStateResponse:
        at = request.at_position if request.HasField("at_position") else None
        return convert.key_state_to_pb(self.ledger.key_state(request.did, at))

    @unary
    async def GetResource(self, request: pb.ResourceRequest, context: grpc.aio.ServicerContext) -> pb.ResourceResponse:
        return convert.resource_to_pb(self.ledger.resource(request.did, request.id))

    @unary
    async def GetGovernance(self, request: pb.GetGovernanceRequest, context: grpc.aio.ServicerContext) -> pb.GetGovernanceResponse:
        at = request.at_position if request.HasField("at_position") else None
        return convert.governance_to_pb(self.governance.governance(at, list(request.usage_of)))


def _batch_item(op: pb.Operation) -> Item:
    """One operation of a chunk, or the error that rejects it alone: a batch answers per operation."""
    try:
        return convert.operation_from_pb(op)
    except DidnodeError as err:
        return err


async def _chunk_response(first: int, task: "asyncio.Task[list[Any]]") -> pb.SubmitBatchResponse:
    outcomes = await task
    return pb.SubmitBatchResponse(first_index=first, outcomes=[convert.outcome_to_pb(o) for o in outcomes])


class NodeServicer:
    """didnode.v1.NodeService."""

    def __init__(self, ledger: LedgerService) -> None:
        self.ledger = ledger

    @unary
    async def GetInfo(self, request: node_pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> node_pb.NodeInfo:
        return convert.node_info_to_pb(self.ledger.info())
