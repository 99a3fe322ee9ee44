"""``didnode serve``'s TLS options, the rule for plaintext, and ``didnode tls init`` (docs/tls.md).

A node serves TLS when given ``--tls-cert``/``--tls-key`` (and requires client
certificates chaining to ``--tls-client-ca`` when given). Without them it
serves plaintext on a loopback address only
(:func:`didnode.transport.server.listens_on_loopback`); anywhere else it
refuses to start (``INSECURE_LISTEN``) unless told ``--insecure-plaintext``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from didnode.clock import wall_ms
from didnode.errors import DidnodeError, InsecureListen
from didnode.transport.server import listens_on_loopback
from didnode.wire.tls import TlsServerConfig

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("didnode")


def utc_now() -> _dt.datetime:
    """The wall clock (:func:`didnode.clock.wall_ms`) as an aware UTC datetime."""
    return _dt.datetime.fromtimestamp(wall_ms() / 1000, tz=_dt.timezone.utc)


def tls_options(f: F) -> F:
    """The TLS options of ``didnode serve`` (parameters ``tls_cert``, ``tls_key``, ``tls_client_ca``, ``insecure_plaintext``)."""
    options = [
        click.option("--tls-cert", default="", envvar="DIDNODE_SERVER_TLS_CERT", metavar="FILE", help="Serve TLS: the node's PEM certificate (chain, leaf first). See docs/tls.md."),
        click.option("--tls-key", default="", envvar="DIDNODE_SERVER_TLS_KEY", metavar="FILE", help="The PEM private key of --tls-cert (unencrypted; keep it mode 0600)."),
        click.option("--tls-client-ca", default="", envvar="DIDNODE_SERVER_TLS_CLIENT_CA", metavar="FILE", help="With TLS: require client certificates that chain to these PEM CA certificates (mutual TLS)."),
        click.option("--insecure-plaintext", is_flag=True, help="Serve plaintext on an address other than loopback (only when something else, e.g. a service mesh, secures the network)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def server_tls(listen: str, tls_cert: str, tls_key: str, tls_client_ca: str, insecure_plaintext: bool, now: _dt.datetime) -> TlsServerConfig | None:
    """The node's TLS configuration from its options, or None to serve plaintext.

    Raises ``click.UsageError`` for options that do not go together,
    :class:`~didnode.errors.TlsFileInvalid` for unusable files, and
    :class:`~didnode.errors.InsecureListen` for plaintext on an address other
    than loopback without ``--insecure-plaintext``. Logs a warning when the
    certificate is expired or not yet valid at ``now`` (clients will refuse it).
    """
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca and not tls_cert:
        raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    if tls_cert and insecure_plaintext:
        raise click.UsageError("give --tls-cert/--tls-key or --insecure-plaintext, not both")
    if not tls_cert:
        if not insecure_plaintext and not listens_on_loopback(listen):
            raise InsecureListen(
                f"refusing to serve plaintext on {listen}, which is not a loopback address: give --tls-cert and --tls-key (docs/tls.md), "
                "or --insecure-plaintext if something else secures the network",
                listen=listen,
            )
        if insecure_plaintext and not listens_on_loopback(listen):
            log.warning("serving plaintext on %s (--insecure-plaintext): anyone on the network path can read and alter calls", listen)
        return None
    config = TlsServerConfig.from_files(tls_cert, tls_key, tls_client_ca or None)
    _warn_validity(tls_cert, config.cert_pem, now)
    return config


def _warn_validity(path: str, cert_pem: bytes, now: _dt.datetime) -> None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    if now >= cert.not_valid_after_utc:
        log.warning("the TLS certificate %s expired at %s: clients will refuse it (replace it and restart)", path, cert.not_valid_after_utc.isoformat())
    elif now < cert.not_valid_before_utc:
        log.warning("the TLS certificate %s is valid only from %s: clients will refuse it until then", path, cert.not_valid_before_utc.isoformat())


# --------------------------------------------------------------------------
# didnode tls init
# --------------------------------------------------------------------------


@click.group("tls")
def tls_group() -> None:
    """TLS certificates for development (production: docs/tls.md)."""


@tls_group.command("init")
@click.option("--out", "out_dir", default="var/tls", show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write the files into (created 0700).")
@click.option("--name", "names", multiple=True, metavar="HOST", help="A DNS name or IP address the node certificate is valid for (repeat; default: localhost and 127.0.0.1).")
@click.option("--client", "clients", multiple=True, metavar="NAME", help="Also make a client certificate client-NAME.pem / client-NAME.key (repeat).")
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 3650), help="Validity of every certificate, in days.")
@click.option("--force", is_flag=True, help="Replace existing files.")
def tls_init(out_dir: Path, names: tuple[str, ...], clients: tuple[str, ...], days: int, force: bool) -> None:
    """Write a development CA, a node certificate signed by it and, with --client, client certificates.

    \b
    Files: ca.pem ca.key node.pem node.key [client-NAME.pem client-NAME.key ...]
    Keys are ECDSA P-256, mode 0600. For development and tests only: in
    production the certificates come from your own CA (docs/tls.md).
    """
    from didnode.tlsgen import DEFAULT_NAMES, write_dev_pki  # cryptography's x509 builders: this command only

    try:
        files = write_dev_pki(out_dir, names or DEFAULT_NAMES, clients, utc_now(), days, force)
    except (DidnodeError, OSError) as err:
        why = f"{err} [{err.reason}]" if isinstance(err, DidnodeError) else f"cannot write into {out_dir}: {err.strerror or err}"
        click.echo(f"didnode: {why}", err=True)
        sys.exit(1)
    for f in files:
        click.echo(str(f))
    d = out_dir
    click.echo(
        f"didnode: serve with:   didnode serve --tls-cert {d / 'node.pem'} --tls-key {d / 'node.key'}"
        + (f" --tls-client-ca {d / 'ca.pem'}" if clients else "")
        + f"\ndidnode: connect with: didctl --tls-ca {d / 'ca.pem'}"
        + (f" --tls-cert {d / f'client-{clients[0]}.pem'} --tls-key {d / f'client-{clients[0]}.key'}" if clients else "")
        + " node info",
        err=True,
    )
