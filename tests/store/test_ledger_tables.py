"""The ledger tables: operations are found by hash, creates through their DID (no op-hash row)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from didnode import errors
from didnode.core.did import did_for_create_hash
from didnode.core.results import Receipt
from didnode.ledger.batch import apply_batch
from didnode.ledger.prepare import prepare_many
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
from tests.factory import NET, adopt_rotation, new_create, rotate_op
from didnode.core import builder


def test_a_creates_hash_names_its_did() -> None:
    ident, op = new_create()
    assert did_for_create_hash(hashlib.sha256(op.payload).digest()) == ident.did


def test_operations_are_found_by_hash_and_only_non_creates_have_index_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", map_size=1 << 24)
    tables = LedgerTables(store)
    ident, create = new_create()
    other, create2 = new_create()

    def submit(ops):  # type: ignore[no-untyped-def]
        prepared = prepare_many([(o.payload, o.proofs) for o in ops], NET, tables)
        return store.write(lambda txn: apply_batch(tables, txn, prepared, 1_700_000_000_000))

    assert all(isinstance(o, Receipt) for o in submit([create, create2]))
    with store.read() as txn:
        state = tables.get_state(txn, ident.did)
    u, new_auth, new_next, key_id = rotate_op(ident, state)
    rotation = builder.sign(u, [(builder.next_kid(ident.did), ident.next_key)])
    adopt_rotation(ident, new_auth, new_next, key_id)
    (accepted,) = submit([rotation])
    assert isinstance(accepted, Receipt) and accepted.position == 2

    with store.read() as txn:
        for op, position in ((create, 0), (create2, 1), (rotation, 2)):
            h = hashlib.sha256(op.payload).digest()
            assert tables.has_operation(txn, h) and tables.position_of(txn, h) == position
        assert txn.stat(tables.ophash)["entries"] == 1  # the rotation only
        unknown = hashlib.sha256(b"never submitted").digest()
        assert not tables.has_operation(txn, unknown)
        with pytest.raises(errors.UnknownOperation):
            tables.position_of(txn, unknown)
        with pytest.raises(errors.UnknownOperation):
            tables.position_of(txn, b"short")
        assert [v.position for v in tables.versions(txn, ident.did)] == [0, 2]

    # Both kinds of replay are refused as duplicates, naming the position.
    again = submit([create, rotation])
    assert isinstance(again[0], errors.DuplicateOperation) and again[0].details["position"] == "0"
    assert isinstance(again[1], errors.DuplicateOperation) and again[1].details["position"] == "2"
    store.close()
