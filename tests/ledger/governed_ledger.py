"""A real LMDB ledger with the node's own apply path, its trees and explicit ordering times, for governance tests."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from didnode.core.builder import SignedOperation
from didnode.core.governance.policy import CREATES, PUBLISHES, Policy, Usage
from didnode.ledger.batch import Outcome, apply_batch
from didnode.ledger.prepare import prepare_many
from didnode.ledger.trees import roots, transparency_hooks
from didnode.store import layout
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
from tests.factory import NET

T0 = 1_700_000_000_000


class GovLedger:
    """``submit`` applies a batch at ordering time ``now`` (ms); the store is a node data dir's ``ledger``."""

    def __init__(self, data: Path, network: str = NET) -> None:
        self.data = data
        self.network = network
        self.store = Store(str(data / "ledger"), map_size=1 << 26)
        self.tables = LedgerTables(self.store)
        self.hooks = transparency_hooks(self.tables)
        self.now = T0

    def submit(self, ops: Sequence[SignedOperation], at: int | None = None) -> list[Outcome]:
        if at is not None:
            self.now = at
        prepared = prepare_many([(o.payload, o.proofs) for o in ops], self.network, self.tables)

        def write(txn: object) -> list[Outcome]:
            out = apply_batch(self.tables, txn, prepared, self.now, self.hooks)  # type: ignore[arg-type]
            if not self.tables.has_meta(txn, layout.META_NETWORK):  # type: ignore[arg-type]
                # What a node writes with its genesis: the audit reads both.
                first = next((o for o in out if not isinstance(o, Exception)), None)
                if first is not None:
                    self.tables.set_meta_text(txn, layout.META_NETWORK, self.network)  # type: ignore[arg-type]
                    self.tables.set_meta_text(txn, layout.META_NODE_DID, first.did)  # type: ignore[arg-type]
            return out

        return self.store.write(write)

    def one(self, op: SignedOperation, at: int | None = None) -> Outcome:
        return self.submit([op], at)[0]

    def policy(self) -> Policy | None:
        with self.store.read() as txn:
            return self.tables.governance(txn)

    def usage(self, did: str, kind: bytes = CREATES) -> Usage:
        with self.store.read() as txn:
            return self.tables.usage(txn, kind, did)

    def exists(self, did: str) -> bool:
        with self.store.read() as txn:
            return self.tables.state_if_exists(txn, did) is not None

    def size(self) -> int:
        with self.store.read() as txn:
            return self.tables.log_size(txn)

    def fingerprint(self) -> tuple[int, bytes, bytes, dict[bytes, bytes]]:
        """(log size, log root, state root, usage table): equal on two ledgers that applied the same log."""
        with self.store.read() as txn:
            r = roots(self.tables, txn)
            usage = {bytes(k): bytes(v) for k, v in txn.cursor(db=self.tables.usage_db)}
            return self.tables.log_size(txn), r.log_root, r.state_root, usage

    def entries(self) -> list[bytes]:
        with self.store.read() as txn:
            return [bytes(e) for _, e in self.tables.entries(txn)]

    def close(self) -> None:
        self.store.close()


__all__ = ["GovLedger", "T0", "CREATES", "PUBLISHES"]
