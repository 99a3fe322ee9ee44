"""Key event logs, our side of the keripy comparison: inception plus two rotations per identifier, durable.

--identifiers K identifiers, each a create (one Ed25519 key, a pre-rotation
commitment to the next) and two rotations (each signed by the key committed
before, committing to a new next key), all built and signed beforehand.
Timed: the 3K operations, in the order create, rotate, rotate per
identifier, validated and applied (bench/ledger.py's Pipeline: parse and
signatures in the prepare worker processes, single writer, fsync per batch)
into a fresh LMDB store, from the first submit to the last durable
acknowledgement. Twice, each on its own fresh store:

* ``events_per_s``: the ledger alone (log, op-hash index, key state), the
  scope keripy covers (it validates into its KEL and key-state databases and
  keeps no Merkle trees): the figure compared with keripy;
* ``events_with_trees_per_s``: the node's whole write path, which also
  maintains the Merkle log and the sparse state tree in the same transaction.

bench/keri_peer.py runs the same workload through keripy.

Last line: one JSON object {"events_per_s", "events_with_trees_per_s", "identifiers", "events", ...}.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402
from ledger import Pipeline  # noqa: E402

from nacl.signing import SigningKey  # noqa: E402

from didnode.core import builder  # noqa: E402
from didnode.core.builder import SignedOperation  # noqa: E402

NET = "local"


def kel(network: str = NET, rotations: int = 2) -> list[SignedOperation]:
    """One identifier's create and ``rotations`` rotations, each signed by the key committed before it."""
    keys = [SigningKey.generate() for _ in range(rotations + 2)]
    u = builder.create(network, [builder.NewKey("key-1", bytes(keys[0].verify_key))], bytes(keys[1].verify_key))
    ops = [builder.sign(u, [(f"{u.did}#key-1", keys[0])])]
    did = u.did
    for seq in range(1, rotations + 1):
        prev = hashlib.sha256(ops[-1].payload).hexdigest()
        u = builder.rotate(
            network, did, seq, prev, bytes(keys[seq].verify_key), [builder.NewKey(f"key-{seq + 1}", bytes(keys[seq].verify_key))], bytes(keys[seq + 1].verify_key)
        )
        ops.append(builder.sign(u, [(builder.next_kid(did), keys[seq])]))
    return ops


def make_kels(k: int, rotations: int = 2) -> list[SignedOperation]:
    """``k`` key event logs, concatenated in order (create, rotate, rotate, next identifier ...)."""

    def part(n: int) -> list[SignedOperation]:
        return [op for _ in range(n) for op in kel(NET, rotations)]

    step = max(1, k // 8)
    with ThreadPoolExecutor(2) as ex:
        return [op for ops in ex.map(part, [min(step, k - i) for i in range(0, k, step)]) for op in ops]


def main() -> None:
    """Build the workload, time it through the durable pipeline, emit the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identifiers", type=int, default=2000)
    ap.add_argument("--rotations", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--dir", default=None, help="where to build the store (default: a temp dir, removed after)")
    args = ap.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="didnode-bench-kel-")
    try:
        t = time.perf_counter()
        ops = make_kels(args.identifiers, args.rotations)
        print(f"built {len(ops):,} events for {args.identifiers:,} identifiers in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
        rates = {}
        for trees in (False, True):
            p = Pipeline(os.path.join(base, f"ledger-{'trees' if trees else 'alone'}"), sync=True, batch=args.batch, trees=trees)
            try:
                rates[trees] = p.run(ops)
                with p.store.read() as txn:
                    dids = p.tables.count_dids(txn)
            finally:
                p.close()
            if dids != args.identifiers:
                raise SystemExit(f"expected {args.identifiers} DIDs on the ledger, found {dids}")
        print(f"durable validate+apply, ledger alone: {rates[False]:,.0f} events/s ({len(ops):,} events)", file=sys.stderr)
        print(f"durable validate+apply, with both trees: {rates[True]:,.0f} events/s", file=sys.stderr)
        emit(
            {
                "identifiers": args.identifiers,
                "events": len(ops),
                "rotations_per_identifier": args.rotations,
                "events_per_s": rates[False],
                "events_with_trees_per_s": rates[True],
            }
        )
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
