"""A node: its store, its identity (node DID and key), its orderer, its worker pool.

On first start the node creates its signing key (``node.key`` beside the
LMDB files, mode 0600: the only file outside LMDB, kept out of the
database so that copies made for audits or backups carry no secret) and
writes its own DID's create operation as the genesis entry of the log.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from nacl.signing import SigningKey

from didnode import __version__
from didnode.core import builder
from didnode.core.operations import Proof
from didnode.errors import DidnodeError, InvalidArgument, StoreCorrupted
from didnode.ledger.batch import Accepted, BatchHook
from didnode.ledger.orderer import LocalOrderer
from didnode.ledger.prepare import prepare_many
from didnode.ledger.trees import transparency_hooks
from didnode.ledger.verifier import InlineVerifier, ProcessVerifier, Verifier
from didnode.store import layout
from didnode.store.env import DEFAULT_MAP_SIZE, Store
from didnode.store.ledger_tables import LedgerTables

NODE_KEY_FILE = "node.key"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node is started with (see ``didnode serve --help``)."""

    data_dir: str
    network: str = "local"
    map_size: int = DEFAULT_MAP_SIZE
    verify_workers: int = 2
    verify_processes: int = 1
    max_batch: int = 2048
    max_pending: int = 100_000
    session_lifetime_s: int = 900  # lifetime (and maximum) of node-issued session credentials


class Node:
    """An embedded-mode node. Call :meth:`close` to stop the writer and close LMDB."""

    def __init__(
        self, config: NodeConfig, clock_ms: Callable[[], int] = wall_clock_ms, hooks: Sequence[BatchHook] = ()
    ) -> None:
        self.config = config
        self.network = config.network
        self.clock_ms = clock_ms
        self.store = Store(os.path.join(config.data_dir, "ledger"), map_size=config.map_size)
        self.tables = LedgerTables(self.store)
        self.orderer = LocalOrderer(
            self.tables, clock_ms, [*transparency_hooks(self.tables), *hooks], config.max_batch, config.max_pending
        )
        self.pool = ThreadPoolExecutor(max(1, config.verify_workers), thread_name_prefix="didnode-prepare")
        self.verifier: Verifier = ProcessVerifier(config.verify_processes) if config.verify_processes > 0 else InlineVerifier()
        self.signing_key = _load_or_create_key(os.path.join(config.data_dir, NODE_KEY_FILE))
        self.node_did = self._genesis()
        self.orderer.start()

    def _genesis(self) -> str:
        with self.store.read() as txn:
            if self.tables.has_meta(txn, layout.META_NETWORK):
                network = self.tables.meta_text(txn, layout.META_NETWORK)
                if network != self.network:
                    raise InvalidArgument(
                        f"the store at {self.config.data_dir} belongs to network {network!r}, not {self.network!r}"
                    )
                return self.tables.meta_text(txn, layout.META_NODE_DID)
        key = self.signing_key
        # The node's next key is derived from its key so that the node can
        # always rotate; an operator who wants an offline next key rotates
        # the node DID with didctl.
        nxt = SigningKey(_derive(bytes(key), b"next"))
        unsigned = builder.create(self.network, [builder.NewKey("key-1", bytes(key.verify_key))], bytes(nxt.verify_key))
        signed = builder.sign(unsigned, [(f"{unsigned.did}#key-1", key)])
        ops = prepare_many([(signed.payload, signed.proofs)], self.network, self.tables)
        outcome = self.orderer.apply_now(ops)[0]
        if isinstance(outcome, DidnodeError):
            raise StoreCorrupted(f"cannot write the genesis entry: {outcome}")

        def mark(txn: object) -> None:
            self.tables.set_meta_text(txn, layout.META_NETWORK, self.network)  # type: ignore[arg-type]
            self.tables.set_meta_text(txn, layout.META_NODE_DID, unsigned.did)  # type: ignore[arg-type]

        self.store.write(mark)
        return unsigned.did

    def prepare(self, items: Sequence[tuple[bytes, Sequence[Proof]]]) -> list:  # type: ignore[type-arg]
        """Parse and pre-verify (runs in the prepare pool; signatures go to the verifier)."""
        return prepare_many(items, self.network, self.tables, self.verifier)

    @property
    def version(self) -> str:
        return __version__

    def close(self) -> None:
        self.orderer.stop()
        self.pool.shutdown(wait=True)
        self.verifier.close()
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
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, seed.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return SigningKey(seed)


__all__ = ["Node", "NodeConfig", "Accepted", "wall_clock_ms"]
