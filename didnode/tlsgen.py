"""Development certificates for TLS on gRPC (``didnode tls init``; docs/tls.md): a CA, a node
certificate and client certificates, made with ``cryptography.x509``.

For development and tests only: a production node takes its certificate from
the operator's CA (docs/tls.md, "Production"). Keys are ECDSA P-256 and
signatures ECDSA-SHA256, which every TLS stack accepts (grpc's BoringSSL
included). The functions here take the validity window from the caller
(``not_before``/``not_after``, e.g. an expired certificate in a test); only
keys and serial numbers are random. :func:`write_dev_pki` is the one that
writes files: private keys mode 0600, never over an existing file unless told.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from didnode.errors import InvalidArgument
from didnode.fileio import fsync_dir, write_atomic

DEFAULT_NAMES = ("localhost", "127.0.0.1")
DEFAULT_DAYS = 90
# Certificates take effect a little before "now", for peers whose clocks are behind.
CLOCK_SKEW = _dt.timedelta(minutes=5)
_DNS_NAME = re.compile(r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

__all__ = ["DEFAULT_DAYS", "DEFAULT_NAMES", "Issued", "make_ca", "make_client_certificate", "make_node_certificate", "write_dev_pki"]


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, parsed and as PEM (the key unencrypted, PKCS#8)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "didnode development"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _check_window(not_before: _dt.datetime, not_after: _dt.datetime) -> None:
    if not_before.tzinfo is None or not_after.tzinfo is None:
        raise InvalidArgument("certificate validity times must be timezone-aware (UTC)")
    if not_after <= not_before:
        raise InvalidArgument(f"a certificate must end after it begins ({not_before.isoformat()} .. {not_after.isoformat()})")


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def subject_alt_name(name: str) -> x509.GeneralName:
    """``name`` as a subjectAltName entry: an IP address, or a DNS name (``*.`` allowed as its first label).

    Raises :class:`~didnode.errors.InvalidArgument` for anything else.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    if len(name) > 253 or not _DNS_NAME.match(name):
        raise InvalidArgument(f"{name!r} is neither an IP address nor a DNS name", name=name)
    return x509.DNSName(name.lower())


def make_ca(common_name: str, not_before: _dt.datetime, not_after: _dt.datetime) -> Issued:
    """A self-signed CA that signs leaf certificates only (path length 0)."""
    _check_window(not_before, not_after)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _leaf(ca: Issued, common_name: str, not_before: _dt.datetime, not_after: _dt.datetime, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> Issued:
    _check_window(not_before, not_after)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_node_certificate(ca: Issued, names: Sequence[str], not_before: _dt.datetime, not_after: _dt.datetime) -> Issued:
    """A server certificate for ``names`` (DNS names and IP addresses, at least one), signed by ``ca``."""
    if not names:
        raise InvalidArgument("a node certificate needs at least one name (DNS name or IP address)")
    sans = [subject_alt_name(n) for n in names]
    return _leaf(ca, names[0], not_before, not_after, ExtendedKeyUsageOID.SERVER_AUTH, sans)


def make_client_certificate(ca: Issued, name: str, not_before: _dt.datetime, not_after: _dt.datetime) -> Issued:
    """A client certificate whose subject is ``name`` (1-64 of ``[A-Za-z0-9._-]``), signed by ``ca``."""
    if not _CLIENT_NAME.match(name):
        raise InvalidArgument(f"client name {name!r} is not 1-64 characters of [A-Za-z0-9._-]", name=name)
    return _leaf(ca, name, not_before, not_after, ExtendedKeyUsageOID.CLIENT_AUTH, [])


def dev_pki_files(out: Path, clients: Sequence[str]) -> list[Path]:
    """The files :func:`write_dev_pki` writes in ``out``, certificates before their keys."""
    stems = ["ca", "node"] + [f"client-{c}" for c in clients]
    return [out / f"{s}{ext}" for s in stems for ext in (".pem", ".key")]


def write_dev_pki(
    out: Path, names: Sequence[str], clients: Sequence[str], now: _dt.datetime, days: int = DEFAULT_DAYS, force: bool = False
) -> list[Path]:
    """Write a development CA (``ca.pem``, ``ca.key``), a node certificate for ``names`` (``node.pem``,
    ``node.key``) and one certificate per client (``client-NAME.pem``, ``client-NAME.key``) into ``out``.

    Valid from ``now`` (minus five minutes of clock skew) for ``days`` days.
    Keys are written mode 0600, certificates 0644, each atomically; ``out`` is
    created mode 0700 if missing. Refuses (:class:`~didnode.errors.InvalidArgument`,
    nothing written) when any of the files exists, unless ``force``. Returns the
    files written.
    """
    if days < 1:
        raise InvalidArgument(f"--days must be at least 1, not {days}")
    if len(set(clients)) != len(clients):
        raise InvalidArgument("a client name is given twice")
    files = dev_pki_files(out, clients)
    existing = [str(f) for f in files if f.exists() or f.is_symlink()]
    if existing and not force:
        raise InvalidArgument(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; --force replaces them", path=existing[0])
    not_before, not_after = now - CLOCK_SKEW, now + _dt.timedelta(days=days)
    ca = make_ca("didnode development CA", not_before, not_after)
    issued = [ca, make_node_certificate(ca, names, not_before, not_after)]
    issued += [make_client_certificate(ca, c, not_before, not_after) for c in clients]
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    for i, pair in enumerate(issued):
        write_atomic(files[2 * i], pair.cert_pem, mode=0o644, sync_dir=False)
        write_atomic(files[2 * i + 1], pair.key_pem, mode=0o600, sync_dir=False)
    fsync_dir(out)
    return files
