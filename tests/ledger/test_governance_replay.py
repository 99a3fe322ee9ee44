"""Property: any sequence of governance changes, creates and publishes reaches the same verdicts
on a second node, and replaying the log from scratch (as a follower, and as the audit) reaches
the same state, roots and quota counts."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from didnode.core import builder
from didnode.core import entry as entry_codec
from didnode.core.builder import SignedOperation
from didnode.core.governance import build as gb
from didnode.core.governance.policy import CreateQuota, PublishQuota
from didnode.core.results import Receipt
from didnode.ledger.audit import audit
from didnode.ledger.batch import apply_batch
from didnode.ledger.prepare import prepare_many
from tests.core.governance.world import Gov, endorsed, governed
from tests.factory import NET, Identity, new_create
from tests.ledger.governed_ledger import T0, GovLedger

MINUTE = 60_000

step = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 3)),          # signer: maker 0/1, a governor, nobody
    st.tuples(st.just("govern"), st.integers(0, 6), st.integers(1, 3)),  # change kind, number of governors signing
    st.tuples(st.just("publish"), st.integers(0, 1)),
    st.tuples(st.just("wait"), st.integers(1, 90)),            # minutes of ordering time
    st.tuples(st.just("batch"), st.integers(1, 4)),            # flush the pending operations as one batch
)


class Script:
    """Turns steps into batches of signed operations (built once, submitted to every ledger alike)."""

    def __init__(self) -> None:
        self.makers = [new_create() for _ in range(2)]
        self.gov: Gov = governed(
            n_governors=3, threshold=2, extra_genesis=self.makers,
            registrars={self.makers[0][0].did: CreateQuota(3600, 3, 12)}, publish=PublishQuota(3600, count=2),
        )
        self.batches: list[tuple[int, list[SignedOperation]]] = [(T0, self.gov.genesis_ops())]
        self.pending: list[SignedOperation] = []
        self.now = T0
        self.seqs: dict[str, tuple[int, str]] = {}

    def flush(self) -> None:
        if self.pending:
            self.batches.append((self.now, self.pending))
            self.pending = []

    def add(self, s: tuple) -> None:
        kind = s[0]
        makers = [m for m, _ in self.makers]
        g = self.gov.governors
        if kind == "create":
            if s[1] < 2:
                self.pending.append(new_create(controllers=[makers[s[1]]])[1])
            elif s[1] == 2:
                self.pending.append(endorsed(new_create()[1], g[0]))
            else:
                self.pending.append(new_create()[1])
        elif kind == "govern":
            changes = [
                gb.add_registrar(makers[1].did, CreateQuota(1800, 2)),
                gb.remove_registrar(makers[0].did),
                gb.add_registrar(makers[0].did, CreateQuota(total=5)),
                gb.set_create_policy("open"),
                gb.set_create_policy("registrars"),
                gb.set_publish_quota(PublishQuota(600, count=1)),
                gb.set_governors([g[0].did, g[1].did], 2),
            ][s[1]]
            # The chain head as if every earlier change were accepted: a stale one is rejected alike everywhere.
            op = self.gov.change([changes], g[: s[2]])
            self.gov.accepted(op)
            self.pending.append(op)
        elif kind == "publish":
            who: Identity = makers[s[1]]
            seq, last = self.seqs.get(who.did, (0, who_create_hash(self.makers, who)))
            op = builder.sign(builder.publish(NET, who.did, seq + 1, last, f"r{seq}", "text/plain", "x" * 100), [(who.kid, who.key)])
            self.seqs[who.did] = (seq + 1, op_hash(op))
            self.pending.append(op)
        elif kind == "wait":
            self.flush()
            self.now += s[1] * MINUTE
        else:
            self.flush()


def op_hash(op: SignedOperation) -> str:
    import hashlib

    return hashlib.sha256(op.payload).hexdigest()


def who_create_hash(makers: list[tuple[Identity, SignedOperation]], who: Identity) -> str:
    return next(op_hash(op) for m, op in makers if m.did == who.did)


def verdicts(led: GovLedger, batches: list[tuple[int, list[SignedOperation]]]) -> list[str]:
    out = []
    for at, ops in batches:
        for o in led.submit(ops, at=at):
            out.append(f"{o.position}" if isinstance(o, Receipt) else o.reason)
    return out


def follow(led: GovLedger, entries: list[bytes]) -> None:
    """Apply another ledger's log entry by entry with its ordering times (what a cluster follower does)."""
    decoded = [entry_codec.decode(e) for e in entries]
    prepared = prepare_many([(e.payload, e.proofs) for e in decoded], NET, led.tables, new=False)
    outs = led.store.write(lambda txn: apply_batch(led.tables, txn, prepared, 0, led.hooks, times=[e.time for e in decoded]))
    assert all(isinstance(o, Receipt) for o in outs), [o for o in outs if not isinstance(o, Receipt)][:1]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=5, max_size=30))
def test_governance_verdicts_are_the_same_on_every_node_and_in_every_replay(steps: list[tuple]) -> None:
    script = Script()
    for s in steps:
        script.add(s)
    script.flush()
    root = Path(tempfile.mkdtemp(prefix="gov-replay-"))
    try:
        a, b, c = GovLedger(root / "a"), GovLedger(root / "b"), GovLedger(root / "c")
        try:
            seen = verdicts(a, script.batches)
            assert seen == verdicts(b, script.batches)
            final = a.fingerprint()
            assert b.fingerprint() == final
            follow(c, a.entries())
            assert c.fingerprint() == final
        finally:
            for led in (a, b, c):
                led.close()
        event(f"{sum(not v.isdigit() for v in seen) > 0 and 'some rejected' or 'all accepted'}")
        # The audit replays the log from scratch with the same rules and finds the stored counts.
        assert audit(str(root / "a"), workers=0).entries == final[0]
    finally:
        shutil.rmtree(root, ignore_errors=True)
