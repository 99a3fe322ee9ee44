"""Transparency throughput: appends with both trees, proof generation and verification, audit replay.

On a node store that already holds --prefill DIDs (default 200,000):
  * durable single-signature creates/s with the log tree and the state tree
    maintained in the same transaction (the node's write path, bench/ledger.py's
    Pipeline, fsync per batch);
  * proof generation per second through the service layer (one read
    transaction per proof, as a gRPC call would do, without gRPC itself):
    inclusion (random position, latest checkpoint), consistency (random old
    size -> latest), state (random existing DID);
  * verification per second with the pure verifier: the Merkle/sparse path
    against an already verified checkpoint, and the whole bundle including
    the checkpoint's Ed25519 signature;
  * the audit replay rate (``didctl audit``: full replay, every signature,
    every stored byte compared), with its default worker processes.

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, make_creates  # noqa: E402
from ledger import Pipeline  # noqa: E402

from didnode.core.merkle import log_tree, proof_verify  # noqa: E402
from didnode.core.transparency_verify import (  # noqa: E402
    verify_bundle,
    verify_checkpoint,
    verify_inclusion_at,
    verify_state_at,
)
from didnode.ledger.audit import audit  # noqa: E402
from didnode.service.node import Node, NodeConfig  # noqa: E402
from didnode.service.transparency import TransparencyService  # noqa: E402
from didnode.store.tree_tables import LogNodes  # noqa: E402

NET = "local"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def proofs(node: Node, dids: list[str], n: int) -> dict[str, Any]:
    """Generate ``n`` proofs of each kind through the service; return them and the rates."""
    svc = TransparencyService(node)
    latest = await svc.checkpoint()
    size = latest.tree_size
    rnd = random.Random(7)

    t = time.perf_counter()
    incl = [await svc.inclusion_proof(position=rnd.randrange(size)) for _ in range(n)]
    incl_rate = n / (time.perf_counter() - t)

    olds = [rnd.randrange(1, size) for _ in range(n)]
    t = time.perf_counter()
    cons = [await svc.consistency_proof(s) for s in olds]
    cons_rate = n / (time.perf_counter() - t)

    picks = [rnd.choice(dids) for _ in range(n)]
    t = time.perf_counter()
    states = [(await svc.state_proof(d)).proof for d in picks]
    state_rate = n / (time.perf_counter() - t)

    # A client checking consistency holds the old root from an old checkpoint;
    # here the old sizes have none, so take the roots from the store.
    with node.store.read() as txn:
        old_roots = {s: log_tree.root(LogNodes(txn, node.store), s) for s in olds}
    return {
        "checkpoint": latest,
        "incl": incl,
        "cons": cons,
        "old_roots": old_roots,
        "states": states,
        "rates": {"inclusion_gen_per_s": incl_rate, "consistency_gen_per_s": cons_rate, "state_gen_per_s": state_rate},
    }


def verify_rates(made: dict[str, Any], key: bytes) -> dict[str, float]:
    """Path-only rates (the checkpoint verified once) and the whole-bundle rate of state proofs."""
    cp = verify_checkpoint(made["checkpoint"], key)
    out: dict[str, float] = {}

    t = time.perf_counter()
    for p in made["incl"]:
        verify_inclusion_at(cp, p.entry, p.index, p.hashes)
    out["inclusion_verify_per_s"] = len(made["incl"]) / (time.perf_counter() - t)

    t = time.perf_counter()
    for p in made["cons"]:
        proof_verify.verify_consistency(p.size1, p.size2, made["old_roots"][p.size1], cp.log_root, list(p.hashes))
    out["consistency_verify_per_s"] = len(made["cons"]) / (time.perf_counter() - t)

    t = time.perf_counter()
    for p in made["states"]:
        verify_state_at(cp, p.did, p.state_record if p.present else None, p.proof)
    out["state_verify_per_s"] = len(made["states"]) / (time.perf_counter() - t)

    t = time.perf_counter()
    for p in made["states"]:
        verify_bundle(p, key)
    out["state_bundle_verify_per_s"] = len(made["states"]) / (time.perf_counter() - t)
    return out


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the audit's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefill", type=int, default=200_000, help="DIDs on the ledger before measuring")
    ap.add_argument("--n", type=int, default=20_000, help="durable creates to measure")
    ap.add_argument("--proofs", type=int, default=5_000, help="proofs of each kind to generate and verify")
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--dir", default=None, help="where to build the node data dir (default: a temp dir, removed after)")
    args = ap.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="didnode-bench-tp-")
    data = os.path.join(base, "node")
    path = os.path.join(data, "ledger")
    try:
        t = time.perf_counter()
        log(f"generating {args.prefill + args.n} identities ...")
        pre = make_creates(args.prefill)
        fresh = make_creates(args.n)
        log(f"  {time.perf_counter() - t:.1f}s; creating the node and prefilling {args.prefill} DIDs (not timed, no fsync) ...")
        Node(NodeConfig(data_dir=data, network=NET)).close()  # genesis: the node DID at position 0
        p = Pipeline(path, sync=False, batch=args.batch)
        p.run([x[0] for x in pre])
        p.close()

        log(f"measuring {args.n} durable creates with both trees ...")
        p = Pipeline(path, sync=True, batch=args.batch)
        appends = p.run([x[0] for x in fresh])
        p.close()

        node = Node(NodeConfig(data_dir=data, network=NET))
        try:
            dids = [x[0].did for x in pre[:: max(1, len(pre) // 50_000)]] + [x[0].did for x in fresh]
            log(f"generating {args.proofs} proofs of each kind ...")
            made = asyncio.run(proofs(node, dids, args.proofs))
            key = bytes(node.signing_key.verify_key)
        finally:
            node.close()
        log("verifying ...")
        ver = verify_rates(made, key)

        log("auditing the whole store ...")
        cpu0 = _cpu_seconds()
        report = audit(data)
        audit_cpu = _cpu_seconds() - cpu0
        rates = made["rates"]
        log(f"durable creates with both trees: {appends:,.0f}/s on {args.prefill:,} DIDs")
        for name, value in {**rates, **ver}.items():
            log(f"{name}: {value:,.0f}")
        log(f"audit: {report.entries:,} entries, {report.dids:,} DIDs, {report.checkpoints} checkpoints in {report.seconds:.1f}s = {report.rate:,.0f}/s")
        log(f"audit CPU: {audit_cpu:.1f}s in all processes = {report.entries / audit_cpu:,.0f} entries per CPU-second (other load on the machine shows as wall time > CPU / cores)")
        emit(
            {
                "prefill_dids": args.prefill,
                "n": args.n,
                "appends_per_s": appends,
                **rates,
                **ver,
                "audit_entries": report.entries,
                "audit_per_s": report.rate,
                "audit_cpu_s": audit_cpu,
                "os_load_1m": os.getloadavg()[0],
            }
        )
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
