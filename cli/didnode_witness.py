"""``didnode witness``: a standalone transparency-log witness (c2sp.org/tlog-witness; docs/witness.md).

``didnode witness --data DIR --http HOST:PORT --log ORIGIN=VKEY ...`` serves
``POST /add-checkpoint`` and ``GET /<sha256(origin) hex>/checkpoint`` for the
logs named by ``--log`` (repeat it; several keys for one origin are all
accepted). The cosigning key is ``DIR/witness.key`` (or ``--key FILE``),
generated on first start (mode 0600) under ``--name``. It prints its URL as
the first line of stdout and its verifier key as the second, then serves
until SIGTERM or SIGINT. Plaintext only on a loopback address; elsewhere
``--tls-cert``/``--tls-key`` (or ``--insecure-plaintext``), as ``didnode serve``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

import click

from cli.didnode_http import setup_logging
from cli.didnode_tls import server_tls, tls_options, utc_now
from didnode.errors import DidnodeError
from didnode.http.server import HttpServer
from didnode.wire.tls import TlsServerConfig, serving_mode
from didnode.witness.http import LIMITS, build_witness_app
from didnode.witness.keyfile import load_or_create
from didnode.witness.service import LogKey, Witness, parse_log_option
from didnode.witness.state import WitnessStore

log = logging.getLogger("didnode")


def _default_name() -> str:
    return f"{socket.getfqdn() or 'localhost'}/didnode-witness"


@click.command("witness")
@click.option("--data", "data_dir", default="var/witness", show_default=True, envvar="DIDNODE_WITNESS_DATA", help="Data directory (witness key, latest cosigned checkpoints, evidence).")
@click.option("--http", "listen", default="127.0.0.1:7380", show_default=True, envvar="DIDNODE_WITNESS_HTTP", metavar="HOST:PORT", help="Serve the witness protocol on HOST:PORT; port 0 picks a free one.")
@click.option("--key", "key_file", default="", envvar="DIDNODE_WITNESS_KEY", metavar="FILE", help="The witness key file  [default: DATA/witness.key]; created on first start.")
@click.option("--name", default="", envvar="DIDNODE_WITNESS_NAME", metavar="NAME", help="The witness's key name, set on first start  [default: <host name>/didnode-witness].")
@click.option("--log", "logs", multiple=True, required=True, metavar="ORIGIN=VKEY", help="A log to witness: its origin line and a signed-note verifier key of its checkpoints (repeat).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@tls_options
def witness_command(data_dir: str, listen: str, key_file: str, name: str, logs: tuple[str, ...], log_level: str, tls_cert: str, tls_key: str, tls_client_ca: str, insecure_plaintext: bool) -> None:
    """Run a standalone witness until SIGTERM or SIGINT (docs/witness.md)."""
    setup_logging(log_level, "text")
    configured: dict[str, list[LogKey]] = {}
    try:
        for value in logs:
            origin, key = parse_log_option(value)
            configured.setdefault(origin, []).append(key)
        tls = server_tls(listen, tls_cert, tls_key, tls_client_ca, insecure_plaintext, utc_now())
        store = WitnessStore(data_dir)
        try:
            key_path = Path(key_file) if key_file else Path(data_dir) / "witness.key"
            wname, skey, created = load_or_create(key_path, name or (None if key_path.exists() else _default_name()))
            witness = Witness(store, wname, skey, configured)
            if created:
                log.info("generated the witness key of %s", wname)
            asyncio.run(_serve(witness, listen, tls))
        finally:
            store.close()
    except DidnodeError as err:
        click.echo(f"didnode witness: {err} [{err.reason}]", err=True)
        sys.exit(1)
    except (OSError, ValueError) as err:
        click.echo(f"didnode witness: {err}", err=True)
        sys.exit(1)


async def _serve(witness: Witness, listen: str, tls: TlsServerConfig | None) -> None:
    server = await HttpServer.start(build_witness_app(witness), listen, LIMITS, tls)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(server.url, flush=True)
    print(witness.vkey, flush=True)
    log.info("witness %s serving %d log(s) on %s, %s (data %s)", witness.name, len(witness.logs), server.url, serving_mode(tls), witness.store.dir)
    try:
        await stop.wait()
    finally:
        await server.stop()
        log.info("stopped")


__all__ = ["witness_command"]
