"""TLS on gRPC, both ends (docs/tls.md): the PEM material a client or a node is given, its grpc
credentials, and what a connection that failed during TLS set-up means.

:class:`TlsClientConfig` is what a client trusts (the CA that signs the nodes'
certificates) and presents (a client certificate, when the node requires one);
:class:`TlsServerConfig` is a node's certificate chain, its key and,
optionally, the CA its clients' certificates must chain to. ``from_files``
reads and checks PEM files and raises :class:`~didnode.errors.TlsFileInvalid`
naming the file and what is wrong (never a traceback, never grpc's opaque
failure at the first call).

grpc reports a failed TLS handshake as ``UNAVAILABLE`` with the TLS library's
words in the message; :func:`tls_failure` turns that into the typed error it
is. Certificate checks done by this side (untrusted, expired, wrong name) are
told apart by BoringSSL's text; a refusal by the other side (no client
certificate, one it does not trust) reaches the client only as a closed socket,
so the reason is inferred from whether this client presented a certificate,
and the message says so.

Loads no server code; ``cryptography`` (already needed by ``jwcrypto``) is
imported only when files are read.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from didnode import errors as e

# grpc's channel option naming the host a node's certificate must carry (default: the address's host).
TARGET_NAME_OPTION = "grpc.ssl_target_name_override"

__all__ = ["TlsClientConfig", "TlsServerConfig", "read_certificates", "read_private_key", "serving_mode", "tls_failure"]


# --------------------------------------------------------------------------
# PEM files
# --------------------------------------------------------------------------


def _read(path: str | Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise e.TlsFileInvalid(f"cannot read the {what} {path}: {exc.strerror or exc}", path=str(path)) from None
    if not data.strip():
        raise e.TlsFileInvalid(f"the {what} {path} is empty", path=str(path))
    return data


def read_certificates(path: str | Path, what: str) -> tuple[bytes, list[Any]]:
    """(the PEM bytes, the parsed ``cryptography`` certificates) of ``path``, in file order.

    ``what`` names the file in errors ("TLS CA file"). Raises
    :class:`~didnode.errors.TlsFileInvalid` when the file cannot be read or
    holds no well-formed PEM certificate.
    """
    from cryptography import x509

    data = _read(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise e.TlsFileInvalid(f"the {what} {path} holds no PEM certificate ({' '.join(str(exc).split()) or 'unparsable'})", path=str(path)) from None
    return data, certs


def read_private_key(path: str | Path, what: str) -> tuple[bytes, Any]:
    """(the PEM bytes, the parsed ``cryptography`` private key) of ``path`` (unencrypted PEM).

    Raises :class:`~didnode.errors.TlsFileInvalid` when the file cannot be
    read, is encrypted, or holds no PEM private key.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read(path, what)
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise e.TlsFileInvalid(f"the {what} {path} is encrypted; give an unencrypted PEM key (mode 0600)", path=str(path)) from None
    except (ValueError, UnsupportedAlgorithm):
        raise e.TlsFileInvalid(f"the {what} {path} holds no PEM private key", path=str(path)) from None
    return data, key


def _check_pair(cert_path: str | Path, cert: Any, key_path: str | Path, key: Any) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def spki(k: Any) -> bytes:
        return bytes(k.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))

    if spki(cert.public_key()) != spki(key.public_key()):
        raise e.TlsFileInvalid(f"the private key {key_path} does not belong to the certificate {cert_path}", path=str(key_path))


def _pair(cert: str | Path, key: str | Path, who: str) -> tuple[bytes, bytes]:
    cert_pem, chain = read_certificates(cert, f"{who} certificate file")
    key_pem, parsed = read_private_key(key, f"{who} key file")
    _check_pair(cert, chain[0], key, parsed)
    return cert_pem, key_pem


# --------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsClientConfig:
    """What a client trusts and presents. Precondition: ``cert_pem`` and ``key_pem`` both given or both None.

    ``ca_pem``: the CA certificate(s) a node's certificate must chain to.
    ``server_name``: the name the node's certificate must carry when it is not
    the host of the address (e.g. connecting by an IP the certificate does not list).
    """

    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_pem is None) != (self.key_pem is None):
            raise e.TlsFileInvalid("a client certificate needs its private key, and a key its certificate (give both or neither)")

    @classmethod
    def from_files(
        cls, ca: str | Path, cert: str | Path | None = None, key: str | Path | None = None, server_name: str | None = None
    ) -> "TlsClientConfig":
        """Read and check the CA file and, if given, the client certificate and its key."""
        if (cert is None) != (key is None):
            raise e.TlsFileInvalid("a TLS client certificate needs its key file, and a key its certificate (give both or neither)")
        ca_pem, _ = read_certificates(ca, "TLS CA file")
        if cert is None or key is None:
            return cls(ca_pem, server_name=server_name or None)
        cert_pem, key_pem = _pair(cert, key, "TLS client")
        return cls(ca_pem, cert_pem, key_pem, server_name or None)

    @property
    def presents_certificate(self) -> bool:
        return self.cert_pem is not None

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca_pem, self.key_pem, self.cert_pem)

    def channel_options(self) -> list[tuple[str, Any]]:
        """Channel options TLS needs besides the credentials (the expected server name)."""
        return [(TARGET_NAME_OPTION, self.server_name)] if self.server_name else []


@dataclass(frozen=True)
class TlsServerConfig:
    """A server's certificate chain (leaf first) and key; with ``client_ca_pem``, clients must
    present a certificate that chains to it (mutual TLS)."""

    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes | None = None

    @classmethod
    def from_files(cls, cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> "TlsServerConfig":
        """Read and check the certificate chain, its key and, if given, the client CA file."""
        cert_pem, key_pem = _pair(cert, key, "TLS")
        ca_pem = read_certificates(client_ca, "TLS client CA file")[0] if client_ca else None
        return cls(cert_pem, key_pem, ca_pem)

    @property
    def requires_client_certificate(self) -> bool:
        return self.client_ca_pem is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)], root_certificates=self.client_ca_pem, require_client_auth=self.client_ca_pem is not None
        )


def serving_mode(tls: TlsServerConfig | None) -> str:
    """How a server with ``tls`` (None: plaintext) serves, for its start-up line."""
    if tls is None:
        return "plaintext"
    return "TLS, client certificates required" if tls.requires_client_certificate else "TLS"


# --------------------------------------------------------------------------
# Failed handshakes
# --------------------------------------------------------------------------

_VERIFY = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:;]+)")
# The socket closed while the channel was connecting (before HTTP/2 settings came back).
_CLOSED_WHILE_CONNECTING = ("Socket closed", "Connection reset", "connection reset", "Broken pipe")


def tls_failure(err: e.DidnodeError, tls: TlsClientConfig | None, target: str) -> e.DidnodeError:
    """``err`` as the TLS failure it is, when it is a connection failure whose text shows one; else ``err``.

    ``err``: what :func:`didnode.wire.status.from_rpc_error` made of a failed
    call to ``target`` over a channel with ``tls`` (None: plaintext). Only a
    bare :class:`~didnode.errors.NodeUnavailable` (grpc's own UNAVAILABLE, no
    didnode reason) is refined; a plaintext client whose connection was closed
    while connecting gets a hint that the node may require TLS.
    """
    if type(err) is not e.NodeUnavailable or err.details.get("grpc_code") != "UNAVAILABLE":
        return err
    text = err.message
    closed = "failed to connect" in text and any(s in text for s in _CLOSED_WHILE_CONNECTING)
    details = {**err.details, "target": target}
    if tls is None:
        if closed:
            return e.NodeUnavailable(f"{text} (a server that requires TLS closes plaintext connections: connect with TLS if it does)", **details)
        return err
    verify = _VERIFY.search(text)
    why = verify.group(1).strip() if verify else ""
    if "certificate has expired" in text:
        return e.TlsCertificateExpired(f"TLS with {target} failed: its certificate has expired (or one in its chain)", **details)
    if "Hostname Verification" in text or "No match found for server name" in text:
        name = tls.server_name or target.rsplit(":", 1)[0]
        return e.TlsNameMismatch(f"TLS with {target} failed: its certificate does not name {name} (use a name it lists, or --tls-server-name)", **details)
    if "WRONG_VERSION_NUMBER" in text:
        return e.TlsNotServed(f"TLS with {target} failed: it answered in plaintext (it serves no TLS on that address)", **details)
    if verify:
        return e.TlsUntrustedCertificate(f"TLS with {target} failed: its certificate is not trusted by the given CA ({why})", **details)
    if closed:
        if tls.presents_certificate:
            return e.TlsClientCertificateRejected(
                f"TLS with {target} failed: it closed the connection after this client's certificate; it does not trust it (another CA, or expired)", **details
            )
        return e.TlsClientCertificateRequired(
            f"TLS with {target} failed: it closed the connection during TLS set-up; it requires a client certificate (--tls-cert/--tls-key)", **details
        )
    if "Tls handshake failed" in text or "Handshake failed" in text or "TSI_" in text:
        return e.TlsFailed(f"TLS with {target} failed: {text}", **details)
    return err


def listens_on_loopback(listen: str) -> bool:
    """Whether a server bound to ``listen`` can be reached from this host only.

    ``listen`` as grpc takes it: ``HOST:PORT``, ``[IPv6]:PORT``, or a
    ``unix:``/``unix-abstract:`` socket. True for ``localhost``, 127.0.0.0/8,
    ``::1`` (and its IPv4-mapped forms) and Unix sockets; False for every other
    host, the wildcards (``0.0.0.0``, ``[::]``, an empty host) and names.
    """
    if listen.startswith(("unix:", "unix-abstract:")):
        return True
    host = listen.rsplit(":", 1)[0] if ":" in listen else listen
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback
