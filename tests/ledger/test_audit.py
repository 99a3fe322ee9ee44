"""The audit on copies of a real node's store: clean, and with one byte flipped in each kind of stored data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import lmdb
import pytest

from didnode.client import Client
from didnode.core import builder
from didnode.core import entry as entry_codec
from didnode.core.keystate import DidState
from didnode.errors import AuditFailed, StoreCorrupted
from didnode.ledger.audit import audit
from didnode.store import layout
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
from didnode.store.readonly import snapshot
from tests.conftest import start_node
from tests.factory import Identity, adopt_rotation, new_create, rotate_op


@dataclass
class Ledger:
    data: Path
    plain: list[Identity]      # created, never changed
    rotated: list[Identity]    # created, then rotated
    size: int
    checkpoint_sizes: list[int]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    data = tmp_path_factory.mktemp("audited") / "node"
    node = start_node(data)
    try:
        with Client(node.address) as c:
            admin, op = new_create()
            c.submit(op)
            idents = []
            for i in range(30):
                ident, op = new_create(controllers=[admin] if i % 5 == 0 else [])
                c.submit(op)
                idents.append(ident)
            sizes = [c.checkpoint().tree_size]
            for ident in idents[:8]:
                unsigned, auth, nxt, key_id = rotate_op(ident, c.state(ident.did))
                c.submit(builder.sign(unsigned, [(builder.next_kid(ident.did), ident.next_key)]))
                adopt_rotation(ident, auth, nxt, key_id)
            list(c.submit_batch([new_create()[1] for _ in range(60)]))
            sizes.append(c.checkpoint().tree_size)
            size = c.node_info().log_size
    finally:
        node.stop()
    yield Ledger(data, idents[8:], idents[:8], size, sizes)


def _copy(ledger: Ledger, tmp_path: Path) -> Path:
    snapshot(str(ledger.data), str(tmp_path / "copy"))  # compacted: every value is stored once
    return tmp_path / "copy"


def _value(copy: Path, db: bytes, key: bytes) -> bytes:
    env = lmdb.open(str(copy / "ledger"), readonly=True, lock=False, max_dbs=16)
    try:
        with env.begin() as txn:
            value = txn.get(key, db=env.open_db(db, txn=txn, create=False))
    finally:
        env.close()
    assert value is not None
    return bytes(value)


def _flip(copy: Path, value: bytes, offset: int) -> None:
    """Flip the low bit of byte ``offset`` of ``value`` where it sits in data.mdb (a raw disk edit)."""
    path = copy / "ledger" / "data.mdb"
    data = bytearray(path.read_bytes())
    at = data.find(value)
    assert at >= 0 and data.find(value, at + 1) < 0, "the value must occur exactly once in the file"
    data[at + offset] ^= 1
    path.write_bytes(bytes(data))


def _failure(copy: Path, workers: int = 0) -> AuditFailed:
    with pytest.raises(AuditFailed) as caught:
        audit(str(copy), workers=workers)
    return caught.value


def _last_position(copy: Path, did: str) -> int:
    store = Store(str(copy / "ledger"))
    try:
        with store.read() as txn:
            positions = [v.position for v in LedgerTables(store).versions(txn, did)]
    finally:
        store.close()
    return max(positions)


def test_a_clean_store_audits_ok_in_process_and_with_workers(ledger: Ledger) -> None:
    report = audit(str(ledger.data), workers=0)
    assert (report.entries, report.checkpoints) == (ledger.size, 2)
    assert report.dids == ledger.size - 8  # every create made a DID; rotations did not
    again = audit(str(ledger.data), workers=2, chunk=16)
    assert (again.log_root, again.state_root, again.entries) == (report.log_root, report.state_root, report.entries)


def test_a_flipped_byte_in_a_stored_operation_names_its_position(ledger: Ledger, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path)
    target = 12
    entry = _value(copy, layout.DB_LOG, layout.u64(target))
    _flip(copy, entry, len(entry) // 2)  # inside the payload
    err = _failure(copy)
    assert err.details["position"] == str(target) and err.details["check"] == "operation"
    assert "altered after it was logged" in str(err)
    assert err.message.startswith(f"position {target}: ")


def test_a_flipped_time_is_caught_by_the_merkle_leaf(ledger: Ledger, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path)
    entry = _value(copy, layout.DB_LOG, layout.u64(40))
    _flip(copy, entry, 16)  # lowest byte of the (unsigned) ordering time
    err = _failure(copy, workers=2)
    assert err.details == {"position": "40", "check": "merkle-leaf"}
    assert "log entry 40 was altered" in str(err)


def test_a_flipped_byte_in_a_stored_tree_node_names_the_node(ledger: Ledger, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path)
    _flip(copy, _value(copy, layout.DB_MERKLE, layout.merkle_key(2, 5)), 7)
    err = _failure(copy)
    assert err.details == {"position": "20", "check": "merkle"}
    assert "Merkle node (level 2, index 5) over positions 20..23 was altered" in str(err)


def test_a_flipped_byte_in_a_stored_leaf_blames_the_leaf_not_the_entry(ledger: Ledger, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path)
    _flip(copy, _value(copy, layout.DB_MERKLE, layout.merkle_key(0, 33)), 0)
    err = _failure(copy)
    assert err.details == {"position": "33", "check": "merkle-leaf"}
    assert "stored Merkle leaf (level 0, index 33) was altered" in str(err)


@pytest.mark.parametrize(
    ("kind", "offset"),
    [("rotated", 5), ("plain", 5), ("plain", 0)],  # the low byte of seq (u32 at offset 2); the version byte
)
def test_a_flipped_byte_in_a_state_record_names_the_did_and_its_last_position(ledger: Ledger, tmp_path: Path, kind: str, offset: int) -> None:
    copy = _copy(ledger, tmp_path)
    ident = (ledger.rotated if kind == "rotated" else ledger.plain)[2]
    last = _last_position(copy, ident.did)
    record = _value(copy, layout.DB_STATE, ident.did.encode())
    flipped = bytearray(record)
    flipped[offset] ^= 1
    if offset == 0:
        with pytest.raises(StoreCorrupted):  # a record of no known version: it no longer decodes
            DidState.from_record(bytes(flipped))
    else:
        assert DidState.from_record(bytes(flipped)).seq == DidState.from_record(record).seq ^ 1
    _flip(copy, record, offset)
    err = _failure(copy)
    assert err.details == {"position": str(last), "check": "state"}
    assert ident.did in str(err) and "differs from the replayed one" in str(err)


def test_a_flipped_byte_in_a_state_tree_node_is_found(ledger: Ledger, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path)
    did = ledger.plain[5].did
    key = hashlib.sha256(did.encode()).digest()
    env = lmdb.open(str(copy / "ledger"), readonly=True, lock=False, max_dbs=16)
    with env.begin() as txn:
        leaf = next(v for _, v in txn.cursor(db=env.open_db(layout.DB_SMT, txn=txn, create=False)) if v[1:33] == key)
    env.close()
    last = _last_position(copy, did)
    _flip(copy, bytes(leaf), 40)  # inside the value hash
    err = _failure(copy)
    assert err.details["check"] == "state-tree" and did in str(err)
    assert err.details["position"] == str(last)


def test_a_tampered_checkpoint_and_index_are_reported(ledger: Ledger, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path)
    raw = _value(copy, layout.DB_CHECKPOINTS, layout.u64(ledger.checkpoint_sizes[0]))
    _flip(copy, raw, 30)  # inside the signed log root
    err = _failure(copy)
    assert err.details["check"] == "checkpoint" and f"tree size {ledger.checkpoint_sizes[0]}" in str(err)

    copy2 = _copy(ledger, tmp_path / "b")
    # The first odd position that holds an operation other than a create (creates have no op-hash row).
    pos = next(p for p in range(1, 100, 2) if json.loads(entry_codec.decode(_value(copy2, layout.DB_LOG, layout.u64(p))).payload)["type"] != "create")
    op_hash = hashlib.sha256(entry_codec.decode(_value(copy2, layout.DB_LOG, layout.u64(pos))).payload).digest()
    _flip(copy2, op_hash + layout.u64(pos), 39)  # the ophash row's value: position pos -> pos - 1
    err = _failure(copy2)
    assert err.details == {"position": str(pos), "check": "index"}


def test_an_index_row_for_a_create_is_reported(ledger: Ledger, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path)
    payload = entry_codec.decode(_value(copy, layout.DB_LOG, layout.u64(3))).payload
    assert json.loads(payload)["type"] == "create"
    env = lmdb.open(str(copy / "ledger"), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(hashlib.sha256(payload).digest(), layout.u64(3), db=env.open_db(layout.DB_OPHASH, txn=txn))
    env.close()
    err = _failure(copy)
    assert err.details == {"position": "3", "check": "index"} and "creates are found by their DID" in str(err)


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreCorrupted):
        audit(str(tmp_path))
