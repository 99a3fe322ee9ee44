"""The device's side of anchoring: send its pending heads to a gateway, or anchor them itself (docs/data.md).

A head stays *pending* in the device's store until an anchor position is
known for it (:meth:`SegmentStore.mark_anchored`). A gateway may drop or
delay heads: the device sees no position and sends them again (or anchors
them itself); a refused head comes back with the node's reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from didnode.api.v1 import gateway_pb2 as gpb
from didnode.api.v1 import gateway_pb2_grpc
from didnode.client.channel import open_channel
from didnode.core.data.heads import SignedHead
from didnode.data.gateway import Anchorer, HeadOutcome
from didnode.data.store import SegmentStore
from didnode.errors import NodeUnavailable
from didnode.wire.tls import TlsClientConfig


class GatewayClient:
    """A device's connection to a data gateway. Use as a context manager or call :meth:`close`."""

    def __init__(self, address: str, timeout: float = 60.0, *, tls: TlsClientConfig | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = open_channel(address, tls, aio=False)
        self._stub = gateway_pb2_grpc.DataGatewayStub(self._channel)

    def submit(self, signed_heads: list[bytes]) -> list[HeadOutcome]:
        """Hand ``signed_heads`` to the gateway; one outcome per head. Raises :class:`NodeUnavailable`
        when the gateway cannot be reached (the heads stay pending)."""
        try:
            reply = self._stub.SubmitHeads(gpb.SubmitHeadsRequest(signed_heads=signed_heads), timeout=self.timeout)
        except grpc.RpcError as err:
            raise NodeUnavailable(f"data gateway {self.address}: {err.code().name}: {err.details()}") from None  # type: ignore[attr-defined]
        if len(reply.outcomes) != len(signed_heads):
            raise NodeUnavailable(f"data gateway {self.address} answered for {len(reply.outcomes)} of {len(signed_heads)} heads")
        return [HeadOutcome(o.head_hash, o.position if o.anchored else None, "" if o.anchored else (o.reason or "DROPPED"), o.message) for o in reply.outcomes]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Sent:
    """A pending head and what came of it."""

    head: SignedHead
    outcome: HeadOutcome


def _settle(store: SegmentStore, heads: list[SignedHead], outcomes: list[HeadOutcome]) -> list[Sent]:
    out = []
    for h, o in zip(heads, outcomes):
        # A position is recorded only for this very head (a gateway answering for another hash is ignored).
        if o.anchored and o.head_hash == h.hash and o.position is not None:
            store.mark_anchored(h.hash, o.position)
        out.append(Sent(h, o))
    return out


def send_pending(store: SegmentStore, gateway: GatewayClient, stream: str | None = None) -> list[Sent]:
    """Send the store's pending heads (each stream's in order) to ``gateway``; record the anchored ones."""
    heads = store.pending_heads(stream)
    return _settle(store, heads, gateway.submit([h.raw for h in heads])) if heads else []


def anchor_pending(store: SegmentStore, anchorer: Anchorer, stream: str | None = None) -> list[Sent]:
    """Anchor the store's pending heads with the device's own DID (no gateway); record the anchored ones.

    Precondition: ``anchorer`` signs with a current assertionMethod key of the device's DID.
    """
    heads = store.pending_heads(stream)
    return _settle(store, heads, anchorer.anchor([h.raw for h in heads])) if heads else []


__all__ = ["GatewayClient", "Sent", "anchor_pending", "send_pending"]
