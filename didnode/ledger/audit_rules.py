"""The audit's replay of the ledger-wide rules: governance (policy and quota counts) and device data (streams, anchored heads).

The audit (:mod:`didnode.ledger.audit`) replays each DID's operations with
:func:`~didnode.core.keystate.apply`; what an operation means beyond its DID
is replayed here with the same pure rules the writer runs
(:mod:`didnode.core.governance.rules`, :mod:`didnode.core.data.anchoring`),
kept in memory, and compared with the stored tables at the end.
"""

from __future__ import annotations

from typing import Callable

import lmdb

from didnode.core.data.anchoring import AnchorRow, StreamState, judge_anchor
from didnode.core.governance.policy import Policy, Usage
from didnode.core.governance.rules import admit, admit_create, govern
from didnode.core.keystate import ApplyContext, DidState, apply
from didnode.core.operations import Operation
from didnode.store import layout



class ReplayedRules:
    """Governance and data state as the replay builds them (all in memory)."""

    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.usage: dict[tuple[bytes, str], Usage] = {}
        self.streams: dict[tuple[str, str], StreamState] = {}
        self.anchors: dict[tuple[str, str], dict[int, AnchorRow]] = {}

    def admit_self_signed_create(self, did: str, time: int) -> None:
        """A create its own keys alone signed (applied by the scan): admitted only where no registrar is needed."""
        if self.policy is not None:
            admit_create(self.policy, did, (did,), time, self._counted)

    def apply(self, op: Operation, state: DidState | None, ctx: ApplyContext) -> bytes:
        """Apply ``op`` as the writer does; return the state record it leaves (a DID's or the governance record)."""
        if op.type == "govern":
            self.policy = govern(self.policy, op, ctx)
            return self.policy.to_record()
        new = apply(state, op, ctx)
        if op.type == "anchor":
            verdict = judge_anchor(op.heads, op.network, ctx.position, ctx.resolve, self._stream, self._covering, op.verified)
            verdict.raise_if_rejected()
            self.streams.update(verdict.streams)
            for did, stream, first, row in verdict.rows:
                self.anchors.setdefault((did, stream), {})[first] = row
        for charge in admit(self.policy, op, ctx.time, self._counted):
            self.usage[charge.kind, charge.did] = charge.usage
        return new.to_record()

    def _counted(self, kind: bytes, did: str) -> Usage:
        return self.usage.get((kind, did), Usage())

    def _stream(self, did: str, stream: str) -> StreamState | None:
        return self.streams.get((did, stream))

    def _covering(self, did: str, stream: str, seq: int) -> AnchorRow | None:
        rows = self.anchors.get((did, stream), {})
        first = max((f for f in rows if f <= seq), default=None)
        return rows[first] if first is not None and seq < first + rows[first].count else None

    def differences(self, txn: lmdb.Transaction, dbs: dict[bytes, object], has: Callable[[bytes], bool]) -> list[tuple[str, str]]:
        """(check, message) for the first difference of each stored table from the replay (empty: none)."""
        meta = txn.get(layout.META_GOVERNANCE, db=dbs[layout.DB_META])
        mine = None if self.policy is None else self.policy.did.encode()
        if meta != mine:
            return [("meta", f"the store names governance record {meta!r}; the replay {mine!r}")]
        tables = (
            ("usage", layout.DB_USAGE, {layout.usage_key(k, d): u.encode() for (k, d), u in self.usage.items()}, "usage count"),
            ("data", layout.DB_STREAMS, {layout.stream_key(d, s): st.encode() for (d, s), st in self.streams.items()}, "data stream state"),
            ("data", layout.DB_ANCHORS, {layout.anchor_key(d, s, f): r.encode() for (d, s), rows in self.anchors.items() for f, r in rows.items()}, "anchored-head index row"),
        )
        for check, name, replayed, what in tables:
            stored = {bytes(k): bytes(v) for k, v in txn.cursor(db=dbs[name])} if has(name) else {}
            for key in sorted(stored.keys() | replayed.keys()):
                if stored.get(key) != replayed.get(key):
                    who = (key[1:] if name == layout.DB_USAGE else key.partition(b"\x00")[0]).decode("utf-8", "replace")
                    return [(check, f"the stored {what} of {who} differs from the one the replay finds in the log")]
        return []
