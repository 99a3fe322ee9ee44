"""A node: its store, its identity (node DID and key), its orderer, its worker pool.

On first start the node creates its signing key (``node.key`` beside the
LMDB files, mode 0600, kept out of the database so that copies made for
audits or backups carry no secret) and writes its own DID's create operation
as the genesis entry of the log. A governed network's node starts from the network's genesis instead
(``NodeConfig.genesis``, ``didnode init``/``didnode serve --genesis``: the
creates of the genesis DIDs, the node's first, then the governance
inception, written in one transaction; :mod:`didnode.service.genesis`).

The key, the ledger and the checkpoints the key signed belong together. At
start the node refuses (:class:`NodeKeyMismatch`) a key whose ledger is
missing or empty (a new ledger under an old key would sign checkpoints that
contradict the ones it signed), a ledger whose key is missing, and a key that
is not the ledger's node DID's; and (:class:`CheckpointRollback`) a ledger
that does not extend the latest checkpoint the key signed, which is kept
beside it (``node.checkpoint``, :class:`~didnode.ledger.checkpoints.CheckpointRecord`).
The explicit way to start afresh is ``NodeConfig.new_identity``
(``didnode serve --new-identity``): over a missing or empty ledger only, the
old key and its record move aside to ``*.retired-<UTC time>`` files and a new
node DID starts a new ledger.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from nacl.signing import SigningKey

from didnode import __version__
from didnode.clock import wall_ms
from didnode.core import builder
from didnode.core.merkle import log_tree
from didnode.core.operations import Proof
from didnode.core.tlog_checkpoint import check_origin, default_origin
from didnode.core.transparency_verify import verify_checkpoint
from didnode.errors import DidnodeError, GenesisConflict, InvalidArgument, NodeKeyMismatch, StoreCorrupted, StreamMismatch
from didnode.fileio import fsync_dir, write_atomic
from didnode.ledger.batch import apply_batch
from didnode.ledger.checkpoints import CHECKPOINT_FILE, CheckpointRecord
from didnode.ledger.orderer import LocalOrderer, Orderer
from concurrent.futures import Future

from didnode.ledger.prepare import prepare_many
from didnode.service import genesis as genesis_mod
from didnode.service.genesis import Genesis
from didnode.ledger.preparer import INLINE_BELOW, InlinePreparer, Prepared, Preparer, ProcessPreparer
from didnode.ledger.trees import roots, transparency_hooks
from didnode.ledger.verifier import ProcessVerifier
from didnode.store import layout
from didnode.store.checkpoint_tables import CheckpointTables
from didnode.store.datafile import DATA_FILE
from didnode.store.env import DEFAULT_MAP_SIZE, Store, storage_error
from didnode.store.ledger_tables import LedgerTables
from didnode.store.tree_tables import LogNodes

if TYPE_CHECKING:
    from didnode.ledger.cluster import ClusterStatus, JetStreamOrderer
    from didnode.ledger.cluster.config import NatsAuth

NODE_KEY_FILE = "node.key"
LEDGER_DIR = "ledger"
RETIRED = ".retired-"  # node.key.retired-20250101T120000Z: a key --new-identity moved aside
DEFAULT_PREPARE_PROCESSES = 2  # see NodeConfig.prepare_processes
log = logging.getLogger("didnode.node")


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
    nats_auth: "NatsAuth | None" = None  # NATS credentials and TLS (didnode serve --nats-user ...)
    # didnode serve --new-identity: over a missing or empty ledger only, move node.key and
    # node.checkpoint aside (*.retired-<UTC time>) and start a new node DID (module docstring).
    new_identity: bool = False
    # didnode serve --origin: the C2SP origin of the node's checkpoint notes, also their key name
    # (docs/transparency.md "Checkpoints as signed notes"); empty: didnode.local/<network>.
    origin: str = ""
    # didnode serve --genesis FILE (didnode.service.genesis): a governed network's genesis, written on
    # an empty ledger (published as the stream's first messages in cluster mode), checked otherwise.
    genesis: "Genesis | None" = None


GENESIS_TIMEOUT_S = 60.0  # cluster mode: publishing the genesis and applying it, at start


class Node:
    """A node, embedded (LocalOrderer) or in a cluster (JetStreamOrderer). Call :meth:`close` to stop the writer and close LMDB."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.network = config.network
        self.origin = check_origin(config.origin) if config.origin else default_origin(config.network)
        self.clock_ms: Callable[[], int] = wall_ms
        self.genesis_written = False  # this start wrote config.genesis (embedded)
        ledger_dir = os.path.join(config.data_dir, LEDGER_DIR)
        self.key_path = os.path.join(config.data_dir, NODE_KEY_FILE)
        self._refuse_key_without_ledger_file(ledger_dir)  # before anything is created
        self._check_genesis_config()
        self.store = Store(ledger_dir, map_size=config.map_size)
        self.tables = LedgerTables(self.store)
        try:
            self.signing_key = self._identity(ledger_dir)
        except BaseException:
            self.store.close()
            raise
        hooks = transparency_hooks(self.tables)
        self.pool = ThreadPoolExecutor(max(1, config.prepare_threads), thread_name_prefix="didnode-prepare")
        self.preparer: Preparer = (
            ProcessPreparer(self.tables, ledger_dir, self.network, config.prepare_processes)
            if config.prepare_processes > 0
            else InlinePreparer(self.tables, self.network)
        )
        self.checkpoint_record: CheckpointRecord
        self.mode = "cluster" if config.nats_servers else "embedded"
        self.orderer: Orderer
        self.jetstream: JetStreamOrderer | None = None
        if config.nats_servers:
            # Imported here: nats-py is only needed in cluster mode (the [cluster] extra).
            from didnode.ledger.cluster import ClusterConfig, JetStreamOrderer
            from didnode.ledger.cluster.config import NatsAuth

            auth = config.nats_auth or NatsAuth()
            cluster = ClusterConfig(servers=tuple(config.nats_servers), network=self.network, stream=config.stream, auth=auth)
            self._cluster_verifier = ProcessVerifier(1)
            jet = JetStreamOrderer(self.tables, cluster, hooks, self._cluster_verifier, config.max_batch, config.max_pending)
            self.jetstream = self.orderer = jet
            genesis = self._genesis_op()
            self.node_did = self._cluster_genesis(genesis, cluster.stream_name)
            self._check_checkpoint_record()
            if config.genesis is not None:
                self._validate_cluster_genesis(config.genesis)
            jet.start()
            try:
                if config.genesis is not None:
                    self._publish_cluster_genesis(jet, config.genesis)
            except BaseException:
                self.close()
                raise
            if config.genesis is None or self.node_did not in config.genesis.dids:
                # In a cluster the node's own create is an ordinary write through the stream.
                jet.publish_genesis(genesis.payload, genesis.proofs, genesis.did)
        else:
            local = LocalOrderer(self.tables, wall_ms, hooks, config.max_batch, config.max_pending)
            self.orderer = local
            self.node_did = self._genesis(local)
            self._check_checkpoint_record()
            local.start()

    # -- identity: the key, the ledger, the checkpoints it signed -------------------------

    def _refuse_key_without_ledger_file(self, ledger_dir: str) -> None:
        """A key whose ledger file is gone or empty: refuse before Store would create a new one."""
        if self.config.new_identity or not os.path.exists(self.key_path):
            return
        data_file = os.path.join(ledger_dir, DATA_FILE)
        if not os.path.exists(data_file):
            self._refuse_lost_ledger(ledger_dir, f"there is no {data_file}")
        if os.path.getsize(data_file) == 0:
            self._refuse_lost_ledger(ledger_dir, f"{data_file} is empty (0 bytes)")

    def _refuse_lost_ledger(self, ledger_dir: str, why: str) -> None:
        try:
            who = f" of {self._did_of(load_key(self.key_path))}"
        except DidnodeError:
            who = ""
        raise NodeKeyMismatch(
            f"the node key {self.key_path}{who} exists but its ledger is missing or empty ({why}): a new ledger under "
            f"that key would sign checkpoints contradicting the ones it signed before; restore {ledger_dir} from a backup, "
            f"or start a new identity with didnode serve --data {self.config.data_dir} --new-identity (docs/storage.md)"
        )

    def _identity(self, ledger_dir: str) -> SigningKey:
        """The node key, after checking that it and the ledger belong together (see the module docstring)."""
        data = self.config.data_dir
        record_path = os.path.join(data, CHECKPOINT_FILE)
        with self.store.read() as txn:
            size = self.tables.log_size(txn)
            empty = size == 0 and not self.tables.has_meta(txn, layout.META_NETWORK)
            node_did = self.tables.meta_text(txn, layout.META_NODE_DID) if self.tables.has_meta(txn, layout.META_NODE_DID) else "?"
        if self.config.new_identity:
            if not empty:
                raise InvalidArgument(
                    f"--new-identity starts a new ledger, but {ledger_dir} holds the ledger of node {node_did} "
                    f"({size} entries); move {ledger_dir} aside first to retire that ledger too"
                )
            _retire(data, (self.key_path, record_path))
        key_exists = os.path.exists(self.key_path)
        if empty and key_exists:
            self._refuse_lost_ledger(ledger_dir, f"{ledger_dir} holds no entry")
        if not empty and not key_exists:
            raise NodeKeyMismatch(
                f"the ledger in {ledger_dir} belongs to node {node_did}, but its key {self.key_path} is missing: restore "
                f"node.key from a backup of {data} (no other key can sign for that DID)"
            )
        if empty and os.path.exists(record_path):
            raise NodeKeyMismatch(
                f"{record_path} records the checkpoints of an earlier identity of this node, whose key and ledger are gone; "
                f"start a new identity with didnode serve --data {data} --new-identity (it moves the record aside)"
            )
        return load_key(self.key_path) if key_exists else create_key(self.key_path)

    def _did_of(self, key: SigningKey) -> str:
        return self._genesis_op(key).did

    def _check_key(self, node_did: str) -> None:
        """The key must be the key of the store's node DID."""
        mine = self._did_of(self.signing_key)
        if mine != node_did:
            raise NodeKeyMismatch(
                f"{self.key_path} is not the key of the ledger in {self.store.path}: the ledger's node is {node_did}, "
                f"the key is {mine}'s; put back the node's own node.key"
            )

    def _check_checkpoint_record(self) -> None:
        """The ledger must extend the latest checkpoint this key signed; a newer one in the store is recorded."""
        record = self.checkpoint_record = CheckpointRecord(
            os.path.join(self.config.data_dir, CHECKPOINT_FILE), bytes(self.signing_key.verify_key), self.node_did
        )
        adopt = None
        with self.store.read() as txn:
            r = roots(self.tables, txn)
            record.check_log(self.tables, txn, r.size, r.log_root, signing=False)
            stored = CheckpointTables(self.store).latest(txn)
            if stored is not None and (record.latest is None or stored.tree_size > record.latest.tree_size):
                # Signed and committed, but not recorded yet (a crash in between, or a store from before the record).
                try:
                    verify_checkpoint(stored, bytes(self.signing_key.verify_key), self.node_did)
                except DidnodeError as exc:
                    raise StoreCorrupted(f"the latest checkpoint stored in {self.store.path} does not verify: {exc}") from None
                if stored.tree_size > r.size or log_tree.root(LogNodes(txn, self.store), stored.tree_size) != stored.checkpoint.log_root:
                    raise StoreCorrupted(
                        f"the latest checkpoint stored in {self.store.path} (size {stored.tree_size}) does not match its log"
                    )
                adopt = stored
        if adopt is not None:
            record.save(adopt)

    def _check_genesis_config(self) -> None:
        """A genesis file must be for this network; embedded, the node key didnode init created must exist."""
        g = self.config.genesis
        if g is None:
            return
        if g.network != self.network:
            raise InvalidArgument(f"the genesis file is for network {g.network!r}, the node runs {self.network!r}: give --network {g.network}")
        if not self.config.nats_servers and not os.path.exists(self.key_path):
            raise NodeKeyMismatch(
                f"there is no node key {self.key_path}: the genesis begins with the create of {g.dids[0]}, whose key is in the "
                "--data directory didnode init created; write the genesis there"
            )

    def _genesis(self, orderer: LocalOrderer) -> str:
        self._check_mode()
        data = self.config.data_dir
        g = self.config.genesis
        with self.store.read() as txn:
            if self.tables.has_meta(txn, layout.META_NETWORK):
                network = self.tables.meta_text(txn, layout.META_NETWORK)
                if network != self.network:
                    raise InvalidArgument(
                        f"the store at {data} belongs to network {network!r}, not {self.network!r}"
                    )
                node_did = self.tables.meta_text(txn, layout.META_NODE_DID)
                self._check_key(node_did)
                if self.tables.log_size(txn) > 0:
                    if g is not None:
                        genesis_mod.check_ledger(self.tables, txn, g, data)  # this genesis already: nothing to do
                    return node_did
                if g is None:
                    # Only didnode init leaves a bound ledger without entries (embedded).
                    raise InvalidArgument(
                        f"the ledger in {data} was prepared by didnode init for a governed network and holds no entry yet: "
                        f"write its genesis with didnode init --data {data} --genesis FILE (or didnode serve --genesis FILE)"
                    )
        if g is not None:
            node_did = self._did_of(self.signing_key)
            genesis_mod.check_node(g, node_did, data)

            def bind(txn: object) -> None:
                self.tables.set_meta_text(txn, layout.META_NETWORK, self.network)  # type: ignore[arg-type]
                self.tables.set_meta_text(txn, layout.META_NODE_DID, node_did)  # type: ignore[arg-type]

            genesis_mod.write(self.tables, g, orderer.clock_ms(), orderer.hooks, bind)
            self.genesis_written = True
            log.info("wrote the genesis of network %s: %d operations, governance %s", self.network, len(g.operations), g.governance)
            return node_did
        signed = self._genesis_op()
        ops = prepare_many([(signed.payload, signed.proofs)], self.network, self.tables)

        def genesis(txn: object) -> None:
            # The entry and the network/node DID binding in one transaction: a crash leaves both or neither.
            outcome = apply_batch(self.tables, txn, ops, orderer.clock_ms(), orderer.hooks)[0]  # type: ignore[arg-type]
            if isinstance(outcome, DidnodeError):
                raise StoreCorrupted(f"cannot write the genesis entry: {outcome}")
            self.tables.set_meta_text(txn, layout.META_NETWORK, self.network)  # type: ignore[arg-type]
            self.tables.set_meta_text(txn, layout.META_NODE_DID, signed.did)  # type: ignore[arg-type]

        self.store.write(genesis)
        return signed.did

    def _genesis_op(self, key: SigningKey | None = None) -> builder.SignedOperation:
        """The node DID's create: deterministic for a node key (Ed25519 signatures are)."""
        return node_create(self.network, key if key is not None else self.signing_key)

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
                node_did = self.tables.meta_text(txn, layout.META_NODE_DID)
                self._check_key(node_did)
                return node_did

        def mark(txn: object) -> None:
            self.tables.set_meta_text(txn, layout.META_NETWORK, self.network)  # type: ignore[arg-type]
            self.tables.set_meta_text(txn, layout.META_NODE_DID, genesis.did)  # type: ignore[arg-type]

        self.store.write(mark)
        return genesis.did

    def _validate_cluster_genesis(self, g: "Genesis") -> None:
        """Cluster mode, before following: a genesis this node would publish must be accepted whole.

        A rejected genesis operation on the stream would start the network
        ungoverned for good: so on an empty ledger the genesis is applied here
        in a transaction that is then aborted, and its first rejection raised.
        """
        with self.store.read() as txn:
            size = self.tables.log_size(txn)
            if size > len(g.dids):
                genesis_mod.check_ledger(self.tables, txn, g, self.config.data_dir)
            if size > 0:
                return  # applied (checked), or part of it: the stream decides (_publish_cluster_genesis)
        genesis_mod.write(self.tables, g, self.clock_ms(), (), lambda txn: None, dry_run=True)

    def _publish_cluster_genesis(self, jet: "JetStreamOrderer", g: "Genesis") -> None:
        """Cluster mode: make the stream begin with the genesis (or find it there), and this ledger hold it."""
        with self.store.read() as txn:
            if self.tables.log_size(txn) > len(g.dids):
                genesis_mod.check_ledger(self.tables, txn, g, self.config.data_dir)  # applied before: no NATS needed
                return
        items = [(op.did, op.payload, op.proofs) for op in g.operations]
        published = jet.ensure_genesis(items, GENESIS_TIMEOUT_S)
        with self.store.read() as txn:
            if not genesis_mod.check_ledger(self.tables, txn, g, f"{self.config.data_dir} (stream {jet.stream})"):
                raise GenesisConflict(f"stream {jet.stream} holds the genesis but this node's ledger does not: its operations were rejected")
        log.info("the stream begins with the genesis of governance %s (%d of its %d operations published by this node)", g.governance, published, len(items))

    def governance_line(self) -> str:
        """The network's governance in one log line (what ``didnode serve`` says at start)."""
        with self.store.read() as txn:
            policy = self.tables.governance(txn)
        return genesis_mod.describe(self.network, policy)

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


def node_create(network: str, key: SigningKey) -> builder.SignedOperation:
    """The create of the DID of the node whose key is ``key`` on ``network`` (deterministic: Ed25519 signatures are)."""
    # The node's next key is derived from its key so that the node can
    # always rotate; an operator who wants an offline next key rotates
    # the node DID with didctl.
    nxt = SigningKey(_derive(bytes(key), b"next"))
    unsigned = builder.create(network, [builder.NewKey("key-1", bytes(key.verify_key))], bytes(nxt.verify_key))
    return builder.sign(unsigned, [(f"{unsigned.did}#key-1", key)])


def _derive(seed: bytes, label: bytes) -> bytes:
    return hashlib.blake2b(label, key=seed, digest_size=32).digest()


def load_key(path: str) -> SigningKey:
    """The node's Ed25519 key: 32-byte seed, hex, in a 0600 file."""
    try:
        with open(path, "rb") as f:
            text = f.read().strip()
    except OSError as exc:
        raise storage_error(exc, f"read the node key {path}") from None
    try:
        return SigningKey(bytes.fromhex(text.decode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreCorrupted(f"node key file {path} is not a hex Ed25519 seed: {exc}") from None


def create_key(path: str, seed: bytes | None = None) -> SigningKey:
    """A new node key (``seed``, else a random one), written atomically (0600)."""
    seed = seed if seed is not None else os.urandom(32)
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        write_atomic(Path(path), seed.hex().encode() + b"\n", mode=0o600)
    except OSError as exc:
        raise storage_error(exc, f"write the node key {path}", os.path.dirname(path) or ".") from None
    return SigningKey(seed)


def _retire(data_dir: str, paths: Sequence[str]) -> None:
    """Move each existing file of ``paths`` to ``<path>.retired-<UTC time>`` (never over another file)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    suffix = RETIRED + stamp
    n = 1
    while any(os.path.exists(p + suffix) for p in paths):
        n += 1
        suffix = f"{RETIRED}{stamp}-{n}"
    moved = False
    for path in paths:
        if os.path.exists(path):
            try:
                os.rename(path, path + suffix)
            except OSError as exc:
                raise storage_error(exc, f"move {path} aside", data_dir) from None
            log.warning("new identity: %s moved to %s", path, path + suffix)
            moved = True
    if moved:
        fsync_dir(data_dir)


__all__ = ["Node", "NodeConfig", "create_key", "node_create"]
