"""TLS material for tests (docs/tls.md): a development CA, a foreign CA, and certificates good and bad.

Made with :mod:`didnode.tlsgen` (cryptography.x509), each test module in its
own tmp dir; nothing is committed.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from didnode.client import AsyncClient
from didnode.core.keystate import DidState
from didnode.tlsgen import Issued, make_ca, make_client_certificate, make_node_certificate
from didnode.wire.tls import TlsClientConfig, TlsServerConfig

DAY = _dt.timedelta(days=1)


@dataclass(frozen=True)
class Pki:
    """Files in ``dir``: ``ca.pem`` signs ``node``, ``expired`` (a node certificate that ended yesterday)
    and ``client``; ``other-ca.pem`` signs ``foreign-client``. Each NAME has NAME.pem and NAME.key."""

    dir: Path

    def pem(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def node_args(self, name: str = "node", client_ca: str | None = None) -> list[str]:
        """``didnode serve`` options serving the certificate ``name`` (requiring clients of ``client_ca``)."""
        args = ["--tls-cert", str(self.pem(name)), "--tls-key", str(self.key(name))]
        return args + (["--tls-client-ca", str(self.pem(client_ca))] if client_ca else [])

    def client(self, ca: str = "ca", cert: str | None = None, server_name: str | None = None) -> TlsClientConfig:
        """A client trusting ``ca`` (and presenting ``cert``)."""
        return TlsClientConfig.from_files(self.pem(ca), self.pem(cert) if cert else None, self.key(cert) if cert else None, server_name)

    def server(self, name: str = "node", client_ca: str | None = None) -> TlsServerConfig:
        return TlsServerConfig.from_files(self.pem(name), self.key(name), self.pem(client_ca) if client_ca else None)


def _write(d: Path, name: str, issued: Issued) -> None:
    (d / f"{name}.pem").write_bytes(issued.cert_pem)
    (d / f"{name}.key").write_bytes(issued.key_pem)
    (d / f"{name}.key").chmod(0o600)


def make_pki(d: Path) -> Pki:
    """Write the test PKI into ``d`` (created)."""
    d.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    ca = make_ca("test CA", now - DAY, now + 30 * DAY)
    other = make_ca("other CA", now - DAY, now + 30 * DAY)
    names = ["localhost", "127.0.0.1"]
    _write(d, "ca", ca)
    _write(d, "other-ca", other)
    _write(d, "node", make_node_certificate(ca, names, now - DAY, now + 30 * DAY))
    _write(d, "expired", make_node_certificate(ca, names, now - 10 * DAY, now - DAY))
    _write(d, "client", make_client_certificate(ca, "device-1", now - DAY, now + 30 * DAY))
    _write(d, "foreign-client", make_client_certificate(other, "intruder", now - DAY, now + 30 * DAY))
    return Pki(d)


class NodeKeyStates:
    """A handshake's :class:`~didnode.auth.KeyStateSource` that takes a node's answer as it is.

    For the TLS tests, whose subject is the carriage: devices in the field
    verify the node's answers (:mod:`didnode.auth.peers`).
    """

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def key_state(self, did: str) -> DidState:
        return (await self.client.key_state(did)).state
