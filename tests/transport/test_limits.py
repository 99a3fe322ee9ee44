"""The node's resource limits against a real node on loopback (docs/security.md, "Limits").

Sizes per method, memory under a burst of large requests, idle connections and
streams, calls per peer, per-peer rates with retry hints. Every load here is
bounded in count and time; raw channels send what the client library would not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from didnode import errors
from didnode.api.v1 import ledger_pb2 as pb
from didnode.client import AsyncClient, Client, Receipt
from didnode.wire.limits import MAX_BATCH_CHUNK_BYTES, MAX_REQUEST_BYTES, MAX_SUBMIT_BYTES
from tests.conftest import RunningNode, start_node
from tests.factory import new_create

SUBMIT = "/didnode.v1.LedgerService/Submit"
BATCH = "/didnode.v1.LedgerService/SubmitBatch"
GET_INFO = "/didnode.v1.NodeService/GetInfo"
HANDSHAKE = "/didnode.v1.AuthService/Handshake"
SESSION = "/didnode.v1.CredentialService/IssueSessionCredential"
WATCH = "/grpc.health.v1.Health/Watch"
RAW = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", 64 << 20)]
# What a burst of 40 concurrent 4 MiB submits may add to the node's peak RSS (README and docs/security.md).
BURST_RSS_BOUND_MB = 64


def _status(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str], int | None]:
    """(code, ErrorInfo reason, ErrorInfo metadata, RetryInfo delay in ms) of a failed call."""
    reason, meta, retry = "", {}, None
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info, hint = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    reason, meta = info.reason, dict(info.metadata)
                elif detail.Unpack(hint):
                    retry = hint.retry_delay.seconds * 1000 + hint.retry_delay.nanos // 1_000_000
    return err.code(), reason, meta, retry  # type: ignore[attr-defined]


def _raw_unary(address: str, method: str, request: bytes, timeout: float = 10) -> tuple[grpc.StatusCode, str, dict[str, str], int | None]:
    with grpc.insecure_channel(address, options=RAW) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            ch.unary_unary(method)(request, timeout=timeout)
    return _status(exc.value)


def _vm(pid: int, key: str) -> int:
    """A /proc/<pid>/status figure in MiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no {key} for {pid}")


def _submit_bytes(payload_len: int) -> bytes:
    return pb.SubmitRequest(operation=pb.Operation(payload=b"x" * payload_len)).SerializeToString()


@pytest.fixture(scope="module")
def plain_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    n = start_node(tmp_path_factory.mktemp("limits") / "node")
    yield n
    n.stop()


# -- 1. sizes and memory -----------------------------------------------------------


def test_a_submit_over_its_method_limit_is_refused_unparsed_with_the_limit_named(plain_node: RunningNode) -> None:
    # Over Submit's limit but under every other: refused by the method's deserializer, never parsed.
    request = _submit_bytes(MAX_SUBMIT_BYTES)
    assert MAX_SUBMIT_BYTES < len(request) <= MAX_REQUEST_BYTES
    code, reason, meta, _ = _raw_unary(plain_node.address, SUBMIT, request)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "TOO_LARGE")
    assert meta == {"field": "message", "size": str(len(request)), "limit": str(MAX_SUBMIT_BYTES)}
    # Over every method's limit: grpc refuses it before the node copies it.
    code, _, _, _ = _raw_unary(plain_node.address, SUBMIT, _submit_bytes(4 << 20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The client library names both TOO_LARGE.
    with Client(plain_node.address, timeout=10) as c:
        ident, op = new_create()
        for size in (MAX_SUBMIT_BYTES, 4 << 20):
            big = type(op)(op.type, op.network, op.did, b"x" * size, op.proofs)
            with pytest.raises(errors.TooLarge):
                c.submit(big)
        assert isinstance(c.submit(op), Receipt)


def test_a_batch_chunk_over_its_byte_limit_is_refused_and_the_client_splits_by_bytes(plain_node: RunningNode) -> None:
    chunk = pb.SubmitBatchRequest(operations=[pb.Operation(payload=b"x" * 60_000) for _ in range(MAX_BATCH_CHUNK_BYTES // 60_000 + 1)])
    with grpc.insecure_channel(plain_node.address, options=RAW) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            list(ch.stream_stream(BATCH)(iter([chunk.SerializeToString()]), timeout=10))
    assert exc.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    # 1,024 operations of ~2.5 KiB are over 1 MiB together: the client cuts the chunk by bytes.
    svc = [(f"s{i}", "LinkedDomains", "https://" + "d" * 140 + ".example") for i in range(16)]
    from didnode.core import builder

    ops = [new_create(services=[builder.service(*s) for s in svc])[1] for _ in range(1024)]
    assert sum(len(o.payload) for o in ops) > MAX_BATCH_CHUNK_BYTES
    with Client(plain_node.address, timeout=60) as c:
        outcomes = list(c.submit_batch(ops, chunk_size=1024))
    assert len(outcomes) == 1024 and all(isinstance(o, Receipt) for o in outcomes), [o for o in outcomes if not isinstance(o, Receipt)][:1]


def test_a_burst_of_large_submits_keeps_the_node_rss_bounded(node: RunningNode) -> None:
    """40 concurrent 4 MiB submits over 8 connections: the node's peak RSS grows by less than BURST_RSS_BOUND_MB.

    (Before the limits, this burst took the node from 47 to 359 MiB; 160 x 15 MiB to 6.8 GB.)
    """
    with Client(node.address, timeout=10) as c:
        c.node_info()
    pid = node.proc.pid
    before = _vm(pid, "VmHWM")
    request = _submit_bytes(4 << 20)

    async def burst() -> list[grpc.StatusCode]:
        chans = [grpc.aio.insecure_channel(node.address, options=RAW) for _ in range(8)]
        try:

            async def one(i: int) -> grpc.StatusCode:
                try:
                    await chans[i % 8].unary_unary(SUBMIT)(request, timeout=30)
                    return grpc.StatusCode.OK
                except grpc.aio.AioRpcError as err:
                    return err.code()

            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), 60)
        finally:
            for ch in chans:
                await ch.close()

    codes = asyncio.run(burst())
    peak = _vm(pid, "VmHWM")
    assert peak - before < BURST_RSS_BOUND_MB, f"peak RSS {peak} MiB, {before} MiB before the burst"
    assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    with Client(node.address, timeout=10) as c:
        assert isinstance(c.submit(new_create()[1]), Receipt)


# -- 2. connections, streams, descriptors -------------------------------------------


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (everything it sent is drained)."""
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # and an empty SETTINGS frame


def test_idle_connections_and_streams_are_closed_and_others_are_served(tmp_path: Path) -> None:
    n = start_node(tmp_path / "n", extra=["--connect-timeout", "1", "--idle-timeout", "1", "--stream-idle-timeout", "1"])
    silent: list[socket.socket] = []
    h2: list[socket.socket] = []
    try:
        host, port = n.address.rsplit(":", 1)
        for i in range(520):
            s = socket.create_connection((host, int(port)), timeout=5)
            if i >= 500:
                s.sendall(PREFACE)  # a real HTTP/2 connection that never calls anything
            s.setblocking(False)
            (h2 if i >= 500 else silent).append(s)

        async def idle_streams() -> list[tuple[Any, ...]]:
            async with grpc.aio.insecure_channel(n.address) as ch:
                never = asyncio.Event()

                async def nothing() -> Any:
                    await never.wait()
                    yield b""  # pragma: no cover

                async def one_then_nothing() -> Any:
                    yield pb.SubmitBatchRequest(operations=[]).SerializeToString()
                    await never.wait()

                async def run(requests: Any) -> tuple[Any, ...]:
                    call = ch.stream_stream(BATCH)(requests, timeout=20)
                    replies = 0
                    t0 = time.monotonic()
                    try:
                        async for _ in call:
                            replies += 1
                    except grpc.aio.AioRpcError as err:
                        return (*_status(err)[:2], replies, time.monotonic() - t0)
                    return ("ended", "", replies, time.monotonic() - t0)

                return list(await asyncio.gather(*(run(nothing()) for _ in range(3)), run(one_then_nothing())))

        # A well-behaved client is answered within its deadline while all of that is open.
        with Client(n.address, timeout=5) as c:
            t0 = time.monotonic()
            assert c.node_info().network == "local"
            assert time.monotonic() - t0 < 5
        streams = asyncio.run(asyncio.wait_for(idle_streams(), 30))
        for code, reason, replies, took in streams:
            assert (code, reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "IDLE_TIMEOUT")
            assert took < 10
        assert streams[-1][2] == 1  # the chunk was answered before the stream fell idle
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(_closed(s) for s in silent + h2):
            time.sleep(0.2)
        assert sum(_closed(s) for s in silent) == len(silent), "connections that never sent a preface stay open"
        assert sum(_closed(s) for s in h2) == len(h2), "HTTP/2 connections without calls stay open"
        with Client(n.address, timeout=5) as c:
            assert c.node_info().network == "local"
    finally:
        for s in silent + h2:
            s.close()
        n.stop()


def test_the_node_raises_its_descriptor_limit_and_caps_connections_below_it(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} is too low to show the raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        n = start_node(tmp_path / "n", extra=["--max-connections", "50"])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    socks: list[socket.socket] = []
    try:
        limits = Path(f"/proc/{n.proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert int(line.split()[3]) > 1024, line
        host, port = n.address.rsplit(":", 1)
        for _ in range(80):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.setblocking(False)
            socks.append(s)
        time.sleep(0.5)
        assert sum(not _closed(s) for s in socks) <= 50
    finally:
        for s in socks:
            s.close()
        n.stop()


def test_calls_per_peer_are_bounded_and_idle_batch_streams_give_way_to_busy_ones(tmp_path: Path) -> None:
    extra = ["--max-calls-per-peer", "3", "--max-batch-chunks", "2", "--max-batch-chunks-per-peer", "2", "--stream-idle-timeout", "30"]
    n = start_node(tmp_path / "n", extra=extra)
    try:

        async def scenario() -> None:
            async with grpc.aio.insecure_channel(n.address) as ch:
                never = asyncio.Event()

                async def nothing() -> Any:
                    await never.wait()
                    yield b""  # pragma: no cover

                async def ended(call: Any) -> tuple[Any, ...]:
                    try:
                        async for _ in call:
                            pass
                    except grpc.aio.AioRpcError as err:
                        return _status(err)[:2]
                    return ("ended",)

                idle = [ch.stream_stream(BATCH)(nothing(), timeout=60) for _ in range(2)]
                watch = ch.unary_stream(WATCH)(b"", timeout=60)
                await watch.read()  # the current status: the watch is open
                await asyncio.sleep(0.3)
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await ch.unary_unary(GET_INFO)(b"", timeout=5)
                code, reason, meta, _ = _status(exc.value)
                assert (code, reason, meta["limit"]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_CALLS", "3")
                watch.cancel()
                await asyncio.sleep(0.3)
                # The two idle batch streams hold both chunk slots while they wait for a chunk; a busy
                # batch needs them: the idle ones are closed after 5 s (not 30), the batch goes through.
                endings = [asyncio.ensure_future(ended(call)) for call in idle]
                t0 = time.monotonic()
                async with AsyncClient(n.address, timeout=30) as c:
                    outcomes = [o async for o in c.submit_batch([new_create()[1] for _ in range(50)], chunk_size=10)]
                assert len(outcomes) == 50 and all(isinstance(o, Receipt) for o in outcomes)
                assert time.monotonic() - t0 < 15
                done = [e.result() for e in endings if e.done()]
                assert done and set(done) == {(grpc.StatusCode.DEADLINE_EXCEEDED, "IDLE_TIMEOUT")}  # the one in the way
                for call in idle:
                    call.cancel()
                await asyncio.sleep(0.3)
                assert await ch.unary_unary(GET_INFO)(b"", timeout=5)

        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        n.stop()


def test_calls_still_waiting_for_their_request_count_per_peer_and_end_when_idle(tmp_path: Path) -> None:
    """A unary call whose request message never comes (a slow sender) holds a call of its peer, then is ended."""
    n = start_node(tmp_path / "n", extra=["--max-calls-per-peer", "3", "--stream-idle-timeout", "1"])
    try:

        async def scenario() -> None:
            async with grpc.aio.insecure_channel(n.address) as ch:
                never = asyncio.Event()

                async def nothing() -> Any:
                    await never.wait()
                    yield b""  # pragma: no cover

                async def outcome(call: Any) -> tuple[Any, ...]:
                    try:
                        await call
                    except grpc.aio.AioRpcError as err:
                        return _status(err)[:2]
                    return ("answered",)

                t0 = time.monotonic()
                slow = [asyncio.ensure_future(outcome(ch.stream_unary(SUBMIT)(nothing(), timeout=30))) for _ in range(3)]
                await asyncio.sleep(0.3)
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await ch.unary_unary(GET_INFO)(b"", timeout=5)
                assert _status(exc.value)[:2] == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_CALLS")
                assert await asyncio.gather(*slow) == [(grpc.StatusCode.DEADLINE_EXCEEDED, "IDLE_TIMEOUT")] * 3
                assert time.monotonic() - t0 < 10
                assert await ch.unary_unary(GET_INFO)(b"", timeout=5)

        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        n.stop()


# -- 3. per-peer rates ---------------------------------------------------------------


def test_submissions_over_the_peer_rate_get_rate_limited_with_a_retry_hint(tmp_path: Path) -> None:
    # Refusals answered at once (the hold is test_a_refused_peer_is_answered_only_after_a_hold).
    n = start_node(tmp_path / "n", extra=["--submit-rate", "1", "--submit-burst", "1024", "--refusal-hold-ms", "0"])
    try:
        with Client(n.address, timeout=30) as c:
            assert all(isinstance(o, Receipt) for o in c.submit_batch([new_create()[1] for _ in range(1024)], chunk_size=1024))
            ident, op = new_create()
            with pytest.raises(errors.RateLimited) as exc:
                c.submit(op)
            hint = exc.value.retry_after_ms
            assert hint is not None and 0 < hint <= 1000
            req = pb.SubmitRequest(operation=pb.Operation(payload=op.payload, proofs=[pb.Proof(kid=p.kid, signature=p.signature) for p in op.proofs]))
            code, reason, meta, retry = _raw_unary(n.address, SUBMIT, req.SerializeToString())
            assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
            assert retry is not None and int(meta["retry_after_ms"]) == retry and 0 < retry <= 1000
            time.sleep(retry / 1000 + 0.05)
            assert isinstance(c.submit(op), Receipt)
            # A batch chunk that would wait longer than the pacing bound (1 s) for its tokens is refused.
            with pytest.raises(errors.RateLimited) as exc:
                list(c.submit_batch([new_create()[1] for _ in range(5)]))
            assert exc.value.retry_after_ms
            # Reads are not rate limited.
            assert c.node_info().network == "local"
    finally:
        n.stop()


def test_a_peer_pays_for_forged_submissions_with_its_rate(tmp_path: Path) -> None:
    """A Submit that does not verify costs its peer --invalid-submit-cost more tokens: forged work is throttled."""
    n = start_node(tmp_path / "n", extra=["--submit-rate", "1", "--submit-burst", "1024", "--invalid-submit-cost", "600"])
    try:
        with Client(n.address, timeout=30) as c:
            _, op = new_create()
            sig = op.proofs[0].signature
            forged = dataclasses.replace(op, proofs=(dataclasses.replace(op.proofs[0], signature=sig[:-1] + bytes([sig[-1] ^ 1])),))
            with pytest.raises(errors.InvalidSignature):
                c.submit(forged)  # 1 + 600 of the 1,024 tokens
            with pytest.raises(errors.InvalidSignature):
                c.submit(forged)  # 423 left: admitted (1), forged again: 600 more, the bucket is in debt
            with pytest.raises(errors.RateLimited) as exc:
                c.submit(forged)
            assert exc.value.retry_after_ms
            # A valid operation from the same peer waits for the debt to be paid too.
            with pytest.raises(errors.RateLimited):
                c.submit(op)
    finally:
        n.stop()


def test_a_refused_peer_is_answered_only_after_a_hold(tmp_path: Path) -> None:
    """A forged Submit that leaves its peer in debt, and a call refused RATE_LIMITED, are answered only once the
    peer's tokens are back, at most --refusal-hold-ms later: a flood of refused calls cannot come faster than
    the calls a peer may keep open. A forged Submit within the peer's tokens is answered at once."""
    n = start_node(tmp_path / "n", extra=["--submit-rate", "1", "--submit-burst", "1024", "--invalid-submit-cost", "600", "--refusal-hold-ms", "600"])
    try:
        with Client(n.address, timeout=30) as c:
            _, op = new_create()
            sig = op.proofs[0].signature
            forged = dataclasses.replace(op, proofs=(dataclasses.replace(op.proofs[0], signature=sig[:-1] + bytes([sig[-1] ^ 1])),))

            def timed(fn: Any) -> tuple[type, float]:
                t = time.monotonic()
                try:
                    fn()
                except errors.DidnodeError as err:
                    return type(err), time.monotonic() - t
                return type(None), time.monotonic() - t

            kind, took = timed(lambda: c.submit(forged))  # 1 + 600 of the 1,024 tokens: not in debt
            assert kind is errors.InvalidSignature and took < 0.5, took
            kind, took = timed(lambda: c.submit(forged))  # 1 + 600 of 423: in debt (178 s at 1/s): held
            assert kind is errors.InvalidSignature and took >= 0.55, took
            kind, took = timed(lambda: c.submit(op))  # over the rate: held as long, then RATE_LIMITED
            assert kind is errors.RateLimited and 0.55 <= took < 5, took
            # Reads are neither refused nor held.
            kind, took = timed(lambda: c.node_info())
            assert kind is type(None) and took < 0.5
    finally:
        n.stop()


def test_handshakes_and_session_credentials_share_one_rate_per_peer(tmp_path: Path) -> None:
    n = start_node(tmp_path / "n", extra=["--handshake-rate", "1", "--handshake-burst", "2", "--refusal-hold-ms", "0"])
    try:
        reasons = []
        with grpc.insecure_channel(n.address) as ch:
            for _ in range(2):
                with pytest.raises(grpc.RpcError) as exc:
                    list(ch.stream_stream(HANDSHAKE)(iter(()), timeout=10))
                reasons.append(_status(exc.value)[1])
            assert "RATE_LIMITED" not in reasons
            with pytest.raises(grpc.RpcError) as exc:
                list(ch.stream_stream(HANDSHAKE)(iter(()), timeout=10))
            code, reason, _, retry = _status(exc.value)
            assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED") and retry and retry <= 1000
            with pytest.raises(grpc.RpcError) as exc:
                ch.unary_unary(SESSION)(b"", timeout=10)
            assert _status(exc.value)[1] == "RATE_LIMITED"
    finally:
        n.stop()
