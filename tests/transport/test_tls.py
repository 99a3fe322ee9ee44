"""TLS on gRPC against real nodes on 127.0.0.1 (docs/tls.md): what works, and each failure with its own reason.

Three ``didnode serve`` subprocesses for the module: TLS, TLS requiring
client certificates, and TLS with an expired certificate; the plaintext
``shared_node`` for the reverse mismatch. Certificates come from
:mod:`tests.tlsfiles` (cryptography), made fresh in a tmp dir.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from didnode import errors
from didnode.auth import Authenticator, Established
from didnode.client import AsyncClient, Client
from didnode.core.handshake import LocalIdentity
from didnode.transport.server import listens_on_loopback
from didnode.wire.tls import TlsClientConfig, TlsServerConfig
from tests.conftest import BIN, ROOT, RunningNode, start_node
from tests.factory import new_create
from tests.tlsfiles import NodeKeyStates, Pki, make_pki
from cli.didnode_tls import server_tls


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _node(tmp_path_factory: pytest.TempPathFactory, extra: list[str]) -> Iterator[RunningNode]:
    n = start_node(tmp_path_factory.mktemp("tlsnode") / "node", extra=extra)
    yield n
    n.stop()


@pytest.fixture(scope="module")
def tls_node(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    yield from _node(tmp_path_factory, pki.node_args())


@pytest.fixture(scope="module")
def mtls_node(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    yield from _node(tmp_path_factory, pki.node_args(client_ca="ca"))


@pytest.fixture(scope="module")
def expired_node(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    yield from _node(tmp_path_factory, pki.node_args("expired"))


def info(address: str, tls: TlsClientConfig | None) -> str:
    with Client(address, timeout=10, tls=tls) as c:
        return c.node_info().node_did


# --------------------------------------------------------------------------
# What works
# --------------------------------------------------------------------------


def test_client_with_the_right_ca_submits_and_resolves(tls_node: RunningNode, pki: Pki) -> None:
    ident, op = new_create()
    with Client(tls_node.address, timeout=10, tls=pki.client()) as c:
        assert c.submit(op).did == ident.did
        assert c.resolve(ident.did)["didDocument"]["id"] == ident.did
        assert [e.seq for e in c.history(ident.did)] == [0]


def test_async_client_over_tls(tls_node: RunningNode, pki: Pki) -> None:
    async def go() -> str:
        async with AsyncClient(tls_node.address, timeout=10, tls=pki.client()) as c:
            return (await c.node_info()).network

    assert asyncio.run(go()) == "local"


def test_server_name_override(tls_node: RunningNode, pki: Pki) -> None:
    """The certificate is checked against the name given instead of the address's host."""
    assert info(tls_node.address, pki.client(server_name="localhost")).startswith("did:dnode:")


def test_client_certificate_where_required(mtls_node: RunningNode, pki: Pki) -> None:
    assert info(mtls_node.address, pki.client(cert="client")).startswith("did:dnode:")


def test_sdk_initiator_authenticates_to_the_node_over_tls(mtls_node: RunningNode, pki: Pki) -> None:
    """The node as responder, its key state read through the same node, both over mutual TLS."""
    tls = pki.client(cert="client")
    ident, op = new_create()
    with Client(mtls_node.address, timeout=10, tls=tls) as c:
        c.submit(op)
        node_did = c.node_info().node_did
    me = LocalIdentity.from_signing_key(ident.did, ident.current, ident.key)

    async def go() -> Established:
        async with AsyncClient(mtls_node.address, tls=tls) as nc:
            auth = Authenticator(me, mtls_node.network, NodeKeyStates(nc), tls=tls)
            try:
                return await auth.authenticate(mtls_node.address, timeout=10)
            finally:
                await auth.close()

    est = asyncio.run(go())
    assert est.peer_did == node_did and est.credential


# --------------------------------------------------------------------------
# Each failure, typed
# --------------------------------------------------------------------------


def test_wrong_ca(tls_node: RunningNode, pki: Pki) -> None:
    with pytest.raises(errors.TlsUntrustedCertificate) as exc:
        info(tls_node.address, pki.client(ca="other-ca"))
    assert exc.value.reason == "TLS_UNTRUSTED_CERTIFICATE" and tls_node.address in str(exc.value)
    assert isinstance(exc.value, errors.Unavailable) and exc.value.details["target"] == tls_node.address


def test_expired_server_certificate(expired_node: RunningNode, pki: Pki) -> None:
    with pytest.raises(errors.TlsCertificateExpired) as exc:
        info(expired_node.address, pki.client())
    assert exc.value.reason == "TLS_CERTIFICATE_EXPIRED" and "expired" in str(exc.value)


def test_name_mismatch(tls_node: RunningNode, pki: Pki) -> None:
    with pytest.raises(errors.TlsNameMismatch) as exc:
        info(tls_node.address, pki.client(server_name="node.example.org"))
    assert "node.example.org" in str(exc.value)


def test_missing_client_certificate_where_required(mtls_node: RunningNode, pki: Pki) -> None:
    with pytest.raises(errors.TlsClientCertificateRequired) as exc:
        info(mtls_node.address, pki.client())
    assert exc.value.reason == "TLS_CLIENT_CERTIFICATE_REQUIRED" and "client certificate" in str(exc.value)


def test_client_certificate_of_another_ca(mtls_node: RunningNode, pki: Pki) -> None:
    with pytest.raises(errors.TlsClientCertificateRejected):
        info(mtls_node.address, pki.client(cert="foreign-client"))


def test_plaintext_client_to_a_tls_node(tls_node: RunningNode) -> None:
    with pytest.raises(errors.NodeUnavailable) as exc:
        info(tls_node.address, None)
    assert "requires TLS" in str(exc.value)


def test_tls_client_to_a_plaintext_node(shared_node: RunningNode, pki: Pki) -> None:
    with pytest.raises(errors.TlsNotServed):
        info(shared_node.address, pki.client())


def test_async_client_failure_is_typed_too(mtls_node: RunningNode, pki: Pki) -> None:
    async def go() -> None:
        async with AsyncClient(mtls_node.address, timeout=10, tls=pki.client()) as c:
            await c.node_info()

    with pytest.raises(errors.TlsClientCertificateRequired):
        asyncio.run(go())


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def test_unusable_files_are_one_typed_error(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (lambda: TlsClientConfig.from_files(tmp_path / "missing.pem"), "cannot read"),
        (lambda: TlsClientConfig.from_files(garbage), "no PEM certificate"),
        (lambda: TlsClientConfig.from_files(pki.key("ca")), "no PEM certificate"),
        (lambda: TlsClientConfig.from_files(pki.pem("ca"), pki.pem("client"), pki.key("node")), "does not belong"),
        (lambda: TlsClientConfig.from_files(pki.pem("ca"), pki.pem("client"), None), "give both or neither"),
        (lambda: TlsServerConfig.from_files(pki.pem("node"), pki.pem("node")), "no PEM private key"),
        (lambda: TlsServerConfig.from_files(pki.pem("node"), pki.key("node"), garbage), "no PEM certificate"),
    ]
    for make, words in cases:
        with pytest.raises(errors.TlsFileInvalid) as exc:
            make()
        assert words in str(exc.value) and exc.value.reason == "TLS_FILE_INVALID"


def test_encrypted_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "enc.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    from didnode.wire.tls import read_private_key

    with pytest.raises(errors.TlsFileInvalid, match="encrypted"):
        read_private_key(path, "TLS key file")


# --------------------------------------------------------------------------
# Plaintext only on loopback
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listen, loopback",
    [
        ("127.0.0.1:50051", True),
        ("127.1.2.3:0", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("[::ffff:127.0.0.1]:1", True),
        ("unix:/tmp/didnode.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.0.0.7:50051", False),
        ("node.example.org:50051", False),
    ],
)
def test_loopback_rule(listen: str, loopback: bool) -> None:
    assert listens_on_loopback(listen) is loopback


def test_plaintext_rule_of_serve(pki: Pki) -> None:
    now = _dt.datetime.now(_dt.timezone.utc)
    assert server_tls("127.0.0.1:0", "", "", "", False, now) is None
    assert server_tls("0.0.0.0:0", "", "", "", True, now) is None  # told --insecure-plaintext
    with pytest.raises(errors.InsecureListen):
        server_tls("0.0.0.0:0", "", "", "", False, now)
    tls = server_tls("0.0.0.0:0", str(pki.pem("node")), str(pki.key("node")), str(pki.pem("ca")), False, now)
    assert tls is not None and tls.requires_client_certificate


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "didnode"), "serve", "--data", str(tmp_path / "data"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_serve_refuses_plaintext_on_any_address_but_loopback(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--listen", "0.0.0.0:0")
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("[INSECURE_LISTEN]") and "--insecure-plaintext" in lines[0], proc.stderr
    assert not (tmp_path / "data").exists(), "refused before the store was opened"


def test_serve_with_an_unusable_key_file_is_one_line(tmp_path: Path, pki: Pki) -> None:
    proc = _serve(tmp_path, "--listen", "127.0.0.1:0", "--tls-cert", str(pki.pem("node")), "--tls-key", str(pki.key("client")))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].endswith("[TLS_FILE_INVALID]"), proc.stderr


def test_serve_option_combinations(tmp_path: Path, pki: Pki) -> None:
    for args in (
        ["--tls-cert", str(pki.pem("node"))],
        ["--tls-client-ca", str(pki.pem("ca"))],
        [*pki.node_args(), "--insecure-plaintext"],
    ):
        proc = _serve(tmp_path, "--listen", "127.0.0.1:0", *args)
        assert proc.returncode == 2 and "Error:" in proc.stderr, (args, proc.stderr)
