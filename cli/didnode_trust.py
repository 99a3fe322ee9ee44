"""``didnode trust-policy``: the trust policy a node's operator publishes for its clients (docs/trust.md).

A client (``didctl trust add``, a device's bundle) trusts a ledger through a
small policy: the network, the genesis (the RFC 6962 leaf hash of log entry
0), the node's checkpoint key, threshold 1, a staleness bound and the origin
of its checkpoint notes. This module
builds it from a node's data directory (read-only, also while the node runs)
and from a running :class:`~didnode.service.node.Node` for the one line
``didnode serve`` logs at start, so the operator can publish what clients
compare at first contact. Node side: ``didctl`` never imports it.
"""

from __future__ import annotations

import json
import os
import sys

import click

from didnode.core.checkpoint import from_json
from didnode.core.keystate import DidState
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.tlog_checkpoint import default_origin, note_origin
from didnode.core.trust import DEFAULT_MAX_STALENESS_MS, TrustedKey, TrustPolicy
from didnode.errors import DidnodeError, StoreCorrupted
from didnode.ledger.checkpoints import CHECKPOINT_FILE
from didnode.service.node import Node
from didnode.service.transparency import NODE_KEY_FRAGMENT
from didnode.store import layout
from didnode.store.readonly import ReadOnlyStore, ledger_path


def node_policy(
    network: str, node_did: str, node_key: bytes, entry0: bytes, max_staleness_ms: int = DEFAULT_MAX_STALENESS_MS, origin: str | None = None
) -> TrustPolicy:
    """The policy of a node: its network, the leaf hash of ``entry0`` (log entry 0), its checkpoint key, threshold 1,
    and the origin of its checkpoint notes (default ``didnode.local/<network>``, always written out)."""
    key = TrustedKey(f"{node_did}#{NODE_KEY_FRAGMENT}", node_key)
    return TrustPolicy.create(network, leaf_hash(entry0), [key], 1, max_staleness_ms, origin=origin or default_origin(network))


def recorded_origin(data_dir: str) -> str | None:
    """The origin of the latest checkpoint note the node signed (``DATA/node.checkpoint``), ``None`` when
    there is no record or it predates notes (the node then signs under its ``--origin`` at its next checkpoint)."""
    path = os.path.join(data_dir, CHECKPOINT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            signed = from_json(json.loads(f.read()))
        return note_origin(signed)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, DidnodeError) as exc:
        raise StoreCorrupted(f"{path} does not hold a checkpoint ({exc})") from None


def policy_from_data(data_dir: str, max_staleness_ms: int = DEFAULT_MAX_STALENESS_MS, origin: str | None = None) -> TrustPolicy:
    """The policy of the node whose data directory is ``data_dir`` (its store opened read-only, as a live reader).

    The checkpoint key is read from the node DID's state on the ledger (what
    clients see), not from the secret key file; the origin is ``origin`` if
    given, else that of the node's latest checkpoint note. Raises :class:`StoreCorrupted`
    when the store is missing or lacks what a started node writes.
    """
    ro = ReadOnlyStore(ledger_path(data_dir), live=True)
    try:
        with ro.read() as txn:
            meta = ro.dbs[layout.DB_META]
            network, node_did = txn.get(layout.META_NETWORK, db=meta), txn.get(layout.META_NODE_DID, db=meta)
            entry0 = txn.get(layout.u64(0), db=ro.dbs[layout.DB_LOG])
            record = txn.get(layout.did_key(node_did.decode()), db=ro.dbs[layout.DB_STATE]) if node_did is not None else None
    finally:
        ro.close()
    if network is None or node_did is None or entry0 is None or record is None:
        raise StoreCorrupted(f"the store in {data_dir} holds no node identity or log entry 0 yet: start the node once first")
    state = DidState.from_record(record)
    origin = origin or recorded_origin(data_dir)
    return node_policy(network.decode(), node_did.decode(), state.key(NODE_KEY_FRAGMENT).raw, entry0, max_staleness_ms, origin)


def startup_line(node: Node) -> str:
    """What ``didnode serve`` logs at start: the checkpoint key's fingerprint and the genesis hash."""
    with node.store.read() as txn:
        entry0 = node.tables.entry(txn, 0)
    policy = node_policy(node.network, node.node_did, bytes(node.signing_key.verify_key), entry0, origin=node.origin)
    key = policy.keys[0]
    return (
        f"trust anchors: checkpoint key {key.fingerprint} ({key.kid}), genesis {policy.genesis.hex()}, origin {policy.log_origin}; "
        f"`didnode trust-policy --data {node.config.data_dir}` prints the policy to publish"
    )


@click.command("trust-policy")
@click.option("--data", "data_dir", default="var/node", show_default=True, envvar="DIDNODE_DATA", help="The node's data directory.")
@click.option(
    "--max-staleness-ms",
    default=DEFAULT_MAX_STALENESS_MS,
    show_default=True,
    type=click.IntRange(1_000, 366 * 86_400_000),
    metavar="N",
    help="How old a checkpoint clients accept, in ms.",
)
@click.option(
    "--origin",
    default="",
    metavar="ORIGIN",
    help="The origin of the node's checkpoint notes (its serve --origin)  [default: that of its latest checkpoint note, else didnode.local/<NETWORK>]",
)
def trust_policy_command(data_dir: str, max_staleness_ms: int, origin: str) -> None:
    """Print this node's trust policy (trust.json, docs/trust.md) for its operator to publish.

    Clients compare its checkpoint key fingerprint and genesis at their first
    contact (`didctl trust add`), or use the file as it is (`didctl --trust
    trust.json`, provisioning). The policy goes to stdout, the fingerprint and
    genesis to stderr. Safe while the node runs.
    """
    try:
        policy = policy_from_data(data_dir, max_staleness_ms, origin or None)
    except DidnodeError as err:
        click.echo(f"didnode: {err} [{err.reason}]", err=True)
        sys.exit(1)
    click.echo(policy.dumps(), nl=False)
    key = policy.keys[0]
    click.echo(f"didnode: checkpoint key {key.fingerprint} ({key.kid}), genesis {policy.genesis.hex()}, origin {policy.log_origin}", err=True)
