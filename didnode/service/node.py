"""A node: its store, its identity (node DID and key), its orderer, its worker pool.

On first start the node creates its signing key (``node.key`` beside the
LMDB files, mode 0600: the only file outside LMDB, kept out of the
database so that copies made for audits or backups carry no secret) and
writes its own DID's create operation as the genesis entry of the log.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from nacl.signing import SigningKey

from didnode import __version__
from didnode.clock import wall_ms
from didnode.core import builder
from didnode.core.operations import Proof
from didnode.errors import DidnodeError, InvalidArgument, StoreCorrupted, StreamMismatch
from didnode.fileio import write_atomic
from didnode.ledger.orderer import LocalOrderer, Orderer
from concurrent.futures import Future

from didnode.ledger.prepare import prepare_many
from didnode.ledger.preparer import INLINE_BELOW, InlinePreparer, Prepared, Preparer, ProcessPreparer
from didnode.ledger.trees import transparency_hooks
from didnode.ledger.verifier import ProcessVerifier
from didnode.store import layout
from didnode.store.env import DEFAULT_MAP_SIZE, Store
from didnode.store.ledger_tables import LedgerTables

if TYPE_CHECKING:
    from didnode.ledger.cluster import ClusterStatus, JetStreamOrderer

NODE_KEY_FILE = "node.key"
DEFAULT_PREPARE_PROCESSES = 2  # see NodeConfig.prepare_processes


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node is started with (see ``didnode serve --help``)."""

    data_dir: str
    network: str = "local"
    map_size: int = DEFAULT_MAP_SIZE
    # Chunks of 8 or more submissions are parsed and verified in worker
    # processes (didnode.ledger.preparer): the node's own interpreter is left
    # to gRPC and the writer. 0 prepares in-process. Smaller requests are
    # prepared on the prepare thread (a round trip costs more than the work).
    # Two workers: preparing costs more CPU per operation than applying it,
    # so one worker would be the bottleneck even on two cores; when the
    # writer is the bottleneck, idle workers cost nothing.
    prepare_processes: int = DEFAULT_PREPARE_PROCESSES
    prepare_threads: int = 1
    max_batch: int = 8192
    max_pending: int = 100_000
    session_lifetime_s: int = 900  # lifetime (and maximum) of node-issued session credentials
    # Cluster mode (docs/cluster.md): NATS server URLs; empty runs embedded.
    nats_servers: tuple[str, ...] = ()
    stream: str = ""  # JetStream stream name; default DIDNODE_<NETWORK>


class Node:
    """A node, embedded (LocalOrderer) or in a cluster (JetStreamOrderer). Call :meth:`close` to stop the writer and close LMDB."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.network = config.network
        self.clock_ms: Callable[[], int] = wall_ms
        ledger_dir = os.path.join(config.data_dir, "ledger")
        self.store = Store(ledger_dir, map_size=config.map_size)
        self.tables = LedgerTables(self.store)
        hooks = transparency_hooks(self.tables)
        self.pool = ThreadPoolExecutor(max(1, config.prepare_threads), thread_name_prefix="didnode-prepare")
        self.preparer: Preparer = (
            ProcessPreparer(self.tables, ledger_dir, self.network, config.prepare_processes)
            if config.prepare_processes > 0
            else InlinePreparer(self.tables, self.network)
        )
        self.signing_key = _load_or_create_key(os.path.join(config.data_dir, NODE_KEY_FILE))
        self.mode = "cluster" if config.nats_servers else "embedded"
        self.orderer: Orderer
        self.jetstream: JetStreamOrderer | None = None
        if config.nats_servers:
            # Imported here: nats-py is only needed in cluster mode (the [cluster] extra).
            from didnode.ledger.cluster import ClusterConfig, JetStreamOrderer

            cluster = ClusterConfig(servers=tuple(config.nats_servers), network=self.network, stream=config.stream)
            self._cluster_verifier = ProcessVerifier(1)
            jet = JetStreamOrderer(self.tables, cluster, hooks, self._cluster_verifier, config.max_batch, config.max_pending)
            self.jetstream = self.orderer = jet
            genesis = self._genesis_op()
            self.node_did = self._cluster_genesis(genesis, cluster.stream_name)
            jet.start()
            # In a cluster the node's own create is an ordinary write through the stream.
            jet.publish_genesis(genesis.payload, genesis.proofs, genesis.did)
        else:
            local = LocalOrderer(self.tables, wall_ms, hooks, config.max_batch, config.max_pending)
            self.orderer = local
            self.node_did = self._genesis(local)
            local.start()

    def _genesis(self, orderer: LocalOrderer) -> str:
        self._check_mode()
        with self.store.read() as txn:
            if self.tables.has_meta(txn, layout.META_NETWORK):
                network = self.tables.meta_text(txn, layout.META_NETWORK)
                if network != self.network:
                    raise InvalidArgument(
                        f"the store at {self.config.data_dir} belongs to network {network!r}, not {self.network!r}"
                    )
                return self.tables.meta_text(txn, layout.META_NODE_DID)
        signed = self._genesis_op()
        ops = prepare_many([(signed.payload, signed.proofs)], self.network, self.tables)
        outcome = orderer.apply_now(ops)[0]
        if isinstance(outcome, DidnodeError):
            raise StoreCorrupted(f"cannot write the genesis entry: {outcome}")

        def mark(txn: object) -> None:
            self.tables.set_meta_text(txn, layout.META_NETWORK, self.network)  # type: ignore[arg-type]
            self.tables.set_meta_text(txn, layout.META_NODE_DID, signed.did)  # type: ignore[arg-type]

        self.store.write(mark)
        return signed.did

    def _genesis_op(self) -> builder.SignedOperation:
        """The node DID's create: deterministic for a node key (Ed25519 signatures are)."""
        key = self.signing_key
        # The node's next key is derived from its key so that the node can
        # always rotate; an operator who wants an offline next key rotates
        # the node DID with didctl.
        nxt = SigningKey(_derive(bytes(key), b"next"))
        unsigned = builder.create(self.network, [builder.NewKey("key-1", bytes(key.verify_key))], bytes(nxt.verify_key))
        return builder.sign(unsigned, [(f"{unsigned.did}#key-1", key)])

    def _check_mode(self) -> None:
        """Refuse to run embedded on a store that follows a cluster stream (the histories would fork)."""
        with self.store.read() as txn:
            if self.tables.has_meta(txn, layout.META_STREAM_NAME):
                stream = self.tables.meta_text(txn, layout.META_STREAM_NAME)
                raise StreamMismatch(
                    f"the store at {self.config.data_dir} follows cluster stream {stream}; start it with --nats", stream=stream
                )

    def _cluster_genesis(self, genesis: builder.SignedOperation, stream: str) -> str:
        """Cluster mode: bind the store to the network and the node DID; nothing is written to the log here.

        Precondition: the store is new or was written in cluster mode. A store
        with entries but no stream binding was written embedded: its genesis
        entry is no stream message, so following a stream would fork it.
        """
        with self.store.read() as txn:
            if self.tables.has_meta(txn, layout.META_NETWORK):
                network = self.tables.meta_text(txn, layout.META_NETWORK)
                if network != self.network:
                    raise InvalidArgument(
                        f"the store at {self.config.data_dir} belongs to network {network!r}, not {self.network!r}"
                    )
                if self.tables.log_size(txn) > 0 and not self.tables.has_meta(txn, layout.META_STREAM_NAME):
                    raise StreamMismatch(
                        f"the store at {self.config.data_dir} was written in embedded mode; a cluster node needs a new --data directory",
                        stream=stream,
                    )
                return self.tables.meta_text(txn, layout.META_NODE_DID)

        def mark(txn: object) -> None:
            self.tables.set_meta_text(txn, layout.META_NETWORK, self.network)  # type: ignore[arg-type]
            self.tables.set_meta_text(txn, layout.META_NODE_DID, genesis.did)  # type: ignore[arg-type]

        self.store.write(mark)
        return genesis.did

    def cluster_status(self) -> "ClusterStatus | None":
        """Stream position, lag and writability in cluster mode; None when embedded."""
        return self.jetstream.status() if self.jetstream is not None else None

    def prepare(self, items: Sequence[tuple[bytes, Sequence[Proof]]]) -> Prepared:
        """Parse and pre-verify ``items``, waiting for the result."""
        return self.prepare_future(items).result()

    def prepare_future(self, items: Sequence[tuple[bytes, Sequence[Proof]]]) -> "Future[Prepared]":
        """Start parsing and pre-verifying ``items``: small groups on the prepare thread, larger ones in a worker process."""
        if len(items) < INLINE_BELOW:
            return self.pool.submit(prepare_many, items, self.network, self.tables)
        return self.preparer.submit(items)

    @property
    def version(self) -> str:
        return __version__

    def close(self) -> None:
        self.orderer.stop()
        self.pool.shutdown(wait=True)
        self.preparer.close()
        if self.jetstream is not None:
            self._cluster_verifier.close()
        self.store.close()


def _derive(seed: bytes, label: bytes) -> bytes:
    return hashlib.blake2b(label, key=seed, digest_size=32).digest()


def _load_or_create_key(path: str) -> SigningKey:
    """The node's Ed25519 key: 32-byte seed, hex, in a 0600 file created atomically."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            text = f.read().strip()
        try:
            return SigningKey(bytes.fromhex(text.decode()))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreCorrupted(f"node key file {path} is not a hex Ed25519 seed: {exc}") from None
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    seed = os.urandom(32)
    write_atomic(Path(path), seed.hex().encode() + b"\n", mode=0o600)
    return SigningKey(seed)


__all__ = ["Node", "NodeConfig"]
