"""Shared by the data tests: devices created through a real node, recorders, gateways on loopback."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc

from didnode.client import Client
from didnode.core import builder
from didnode.data import Recorder, SegmentStore
from didnode.data.gateway import Anchorer, Gateway, serve
from didnode.data.uplink import GatewayClient
from tests.factory import NET, Identity, new_create

T0 = 1_700_000_000_000


def create_all(client: Client, idents_ops: list) -> None:  # type: ignore[type-arg]
    """Create DIDs through the node in one batch; every create accepted."""
    outs = list(client.submit_batch(op for _, op in idents_ops))
    bad = [o for o in outs if isinstance(o, Exception)]
    assert not bad, bad[:3]


@dataclass
class Device:
    ident: Identity
    store_dir: Path
    recorder: Recorder
    clock: int = T0

    @property
    def store(self) -> SegmentStore:
        return SegmentStore(self.store_dir)

    def readings(self, n: int) -> list[int]:
        out = []
        for _ in range(n):
            self.clock += 1000
            out.append(self.recorder.record(f'{{"t":{self.clock % 977}}}'.encode(), self.clock))
        return out


def make_devices(root: Path, admin: Identity, n: int, segment_size: int) -> tuple[list[Device], list]:  # type: ignore[type-arg]
    """``n`` device identities controlled by ``admin`` (their creates, to submit) and a recorder each."""
    made = [new_create([admin]) for _ in range(n)]
    devices = []
    for i, (ident, _) in enumerate(made):
        d = root / f"dev{i}"
        devices.append(Device(ident, d, Recorder(d, NET, ident.did, ident.current, ident.key, "temp", segment_size=segment_size)))
    return devices, made


@dataclass
class RunningGateway:
    ident: Identity
    gateway: Gateway
    server: grpc.Server
    address: str
    clients: list[GatewayClient] = field(default_factory=list)

    def client(self) -> GatewayClient:
        c = GatewayClient(self.address, timeout=30)
        self.clients.append(c)
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.server.stop(1).wait(5)
        self.gateway.close()
        self.gateway.anchorer.client.close()


def start_gateway(node_address: str, ident: Identity, linger: float = 0.02) -> RunningGateway:
    anchorer = Anchorer(Client(node_address, timeout=30), NET, ident.did, ident.current, ident.key)
    gw = Gateway(anchorer, linger=linger)
    server, port = serve(gw, "127.0.0.1:0")
    return RunningGateway(ident, gw, server, f"127.0.0.1:{port}")


def revoke(client: Client, device: Identity, admin: Identity, reason: str = "compromised") -> None:
    """The controller revokes the device's current key (the device's compromise)."""
    st = client.state(device.did)
    client.submit(builder.sign(builder.revoke(NET, device.did, st.seq + 1, st.last, device.current, reason), [(admin.kid, admin.key)]))
