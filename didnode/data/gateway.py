"""The data gateway: anchors many devices' signed segment heads in few ledger operations (docs/data.md).

:class:`Anchorer` is the core: it packs heads into ``anchor`` operations of
at most :data:`~didnode.core.operations.MAX_HEADS` heads and
:data:`~didnode.core.operations.MAX_PUBLISH_PAYLOAD_BYTES` of payload, signs
them with its own DID's assertionMethod key, keeps that DID's seq/prev chain
(one anchor at a time; refetched on SEQUENCE_MISMATCH / PREV_MISMATCH), and
when the node refuses an anchor it reads the ``rejected`` detail
(``index:REASON;...``), reports each refused head with its reason, drops
them and submits the rest. Heads of one stream keep their order (sorted by
first sequence number within a submission). The device itself uses an
:class:`Anchorer` to anchor without a gateway (``didctl data anchor``).

:class:`Gateway` queues heads from many devices and anchors them in the
background; :func:`serve` puts it behind the ``DataGateway`` gRPC service.
The gateway is untrusted: it can drop or delay heads, never alter them (a
changed byte breaks the device's signature or the head's encoding).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from nacl.signing import SigningKey

from didnode.api.v1 import gateway_pb2 as gpb
from didnode.api.v1 import gateway_pb2_grpc
from didnode.client.sync import Client
from didnode.core import builder
from didnode.core.data.heads import SignedHead, decode_signed_head
from didnode.core.operations import MAX_HEADS, MAX_PUBLISH_PAYLOAD_BYTES
from didnode.errors import DidnodeError, PrevMismatch, RateLimited, SequenceMismatch, Unavailable

log = logging.getLogger("didnode.data.gateway")

# Room for the operation's own members (type, network, did, seq, prev) around the heads.
PAYLOAD_OVERHEAD = 1024
RETRIES = 5  # transient failures (node unavailable, rate limited, a lost seq race) per anchor


@dataclass(frozen=True, slots=True)
class HeadOutcome:
    """What became of one head: anchored at ``position`` (``reason`` empty), or refused with the node's ``reason``."""

    head_hash: bytes
    position: int | None
    reason: str = ""
    message: str = ""

    @property
    def anchored(self) -> bool:
        return self.position is not None and not self.reason


def parse_rejected(err: DidnodeError, count: int) -> dict[int, str]:
    """Index -> reason of the heads an anchor refusal names (``rejected``, else the one ``head``); {} when the
    refusal is about the operation, not its heads. Indexes outside ``0..count-1`` are ignored."""
    out: dict[int, str] = {}
    for item in err.details.get("rejected", "").split(";"):
        index, _, reason = item.partition(":")
        if index.isdigit() and reason and int(index) < count:
            out[int(index)] = reason
    head = err.details.get("head", "")
    if not out and head.isdigit() and int(head) < count:
        out[int(head)] = err.reason
    return out


def in_stream_order(items: list[tuple[int, SignedHead]]) -> list[tuple[int, SignedHead]]:
    """``items`` (index, head) with each stream's heads sorted by first sequence number, in the slots that
    stream had (other streams' heads do not move): a reordering by the transport costs nothing."""
    slots: dict[tuple[str, str], list[int]] = {}
    for n, (_, h) in enumerate(items):
        slots.setdefault((h.head.did, h.head.stream), []).append(n)
    out = list(items)
    for idx in slots.values():
        for n, item in zip(idx, sorted((items[n] for n in idx), key=lambda it: it[1].head.first)):
            out[n] = item
    return out


class Anchorer:
    """Anchors signed heads for ``did`` (the gateway's DID, or the device's own).

    Preconditions: ``key_id`` is a current assertionMethod key of ``did`` and
    ``signing_key`` its secret; ``client`` talks to a node of ``network``. Not
    thread-safe: one :meth:`anchor` at a time (the DID's operations chain).
    """

    def __init__(self, client: Client, network: str, did: str, key_id: str, signing_key: SigningKey, max_heads: int = MAX_HEADS) -> None:
        self.client = client
        self.network = network
        self.did = did
        self.kid = f"{did}#{key_id}"
        self._key = signing_key
        self.max_heads = max(1, min(max_heads, MAX_HEADS))
        self._seq: int | None = None
        self._prev = ""
        self.ops = 0  # anchor operations accepted

    def _refresh(self) -> None:
        state = self.client.state(self.did)
        self._seq, self._prev = state.seq + 1, state.last

    def _batches(self, heads: list[SignedHead]) -> tuple[list[SignedHead], list[SignedHead]]:
        """The next operation's heads (within both limits) and the rest."""
        size = PAYLOAD_OVERHEAD
        for n, h in enumerate(heads):
            size += 4 * (len(h.raw) + 2) // 3 + 3  # base64url and its quotes and comma
            if n >= self.max_heads or size > MAX_PUBLISH_PAYLOAD_BYTES:
                return heads[:n], heads[n:]
        return heads, []

    def _submit(self, heads: list[SignedHead]) -> int:
        """Submit one anchor of ``heads``; returns its position. Retries transient failures (bounded)."""
        for attempt in range(RETRIES):
            if self._seq is None:
                self._refresh()
            assert self._seq is not None
            op = builder.sign(builder.anchor(self.network, self.did, self._seq, self._prev, [h.raw for h in heads]), [(self.kid, self._key)])
            try:
                receipt = self.client.submit(op)
            except (SequenceMismatch, PrevMismatch):
                self._seq = None  # another writer of this DID (or a lost reply): read the chain again
                continue
            except (RateLimited, Unavailable) as exc:
                if attempt == RETRIES - 1:
                    raise
                time.sleep(min(2.0, int(exc.details.get("retry_after_ms", "0") or 0) / 1000 or 0.1 * 2**attempt))
                self._seq = None
                continue
            self._seq, self._prev = receipt.seq + 1, receipt.op_hash.hex()
            self.ops += 1
            return receipt.position
        raise SequenceMismatch(f"{self.did}'s operations kept changing under the anchor ({RETRIES} tries)", did=self.did)

    def _repeated(self, h: SignedHead) -> HeadOutcome:
        """A head the node already holds (a re-send after a lost reply): its outcome is where it is anchored,
        so that sending again is harmless. The node said HEAD_REPEATED only for this very head's hash."""
        try:
            where = self.client.anchor(h.head.did, h.head.stream, h.head.first)
        except DidnodeError as exc:
            return HeadOutcome(h.hash, None, "HEAD_REPEATED", f"anchored already; its position could not be read: {exc}")
        return HeadOutcome(h.hash, where.position)

    def anchor(self, raw_heads: list[bytes]) -> list[HeadOutcome]:
        """Anchor ``raw_heads`` (signed head bytes); one outcome per head, in the given order.

        A head that does not decode is refused MALFORMED_HEAD here; a head the node refuses is
        reported with the node's reason and dropped, the others resubmitted; a head the node holds
        already (HEAD_REPEATED) is reported anchored where it is. An error that is
        about the operation rather than its heads (the gateway's own key, the node down after
        retries) is every remaining head's outcome.
        """
        outcomes: dict[int, HeadOutcome] = {}
        todo: list[tuple[int, SignedHead]] = []
        for i, raw in enumerate(raw_heads):
            try:
                todo.append((i, decode_signed_head(raw)))
            except DidnodeError as exc:
                outcomes[i] = HeadOutcome(_hash(raw), None, exc.reason, str(exc))
        queue = in_stream_order(todo)
        while queue:
            batch, _rest = self._batches([h for _, h in queue])
            items, queue = queue[: len(batch)], queue[len(batch) :]
            try:
                position = self._submit(batch)
            except DidnodeError as exc:
                refused = parse_rejected(exc, len(items))
                if not refused:
                    for i, h in items:
                        outcomes[i] = HeadOutcome(h.hash, None, exc.reason, str(exc))
                    continue
                for j, reason in refused.items():
                    i, h = items[j]
                    outcomes[i] = self._repeated(h) if reason == "HEAD_REPEATED" else HeadOutcome(h.hash, None, reason, f"refused by the node: {reason}")
                    log.info("head of %s %s from %d refused: %s", h.head.did, h.head.stream, h.head.first, reason)
                queue = [it for j, it in enumerate(items) if j not in refused] + queue
                continue
            for i, h in items:
                outcomes[i] = HeadOutcome(h.hash, position)
        return [outcomes[i] for i in range(len(raw_heads))]


def _hash(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


class Gateway:
    """Queues heads from many devices and anchors them from one background thread (so one gateway DID has
    one anchor in flight). :meth:`submit` blocks until the node answered for the caller's heads.

    ``linger``: seconds to wait for more heads before an anchor (batches fill up under load).
    """

    def __init__(self, anchorer: Anchorer, linger: float = 0.02) -> None:
        self.anchorer = anchorer
        self.linger = linger
        self._cv = threading.Condition()
        self._queue: list[tuple[bytes, futures.Future[HeadOutcome]]] = []
        self._stop = False
        self.dropped = 0  # heads refused, for the operator's log
        self._thread = threading.Thread(target=self._run, name="data-gateway", daemon=True)
        self._thread.start()

    def submit(self, raw_heads: list[bytes], timeout: float = 60.0) -> list[HeadOutcome]:
        """Anchor ``raw_heads`` with the other devices' heads; one outcome per head, in order."""
        futs: list[futures.Future[HeadOutcome]] = [futures.Future() for _ in raw_heads]
        with self._cv:
            if self._stop:
                raise Unavailable("the gateway is stopping")
            self._queue.extend(zip(raw_heads, futs))
            self._cv.notify()
        return [f.result(timeout) for f in futs]

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait(0.5)
                if self._stop and not self._queue:
                    return
            time.sleep(self.linger)
            with self._cv:
                batch, self._queue = self._queue, []
            try:
                outcomes = self.anchorer.anchor([raw for raw, _ in batch])
            except Exception as exc:  # noqa: BLE001 -- a bug must not strand the waiting devices
                log.exception("anchoring failed")
                outcomes = [HeadOutcome(_hash(raw), None, getattr(exc, "reason", "INTERNAL"), str(exc)) for raw, _ in batch]
            for (_, fut), out in zip(batch, outcomes):
                self.dropped += 0 if out.anchored else 1
                fut.set_result(out)

    def close(self, timeout: float = 10.0) -> None:
        """Anchor what is queued, then stop the thread."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout)


class GatewayServicer(gateway_pb2_grpc.DataGatewayServicer):
    """The DataGateway gRPC service over a :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def SubmitHeads(self, request: gpb.SubmitHeadsRequest, context: grpc.ServicerContext) -> gpb.SubmitHeadsReply:  # noqa: N802
        if len(request.signed_heads) > 4 * MAX_HEADS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {4 * MAX_HEADS} heads per call")
        outs = self.gateway.submit(list(request.signed_heads))
        return gpb.SubmitHeadsReply(
            outcomes=[gpb.HeadOutcome(head_hash=o.head_hash, anchored=o.anchored, position=o.position or 0, reason=o.reason, message=o.message[:300]) for o in outs]
        )


def serve(gateway: Gateway, listen: str, credentials: grpc.ServerCredentials | None = None, workers: int = 16) -> tuple[grpc.Server, int]:
    """Serve ``gateway`` on ``listen`` (HOST:PORT; port 0 picks one); returns the started server and its port.

    ``credentials``: TLS (for example ``TlsServerConfig.server_credentials()`` of :mod:`didnode.wire.tls`);
    None: plaintext, which the caller allows on loopback only.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gateway"))
    gateway_pb2_grpc.add_DataGatewayServicer_to_server(GatewayServicer(gateway), server)
    port = server.add_insecure_port(listen) if credentials is None else server.add_secure_port(listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    server.start()
    return server, port


__all__ = ["Anchorer", "Gateway", "GatewayServicer", "HeadOutcome", "in_stream_order", "parse_rejected", "serve"]
