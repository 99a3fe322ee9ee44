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
from typing import Any

import click

from didnode import __version__
from didnode.api.v1 import ledger_pb2
from didnode.core.tlog_checkpoint import check_origin
from didnode.errors import DidnodeError, UnknownDid
from didnode.service.ledger import LedgerService
from didnode.service.health import DEFAULT_MAX_LAG
from didnode.service.node import DEFAULT_PREPARE_PROCESSES, Node, NodeConfig
from didnode.store.env import DEFAULT_MAP_SIZE
from didnode.transport.limits import Limits
from didnode.transport.server import NodeServer, start_server
from cli.didnode_limits import limit_options, limits_from
from cli.didnode_init import identity_command, init_command
from didnode.service.genesis import load as load_genesis
from cli.didnode_http import HttpFace, check_http_listen, http_options, setup_logging
from cli.didnode_tls import server_tls, tls_group, tls_options, utc_now
from cli.didnode_trust import startup_line, trust_policy_command
from cli.didnode_witness import witness_command
from cli.didnode_witnesses import build_node_witness, parse_witness_for, parse_witnesses, start_collector, witness_options
from didnode.transport.services import build_servicers
from didnode.wire.tls import TlsServerConfig, serving_mode
from didnode.witness.client import WitnessEndpoint

log = logging.getLogger("didnode")


@click.group()
@click.version_option(__version__, prog_name="didnode")
def main() -> None:
    """The didnode ledger node (did:dnode over gRPC, state in LMDB)."""


@main.command()
@click.option("--data", "data_dir", default="var/node", show_default=True, envvar="DIDNODE_DATA", help="Data directory (LMDB store and node key).")
@click.option("--listen", default="127.0.0.1:50051", show_default=True, envvar="DIDNODE_LISTEN", help="HOST:PORT to serve gRPC on; port 0 picks a free port.")
@click.option("--network", default="local", show_default=True, envvar="DIDNODE_NETWORK", help="Network id this ledger belongs to.")
@click.option("--origin", default="", envvar="DIDNODE_ORIGIN", metavar="ORIGIN", help="The C2SP origin of the node's checkpoint notes (and their key name), e.g. ledger.example.org/prod; see docs/transparency.md.  [default: didnode.local/<NETWORK>]")
@click.option("--map-size", default=DEFAULT_MAP_SIZE, show_default=True, type=click.IntRange(1 << 20), help="Initial LMDB map size in bytes (grows when full).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--session-lifetime", default=900, show_default=True, envvar="DIDNODE_SESSION_LIFETIME", type=click.IntRange(1, 86400), metavar="SECONDS", help="Lifetime (and maximum) of node-issued session credentials.")
@click.option("--nats", "nats_urls", default="", envvar="DIDNODE_NATS", metavar="URLS", help="Cluster mode: comma-separated NATS server URLs (nats://host:4222,...); the ledger is ordered by a JetStream stream. See docs/cluster.md.")
@click.option("--stream", default="", envvar="DIDNODE_STREAM", metavar="NAME", help="Cluster mode: JetStream stream name  [default: DIDNODE_<NETWORK>]")
@click.option("--nats-user", default="", envvar="DIDNODE_NATS_USER", metavar="NAME", help="Cluster mode: the NATS user the node logs in as (with --nats-password-file). See docs/cluster.md, Authentication.")
@click.option("--nats-password-file", default="", envvar="DIDNODE_NATS_PASSWORD_FILE", metavar="FILE", help="Cluster mode: a file holding that user's password (first line; keep it mode 0600).")
@click.option("--nats-tls-ca", default="", envvar="DIDNODE_NATS_TLS_CA", metavar="FILE", help="Cluster mode: PEM CA certificates that verify the NATS servers (TLS; tls:// URLs).")
@click.option("--nats-tls-cert", default="", envvar="DIDNODE_NATS_TLS_CERT", metavar="FILE", help="Cluster mode: PEM client certificate presented to the NATS servers (with --nats-tls-key).")
@click.option("--nats-tls-key", default="", envvar="DIDNODE_NATS_TLS_KEY", metavar="FILE", help="Cluster mode: PEM private key of --nats-tls-cert (keep it mode 0600).")
@click.option("--prepare-processes", default=DEFAULT_PREPARE_PROCESSES, show_default=True, envvar="DIDNODE_PREPARE_PROCESSES", type=click.IntRange(0, 64), metavar="N", help="Worker processes that parse and verify submitted batches (0: in the node process).")
@click.option("--genesis", "genesis_path", default="", envvar="DIDNODE_GENESIS", metavar="FILE", help="A governed network's signed genesis (didnode init): written on an empty ledger (cluster mode: published as the stream's first messages), checked otherwise.")
@click.option("--new-identity", is_flag=True, help="Start a new node identity: move DATA/node.key and DATA/node.checkpoint aside (*.retired-<UTC time>) and start a new ledger under a new node DID. Only over a missing or empty DATA/ledger; see docs/storage.md.")
@tls_options
@http_options
@limit_options
@witness_options
def serve(data_dir: str, listen: str, network: str, origin: str, map_size: int, log_level: str, session_lifetime: int, nats_urls: str, stream: str, nats_user: str, nats_password_file: str, nats_tls_ca: str, nats_tls_cert: str, nats_tls_key: str, prepare_processes: int, genesis_path: str, new_identity: bool, tls_cert: str, tls_key: str, tls_client_ca: str, insecure_plaintext: bool, http: str, ready_max_lag: int, log_format: str, witnesses: tuple[str, ...], witness_for: tuple[str, ...], witness_timeout: float, **limit_args: object) -> None:
    """Run a node until SIGTERM or SIGINT.

    Plaintext only on a loopback address; elsewhere give --tls-cert and
    --tls-key (or --insecure-plaintext). See docs/tls.md.
    """
    setup_logging(log_level, log_format)
    if origin:
        try:
            check_origin(origin)
        except DidnodeError as err:
            raise click.UsageError(f"--origin: {err}") from None
    endpoints = parse_witnesses(witnesses)
    witnessed = parse_witness_for(witness_for)
    if witnessed and not http:
        raise click.UsageError("--witness-for needs --http (the witness protocol is served on the HTTP face)")
    servers = tuple(u if "://" in u else f"nats://{u}" for u in (x.strip() for x in nats_urls.split(",")) if u)
    if stream and not servers:
        raise click.UsageError("--stream needs --nats")
    nats_files = (nats_user, nats_password_file, nats_tls_ca, nats_tls_cert, nats_tls_key)
    if any(nats_files) and not servers:
        raise click.UsageError("--nats-user, --nats-password-file and --nats-tls-* need --nats")
    nats_auth = None
    if any(nats_files):
        from didnode.ledger.cluster.config import NatsAuth  # nats-py: cluster mode only

        try:
            nats_auth = NatsAuth.from_files(*nats_files)
        except DidnodeError as err:
            raise click.UsageError(str(err)) from None
    try:
        genesis = load_genesis(genesis_path) if genesis_path else None
    except DidnodeError as err:
        click.echo(f"didnode: {err} [{err.reason}]", err=True)
        sys.exit(1)
    config = NodeConfig(
        data_dir=data_dir, network=network, map_size=map_size, session_lifetime_s=session_lifetime, nats_servers=servers, stream=stream, nats_auth=nats_auth,
        prepare_processes=prepare_processes, new_identity=new_identity, origin=origin, genesis=genesis,
    )
    try:
        tls = server_tls(listen, tls_cert, tls_key, tls_client_ca, insecure_plaintext, utc_now())
        check_http_listen(http, tls, insecure_plaintext)
        asyncio.run(_serve(config, listen, limits_from(limit_args), tls, http, ready_max_lag, endpoints, witness_timeout, witnessed))
    except DidnodeError as err:
        click.echo(f"didnode: {err} [{err.reason}]", err=True)
        sys.exit(1)
    except OSError as err:
        click.echo(f"didnode: {err}", err=True)
        sys.exit(1)


async def _serve(
    config: NodeConfig, listen: str, limits: Limits | None = None, tls: TlsServerConfig | None = None, http: str = "", ready_max_lag: int = DEFAULT_MAX_LAG,
    witnesses: tuple[WitnessEndpoint, ...] = (), witness_timeout: float = 5.0, witnessed: dict[str, list[Any]] | None = None,
) -> None:
    node = Node(config)
    witness = None
    try:
        ledger = LedgerService(node)
        on_ledger = True
        if node.jetstream is not None:
            found = await _identity_on_ledger(node, ledger)
            if found is None:
                return
            on_ledger = found
        # A node whose own DID the governance refused (NOT_A_REGISTRAR, logged) serves without
        # AuthService: the handshake signs as the node DID, which must be on the ledger.
        servicers = build_servicers(node, ledger, auth=on_ledger)
        server = await start_server(servicers, listen, limits, tls)
        loop = asyncio.get_running_loop()
        if node.jetstream is not None:
            await _health_follows_cluster(node, server, loop)
        witness = build_node_witness(node, witnessed or {})  # --witness-for: POST /add-checkpoint on the HTTP face
        face = await HttpFace.start(node, ledger, server, servicers, http, tls, ready_max_lag, witness)  # readiness for gRPC health; --http
        host = listen.rsplit(":", 1)[0]
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):  # before the address: a SIGTERM right after it stops gracefully
            loop.add_signal_handler(sig, stop.set)
        print(f"{host}:{server.port}", flush=True)
        face.announce()
        if witness is not None:
            print(witness.vkey, flush=True)  # third line with --witness-for: the node's witness verifier key
            log.info("witness %s for %d log(s) at %s/add-checkpoint", witness.name, len(witness.logs), face.http.url)
        collector = start_collector(node, witnesses, witness_timeout)  # --witness: cosignatures in the background
        if collector is not None and face.http is not None and face.http.metrics is not None:
            face.http.metrics.watch_cosigning(collector)  # /metrics: cosigned checkpoints, witness failures
        log.info("node %s on network %s serving on %s:%s, %s (data %s, %s mode)", node.node_did, node.network, host, server.port, serving_mode(tls), config.data_dir, node.mode)
        log.info("%s", startup_line(node))
        log.info("%s", node.governance_line())
        await stop.wait()
        log.info("stopping: draining calls")
        if collector is not None:
            await collector.stop()
        await face.stop(server)
        await server.stop(grace=5.0)
    finally:
        if witness is not None:
            witness.store.close()
        node.close()
        log.info("stopped")


async def _identity_on_ledger(node: Node, ledger: LedgerService) -> bool | None:
    """Cluster mode: wait until the node's own DID create came back through the stream.

    Services built at startup (authentication) need the node DID's key state.
    On a restart it is already in the store; on a first start the node
    publishes its create and, joining late, first replays the stream before
    it. False when the network's governance rejected the create (the node
    serves without authentication); None when SIGTERM/SIGINT came first.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    told = 0.0
    while not stop.is_set():
        try:
            ledger.state(node.node_did)
            return True
        except UnknownDid:
            pass
        assert node.jetstream is not None
        if node.jetstream.own_create_refused is not None:
            return False
        if loop.time() - told > 10:
            told = loop.time()
            st = node.cluster_status()
            log.info(
                "waiting for node DID %s to be ordered by the cluster (applied %s of %s%s)",
                node.node_did,
                st.applied_seq if st else 0,
                st.stream_last_seq if st else 0,
                f"; {st.reason}" if st and st.reason else "",
            )
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
    return None


async def _health_follows_cluster(node: Node, server: NodeServer, loop: asyncio.AbstractEventLoop) -> None:
    """LedgerService health is NOT_SERVING while the node cannot reach NATS (writes fail fast);
    the other services, and ledger reads, keep serving from the local store."""
    assert node.jetstream is not None
    name = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
    tasks: set[asyncio.Task[None]] = set()
    await server.set_serving(node.jetstream.status().writable, [name])  # before the address is printed

    def on_change(writable: bool) -> None:
        def schedule() -> None:
            task = loop.create_task(server.set_serving(writable, [name]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        if not loop.is_closed():
            loop.call_soon_threadsafe(schedule)

    node.jetstream.add_listener(on_change)


main.add_command(init_command)
main.add_command(identity_command)
main.add_command(tls_group)
main.add_command(trust_policy_command)
main.add_command(witness_command)

if __name__ == "__main__":
    main()
