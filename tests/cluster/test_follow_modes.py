"""How a node reads the stream: with batched direct gets when the stream allows them (the
default), with a pull consumer on a stream an administrator created without ``allow_direct``.
Both give the same messages with the same times, so nodes converge either way."""

from __future__ import annotations

import asyncio
import datetime
import json
import random
from pathlib import Path

from didnode.client import Client, Receipt
from didnode.ledger import stream as st
from didnode.ledger.cluster.follower import _rfc3339_ms
from tests.cluster.conftest import info, start_cluster_node, stream_info, wait_converged
from tests.cluster.test_converge import submit_round_robin
from tests.factory import new_create
from tools.cluster import NatsCluster

NET = "nodirect"


def rfc3339_nano(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC (trailing zeros of the fraction trimmed), as NATS sends it."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return base + ("." + digits if digits else "") + "Z"


def test_direct_get_times_match_consumer_times() -> None:
    """A direct get's timestamp string gives the millisecond a consumer's nanoseconds give."""
    rng = random.Random(7)
    samples = [1_795_580_278_000_000_000, 1_795_580_278_800_442_900, 1_795_580_278_000_999_999, 1_795_580_278_050_000_000]
    samples += [rng.randrange(1_600_000_000 * 10**9, 2_000_000_000 * 10**9) for _ in range(2000)]
    for ns in samples:
        assert _rfc3339_ms(rfc3339_nano(ns)) == ns // 1_000_000, rfc3339_nano(ns)
    assert _rfc3339_ms("2026-11-25T05:17:58.8004429+01:00") == _rfc3339_ms("2026-11-25T04:17:58.8004429Z")


def test_a_stream_without_direct_gets_is_followed_with_a_consumer(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    async def create_stream() -> None:
        import nats

        nc = await nats.connect(servers=nats_cluster.admin_urls, connect_timeout=2, max_reconnect_attempts=2)  # an operator
        try:
            name = st.default_stream_name(NET)
            cfg = {**st.stream_config(name, NET, 3, 120.0, True), "allow_direct": False}
            resp = json.loads((await nc.request(f"$JS.API.STREAM.CREATE.{name}", json.dumps(cfg).encode(), timeout=10)).data)
            assert "error" not in resp, resp
        finally:
            await nc.close()

    asyncio.run(create_stream())
    nodes = [start_cluster_node(tmp_path / f"n{i}", nats_cluster.urls[i:] + nats_cluster.urls[:i], NET) for i in range(2)]
    try:
        ops = [new_create(network=NET)[1] for _ in range(300)]
        outcomes = submit_round_robin(nodes, ops)
        assert all(isinstance(o, Receipt) for o in outcomes), [o for o in outcomes if not isinstance(o, Receipt)][:1]
        size, _, _ = wait_converged(nodes)
        assert size >= 302  # two node DIDs and the creates
        with Client(nodes[1].address) as c:  # written through node 0, read on node 1
            assert ops[0].did in json.dumps(c.resolve(ops[0].did))
        assert all(info(n).stream_seq == info(nodes[0]).stream_last_seq for n in nodes)
        assert stream_info(nats_cluster.urls, NET)["state"]["consumer_count"] == 2  # type: ignore[index]
    finally:
        for n in nodes:
            n.stop()
