"""History in pages (issue #14): a DID's history is read back completely and in order, whatever its size."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from didnode import errors
from didnode.api.v1 import ledger_pb2 as pb
from didnode.client import AsyncClient, Client, Receipt
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.service.ledger import MAX_HISTORY_PAGE, MAX_HISTORY_PAGE_BYTES
from tests.conftest import RunningNode
from tests.factory import Identity, new_create

HISTORY = "/didnode.v1.LedgerService/History"


def _chain(ident: Identity, first: SignedOperation, n: int, publish_bytes: int = 0) -> list[SignedOperation]:
    """``n`` operations after ``first``: updates, or publishes of ``publish_bytes`` of content."""
    ops, prev = [], hashlib.sha256(first.payload).hexdigest()
    for seq in range(1, n + 1):
        if publish_bytes:
            unsigned = builder.publish("local", ident.did, seq, prev, f"r-{seq % 8}", "text/plain", "x" * publish_bytes)
        else:
            unsigned = builder.update("local", ident.did, seq, prev, [builder.service(f"s{seq % 3}", "MQTTBroker", f"mqtts://b{seq}.example:8883")], None)
        op = builder.sign(unsigned, [(ident.kid, ident.key)])
        ops.append(op)
        prev = hashlib.sha256(op.payload).hexdigest()
    return ops


def _grow(client: Client, n: int, publish_bytes: int = 0) -> tuple[str, list[Receipt]]:
    ident, create = new_create()
    ops = [create, *_chain(ident, create, n, publish_bytes)]
    receipts = list(client.submit_batch(ops, chunk_size=256))
    assert all(isinstance(r, Receipt) for r in receipts), [r for r in receipts if not isinstance(r, Receipt)][:1]
    return ident.did, receipts  # type: ignore[return-value]


@pytest.fixture(scope="module")
def client(shared_node: RunningNode):  # type: ignore[no-untyped-def]
    with Client(shared_node.address, timeout=60) as c:
        yield c


def test_a_history_longer_than_a_page_reads_back_whole_and_in_order(client: Client) -> None:
    did, receipts = _grow(client, 6)
    first = client.history_page(did, page_size=2)
    assert [e.seq for e in first.entries] == [0, 1] and first.next_after_seq == 1
    pages = []
    after = None
    while True:
        page = client.history_page(did, after, page_size=2)
        pages.append([e.seq for e in page.entries])
        if page.next_after_seq is None:
            break
        after = page.next_after_seq
    assert pages == [[0, 1], [2, 3], [4, 5], [6]]
    streamed = list(client.iter_history(did, page_size=2))
    assert [e.position for e in streamed] == [r.position for r in receipts]
    assert [e.type for e in streamed] == ["create"] + ["update"] * 6
    assert [e.position for e in client.history(did)] == [r.position for r in receipts]
    assert [e.seq for e in client.iter_history(did, after_seq=4, page_size=2)] == [5, 6]
    assert client.history_page(did, after_seq=6).entries == () and client.history_page(did, after_seq=99).next_after_seq is None

    async def read() -> list[int]:
        async with AsyncClient(client.address) as ac:
            assert [e.seq async for e in ac.iter_history(did, page_size=3)] == list(range(7))
            return [e.position for e in await ac.history(did)]

    assert asyncio.run(read()) == [r.position for r in receipts]


def test_a_page_stops_at_its_byte_budget(client: Client) -> None:
    """Large operations: a page carries at most MAX_HISTORY_PAGE_BYTES of them, whatever page_size asks."""
    did, receipts = _grow(client, 80, publish_bytes=60_000)
    page = client.history_page(did, page_size=1000)
    assert 0 < len(page.entries) < 81 and page.next_after_seq == page.entries[-1].seq
    assert sum(len(e.payload) for e in page.entries) <= MAX_HISTORY_PAGE_BYTES
    assert [e.position for e in client.history(did)] == [r.position for r in receipts]


def test_a_request_from_before_paging_gets_all_or_too_large_never_a_truncated_history(client: Client, shared_node: RunningNode) -> None:
    small, _ = _grow(client, 3)
    long, receipts = _grow(client, MAX_HISTORY_PAGE)
    with grpc.insecure_channel(shared_node.address) as ch:
        call = ch.unary_unary(HISTORY)
        whole = pb.HistoryResponse.FromString(call(pb.HistoryRequest(did=small).SerializeToString(), timeout=30))
        assert [e.seq for e in whole.entries] == [0, 1, 2, 3] and not whole.HasField("next_after_seq")
        with pytest.raises(grpc.RpcError) as exc:
            call(pb.HistoryRequest(did=long).SerializeToString(), timeout=30)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(dict(exc.value.trailing_metadata())["grpc-status-details-bin"]).details[0].Unpack(info)
    assert info.reason == "TOO_LARGE" and info.metadata["entries"] == str(MAX_HISTORY_PAGE + 1)
    # The client pages: everything, in order.
    assert [e.position for e in client.history(long)] == [r.position for r in receipts]
    with pytest.raises(errors.UnknownDid):
        client.history_page(new_create()[0].did)
