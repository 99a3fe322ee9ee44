"""The reverse index of controllers: which DIDs a DID controls now, with their status (issue #20).

One row per (controller, controlled DID) in the ``controlled`` table
(:data:`didnode.store.layout.DB_CONTROLLED`): key ``controller DID 0x00
controlled DID``, value ``u8 status`` (0 active, 1 deactivated, the state
record's codes). It is derived data, a function of the state table: a row
exists iff the controlled DID's current state lists the controller. It is
maintained by :class:`ControlledHook` in the same write transaction as the
state, and only operations that change controllers or status touch it:
``create`` (with controllers), ``transfer`` and ``deactivate``.

Cost on the write path: per applied entry, one ``u32`` read and one
``bytes.endswith`` on the payload (canonical JSON sorts members and
``"type"`` sorts last, so a payload ends with ``"type":"<t>"}``); a create
or deactivate of a DID without controllers stops at one byte of its state
record (the controller count). Only a ``transfer`` reads more: the
controllers it replaces, found by walking the DID's ``prev`` chain back to
its last create or transfer (transfers are rare).

The audit (:mod:`didnode.ledger.audit`) recomputes the index from the state
records (which it checks against the replay) and compares
(:func:`differences`). A store written before this table existed is indexed
by the first batch the node applies after the upgrade (:func:`rebuild`).
"""

from __future__ import annotations

import json
import struct
from typing import Callable, Iterator, Sequence

import lmdb

from didnode.core.keystate.state import (
    RECORD_CONTROLLERS_AT,
    RECORD_DID_LEN_AT,
    RECORD_HEAD_SIZE,
    RECORD_NEXT_LEN_AT,
    RECORD_STATUS_AT,
)
from didnode.errors import StoreCorrupted
from didnode.ledger.batch import AppliedEntry, BatchHook
from didnode.store import layout
from didnode.store.ledger_tables import LedgerTables

ACTIVE, DEACTIVATED = 0, 1
STATUS_NAMES = ("active", "deactivated")
_SEP = b"\x00"
_LEN = struct.Struct(">I")
_PAYLOAD_AT = 17  # u8 version, u64 position, u64 time (didnode.core.entry)
# State record offsets (didnode.core.keystate.state, "State record"): status, controller count, did length.
_STATUS_AT, _NCTRL_AT, _DLEN_AT, _NLEN_AT, _HEAD_SIZE = (
    RECORD_STATUS_AT, RECORD_CONTROLLERS_AT, RECORD_DID_LEN_AT, RECORD_NEXT_LEN_AT, RECORD_HEAD_SIZE,
)
_CREATE, _TRANSFER, _DEACTIVATE = b'"type":"create"}', b'"type":"transfer"}', b'"type":"deactivate"}'


def row_key(controller: str, did: str) -> bytes:
    """``controller 0x00 did`` (UTF-8)."""
    return controller.encode() + _SEP + did.encode()


def prefix(controller: str) -> bytes:
    """The key prefix of ``controller``'s rows."""
    return controller.encode() + _SEP


def payload_of(entry: bytes) -> bytes:
    """The payload of a log entry (no copy of anything else)."""
    (n,) = _LEN.unpack_from(entry, _PAYLOAD_AT)
    start = _PAYLOAD_AT + 4
    return entry[start : start + n]


def controllers_in_record(record: bytes) -> tuple[int, list[str]]:
    """(status code, controllers) read from a DID's binary state record, decoding nothing else."""
    n = record[_NCTRL_AT]
    status = record[_STATUS_AT]
    if not n:
        return status, []
    o = _HEAD_SIZE + record[_DLEN_AT] + record[_NLEN_AT]
    out = []
    for _ in range(n):
        k = record[o]
        out.append(record[o + 1 : o + 1 + k].decode())
        o += 1 + k
    return status, out


class ControlledHook(BatchHook):
    """Keeps the ``controlled`` table in step with the state table, batch by batch."""

    def __init__(self, tables: LedgerTables) -> None:
        self.tables = tables
        self.db = tables.store.dbs[layout.DB_CONTROLLED]
        self.meta = tables.meta
        self.ready = False

    def on_batch(self, txn: lmdb.Transaction, applied: Sequence[AppliedEntry]) -> None:
        if not self.ready:
            self.ready = True
            if txn.get(layout.META_CONTROLLED, db=self.meta) is None:
                rebuild(txn, self.tables)  # indexes every state, this batch's included
                return
        for a in applied:
            p = payload_of(a.entry)
            if p.endswith(_CREATE) or p.endswith(_DEACTIVATE):
                if a.state_record[_NCTRL_AT]:
                    status, ctrls = controllers_in_record(a.state_record)
                    value = bytes((status,))
                    for c in ctrls:
                        txn.put(row_key(c, a.did), value, db=self.db)
            elif p.endswith(_TRANSFER):
                old = controllers_before(txn, self.tables, p)
                status, new = controllers_in_record(a.state_record)
                for c in old:
                    if c not in new:
                        txn.delete(row_key(c, a.did), db=self.db)
                value = bytes((status,))
                for c in new:
                    txn.put(row_key(c, a.did), value, db=self.db)


def controllers_before(txn: lmdb.Transaction, tables: LedgerTables, payload: bytes) -> list[str]:
    """The controllers a DID had before the operation ``payload`` (not a create): those of the
    last create or transfer up its ``prev`` chain."""
    body = json.loads(payload)
    while True:
        prev = body.get("prev")
        if prev is None:
            raise StoreCorrupted(f"the chain of {body.get('did')} has no create")
        e = tables.entry(txn, tables.position_of(txn, bytes.fromhex(prev)))
        body = json.loads(payload_of(e))
        if body.get("type") in ("create", "transfer"):
            return list(body.get("controllers", []))


def expected_rows(states: Iterator[tuple[bytes, bytes]], is_did_record: Callable[[bytes], bool]) -> Iterator[tuple[bytes, bytes]]:
    """The index rows a state table implies, from its (DID, record) rows (governance records skipped)."""
    for did, record in states:
        if not is_did_record(record) or not record[_NCTRL_AT]:
            continue
        status, ctrls = controllers_in_record(record)
        for c in ctrls:
            yield c.encode() + _SEP + bytes(did), bytes((status,))


def _is_did_record(record: bytes) -> bool:
    from didnode.core.governance.policy import is_governance_record

    return not is_governance_record(record)


def rebuild(txn: lmdb.Transaction, tables: LedgerTables) -> int:
    """Recompute the whole index from the state table in ``txn`` (a write transaction); return its rows."""
    db = tables.store.dbs[layout.DB_CONTROLLED]
    txn.drop(db, delete=False)
    rows = sorted(expected_rows(iter(txn.cursor(db=tables.state)), _is_did_record))
    if rows:
        txn.cursor(db=db).putmulti(rows)
    txn.put(layout.META_CONTROLLED, b"1", db=tables.meta)
    return len(rows)


def differences(txn: lmdb.Transaction, state_db: object, index_db: object) -> str | None:
    """The first difference between a stored index and the one the stored state records imply, or None.

    For the audit, after it checked the state table against the replay.
    """
    mine = iter(sorted(expected_rows(iter(txn.cursor(db=state_db)), _is_did_record)))
    stored = iter(txn.cursor(db=index_db))
    while True:
        a, b = next(stored, None), next(mine, None)
        if a is None and b is None:
            return None
        if a is not None and b is not None and bytes(a[0]) == b[0] and bytes(a[1]) == b[1]:
            continue
        row = b if a is None or (b is not None and b[0] < bytes(a[0])) else a
        controller, _, did = bytes(row[0]).partition(_SEP)
        what = "lacks" if row is b else "holds a wrong or extra"
        return f"the controller index {what} the row of {did.decode('utf-8', 'replace')} under {controller.decode('utf-8', 'replace')}"


def scan(txn: lmdb.Transaction, db: object, controller: str) -> Iterator[tuple[str, int]]:
    """(controlled DID, status code) of ``controller``'s rows in key order."""
    p = prefix(controller)
    cur = txn.cursor(db=db)
    if not cur.set_range(p):
        return
    for key, value in cur:
        if not key.startswith(p):
            return
        yield bytes(key[len(p) :]).decode(), value[0]


def counts(txn: lmdb.Transaction, db: object, controller: str) -> dict[str, int]:
    """``{"active", "deactivated", "total"}`` of ``controller``'s rows: one cursor scan over its prefix."""
    p = prefix(controller)
    cur = txn.cursor(db=db)
    n = [0, 0]
    if cur.set_range(p):
        for key, value in cur.iternext(keys=True, values=True):
            if not key.startswith(p):
                break
            n[value[0] & 1] += 1
    return {"active": n[0], "deactivated": n[1], "total": n[0] + n[1]}


__all__ = [
    "ACTIVE", "DEACTIVATED", "STATUS_NAMES", "ControlledHook", "controllers_before", "controllers_in_record", "counts",
    "differences", "expected_rows", "payload_of", "prefix", "rebuild", "row_key", "scan",
]
