"""Two nodes fed the same operations (with the same ordering times) have byte-identical roots and trees."""

from __future__ import annotations

from pathlib import Path

from nacl.signing import SigningKey

from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.checkpoint import Checkpoint, sign
from didnode.core.transparency_verify import verify_checkpoint
from didnode.core.results import Receipt
from didnode.ledger.batch import apply_batch
from didnode.ledger.prepare import prepare_many
from didnode.ledger.trees import roots, transparency_hooks
from didnode.store import layout
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
from tests.factory import NET, MemLedger, adopt_rotation, new_create, rotate_op

T0 = 1_700_000_000_000


class Replica:
    """One node's store, applying batches through the node's own apply_batch and tree hooks."""

    def __init__(self, path: Path) -> None:
        self.store = Store(path, map_size=1 << 25)
        self.tables = LedgerTables(self.store)
        self.hooks = transparency_hooks(self.tables)

    def apply(self, ops: list[SignedOperation], now_ms: int) -> None:
        prepared = prepare_many([(o.payload, o.proofs) for o in ops], NET, self.tables)
        out = self.store.write(lambda txn: apply_batch(self.tables, txn, prepared, now_ms, self.hooks))
        assert all(isinstance(o, Receipt) for o in out), out

    def dump(self, name: bytes) -> list[tuple[bytes, bytes]]:
        with self.store.read() as txn:
            return list(txn.cursor(db=self.store.dbs[name]))


def _workload() -> list[list[SignedOperation]]:
    """Rounds of operations (each round shares one ordering time): creates, controlled creates, rotations."""
    mem = MemLedger()
    admin, op = new_create()
    mem.submit(op)
    rounds = [[op]]
    devices = []
    batch = []
    for i in range(40):
        ident, op = new_create(controllers=[admin] if i % 4 == 0 else [])
        mem.submit(op)
        devices.append(ident)
        batch.append(op)
    rounds.append(batch)
    batch = []
    for ident in devices[:15]:
        unsigned, auth, nxt, key_id = rotate_op(ident, mem.states[ident.did])
        op = builder.sign(unsigned, [(builder.next_kid(ident.did), ident.next_key)])
        mem.submit(op)
        adopt_rotation(ident, auth, nxt, key_id)
        batch.append(op)
    rounds.append(batch)
    return rounds


def test_same_operations_same_times_give_identical_roots_and_trees(tmp_path: Path) -> None:
    rounds = _workload()
    a = Replica(tmp_path / "a")
    b = Replica(tmp_path / "b")
    for i, ops in enumerate(rounds):
        now = T0 + 1000 * i
        a.apply(ops, now)  # node A commits each round as one batch
        for j in range(0, len(ops), 7):  # node B in smaller batches, same ordering time
            b.apply(ops[j : j + 7], now)
    with a.store.read() as ta, b.store.read() as tb:
        ra, rb = roots(a.tables, ta), roots(b.tables, tb)
    assert ra == rb and ra.size == sum(len(r) for r in rounds)
    for name in (layout.DB_LOG, layout.DB_STATE, layout.DB_MERKLE, layout.DB_SMT):
        assert a.dump(name) == b.dump(name), name

    # Each node signs with its own key; the checkpoints commit to the same state.
    ka, kb = SigningKey.generate(), SigningKey.generate()
    ca = sign(Checkpoint(NET, ra.size, ra.log_root, ra.state_root, T0 + 10_000), ka, "did:dnode:QmA#key-1")
    cb = sign(Checkpoint(NET, rb.size, rb.log_root, rb.state_root, T0 + 12_345), kb, "did:dnode:QmB#key-1")
    assert verify_checkpoint(ca, bytes(ka.verify_key)).same_state(verify_checkpoint(cb, bytes(kb.verify_key)))


def test_other_ordering_times_give_other_roots(tmp_path: Path) -> None:
    # The control for the test above: the entry (so the leaf) and the state records
    # include the ordering time, which is why equal roots need equal times.
    rounds = _workload()[:2]
    a = Replica(tmp_path / "a")
    b = Replica(tmp_path / "b")
    for i, ops in enumerate(rounds):
        a.apply(ops, T0 + 1000 * i)
        b.apply(ops, T0 + 1000 * i + 1)
    with a.store.read() as ta, b.store.read() as tb:
        ra, rb = roots(a.tables, ta), roots(b.tables, tb)
    assert ra.size == rb.size and ra.log_root != rb.log_root and ra.state_root != rb.state_root
