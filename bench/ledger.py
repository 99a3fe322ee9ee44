"""Durable validate+apply throughput of the ledger, in-process, on a pre-filled LMDB store.

Measures, on a ledger that already holds --prefill DIDs (random keys make
LMDB touch pages all over the tree, so an empty database flatters), all
durable (fsync per batch), in batches:

  the ledger alone (issue #2's scope: log, op-hash index, per-DID state)
  * --n single-signature creates;
  * --n creates that also carry a controller's signature;
  * --n rotations (signed by the pre-committed next key) of prefilled DIDs;
  the node's full write path (adds issue #3's Merkle log and sparse state tree)
  * --n single-signature creates and --n rotations;
  governance (issue #18), the ledger alone
  * --n creates on a ``registrars`` network (a second store: genesis of one
    governor and one registrar whose quota is large enough never to bind, but
    present, so the quota path runs; the same prefill), each signed by the
    registrar as controller: ``creates_per_s_registrars``. They carry two
    signatures, like the controller creates of the open network, which are the
    fair reference: ``registrars_vs_open`` = registrars / open controller creates
    (target >= 0.9; ``registrars_reference`` says which run it is);

next to the raw single-thread Ed25519 verify rate measured in the same run.
The pipeline is the node's: chunks of 256 submissions parsed and verified in
the prepare worker process (ProcessPreparer, several chunks in flight),
batches applied and committed by the single writer (LocalOrderer).

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import chunks, emit, make_creates, raw_verify_rate  # noqa: E402

from nacl.signing import SigningKey  # noqa: E402

from didnode.clock import wall_ms  # noqa: E402
from didnode.core import builder  # noqa: E402
from didnode.errors import DidnodeError  # noqa: E402
from didnode.ledger.orderer import LocalOrderer  # noqa: E402
from didnode.ledger.preparer import ProcessPreparer  # noqa: E402
from didnode.service.node import DEFAULT_PREPARE_PROCESSES  # noqa: E402
from didnode.store.env import Store  # noqa: E402
from didnode.store.ledger_tables import LedgerTables  # noqa: E402
from didnode.ledger.trees import transparency_hooks  # noqa: E402
from didnode.core.governance import build as gov_build  # noqa: E402
from didnode.core.governance.policy import CREATES, OPEN, REGISTRARS, CreateQuota  # noqa: E402
from governed import new_member, write_governed_ledger  # noqa: E402

NET = "local"


class Pipeline:
    """The node's write path without gRPC: prepare worker + single group-committing writer."""

    def __init__(self, path: str, sync: bool, batch: int, trees: bool = True, workers: int = DEFAULT_PREPARE_PROCESSES) -> None:
        self.store = Store(path, map_size=1 << 32, sync=sync)
        self.tables = LedgerTables(self.store)
        self.path = path
        hooks = transparency_hooks(self.tables) if trees else []
        self.orderer = LocalOrderer(self.tables, wall_ms, hooks, max_batch=batch)
        self.orderer.start()
        self.preparer = ProcessPreparer(self.tables, path, NET, workers)  # as the node: NodeConfig.prepare_processes
        self.batch = batch

    def run(self, ops: list) -> float:
        """Submit everything in chunks; return ops/s from first submit to last durable ack."""
        done = threading.Event()
        remaining = [len(ops)]
        failures: list = []
        lock = threading.Lock()

        def on_done(outcomes: list) -> None:
            bad = [o for o in outcomes if isinstance(o, DidnodeError)]
            with lock:
                failures.extend(bad)
                remaining[0] -= len(outcomes)
                if remaining[0] == 0:
                    done.set()

        t = time.perf_counter()
        futs = [self.preparer.submit([(o.payload, o.proofs) for o in c]) for c in chunks(ops, 256)]
        for f in futs:
            self.orderer.submit(f.result(), on_done)
        done.wait()
        el = time.perf_counter() - t
        if failures:
            raise SystemExit(f"{len(failures)} operations rejected, e.g. {failures[0]!r}")
        return len(ops) / el

    def close(self) -> None:
        self.orderer.stop()
        self.preparer.close()
        self.store.close()


def prefill_governed(path: str, args: argparse.Namespace, governor: Any, registrar: Any, ops: list) -> None:
    """The registrars network's store (not timed, no fsync): its genesis, created ``open`` with the registrar
    listed (quota large enough never to bind), the same prefill as the open store, then ``setCreatePolicy
    registrars`` signed by the governor (so the prefill needs no registrar signatures)."""
    store = Store(path, map_size=1 << 32, sync=False)
    quota = CreateQuota(window_s=3600, per_window=2**40, total=2**50)
    genesis = write_governed_ledger(store, LedgerTables(store), NET, governor, [registrar], [governor], OPEN, {registrar.did: quota})
    store.close()
    p = Pipeline(path, sync=False, batch=args.batch, trees=True, workers=args.workers)
    p.run(ops + [genesis.change([gov_build.set_create_policy(REGISTRARS)])])
    p.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefill", type=int, default=200_000)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--workers", type=int, default=DEFAULT_PREPARE_PROCESSES, help="prepare worker processes (default: the node's)")
    ap.add_argument("--dir", default=None, help="where to build the store (default: a temp dir, removed after)")
    args = ap.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="didnode-bench-")
    path = os.path.join(base, "ledger")
    try:
        t = time.perf_counter()
        print(f"generating {args.prefill + 5 * args.n} identities ...", file=sys.stderr, flush=True)
        pre = make_creates(args.prefill)
        fresh = make_creates(args.n)
        fresh_trees = make_creates(args.n)
        admins = make_creates(1)
        ctl_creates = []
        admin_op, admin_seed, _, _ = admins[0]
        admin_key = SigningKey(admin_seed)
        for _ in range(args.n):
            auth, nxt = SigningKey.generate(), SigningKey.generate()
            u = builder.create(NET, [builder.NewKey("key-1", bytes(auth.verify_key))], bytes(nxt.verify_key), controllers=[admin_op.did])
            ctl_creates.append(builder.sign(u, [(f"{u.did}#key-1", auth), (f"{admin_op.did}#key-1", admin_key)]))
        # The registrars network: its genesis (a governor, a registrar) and creates the registrar signs as controller.
        governor, registrar = new_member(NET), new_member(NET)
        reg_creates = []
        for _ in range(args.n):
            auth, nxt = SigningKey.generate(), SigningKey.generate()
            u = builder.create(NET, [builder.NewKey("key-1", bytes(auth.verify_key))], bytes(nxt.verify_key), controllers=[registrar.did])
            reg_creates.append(builder.sign(u, [(f"{u.did}#key-1", auth), (registrar.kid, registrar.auth)]))
        print(f"  {time.perf_counter() - t:.1f}s; prefilling {args.prefill} DIDs (not timed, no fsync) ...", file=sys.stderr, flush=True)
        p = Pipeline(path, sync=False, batch=args.batch, trees=True, workers=args.workers)
        p.run([x[0] for x in pre] + [admin_op])
        p.close()
        gov_path = os.path.join(base, "ledger-registrars")
        prefill_governed(gov_path, args, governor, registrar, [x[0] for x in pre + fresh_trees + fresh])
        # Rotations for DIDs of the prefill: the realistic case (old DIDs rotate).
        rotations = []
        for op, _seed, nxt_seed, _ in pre[: 2 * args.n]:
            nxt = SigningKey(nxt_seed)
            new_auth, new_next = SigningKey.generate(), SigningKey.generate()
            u = builder.rotate(NET, op.did, 1, hashlib.sha256(op.payload).hexdigest(), bytes(nxt.verify_key), [builder.NewKey("key-2", bytes(new_auth.verify_key))], bytes(new_next.verify_key))
            rotations.append(builder.sign(u, [(builder.next_kid(op.did), nxt)]))
        verify = raw_verify_rate()
        # The full write path first, while the trees still match the store.
        p = Pipeline(path, sync=True, batch=args.batch, trees=True, workers=args.workers)
        creates_trees = p.run([x[0] for x in fresh_trees])
        rot_trees = p.run(rotations[args.n :])
        p.close()
        p = Pipeline(path, sync=True, batch=args.batch, trees=False, workers=args.workers)
        creates = p.run([x[0] for x in fresh])
        g = Pipeline(gov_path, sync=True, batch=args.batch, trees=False, workers=args.workers)
        # Controller creates on the open network and registrar creates on the governed one, in
        # alternating halves: the machine's load drifts alike over both.
        half = args.n // 2
        t_ctl = t_reg = 0.0
        for part in (slice(0, half), slice(half, args.n)):
            t_ctl += len(ctl_creates[part]) / p.run(ctl_creates[part])
            t_reg += len(reg_creates[part]) / g.run(reg_creates[part])
        ctl, registrars = args.n / t_ctl, args.n / t_reg
        with g.store.read() as txn:
            policy = g.tables.governance(txn)
            used = g.tables.usage(txn, CREATES, registrar.did)
        g.close()
        if policy is None or policy.create != REGISTRARS or used.total_count != args.n:
            raise SystemExit(f"the registrars run did not count its creates: policy {policy}, usage {used}")
        rot = p.run(rotations[: args.n])
        with p.store.read() as txn:
            dids = p.tables.count_dids(txn)
        size = os.path.getsize(os.path.join(path, "data.mdb"))
        p.close()
        print(f"raw Ed25519 verify (1 thread): {verify:,.0f}/s", file=sys.stderr)
        print("the ledger alone (log, op-hash index, state):", file=sys.stderr)
        print(f"  durable creates: {creates:,.0f}/s  ({creates / verify:.2f} of raw verify)", file=sys.stderr)
        print(f"  durable creates with controller signature: {ctl:,.0f}/s", file=sys.stderr)
        print(f"  durable rotations: {rot:,.0f}/s", file=sys.stderr)
        print(f"  durable creates on a registrars network, signed by the registrar: {registrars:,.0f}/s "
              f"({registrars / ctl:.2f} of the open network's controller creates)", file=sys.stderr)
        print("the node's write path (ledger + Merkle log + sparse state tree):", file=sys.stderr)
        print(f"  durable creates: {creates_trees:,.0f}/s  ({creates_trees / verify:.2f} of raw verify)", file=sys.stderr)
        print(f"  durable rotations: {rot_trees:,.0f}/s", file=sys.stderr)
        print(f"store: {dids} DIDs, {size / dids:,.0f} LMDB file bytes per DID", file=sys.stderr)
        emit(
            {
                "prefill_dids": args.prefill,
                "n": args.n,
                "workers": args.workers,
                "creates_per_s": creates,
                "controller_creates_per_s": ctl,
                "rotations_per_s": rot,
                "creates_per_s_open": creates,
                "creates_per_s_open_controller": ctl,
                "creates_per_s_registrars": registrars,
                "registrars_vs_open": registrars / ctl,
                "registrars_reference": "creates_per_s_open_controller (two signatures per create, as the registrar's)",
                "creates_with_trees_per_s": creates_trees,
                "rotations_with_trees_per_s": rot_trees,
                "verify_per_s": verify,
                "ratio": creates / verify,
                "ratio_with_trees": creates_trees / verify,
                "lmdb_bytes_per_did": size / dids,
            }
        )
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
