"""Reference: LMDB synced group-commit puts per second (py-lmdb, one writer thread).

The storage ceiling of a durable write path on this machine: an LMDB
environment opened as the node opens its own (``sync`` and ``metasync`` on,
no readahead, no meminit) and pre-filled with --prefill random entries
(random keys touch pages all over the B+tree, so an empty database
flatters), then --batches write transactions of --batch puts each, every
commit fsync'd. Keys are random 32 bytes (sorted within a transaction, as
the node sorts its writes), values --value-size random bytes (about one
DID's state record). Nothing but LMDB runs: no parsing, no signatures.

Last line: one JSON object {"puts_per_s", "commits_per_s", "commit_p50_ms", ...}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import lmdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402


def open_env(path: str, sync: bool) -> lmdb.Environment:
    """The environment with the node's flags (didnode/store/env.py), synced or not."""
    return lmdb.open(path, map_size=1 << 34, max_dbs=4, sync=sync, metasync=sync, readahead=False, meminit=False)


def fill(env: lmdb.Environment, db: lmdb._Database, n: int, value_size: int, batch: int) -> None:
    """Put ``n`` random entries, ``batch`` per transaction."""
    done = 0
    while done < n:
        k = min(batch, n - done)
        value = os.urandom(value_size)
        with env.begin(write=True, db=db) as txn:
            for key in sorted(os.urandom(32) for _ in range(k)):
                txn.put(key, value)
        done += k


def main() -> None:
    """Pre-fill (unsynced), then time synced group commits; emit the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefill", type=int, default=200_000, help="entries in the database before measuring")
    ap.add_argument("--batch", type=int, default=8192, help="puts per synced transaction")
    ap.add_argument("--batches", type=int, default=8, help="synced transactions to time")
    ap.add_argument("--value-size", type=int, default=500)
    ap.add_argument("--dir", default=None, help="where to create the environment (default: a temp dir, removed after)")
    args = ap.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="didnode-bench-lmdb-")
    path = os.path.join(base, "ref-lmdb")
    try:
        env = open_env(path, sync=False)
        db = env.open_db(b"t")
        t = time.perf_counter()
        fill(env, db, args.prefill, args.value_size, 50_000)
        env.sync(True)
        env.close()
        print(f"prefilled {args.prefill:,} entries in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)

        env = open_env(path, sync=True)
        db = env.open_db(b"t")
        batches = [(sorted(os.urandom(32) for _ in range(args.batch)), os.urandom(args.value_size)) for _ in range(args.batches)]
        commits: list[float] = []
        t0 = time.perf_counter()
        for keys, value in batches:
            t = time.perf_counter()
            with env.begin(write=True, db=db) as txn:
                for key in keys:
                    txn.put(key, value)
            commits.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
        with env.begin() as txn:
            entries = txn.stat(db)["entries"]
        size = os.path.getsize(os.path.join(path, "data.mdb"))
        env.close()
        commits.sort()
        puts = args.batch * args.batches / elapsed
        print(f"synced group-commit puts: {puts:,.0f}/s ({args.batches} commits of {args.batch}; commit p50 {commits[len(commits) // 2] * 1000:.1f} ms)", file=sys.stderr)
        emit(
            {
                "prefill": args.prefill,
                "batch": args.batch,
                "batches": args.batches,
                "value_size": args.value_size,
                "puts_per_s": puts,
                "commits_per_s": args.batches / elapsed,
                "commit_p50_ms": commits[len(commits) // 2] * 1000,
                "commit_max_ms": commits[-1] * 1000,
                "bytes_per_entry": size / entries,
            }
        )
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
