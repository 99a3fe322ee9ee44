"""The SDK's initiator and responder over TLS (docs/tls.md): a device responder served with
:func:`didnode.auth.serve` (``tls=``), an :class:`~didnode.auth.Authenticator` with ``tls=``.

Key states come from the plaintext ``shared_node`` (read as the node answers:
what is under test here is the carriage, not how a device verifies the
node); the device responder runs in this process on 127.0.0.1 and is
always stopped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from didnode import errors
from didnode.auth import Authenticator, HandshakeResponder, Party, ResponderSetup, serve
from didnode.client import AsyncClient, Client
from didnode.clock import wall_ms
from didnode.core.handshake import LocalIdentity, MemoryNonceStore
from didnode.wire.tls import TlsClientConfig, TlsServerConfig
from tests.conftest import RunningNode
from tests.factory import Identity, new_create
from tests.tlsfiles import NodeKeyStates, Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def pair(shared_node: RunningNode) -> tuple[Identity, Identity]:
    """(initiator, responder) device identities on the node."""
    (a, create_a), (b, create_b) = new_create(), new_create()
    with Client(shared_node.address) as c:
        c.submit(create_a)
        c.submit(create_b)
    return a, b


def me(ident: Identity) -> LocalIdentity:
    return LocalIdentity.from_signing_key(ident.did, ident.current, ident.key)


async def with_tls_device(node: RunningNode, ident: Identity, tmp: Path, tls: TlsServerConfig, body: Callable[[str], Awaitable[Any]]) -> Any:
    """Serve ``ident``'s responder with ``tls`` on 127.0.0.1 while ``body(address)`` runs."""
    async with AsyncClient(node.address) as nc:
        party = Party(me(ident), node.network, MemoryNonceStore(not_before_ms=wall_ms()), NodeKeyStates(nc))
        server = await serve(HandshakeResponder(ResponderSetup(party)), "127.0.0.1:0", tls=tls)
        try:
            return await asyncio.wait_for(body(f"127.0.0.1:{server.port}"), 30)
        finally:
            await server.stop(0)


def handshake(node: RunningNode, initiator: Identity, tls: TlsClientConfig | None) -> Callable[[str], Awaitable[Any]]:
    async def body(address: str) -> Any:
        async with AsyncClient(node.address) as nc:
            auth = Authenticator(me(initiator), node.network, NodeKeyStates(nc), tls=tls)
            try:
                return await auth.authenticate(address, timeout=10)
            finally:
                await auth.close()

    return body


def test_handshake_over_tls(shared_node: RunningNode, pair: tuple[Identity, Identity], pki: Pki, tmp_path: Path) -> None:
    a, b = pair
    est = asyncio.run(with_tls_device(shared_node, b, tmp_path, pki.server(), handshake(shared_node, a, pki.client())))
    assert est.peer_did == b.did


def test_handshake_over_mutual_tls(shared_node: RunningNode, pair: tuple[Identity, Identity], pki: Pki, tmp_path: Path) -> None:
    a, b = pair
    est = asyncio.run(with_tls_device(shared_node, b, tmp_path, pki.server(client_ca="ca"), handshake(shared_node, a, pki.client(cert="client"))))
    assert est.peer_did == b.did


def test_initiator_with_the_wrong_ca(shared_node: RunningNode, pair: tuple[Identity, Identity], pki: Pki, tmp_path: Path) -> None:
    a, b = pair
    with pytest.raises(errors.TlsUntrustedCertificate) as exc:
        asyncio.run(with_tls_device(shared_node, b, tmp_path, pki.server(), handshake(shared_node, a, pki.client(ca="other-ca"))))
    assert "127.0.0.1:" in str(exc.value)


def test_initiator_without_the_required_client_certificate(shared_node: RunningNode, pair: tuple[Identity, Identity], pki: Pki, tmp_path: Path) -> None:
    a, b = pair
    with pytest.raises(errors.TlsClientCertificateRequired):
        asyncio.run(with_tls_device(shared_node, b, tmp_path, pki.server(client_ca="ca"), handshake(shared_node, a, pki.client())))


def test_plaintext_initiator_to_a_tls_responder(shared_node: RunningNode, pair: tuple[Identity, Identity], pki: Pki, tmp_path: Path) -> None:
    a, b = pair
    with pytest.raises(errors.NodeUnavailable, match="requires TLS"):
        asyncio.run(with_tls_device(shared_node, b, tmp_path, pki.server(), handshake(shared_node, a, None)))
