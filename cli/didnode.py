"""``didnode``: run a node.

``didnode serve --data DIR --listen HOST:PORT`` prints the address it
listens on as the first line of stdout (so ``--listen 127.0.0.1:0`` can be
used by scripts and tests) and stops gracefully on SIGTERM or SIGINT:
it stops accepting calls, finishes the batch being written, closes LMDB.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from didnode import __version__
from didnode.errors import DidnodeError
from didnode.service.ledger import LedgerService
from didnode.service.node import Node, NodeConfig
from didnode.store.env import DEFAULT_MAP_SIZE
from didnode.transport.server import start_server
from didnode.transport.services import build_servicers

log = logging.getLogger("didnode")


@click.group()
@click.version_option(__version__, prog_name="didnode")
def main() -> None:
    """The didnode ledger node (did:dnode over gRPC, state in LMDB)."""


@main.command()
@click.option("--data", "data_dir", default="var/node", show_default=True, envvar="DIDNODE_DATA", help="Data directory (LMDB store and node key).")
@click.option("--listen", default="127.0.0.1:50051", show_default=True, envvar="DIDNODE_LISTEN", help="HOST:PORT to serve gRPC on; port 0 picks a free port.")
@click.option("--network", default="local", show_default=True, envvar="DIDNODE_NETWORK", help="Network id this ledger belongs to.")
@click.option("--map-size", default=DEFAULT_MAP_SIZE, show_default=True, type=click.IntRange(1 << 20), help="Initial LMDB map size in bytes (grows when full).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--session-lifetime", default=900, show_default=True, envvar="DIDNODE_SESSION_LIFETIME", type=click.IntRange(1, 86400), metavar="SECONDS", help="Lifetime (and maximum) of node-issued session credentials.")
def serve(data_dir: str, listen: str, network: str, map_size: int, log_level: str, session_lifetime: int) -> None:
    """Run a node until SIGTERM or SIGINT."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(NodeConfig(data_dir=data_dir, network=network, map_size=map_size, session_lifetime_s=session_lifetime), listen))
    except DidnodeError as err:
        click.echo(f"didnode: {err} [{err.reason}]", err=True)
        sys.exit(1)
    except OSError as err:
        click.echo(f"didnode: {err}", err=True)
        sys.exit(1)


async def _serve(config: NodeConfig, listen: str) -> None:
    node = Node(config)
    try:
        ledger = LedgerService(node)
        server = await start_server(build_servicers(node, ledger), listen)
        host = listen.rsplit(":", 1)[0]
        print(f"{host}:{server.port}", flush=True)
        log.info("node %s on network %s serving on %s:%s (data %s)", node.node_did, node.network, host, server.port, config.data_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: draining calls")
        await server.stop(grace=5.0)
    finally:
        node.close()
        log.info("stopped")


if __name__ == "__main__":
    main()
