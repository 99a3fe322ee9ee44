"""NATS over TLS as docs/cluster.md sets it up for production: the servers present a certificate of
the operator's CA and require client certificates from it (``verify: true``), on top of the user
and password; a node given ``--nats-tls-ca/--nats-tls-cert/--nats-tls-key`` orders writes, a client
without a client certificate or that does not trust the CA gets nowhere."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from didnode.client import Client, Receipt
from tests.cluster.conftest import info, start_nats
from tests.conftest import start_node
from tests.factory import new_create
from tools.cluster import NatsCluster, write_private

NET = "tlsnet"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certs(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files
    (what the openssl commands of docs/cluster.md make)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("didnode test CA"))
        .issuer_name(_name("didnode test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": d / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        out[name] = d / f"{name}.pem"
        out[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}-key"] = d / f"{name}-key.pem"
        write_private(out[f"{name}-key"], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())

    leaf("server", ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    leaf("didnode", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("didnode")])
    return out


@pytest.fixture
def tls_cluster(tmp_path: Path) -> tuple[NatsCluster, dict[str, Path]]:
    certs = make_certs(tmp_path)
    tls = {"cert_file": str(certs["server"]), "key_file": str(certs["server-key"]), "ca_file": str(certs["ca"])}
    cluster = start_nats(tmp_path / "nats", (NET,), tls=tls)
    yield cluster, certs  # type: ignore[misc]
    cluster.stop()


def connects(urls: list[str], ctx: ssl.SSLContext | None) -> bool:
    async def go() -> bool:
        try:
            nc = await nats.connect(servers=urls, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0, tls=ctx)
        except (nats.errors.Error, OSError, asyncio.TimeoutError, ssl.SSLError):
            return False
        await nc.close()
        return True

    return asyncio.run(go())


def test_a_node_orders_over_tls_with_a_client_certificate(tls_cluster: tuple[NatsCluster, dict[str, Path]], tmp_path: Path) -> None:
    cluster, certs = tls_cluster
    assert cluster.auth is not None
    tls_urls = [u.replace("nats://", "tls://") for u in cluster.urls]
    tls_args = ["--nats-tls-ca", str(certs["ca"]), "--nats-tls-cert", str(certs["didnode"]), "--nats-tls-key", str(certs["didnode-key"])]
    node = start_node(tmp_path / "n0", network=NET, extra=["--nats", ",".join(tls_urls), "--log-level", "error", *cluster.node_args(), *tls_args])
    try:
        with Client(node.address) as c:
            assert isinstance(c.submit(new_create(network=NET)[1]), Receipt)
        assert info(node).writable
    finally:
        node.stop()

    admin = [cluster.auth.user_url(u, cluster.auth.admin_user) for u in tls_urls]
    full = ssl.create_default_context(cafile=str(certs["ca"]))
    full.load_cert_chain(str(certs["didnode"]), str(certs["didnode-key"]))
    assert connects(admin, full)
    no_client_cert = ssl.create_default_context(cafile=str(certs["ca"]))
    assert not connects(admin, no_client_cert), "the servers require a client certificate"
    untrusting = ssl.create_default_context()  # the system's CAs: not the operator's
    untrusting.load_cert_chain(str(certs["didnode"]), str(certs["didnode-key"]))
    assert not connects(admin, untrusting), "the client verifies the servers' certificate"
    assert not connects(cluster.admin_urls, None), "no plain-text clients"
