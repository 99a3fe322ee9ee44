"""The pieces of the node's limits without a node: peer keys, the chunk budget, options, request limits."""

from __future__ import annotations

import asyncio

import click
import pytest

from cli.didnode_limits import limits_from
from didnode.api.v1 import ledger_pb2 as pb
from didnode.core import builder
from didnode.core.ratelimit import Rate
from didnode.transport.guard import ChunkBudget
from didnode.transport.limits import Limits, connection_limit, peer_key, server_options
from didnode.wire import limits as wl
from didnode.wire.ledger import batch_chunks
from tests.factory import new_create


@pytest.mark.parametrize(
    "peer, key",
    [
        ("ipv4:10.0.0.7:5123", "ipv4:10.0.0.7"),
        ("ipv6:[2001:db8:1:2:3::1]:443", "ipv6:2001:db8:1:2::/64"),
        ("ipv6:[2001:db8:1:2:ffff::9]:1", "ipv6:2001:db8:1:2::/64"),
        ("ipv6:[::ffff:10.1.2.3]:80", "ipv4:10.1.2.3"),
        ("ipv6:[fe80::1%eth0]:9", "ipv6:fe80::/64"),
        ("unix:/tmp/node.sock", "unix"),
        ("unix-abstract:x", "unix-abstract"),
    ],
)
def test_limits_are_kept_per_address_and_ipv6_per_64(peer: str, key: str) -> None:
    assert peer_key(peer) == key


def test_the_chunk_budget_bounds_in_total_and_per_peer_and_wakes_waiters() -> None:
    async def run() -> list[str]:
        b = ChunkBudget(total=3, per_peer=2)
        order: list[str] = []
        await b.acquire("a")
        await b.acquire("a")
        third_a = asyncio.ensure_future(b.acquire("a"))  # a is at its share
        await b.acquire("b")
        b_second = asyncio.ensure_future(b.acquire("b"))  # the total is reached
        await asyncio.sleep(0.01)
        assert not third_a.done() and not b_second.done() and b.contended
        b.release("a")
        await asyncio.sleep(0.01)
        order.append("a" if third_a.done() else "-")
        order.append("b" if b_second.done() else "-")
        b.release("a", 2)
        await asyncio.sleep(0.01)
        order.append("b" if b_second.done() else "-")
        assert not b.contended and b.used == 2 and b.by_peer == {"b": 2}
        b.release("b", 2)
        assert b.used == 0 and b.by_peer == {}
        return order

    # After a's first release: a takes its slot back (a was first); b waits for the total.
    assert asyncio.run(run()) == ["a", "-", "b"]


def test_limits_refuse_contradictions() -> None:
    with pytest.raises(ValueError, match="batch chunk"):
        Limits(submit_rate=Rate(10, 100))
    assert Limits(submit_rate=Rate(0, 0)).submit_rate.unlimited
    with pytest.raises(ValueError):
        Limits(max_calls=0)
    with pytest.raises(click.UsageError):
        limits_from({**_cli_defaults(), "limit_handshake_rate": 5, "limit_handshake_burst": 0})


def _cli_defaults() -> dict[str, object]:
    from cli.didnode_limits import _OPTIONS, _default, _param

    return {_param(o): _default(p) for o, p, _k, _t in _OPTIONS}


def test_the_cli_defaults_are_the_limits_defaults() -> None:
    assert limits_from(_cli_defaults()) == Limits()


def test_server_options_bound_messages_connections_and_idle_time() -> None:
    opts = dict(server_options(Limits(), nofile=20_000))
    assert opts["grpc.max_receive_message_length"] == wl.MAX_REQUEST_BYTES == 256 * 1024
    assert opts["grpc.max_allowed_incoming_connections"] == 20_000 - 256
    assert opts["grpc.server_handshake_timeout_ms"] == 10_000 and opts["grpc.max_connection_idle_ms"] == 300_000
    assert opts["grpc.max_connection_age_ms"] == opts["grpc.max_connection_age_grace_ms"] == 3_600_000
    assert opts["grpc.http2.bdp_probe"] == 0
    off = dict(server_options(Limits(connection_idle_s=0, connection_age_s=0, max_connections=100), nofile=20_000))
    assert "grpc.max_connection_idle_ms" not in off and "grpc.max_connection_age_ms" not in off
    assert off["grpc.max_allowed_incoming_connections"] == 100
    assert connection_limit(Limits(), nofile=100) == 64


def test_the_largest_valid_submit_fits_its_limit() -> None:
    kid = "did:dnode:Qm" + "z" * 44 + "#" + "k" * 32
    assert len(kid) == wl.MAX_KID_CHARS
    op = pb.Operation(payload=b"x" * 65536, proofs=[pb.Proof(kid=kid, signature=b"s" * 64) for _ in range(16)])
    assert pb.SubmitRequest(operation=op).ByteSize() <= wl.MAX_SUBMIT_BYTES
    assert wl.request_limit("/didnode.v1.LedgerService/Submit") == wl.MAX_SUBMIT_BYTES
    assert wl.request_limit("/didnode.v1.LedgerService/Resolve") == wl.MAX_SMALL_REQUEST_BYTES


def test_batch_chunks_are_cut_by_count_and_by_bytes() -> None:
    small = [new_create()[1] for _ in range(10)]
    assert [len(c) for c in batch_chunks(small, 4)] == [4, 4, 2]
    ident, first = new_create()
    big = builder.sign(builder.update("local", ident.did, 1, "0" * 64, [builder.service("s", "T", "https://" + "a" * 400 + ".example")], None), [(ident.kid, ident.key)])
    many = [big] * 3000
    chunks = list(batch_chunks(many, 1024))
    assert sum(len(c) for c in chunks) == 3000
    assert all(pb.SubmitBatchRequest(operations=c).ByteSize() <= wl.MAX_BATCH_CHUNK_BYTES for c in chunks)


def test_the_readme_names_every_limit_option_and_its_default() -> None:
    from pathlib import Path

    from cli.didnode_limits import _OPTIONS, _default

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Node options") : readme.index("## A five-minute tour")]
    for option, path, _kind, _text in _OPTIONS:
        assert f"`{option}`" in section, option
        value = _default(path)
        if isinstance(value, int) and value:
            assert f"{value:,}" in section, (option, value)
