"""Property: random segment heads (some bad) anchored in random batch splits reach the same verdicts
and the same stream, anchor and evidence tables on a second node, the same streams and anchors when
the log is replayed as a follower, and the audit replays the log cleanly."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.data.heads import SignedHead
from didnode.core.results import Receipt
from didnode.ledger.audit import audit
from tests.factory import NET, Identity, adopt_rotation, new_create
from tests.ledger.data_world import Stream
from tests.ledger.governed_ledger import T0, GovLedger
from tests.ledger.test_governance_replay import follow

DEVICES = 3
GATEWAYS = 24  # one per anchor operation, so that a refused anchor does not break the next one's chain
BAD = ("ok", "ok", "ok", "gap", "repeat", "prev", "equivocate", "badsig", "othernet", "oldkey")

step = st.one_of(
    st.tuples(st.just("head"), st.integers(0, DEVICES - 1), st.integers(0, 1), st.integers(1, 40), st.sampled_from(BAD)),
    st.tuples(st.just("op")),        # close the pending anchor operation
    st.tuples(st.just("batch")),     # close the pending batch
    st.tuples(st.just("rotate"), st.integers(0, DEVICES - 1)),
)


class Script:
    """Turns steps into batches of signed operations (built once, submitted to every ledger alike)."""

    def __init__(self) -> None:
        made = [new_create() for _ in range(DEVICES + GATEWAYS)]
        self.devices = [i for i, _ in made[:DEVICES]]
        self.gateways = [i for i, _ in made[DEVICES:]]
        self.device_chain = {i.did: (0, hashlib.sha256(op.payload).hexdigest()) for i, op in made[:DEVICES]}
        self.gateway_heads = {i.did: hashlib.sha256(op.payload).hexdigest() for i, op in made[DEVICES:]}
        self.streams = {(d.did, n): Stream(d, f"s{n}") for d in self.devices for n in (0, 1)}
        self.batches: list[tuple[int, list[SignedOperation]]] = [(T0, [op for _, op in made])]
        self.pending: list[SignedOperation] = []
        self.heads: list[SignedHead] = []
        self.used = 0
        self.now = T0

    def close_op(self) -> None:
        if self.heads and self.used < GATEWAYS:
            gw: Identity = self.gateways[self.used]
            self.used += 1
            op = builder.sign(builder.anchor(NET, gw.did, 1, self.gateway_heads[gw.did], [h.raw for h in self.heads]), [(gw.kid, gw.key)])
            self.pending.append(op)
        self.heads = []

    def close_batch(self) -> None:
        self.close_op()
        if self.pending:
            self.now += 1000
            self.batches.append((self.now, self.pending))
            self.pending = []

    def add(self, s: tuple) -> None:
        if s[0] == "head":
            _, d, n, count, bad = s
            stream = self.streams[self.devices[d].did, n]
            if bad == "gap":
                self.heads.append(stream.head(count, first=stream.next_seq + 1, advance=False))
            elif bad == "repeat" and stream.heads:
                self.heads.append(stream.heads[-1])
            elif bad == "prev" and stream.next_seq:
                self.heads.append(stream.head(count, prev=b"\x07" * 32, advance=False))
            elif bad == "equivocate" and stream.heads:
                last = stream.heads[-1].head
                self.heads.append(stream.head(last.count, first=last.first, prev=last.prev, salt=b"twice", advance=False))
            elif bad == "badsig":
                raw = bytearray(stream.head(count, advance=False).raw)
                raw[-3] ^= 0x40
                from didnode.core.data.heads import decode_signed_head

                self.heads.append(decode_signed_head(bytes(raw)))
            elif bad == "oldkey" and len(stream.device.keys) > 1:
                self.heads.append(stream.head(count, key_id="key-1", key=stream.device.keys["key-1"], advance=False))
            elif bad == "othernet":
                self.heads.append(stream.head(count, network="prod", advance=False))
            else:
                self.heads.append(stream.head(count))
        elif s[0] == "op":
            self.close_op()
        elif s[0] == "batch":
            self.close_batch()
        else:
            self.close_op()
            dev = self.devices[s[1]]
            seq, last = self.device_chain[dev.did]
            from nacl.signing import SigningKey

            auth, nxt = SigningKey.generate(), SigningKey.generate()
            key_id = f"key-{dev.counter + 1}"
            u = builder.rotate(NET, dev.did, seq + 1, last, bytes(dev.next_key.verify_key), [builder.NewKey(key_id, bytes(auth.verify_key))], bytes(nxt.verify_key))
            op = builder.sign(u, [(builder.next_kid(dev.did), dev.next_key)])
            self.device_chain[dev.did] = (seq + 1, hashlib.sha256(op.payload).hexdigest())
            self.pending.append(op)
            # Later heads use the new key; an "oldkey" head is signed by the rotated-out key-1 (KEY_ROTATED).
            adopt_rotation(dev, auth, nxt, key_id)


def verdicts(led: GovLedger, batches: list[tuple[int, list[SignedOperation]]]) -> list[str]:
    out = []
    for at, ops in batches:
        for o in led.submit(ops, at=at):
            out.append(f"{o.position}" if isinstance(o, Receipt) else o.reason)
    return out


def data_tables(led: GovLedger, evidence: bool = True) -> tuple[dict[bytes, bytes], ...]:
    with led.store.read() as txn:
        dbs = (led.tables.streams_db, led.tables.anchors_db) + ((led.tables.evidence_db,) if evidence else ())
        return tuple({bytes(k): bytes(v) for k, v in txn.cursor(db=db)} for db in dbs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=4, max_size=40))
def test_anchor_verdicts_and_tables_are_the_same_on_every_node_and_in_every_replay(steps: list[tuple]) -> None:
    script = Script()
    for s in steps:
        script.add(s)
    script.close_batch()
    root = Path(tempfile.mkdtemp(prefix="data-replay-"))
    try:
        a, b, c = GovLedger(root / "a"), GovLedger(root / "b"), GovLedger(root / "c")
        try:
            seen = verdicts(a, script.batches)
            assert seen == verdicts(b, script.batches)
            assert b.fingerprint() == a.fingerprint()
            assert data_tables(b) == data_tables(a)
            follow(c, a.entries())
            assert c.fingerprint() == a.fingerprint()
            assert data_tables(c, evidence=False) == data_tables(a, evidence=False)
            size = a.size()
            anchored = len(data_tables(a)[1])
        finally:
            for led in (a, b, c):
                led.close()
        event(f"{'some refused' if any(not v.isdigit() for v in seen) else 'all accepted'}")
        event(f"{'some anchored' if anchored else 'none anchored'}")
        assert audit(str(root / "a"), workers=0).entries == size
    finally:
        shutil.rmtree(root, ignore_errors=True)
