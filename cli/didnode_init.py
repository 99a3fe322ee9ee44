"""``didnode init``: create a governed network (its genesis), in two steps.

Every genesis DID signs the governance inception, so:

1. ``didnode init --data DIR --network NET --governor-op FILE ... --threshold M
   --create registrars --out genesis.json`` creates the node key in DIR (the
   node's DID is genesis DID #0), builds the genesis (the node's create, each
   operation file's create, then the inception) and signs the inception with
   the node key. Each other genesis DID then signs:
   ``didctl gov sign genesis.json --as DID``.
2. ``didnode init --data DIR --genesis genesis.json`` (or, on first start,
   ``didnode serve --data DIR --genesis genesis.json``) writes it: every
   operation in one transaction, or nothing (the first rejection is the
   error, e.g. GOVERNANCE_THRESHOLD when a genesis DID did not sign).

Operation files (``--governor-op`` ...) are ``didnode/operation/v1`` files
(:mod:`didnode.core.opfile`), written by ``didctl did create --offline
--network NET --out FILE``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from didnode.core import opfile
from didnode.core.builder import SignedOperation
from didnode.core.governance.policy import CREATE_MODES, REGISTRARS, PublishQuota
from didnode.errors import DidnodeError, InvalidArgument
from didnode.service import genesis as genesis_mod
from didnode.fileio import write_atomic
from didnode.service.node import NODE_KEY_FILE, Node, NodeConfig, create_key, load_key, node_create


def parse_publish_quota(value: str) -> PublishQuota:
    """``window=S,count=N,bytes=N`` (the window and a count, bytes or both); else a usage error."""
    parts: dict[str, int] = {}
    for item in value.split(","):
        name, eq, number = item.strip().partition("=")
        if not eq or name not in ("window", "count", "bytes") or name in parts or not number.strip().isdigit():
            raise click.BadParameter(f"{value!r} is not window=SECONDS,count=N,bytes=N (count or bytes or both)", param_hint="--publish-quota")
        parts[name] = int(number)
    if "window" not in parts or not ({"count", "bytes"} & parts.keys()):
        raise click.BadParameter(f"{value!r} names the window and a count, bytes or both", param_hint="--publish-quota")
    return PublishQuota(parts["window"], parts.get("count"), parts.get("bytes"))


def _read_ops(paths: tuple[Path, ...], network: str) -> list[SignedOperation]:
    out = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"cannot read the operation file {path}: {exc.strerror or exc}") from None
        op = opfile.loads(data, str(path))
        if op.network != network:
            raise InvalidArgument(f"{path} holds a create for network {op.network!r}, not {network!r}")
        out.append(op)
    return out


@click.command("init")
@click.option("--data", "data_dir", default="var/node", show_default=True, envvar="DIDNODE_DATA", help="Data directory of the new node (node key and LMDB store).")
@click.option("--network", default="local", show_default=True, envvar="DIDNODE_NETWORK", help="Network id of the governed network.")
@click.option("--governor-op", "governor_ops", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="A governor's signed create (didctl did create --offline --out FILE); repeatable, in genesis order.")
@click.option("--threshold", type=click.IntRange(min=1), metavar="M", help="How many governors sign a governance change.")
@click.option("--create", "create_mode", type=click.Choice(CREATE_MODES), help="Who may create DIDs: listed registrars, anyone (open), or governors only.")
@click.option("--registrar-op", "registrar_ops", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="A registrar's signed create (--create registrars); repeatable. Registrars start without a quota.")
@click.option("--include-op", "include_ops", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Another DID's signed create to put in the genesis (it signs the inception too); repeatable.")
@click.option("--publish-quota", "publish", metavar="window=S,count=N,bytes=N", help="The quota of every publisher (resources per window of ordering time).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="The genesis (proposal) file to write.")
@click.option("--genesis", "genesis_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Step 2: write this signed genesis to the empty ledger in --data (no-op when it holds it already).")
@click.pass_context
def init_command(
    ctx: click.Context, data_dir: str, network: str, governor_ops: tuple[Path, ...], threshold: int | None, create_mode: str | None,
    registrar_ops: tuple[Path, ...], include_ops: tuple[Path, ...], publish: str | None, out_path: Path | None, genesis_path: Path | None,
) -> None:
    """Create a governed network: build its genesis (step 1), or write the signed genesis (step 2, --genesis).

    \b
    Step 1: didnode init --data DIR --network NET --governor-op FILE ... --threshold M --create registrars --out genesis.json
    Then each genesis DID signs: didctl gov sign genesis.json --as DID
    Step 2: didnode init --data DIR --genesis genesis.json   (or didnode serve --data DIR --genesis genesis.json)
    """
    try:
        if genesis_path is not None:
            given = [n for n, v in (("--governor-op", governor_ops), ("--threshold", threshold), ("--create", create_mode), ("--registrar-op", registrar_ops),
                                    ("--include-op", include_ops), ("--publish-quota", publish), ("--out", out_path)) if v]
            if given:
                raise click.UsageError(f"--genesis writes a signed genesis; {', '.join(given)} belong to step 1")
            explicit = ctx.get_parameter_source("network") not in (click.core.ParameterSource.DEFAULT, None)
            _write_genesis(data_dir, genesis_path, network if explicit else "")
            return
        if not governor_ops or threshold is None or create_mode is None or out_path is None:
            raise click.UsageError("step 1 needs --governor-op FILE (one or more), --threshold M, --create MODE and --out FILE (step 2: --genesis FILE)")
        if threshold > len(governor_ops):
            raise click.BadParameter(f"{threshold} is more than the {len(governor_ops)} governors", param_hint="--threshold")
        if registrar_ops and create_mode != REGISTRARS:
            raise click.UsageError("--registrar-op lists registrars, which only --create registrars uses; put other DIDs in the genesis with --include-op")
        quota = parse_publish_quota(publish) if publish else None
        g = genesis_mod.initialise(
            data_dir, network, _read_ops(governor_ops, network), threshold, create_mode, _read_ops(registrar_ops, network),
            _read_ops(include_ops, network), quota, out_path, create_key, node_create,
        )
    except DidnodeError as err:
        click.echo(f"didnode: {err} [{err.reason}]", err=True)
        sys.exit(1)
    others = g.dids[1:]
    click.echo(f"node DID {g.dids[0]} (genesis DID #0), key in {data_dir}/node.key")
    click.echo(f"wrote {out_path}: the genesis of network {network} ({len(g.dids)} creates, then governance {g.governance}), signed by the node")
    click.echo(f"remaining: each of the {len(others)} other genesis DIDs signs the inception:")
    for did in others:
        click.echo(f"  didctl gov sign {out_path} --as {did}")
    click.echo(f"then: didnode init --data {data_dir} --genesis {out_path}   (or didnode serve --data {data_dir} --network {network} --genesis {out_path})")


def _write_genesis(data_dir: str, path: Path, network: str) -> None:
    """Step 2: the genesis written by a node opened on ``data_dir`` (then closed); raises DidnodeError."""
    g = genesis_mod.load(path)
    if network and network != g.network:
        raise InvalidArgument(f"{path} is the genesis of network {g.network!r}, not {network!r}")
    node = Node(NodeConfig(data_dir=data_dir, network=g.network, genesis=g, prepare_processes=0))
    try:
        with node.store.read() as txn:
            size = node.tables.log_size(txn)
            policy = node.tables.governance(txn)
    finally:
        node.close()
    if node.genesis_written:
        click.echo(f"wrote the genesis of network {g.network} to {data_dir}: {size} entries")
    else:
        click.echo(f"{data_dir} holds this genesis already ({size} entries); nothing written")
    click.echo(genesis_mod.describe(g.network, policy))


@click.command("identity")
@click.option("--data", "data_dir", default="var/node", show_default=True, envvar="DIDNODE_DATA", help="Data directory of the node (its node.key).")
@click.option("--network", default="local", show_default=True, envvar="DIDNODE_NETWORK", help="Network id the node serves.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Write the operation file here instead of standard output.")
def identity_command(data_dir: str, network: str, out_path: Path | None) -> None:
    """Print the node DID's signed create as an operation file (didnode/operation/v1).

    On a governed network a node whose DID is not in the genesis cannot create
    it alone: a registrar (or governor) endorses this file (``didctl did
    endorse FILE --as DID``) and submits it (``didctl did submit FILE``);
    restart the node afterwards so that it serves the handshake.
    """
    path = os.path.join(data_dir, NODE_KEY_FILE)
    try:
        if not os.path.exists(path):
            raise InvalidArgument(f"{data_dir} holds no node key ({NODE_KEY_FILE}): start the node once, or didnode init, to make one")
        text = opfile.dumps(node_create(network, load_key(path)))
        if out_path is None:
            click.echo(text, nl=False)
        else:
            if out_path.exists():
                raise InvalidArgument(f"{out_path} exists; name a new file")
            write_atomic(out_path, text.encode(), mode=0o644)
            click.echo(f"wrote the create of the node DID to {out_path}")
    except DidnodeError as exc:
        click.echo(f"didnode: {exc} [{exc.reason}]", err=True)
        sys.exit(1)
