"""The parallel half of the audit: per-entry checks that need no earlier state.

For each position of a range, :func:`scan_range` reads the stored entry and
checks, with the node's own parse/apply code and nothing the store says
about *state*:

* the entry decodes, sits at the position it names, and hashes to the stored
  Merkle leaf ``(0, position)``;
* the operation parses for the store's network (schema, canonical bytes);
* every signature whose key is known without state is verified (a create's
  own keys, a revealed next key); keys of other DIDs or of earlier states are
  looked up in the stored state only as *hints*: a signature that verifies
  under a hinted key is a fact about those bytes whatever the store says, and
  the serial replay still checks that the key is the right one;
* a create without controllers (or endorsers) needs no state at all, so it is applied here
  (``apply(None, op)``, signatures re-verified) and its state record returned;
* the op-hash index agrees: ``ophash[sha256(payload)] = position`` for every
  operation but a create, which has no row (its hash is its DID).

Everything that depends on earlier entries (does the DID exist, seq/prev
chains, controller keys, time order) is left to the serial replay in
:mod:`didnode.ledger.audit`. Results are plain tuples (cheap to pickle from a
worker process).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import lmdb


from didnode.core import entry as entry_codec
from didnode.core.did import PREFIX
from didnode.core.keystate import ApplyContext, DidState, apply
from didnode.core.merkle import sparse
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.operations import NEXT_FRAGMENT, Operation, parse
from didnode.errors import DidnodeError, InvalidSignature, StoreCorrupted, UnknownDid
from didnode.store import layout
from didnode.store.readonly import ReadOnlyStore


class Scanned(NamedTuple):
    """What the scan learned about one position (see module docstring)."""

    position: int
    time: int
    did: str
    op_hash: bytes
    record: bytes | None          # state record of a controller-less create (or SAME_AS_STORED), else None
    verified: tuple[tuple[bytes, bytes], ...]   # (public key, signature) pairs that verified over this operation
    error: tuple[str, str] | None  # (reason, message) of a definitive failure
    leaf_ok: bool
    index_problem: str | None


def _no_resolve(did: str) -> DidState:
    raise UnknownDid(f"{did}: a controller-less create consults no other DID")


def _hinted_key(txn: lmdb.Transaction, state_db: object, kid: str) -> bytes | None:
    """The stored (untrusted) public key of ``kid``, as a verification hint only."""
    did, _, fragment = kid.partition("#")
    if not did.startswith(PREFIX):
        return None
    raw = txn.get(layout.did_key(did), db=state_db)
    if raw is None:
        return None
    try:
        return DidState.from_record(raw).key(fragment).raw
    except DidnodeError:
        return None


def _preverify(op: Operation, txn: lmdb.Transaction, state_db: object) -> tuple[tuple[bytes, bytes], ...]:
    own = {f"{op.did}#{k.id}": k.raw for k in op.keys} if op.type == "create" else {}
    for proof in op.proofs:
        did, _, fragment = proof.kid.partition("#")
        if did == op.did and fragment == NEXT_FRAGMENT:
            key = op.next_key or None
        else:
            key = own.get(proof.kid) or _hinted_key(txn, state_db, proof.kid)
        if key is None:
            continue
        try:
            op.check_signature(proof, key)
        except InvalidSignature:
            continue  # maybe a wrong hint; the replay verifies and reports with the right key
    return tuple(op.verified)


SAME_AS_STORED = b"="
"""``Scanned.record`` of a create whose replayed record is byte-identical to the
stored state record of its DID: the common case (a DID never changed since its
create) sends one byte instead of the record back to the replay."""


def scan_range(store: ReadOnlyStore, network: str, start: int, end: int) -> list[Scanned]:
    """Scan positions ``[start, end)`` of ``store`` (see module docstring).

    Precondition: ``network`` is the store's network id. Never raises for
    bad data: every finding is in the returned items, in position order.
    """
    dbs = store.dbs
    log_db, merkle_db = dbs[layout.DB_LOG], dbs[layout.DB_MERKLE]
    ophash_db, state_db = dbs[layout.DB_OPHASH], dbs[layout.DB_STATE]
    u64, merkle_key = layout.u64, layout.merkle_key
    out: list[Scanned] = []
    with store.read() as txn:
        get = txn.get
        for p in range(start, end):
            raw = get(u64(p), db=log_db)
            if raw is None:
                out.append(Scanned(p, 0, "", b"", None, (), ("STORE_CORRUPTED", f"log entry {p} is missing"), True, None))
                continue
            leaf_ok = get(merkle_key(0, p), db=merkle_db) == leaf_hash(raw)
            try:
                e = entry_codec.decode(raw)
                if e.position != p:
                    raise StoreCorrupted(f"the entry stored at position {p} says it is at position {e.position}")
                op = parse(e.payload, e.proofs, network)
            except DidnodeError as exc:
                out.append(Scanned(p, 0, "", b"", None, (), (exc.reason, str(exc)), leaf_ok, None))
                continue
            problem = None
            at = get(op.hash, db=ophash_db)
            if op.type == "create":
                if at is not None:
                    problem = f"the op-hash index holds a row for the create {op.hash.hex()}; creates are found by their DID"
            elif at != u64(p):
                where = "no position" if at is None or len(at) != 8 else f"position {layout.read_u64(at)}"
                problem = f"the op-hash index maps operation {op.hash.hex()} to {where}, not {p}"
            record = None
            error = None
            verified: tuple[tuple[bytes, bytes], ...] = ()
            try:
                if op.type == "create" and not op.controllers and all(pr.kid.startswith(op.did + "#") for pr in op.proofs):
                    record = apply(None, op, ApplyContext(p, e.time, _no_resolve)).to_record()
                    if get(layout.did_key(op.did), db=state_db) == record:
                        record = SAME_AS_STORED
                else:
                    verified = _preverify(op, txn, state_db)
            except DidnodeError as exc:
                error = (exc.reason, str(exc))
            out.append(Scanned(p, e.time, op.did, op.hash, record, verified, error, leaf_ok, problem))
    return out


def check_log_tree(store: ReadOnlyStore, size: int) -> list[tuple[int, int, str]]:
    """Recompute the log tree from the stored entries and compare every stored node.

    Leaves are ``SHA-256(0x00 || entry)`` of the stored entry bytes (the log
    is the source of truth), interior nodes are folded exactly as
    ``log_tree.append_many`` does, and each completed perfect node ``(L, i)``
    is compared with the stored one; a node beyond the log (``(L, size >> L)``)
    must not exist. Memory is O(log size).

    Returns ``(level, first position covered, problem)``, the first mismatch of
    each level at most, in level order. An altered entry shows up at level 0
    *and* on every ancestor; the caller keeps the lowest level that explains
    the others.
    """
    log_db, db = store.dbs[layout.DB_LOG], store.dbs[layout.DB_MERKLE]
    key = layout.merkle_key
    sha = hashlib.sha256
    found: dict[int, tuple[int, int, str]] = {}
    with store.read() as txn:
        get = txn.get

        def check(level: int, index: int, h: bytes) -> None:
            if level in found:
                return
            stored = get(key(level, index), db=db)
            if stored == h:
                return
            first, last = index << level, ((index + 1) << level) - 1
            if level == 0:
                what = f"the Merkle leaf of position {index} is missing" if stored is None else (
                    f"the Merkle leaf (level 0, index {index}) is not the hash of log entry {index}"
                )
            else:
                span = f"Merkle node (level {level}, index {index}) over positions {first}..{last}"
                what = f"{span} is missing" if stored is None else f"{span} was altered: it is not the hash of the entries below it"
            found[level] = (level, first, what)

        stack: list[bytes] = []
        expected = 0
        for k, raw in txn.cursor(db=log_db):
            p = layout.read_u64(k)
            if p != expected or p >= size:
                break  # a gap or an extra entry: the entry scan reports it
            h = leaf_hash(raw)
            check(0, p, h)
            index, level = p, 0
            while index & 1:
                h = sha(b"\x01" + stack.pop() + h).digest()
                index >>= 1
                level += 1
                check(level, index, h)
            stack.append(h)
            expected += 1
        level = 0
        while True:
            count = size >> level
            if level not in found and get(key(level, count), db=db) is not None:
                found[level] = (level, count << level, f"the Merkle tree holds node (level {level}, index {count}) beyond the log's {size} entries")
            if count == 0:
                break
            level += 1
    return [found[lv] for lv in sorted(found)]


def check_state_tree(store: ReadOnlyStore) -> tuple[bytes, list[tuple[str, str]]]:
    """Check the stored state tree against the stored state records, without any replay.

    Walks the tree from its root (one read per node) and checks that every
    interior record's child hashes are the SHA-256 of the stored child
    records, that empty children are not stored, that the tree is in its
    shortcut form (no interior node whose only entry is one leaf), that every
    leaf sits on its key's path, and that the leaves are exactly
    ``{SHA-256(DID): SHA-256(record)}`` of the stored ``state`` table, with no
    unreachable node left over. The serial replay separately checks that the
    stored records are the replayed ones, so together the stored tree is the
    one the log defines, and its root (returned) is the replay's state root.

    Returns ``(stored root, [(DID or "", problem)])``; at most one problem.
    """
    smt_db, state_db = store.dbs[layout.DB_SMT], store.dbs[layout.DB_STATE]
    sha = hashlib.sha256
    with store.read() as txn:
        expected: dict[bytes, tuple[bytes, str]] = {}
        for did_bytes, record in txn.cursor(db=state_db):
            expected[sha(did_bytes).digest()] = (sha(record).digest(), did_bytes.decode("utf-8", "replace"))

        def nid(depth: int, prefix: int) -> bytes:
            return sparse.prefix_id(depth, prefix)

        def did_below(depth: int, prefix: int) -> str:
            """A stored DID whose key path passes through node (depth, prefix) (for the report)."""
            for key, (_, did) in expected.items():
                if int.from_bytes(key, "big") >> (256 - depth) == prefix:
                    return did
            return ""

        root_rec = txn.get(nid(0, 0), db=smt_db)
        root = _EMPTY if root_rec is None else sha(root_rec).digest()
        stack = [] if root_rec is None else [(0, 0, root_rec)]
        visited = 0
        leaves = 0
        while stack:
            depth, prefix, rec = stack.pop()
            visited += 1
            here = f"the stored state tree node at depth {depth}"
            if len(rec) != 65 or rec[0] not in (0, 1):
                return root, [(did_below(depth, prefix), f"{here} is not a node record")]
            if rec[0] == 0:
                key = rec[1:33]
                leaves += 1
                hit = expected.get(key)
                if depth and int.from_bytes(key, "big") >> (256 - depth) != prefix:
                    return root, [(hit[1] if hit else "", f"{here} holds a leaf that is off its key's path")]
                if hit is None:
                    return root, [("", f"{here} holds a leaf for a key that is no stored DID's")]
                if hit[0] != rec[33:]:
                    return root, [(hit[1], f"the state tree leaf of {hit[1]} is not the hash of its stored state record")]
                continue
            kids = []
            for bit, h in ((0, rec[1:33]), (1, rec[33:])):
                child = txn.get(nid(depth + 1, (prefix << 1) | bit), db=smt_db)
                if h == _EMPTY:
                    if child is not None:
                        return root, [(did_below(depth, prefix), f"{here} has an empty child that is stored all the same")]
                    continue
                if child is None:
                    return root, [(did_below(depth, prefix), f"a child of {here} is missing")]
                if sha(child).digest() != h:
                    return root, [
                        (did_below(depth + 1, (prefix << 1) | bit), f"the stored state tree node at depth {depth + 1} was altered: its parent names another hash")
                    ]
                kids.append((depth + 1, (prefix << 1) | bit, child))
            if len(kids) == 1 and kids[0][2][0] == 0:
                return root, [(did_below(depth, prefix), f"{here} holds a single leaf; the tree is not in its shortcut form")]
            stack.extend(kids)
        if leaves != len(expected):
            missing = next((did for key, (_, did) in expected.items() if _leaf_missing(txn, smt_db, key)), "")
            return root, [(missing, f"the state tree has {leaves} leaves for {len(expected)} stored DIDs")]
        total = txn.stat(smt_db)["entries"]
        if visited != total:
            return root, [("", f"the state tree holds {total - visited} nodes that are not reachable from its root")]
    return root, []


_EMPTY = bytes(32)


def _leaf_missing(txn: lmdb.Transaction, smt_db: object, key: bytes) -> bool:
    """Whether walking ``key``'s path in the stored tree fails to end at its own leaf."""
    k = int.from_bytes(key, "big")
    depth = 0
    while depth <= 256:
        rec = txn.get(sparse.prefix_id(depth, k >> (256 - depth)), db=smt_db)
        if rec is None or len(rec) != 65:
            return True
        if rec[0] == 0:
            return rec[1:33] != key
        depth += 1
    return True
