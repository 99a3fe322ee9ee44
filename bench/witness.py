"""Witnessed checkpoints (issue #17): cosigning by 3 witnesses on loopback, and verifying cosigned state proofs.

Two parts, in one run, every figure next to a reference measured in the same run:

1. **Cosigning.** Three ``didnode witness`` processes on 127.0.0.1 (each its
   own durable store) witness an in-process log: a growing in-memory Merkle
   tree (:mod:`didnode.core.merkle.log_tree`) whose C2SP checkpoint notes are
   signed here with an Ed25519 log key. Each round appends ``--leaves`` leaves,
   signs the new checkpoint and asks all three witnesses through
   :class:`didnode.witness.client.WitnessClient` (the node's own collector,
   in parallel, with the consistency proof from each witness's held size).
   Figures: checkpoints cosigned by all 3 per second (rounds are sequential:
   a log's checkpoints reach a witness in order), and the latency from the
   requests' start (note signed) to the k-th (k=2) verified cosignature, p50 and p99.
   Reference, in alternating rounds on the same aiohttp session: a plain
   ``GET /<sha256(origin)>/checkpoint`` to the same three witnesses at once
   (a loopback HTTP round trip to the same servers, no signing, no fsync):
   rounds per second and the latency to its 2nd answer.

2. **Verifying cosigned state proofs.** A real node (``didnode serve`` with
   ``--witness URL=VKEY`` x3, the same witness processes) holds ``--dids``
   DIDs; once its checkpoint carries the three cosignatures, the state proof of
   every DID is fetched once (``Client.proven_state`` from size 1), then
   verified (``didnode.client.verified.Checks.state``: the checkpoint note
   under a 2-of-3 witness policy, the consistency proof, the state proof)
   with one :class:`TrustedLog` (cached: the note is verified once) and with a
   fresh :class:`TrustedLog` per proof (uncached: the note, its signatures and
   the consistency proof every time, as a device seeing the log for the first
   time). Reference: the raw pynacl Ed25519 verify rate, measured before and
   after in this run (the best). Target (issue #17): cached, at least 2 state
   proofs per raw verify.

``--quick`` shrinks the counts (tests, ``make bench-quick``). Bounded: about
30 s by default. Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, make_creates, raw_verify_rate  # noqa: E402
from serving import BIN, ROOT, start_didnode, stop_process  # noqa: E402

import aiohttp  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from didnode.client import Client  # noqa: E402
from didnode.client.trust import policy_from_node  # noqa: E402
from didnode.client.verified import Checks  # noqa: E402
from didnode.core import cosignature  # noqa: E402
from didnode.core import note as note_codec  # noqa: E402
from didnode.core.merkle import log_tree  # noqa: E402
from didnode.core.merkle.hasher import leaf_hash  # noqa: E402
from didnode.core.merkle.proof_build import consistency_proof  # noqa: E402
from didnode.core.note import Note  # noqa: E402
from didnode.core.tlog_checkpoint import TlogCheckpoint, default_origin  # noqa: E402
from didnode.core.trust import TrustedLog  # noqa: E402
from didnode.core.trust.policy import WitnessKey  # noqa: E402
from didnode.witness.client import WitnessClient, WitnessEndpoint  # noqa: E402

NET = "local"
NODE_ORIGIN = default_origin(NET)
LOG_ORIGIN = "bench.didnode.example/witness-log"
K = 2  # of 3


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def start_witnesses(data: Path, logs: list[str], n: int = 3) -> list[tuple[subprocess.Popen[str], str, str]]:
    """``n`` ``didnode witness`` processes on loopback, started together; their (process, URL, vkey)."""
    procs = []
    for i in range(n):
        cmd = [str(BIN / "didnode"), "witness", "--data", str(data / f"w{i}"), "--http", "127.0.0.1:0", "--name", f"witness.bench/w{i}", "--log-level", "warning"]
        for entry in logs:
            cmd += ["--log", entry]
        err = open(data / f"w{i}.log", "ab")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT))
        err.close()
    out = []
    for i, p in enumerate(procs):
        assert p.stdout is not None
        url, vkey = p.stdout.readline().strip(), p.stdout.readline().strip()
        out.append((p, url, vkey))
        if not url or not vkey:
            for q in procs:
                stop_process(q)
            raise SystemExit(f"witness {i} did not start: {(data / f'w{i}.log').read_text(errors='replace')[-2000:]}")
    return out


async def cosigning(witnesses: list[tuple[str, str]], log_key: SigningKey, rounds: int, leaves: int, warmup: int) -> dict[str, Any]:
    """Part 1 (module docstring): alternating cosign rounds and plain GET rounds against the same witnesses."""
    endpoints = [WitnessEndpoint.parse(f"{url}={vkey}") for url, vkey in witnesses]
    store = log_tree.MemoryNodeStore()
    size = 0
    origin_hex = hashlib.sha256(LOG_ORIGIN.encode()).hexdigest()
    cosign_s: list[float] = []
    kth_s: list[float] = []
    get_s: list[float] = []
    get_kth_s: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        wc = WitnessClient(endpoints, lambda old, new: consistency_proof(store, old, new), session=session)

        async def one_get(url: str, start: float) -> float:
            async with session.get(f"{url}/{origin_hex}/checkpoint") as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"GET checkpoint from {url}: HTTP {r.status}")
            return time.perf_counter() - start

        for i in range(warmup + rounds):
            # the log grows, signs its checkpoint, has it cosigned
            t = time.perf_counter()
            hashes = [leaf_hash(b"bench-leaf-%d" % j) for j in range(size, size + leaves)]
            root = log_tree.append_many(store, size, hashes)
            size += leaves
            text = TlogCheckpoint(LOG_ORIGIN, size, root, ()).body()
            note = Note(text, (note_codec.sign_ed25519(text, LOG_ORIGIN, log_key),)).encode()
            result = await wc.cosign(note, size)
            took = time.perf_counter() - t
            if len(result.cosignatures) != len(endpoints):
                raise SystemExit(f"round {i}: only {len(result.cosignatures)} cosignatures: {result.failures}")
            # the reference round: the same three servers, a plain GET each
            t2 = time.perf_counter()
            gets = await asyncio.gather(*(one_get(e.url, t2) for e in endpoints))
            took2 = time.perf_counter() - t2
            if i >= warmup:
                cosign_s.append(took)
                kth_s.append(sorted(result.latencies_s.values())[K - 1])  # from the requests' start (the note signed) to the k-th verified cosignature
                get_s.append(took2)
                get_kth_s.append(sorted(gets)[K - 1])
    return {
        "cosign_rounds": rounds,
        "leaves_per_checkpoint": leaves,
        "log_size": size,
        "cosigned_checkpoints_per_s": rounds / sum(cosign_s),
        "ref_get_rounds_per_s": rounds / sum(get_s),
        "kth_cosign_p50_ms": percentile(kth_s, 0.5) * 1000,
        "kth_cosign_p99_ms": percentile(kth_s, 0.99) * 1000,
        "ref_kth_get_p50_ms": percentile(get_kth_s, 0.5) * 1000,
        "ref_kth_get_p99_ms": percentile(get_kth_s, 0.99) * 1000,
        "witness_requests": wc.requests,
    }


def _cosigners(note: bytes, keys: list[WitnessKey]) -> int:
    n = note_codec.parse(note)
    return sum(1 for w in keys for sig in n.signatures if cosignature.is_from(sig, w.name, w.public_key))


def verification(address: str, witness_vkeys: list[str], dids_n: int, raw_n: int) -> dict[str, Any]:
    """Part 2 (module docstring): fetch the cosigned state proofs once, verify them cached and uncached."""
    wkeys = [WitnessKey.from_vkey(v) for v in witness_vkeys]
    creates = make_creates(dids_n, NET)
    with Client(address) as c:
        for outcome in c.submit_batch([op for op, *_ in creates]):
            if isinstance(outcome, Exception):
                raise SystemExit(f"a create was refused: {outcome}")
        dids = [op.did for op, *_ in creates]
        deadline = time.monotonic() + 20
        while True:
            cp = c.checkpoint()
            if cp.tree_size > dids_n and cp.note and _cosigners(cp.note, wkeys) == len(wkeys):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the node's checkpoint did not get {len(wkeys)} cosignatures within 20 s (size {cp.tree_size})")
            time.sleep(0.05)
        base = policy_from_node(c)
        policy = dataclasses.replace(base, witnesses=tuple(wkeys), witness_threshold=K, latest=None)
        proofs = [c.proven_state(did, 1) for did in dids]
    notes = {p.proof.checkpoint.note for p in proofs}
    if len(notes) != 1:
        raise SystemExit(f"the state proofs came under {len(notes)} checkpoints; the node kept moving")
    size = proofs[0].proof.checkpoint.tree_size

    raw_before = raw_verify_rate(raw_n)
    # cached: one TrustedLog, the note verified once
    log = TrustedLog(policy)
    checks = Checks(log)
    t = time.perf_counter()
    for did, p in zip(dids, proofs):
        got = checks.state(did, p, 1)
        assert got.state is not None and got.state.did == did
    cached_s = time.perf_counter() - t
    cached_sigs = log.signatures_checked
    # uncached: a fresh TrustedLog per proof (a device seeing the log for the first time)
    sigs = 0
    t = time.perf_counter()
    for did, p in zip(dids, proofs):
        fresh = TrustedLog(policy)
        got = Checks(fresh).state(did, p, 1)
        sigs += fresh.signatures_checked
        assert got.state is not None
    uncached_s = time.perf_counter() - t
    raw_after = raw_verify_rate(raw_n)
    raw = max(raw_before, raw_after)
    cached = dids_n / cached_s
    uncached = dids_n / uncached_s
    return {
        "dids": dids_n,
        "tree_size": size,
        "cached_proofs_per_s": cached,
        "uncached_proofs_per_s": uncached,
        "raw_verify_per_s": raw,
        "raw_verify_before_per_s": raw_before,
        "raw_verify_after_per_s": raw_after,
        "cached_proofs_per_raw_verify": cached / raw,
        "uncached_proofs_per_raw_verify": uncached / raw,
        "cached_signatures_checked": cached_sigs,
        "uncached_signatures_per_proof": sigs / dids_n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=400, help="timed cosign rounds (each followed by a reference GET round)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--leaves", type=int, default=16, help="leaves appended per checkpoint")
    ap.add_argument("--dids", type=int, default=2000, help="DIDs on the node, one state proof each")
    ap.add_argument("--raw-n", type=int, default=20000, help="raw Ed25519 verifies per reference measurement")
    ap.add_argument("--quick", action="store_true", help="small counts (tests, make bench-quick)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.dids, args.raw_n = 100, 5, 1000, 10000

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-witness-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        # the node's key first (the witnesses must know the node's log key)
        node, _ = start_didnode(tmp / "node", NET)
        stop_process(node)
        node_key = SigningKey(bytes.fromhex((tmp / "node" / "node.key").read_text().strip()))
        log_key = SigningKey.generate()
        logs = [f"{NODE_ORIGIN}={note_codec.verifier_key(NODE_ORIGIN, bytes(node_key.verify_key))}",
                f"{LOG_ORIGIN}={note_codec.verifier_key(LOG_ORIGIN, bytes(log_key.verify_key))}"]  # fmt: skip
        ws = start_witnesses(tmp, logs)
        procs += [p for p, _, _ in ws]
        figures: dict[str, Any] = {"witnesses": len(ws), "k": K}
        figures.update(asyncio.run(cosigning([(u, v) for _, u, v in ws], log_key, args.rounds, args.leaves, args.warmup)))
        print(
            f"cosigned checkpoints/s (3 witnesses): {figures['cosigned_checkpoints_per_s']:,.0f} vs plain GET rounds/s {figures['ref_get_rounds_per_s']:,.0f}; "
            f"k-th cosignature p50 {figures['kth_cosign_p50_ms']:.2f} ms p99 {figures['kth_cosign_p99_ms']:.2f} ms",
            file=sys.stderr,
        )
        extra: list[str] = []
        for _, url, vkey in ws:
            extra += ["--witness", f"{url}={vkey}"]
        node, address = start_didnode(tmp / "node", NET, extra=extra)
        procs.append(node)
        figures.update(verification(address, [v for _, _, v in ws], args.dids, args.raw_n))
        print(
            f"state proofs/s cached {figures['cached_proofs_per_s']:,.0f}, uncached {figures['uncached_proofs_per_s']:,.0f}; "
            f"raw verify/s {figures['raw_verify_per_s']:,.0f}",
            file=sys.stderr,
        )
    finally:
        for p in reversed(procs):
            stop_process(p)
        shutil.rmtree(tmp, ignore_errors=True)
    figures["cosign_ratio"] = figures["cosigned_checkpoints_per_s"] / figures["ref_get_rounds_per_s"]
    figures["kth_p50_ratio"] = figures["kth_cosign_p50_ms"] / figures["ref_kth_get_p50_ms"]
    figures["kth_p99_ratio"] = figures["kth_cosign_p99_ms"] / figures["ref_kth_get_p99_ms"]
    figures["seconds"] = time.perf_counter() - started
    emit(figures)


if __name__ == "__main__":
    main()
