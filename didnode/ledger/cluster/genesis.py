"""A governed network's genesis in cluster mode: the first messages of the stream.

A governed network's log begins with its genesis (the creates of the DIDs
the inception names, then the ``govern`` inception), so in a cluster these
must be the stream's messages 1 .. n+1, in order, with nothing between them.
Each is published with ``Nats-Expected-Last-Sequence: i`` (a compare-and-set
on the whole stream: message i+1 is stored only when the stream holds exactly
i messages) and ``Nats-Msg-Id`` = its operation hash (a retried publish is
dropped as a duplicate). Before each publish the node reads message i+1 with
a direct get: when it is there already (another node started with the same
genesis file published it, or this node did before a crash), it must be that
very operation (same payload hash); anything else is a
:class:`~didnode.errors.GenesisConflict`, and the node refuses to serve.

Every node started with the same file ends up agreeing, whichever published
first: the compare-and-set makes the stream's prefix either the genesis or
something that is refused, never a mix.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Sequence

from nats.aio.client import Client as NatsClient

from didnode.core.operations import Proof
from didnode.errors import ClusterUnavailable, DidnodeError, GenesisConflict
from didnode.ledger import stream as st
from didnode.ledger.cluster.connection import NATS_ERRORS, Connection
from didnode.ledger.cluster.shared import Shared

log = logging.getLogger("didnode.cluster")

HDR_EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
ERR_WRONG_LAST_SEQ = 10071

GenesisItem = tuple[str, bytes, Sequence[Proof]]  # (did, payload, proofs)


async def ensure_genesis(shared: Shared, conn: Connection, items: Sequence[GenesisItem], deadline: float) -> int:
    """Make the stream's first ``len(items)`` messages exactly ``items``; returns how many this node published.

    Precondition: runs on the NATS loop after the connection started. Waits
    (until ``deadline``, loop time) for the stream to be checked. Raises
    :class:`GenesisConflict` when the stream begins otherwise, the
    connection's refusal (:class:`~didnode.errors.StreamMismatch`, ...), or
    :class:`ClusterUnavailable` at the deadline.
    """
    loop = shared.loop
    published = 0
    for i, (did, payload, proofs) in enumerate(items):
        want = hashlib.sha256(payload).digest()
        body = st.encode_body(payload, proofs)
        headers = {st.HDR_MSG_ID: want.hex(), HDR_EXPECTED_LAST_SEQ: str(i)}
        while True:
            nc = await _writable(conn, loop, deadline)
            got = await _message_hash(shared, nc, i + 1)
            if got is not None:
                if got[0] != want:
                    raise GenesisConflict(
                        f"stream {shared.stream} does not begin with this genesis: its message {i + 1} is operation "
                        f"{got[0].hex()[:16]}… on {got[1]}, the genesis's operation {i} is {want.hex()[:16]}… ({did}); "
                        "a governed network needs a stream of its own (another --network or --stream), "
                        "and every node of it the same genesis file",
                        stream=shared.stream, seq=i + 1,
                    )
                break
            if loop.time() > deadline:
                raise ClusterUnavailable(f"the genesis could not be published on stream {shared.stream} in time (message {i + 1})")
            # Whatever the answer (stored, a duplicate, the compare-and-set lost to another node),
            # the next round reads message i+1 again: what the stream holds there decides.
            if await _publish(shared, nc, st.subject_for(shared.network, did), body, headers):
                published += 1
            else:
                await asyncio.sleep(0.05)  # a replica that lags answers 404 a while: do not spin
    if published:
        log.info("published %d of the %d genesis operations on stream %s", published, len(items), shared.stream)
    return published


async def _writable(conn: Connection, loop: asyncio.AbstractEventLoop, deadline: float) -> NatsClient:
    """The NATS connection once the stream was found (or created) and checked."""
    while True:
        refusal = conn.refused()
        if refusal is not None:
            raise refusal
        nc = conn.nc
        if conn.writable and nc is not None and nc.is_connected:
            return nc
        if loop.time() > deadline:
            raise ClusterUnavailable(f"cannot publish the genesis: {conn.why or 'NATS is not reachable'}")
        await asyncio.sleep(0.1)


async def _message_hash(shared: Shared, nc: NatsClient, seq: int) -> tuple[bytes, str] | None:
    """(operation hash, subject) of stream message ``seq``, or None when the stream does not hold it (yet)."""
    timeout = shared.config.api_timeout_s
    try:
        msg = await asyncio.wait_for(
            nc.request(f"$JS.API.DIRECT.GET.{shared.stream}", json.dumps({"seq": seq}).encode(), timeout=timeout), timeout + 0.5
        )
    except NATS_ERRORS as exc:
        log.debug("direct get of message %d: %s", seq, type(exc).__name__)
        return None
    status = (msg.headers or {}).get("Status", "")
    if status:
        return None  # 404: no such message (yet); 408 and others: ask again
    try:
        payload, _ = st.decode_body(msg.data)
    except DidnodeError:
        return (hashlib.sha256(msg.data).digest(), (msg.headers or {}).get("Nats-Subject", "?"))  # surely not ours
    return (hashlib.sha256(payload).digest(), (msg.headers or {}).get("Nats-Subject", "?"))


async def _publish(shared: Shared, nc: NatsClient, subject: str, body: bytes, headers: dict[str, str]) -> bool:
    """Publish one genesis message with its compare-and-set; True when the stream stored it."""
    timeout = shared.config.publish_timeout_s
    try:
        msg = await asyncio.wait_for(nc.request(subject, body, timeout=timeout, headers=headers), timeout + 0.5)
        resp = json.loads(msg.data)
    except (ValueError, *NATS_ERRORS) as exc:
        log.debug("publishing a genesis message: %s", type(exc).__name__)
        await asyncio.sleep(0.2)
        return False
    err = resp.get("error") if isinstance(resp, dict) else {"description": "not an object"}
    if err is None:
        return not resp.get("duplicate", False)
    if err.get("err_code") != ERR_WRONG_LAST_SEQ:
        log.info("publishing a genesis message: %s", err.get("description", err))
        await asyncio.sleep(0.2)
    return False
