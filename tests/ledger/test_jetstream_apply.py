"""The follower's apply is deterministic: however stream messages are grouped into LMDB
transactions (and whatever their timestamps do), every node ends with the same log, roots,
applied stream sequence and per-DID subject sequences. No NATS here: messages are fed to
the writer stage directly, as the follower hands them over."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from nacl.signing import SigningKey

from didnode.core import builder
from didnode.core import entry as entry_codec
from didnode.core.builder import SignedOperation
from didnode.ledger import stream as st
from didnode.ledger.cluster import ClusterConfig, JetStreamOrderer
from didnode.ledger.cluster.shared import Raw as _Raw
from didnode.ledger.trees import roots, transparency_hooks
from didnode.store.cluster_tables import ClusterTables
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
from tests.factory import new_create

NET = "local"


def messages() -> list[_Raw]:
    """A stream with accepted operations, rejections of every kind, and a clock that jumps back."""
    ident, create = new_create()
    other, other_create = new_create()
    prev = hashlib.sha256(create.payload).hexdigest()
    new_auth, new_next = SigningKey.generate(), SigningKey.generate()
    u = builder.rotate(NET, ident.did, 1, prev, bytes(ident.next_key.verify_key), [builder.NewKey("key-2", bytes(new_auth.verify_key))], bytes(new_next.verify_key))
    rotate = builder.sign(u, [(builder.next_kid(ident.did), ident.next_key)])
    stale = builder.sign(
        builder.rotate(NET, ident.did, 1, prev, bytes(ident.next_key.verify_key), [builder.NewKey("key-3", bytes(SigningKey.generate().verify_key))], bytes(new_next.verify_key)),
        [(builder.next_kid(ident.did), ident.next_key)],
    )
    more = [new_create()[1] for _ in range(6)]

    def msg(op: SignedOperation, subject_did: str | None = None) -> tuple[str, bytes]:
        return st.subject_for(NET, subject_did or op.did), st.encode_body(op.payload, op.proofs)

    bodies = [
        msg(create),
        msg(other_create),
        (st.subject_for(NET, ident.did), b"\x01not a body"),  # undecodable
        msg(rotate),
        msg(stale),  # loses: prev is no longer the last operation
        msg(create),  # a duplicate beyond the dedupe window
        msg(more[0], other.did),  # on another DID's subject
        *[msg(op) for op in more[1:]],
    ]
    times = [1000, 1001, 1002, 999, 1500, 1400, 1300, 1300, 2000, 1990, 1990, 2500]  # leader clocks disagree
    return [_Raw(seq, times[seq - 1], subject, body) for seq, (subject, body) in enumerate(bodies, 1)]


def replay(path: Path, msgs: list[_Raw], cuts: Sequence[int]) -> tuple[object, ...]:
    store = Store(path)
    tables = LedgerTables(store)
    orderer = JetStreamOrderer(tables, ClusterConfig(servers=("nats://127.0.0.1:1",), network=NET), transparency_hooks(tables))
    try:
        bounds = [0, *cuts, len(msgs)]
        for a, b in zip(bounds, bounds[1:]):
            if a < b:
                orderer.writer.commit([orderer.follower.prepare(msgs[a:b])], [])
        with store.read() as txn:
            r = roots(tables, txn)
            cluster = ClusterTables(store)
            entries = [bytes(e) for _, e in tables.entries(txn)]
            subjects = {m.subject: cluster.subject_seq(txn, st.did_for_subject(m.subject)) for m in msgs}
            return (r, entries, cluster.applied_seq(txn), cluster.stream_time(txn), subjects, orderer.shared.applied_seq)
    finally:
        orderer._loop.close()
        orderer._dry_pool.shutdown()
        store.close()


def test_grouping_into_transactions_changes_nothing(tmp_path: Path) -> None:
    msgs = messages()
    one = replay(tmp_path / "one", msgs, [])
    each = replay(tmp_path / "each", msgs, list(range(1, len(msgs))))
    odd = replay(tmp_path / "odd", msgs, [2, 5, 7])
    assert one == each == odd
    r, entries, applied, stream_time, subjects, _ = one
    assert applied == len(msgs) and stream_time == 2500
    decoded = [entry_codec.decode(e) for e in entries]
    assert [e.position for e in decoded] == list(range(8)), "rejected messages take no position"
    times = [e.time for e in decoded]
    assert times == sorted(times), "ordering times never go back, even when the stream's clock does"
    assert subjects[msgs[4].subject] == 6, "a subject's sequence counts rejected messages too"
    assert subjects[msgs[1].subject] == 7
