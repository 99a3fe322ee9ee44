"""TLS errors: the files a node or client is given, and connections that could not be secured (docs/tls.md).

Part of the one error tree: import from :mod:`didnode.errors`.

A failed TLS handshake reaches a client as grpc's ``UNAVAILABLE`` with the
TLS library's words in its message; :func:`didnode.wire.tls.tls_failure`
turns it into one of the classes below. They are :class:`Unavailable` (what
a client without TLS knowledge saw before: ``NODE_UNAVAILABLE``), but no retry
fixes them: the certificates or the client's configuration must change.
"""

from __future__ import annotations

from didnode.errors.base import InvalidInput, Unavailable

# --------------------------------------------------------------------------
# Configuration: files and listening addresses.
# --------------------------------------------------------------------------


class TlsFileInvalid(InvalidInput):
    """A TLS certificate, private key or CA file is missing, unreadable, holds no PEM of
    the right kind, or the private key does not belong to the certificate."""

    reason = "TLS_FILE_INVALID"


class InsecureListen(InvalidInput):
    """The node was told to listen on an address other than loopback without TLS; give
    ``--tls-cert``/``--tls-key``, or ``--insecure-plaintext`` when something else secures the network."""

    reason = "INSECURE_LISTEN"


# --------------------------------------------------------------------------
# Handshakes, as the client sees them.
# --------------------------------------------------------------------------


class TlsFailed(Unavailable):
    """The TLS handshake with the node (or peer) failed; the subclass says why when the TLS library's words tell."""

    reason = "TLS_FAILED"


class TlsUntrustedCertificate(TlsFailed):
    """The peer's certificate does not chain to the CA this client trusts (``--tls-ca``), or is not valid yet."""

    reason = "TLS_UNTRUSTED_CERTIFICATE"


class TlsCertificateExpired(TlsFailed):
    """The peer's certificate (or one in its chain) has expired."""

    reason = "TLS_CERTIFICATE_EXPIRED"


class TlsNameMismatch(TlsFailed):
    """The peer's certificate does not name the address connected to (nor ``--tls-server-name``)."""

    reason = "TLS_NAME_MISMATCH"


class TlsNotServed(TlsFailed):
    """The peer answered in plaintext: it serves no TLS on that address."""

    reason = "TLS_NOT_SERVED"


class TlsClientCertificateRequired(TlsFailed):
    """The peer closed the connection during TLS set-up and this client presented no certificate:
    the peer requires a client certificate (``--tls-cert``/``--tls-key``)."""

    reason = "TLS_CLIENT_CERTIFICATE_REQUIRED"


class TlsClientCertificateRejected(TlsFailed):
    """The peer closed the connection during TLS set-up after this client presented its
    certificate: the peer does not trust it (another CA, or expired)."""

    reason = "TLS_CLIENT_CERTIFICATE_REJECTED"
