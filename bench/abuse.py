"""Legitimate clients under floods: what one attacker process can take from a node (issue #14, docs/security.md).

A real node (``didnode serve`` subprocess, its default limits) serves two
legitimate workloads from 127.0.0.1, measured one after the other in each
phase: creates (``--concurrency`` callers submitting fresh signed creates) and
mutual handshakes (the same number of device initiators authenticating to the
node). Phase ``alone`` measures them with nothing else running; then, for
each flood of ``bench/abuse_attacks.py`` (run as one attacker process from its
own loopback addresses, 127.0.0.10 and up), the same workloads are measured
while the flood runs.

Reported per flood: legitimate creates/s and handshakes/s as a ratio to the
unloaded figures of the same run (target: at least 0.5 under every flood),
**lockouts** (legitimate calls that failed: every one counts; target: none),
and the node's peak RSS during the phase, the node and its worker processes
together (target: under 500 MB). Every flood is bounded in count and time and
stops by itself; nothing leaves loopback.

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuse_attacks import KINDS  # noqa: E402
from auth import device_create  # noqa: E402
from common import ROOT, emit, make_creates  # noqa: E402
from serving import load_loop, start_didnode, stop_process, tree_rss_mb  # noqa: E402

from didnode.auth import Authenticator, LocalIdentity  # noqa: E402
from didnode.auth.peers import CachedKeyStates, ClientKeyStates  # noqa: E402
from didnode.client import AsyncClient, Client  # noqa: E402
from didnode.core.handshake.nonces import MemoryNonceStore  # noqa: E402
from didnode.errors import DidnodeError  # noqa: E402


class PeakRss:
    """Samples the node's RSS (node + workers) every 100 ms on a thread; ``peak`` in MB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, tree_rss_mb(self.pid)["tree_rss_mb"])
            except (OSError, KeyError, ValueError):
                pass
            self._stop.wait(0.1)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Legit:
    """The legitimate workloads: creates and handshakes from 127.0.0.1, counting every failure as a lockout."""

    def __init__(self, address: str, identities: list[LocalIdentity], creates: list[Any], concurrency: int) -> None:
        self.address = address
        self.identities = identities
        self.creates = creates
        self.concurrency = concurrency
        self.next_create = 0
        self.failures: dict[str, int] = {}

    def _fail(self, err: DidnodeError) -> None:
        self.failures[err.reason] = self.failures.get(err.reason, 0) + 1

    async def measure(self, seconds: float) -> dict[str, float]:
        async with AsyncClient(self.address, timeout=10) as client:
            failed_before = sum(self.failures.values())

            async def create(_: int) -> None:
                if self.next_create >= len(self.creates):
                    raise SystemExit("abuse: out of pre-made creates; raise --creates")
                op = self.creates[self.next_create][0]
                self.next_create += 1
                try:
                    await client.submit(op)
                except DidnodeError as err:
                    self._fail(err)

            creates = await load_loop(create, seconds, self.concurrency, index="call")
            # Unverified, as the figures before issue #15 (bench/auth.py measures what verification costs).
            keys = CachedKeyStates(ClientKeyStates(client, None, insecure_no_verify=True), 5000)
            nonces = MemoryNonceStore()
            auths = [Authenticator(i, "local", keys, nonces=nonces) for i in self.identities]

            async def handshake(i: int) -> None:
                try:
                    await auths[i].authenticate(self.address, session_credential=False, timeout=10)
                except DidnodeError as err:
                    self._fail(err)

            handshakes = await load_loop(handshake, seconds, self.concurrency, index="caller")
            for a in auths:
                await a.close()
        failed = sum(self.failures.values()) - failed_before
        return {
            "creates_per_s": (creates.calls) / creates.seconds,
            "creates_p99_ms": creates.p99_ms,
            "handshakes_per_s": handshakes.calls / handshakes.seconds,
            "handshakes_p99_ms": handshakes.p99_ms,
            "lockouts": failed,
        }


def start_attacker(kind: str, address: str, seconds: float) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(Path(__file__).with_name("abuse_attacks.py")), kind, address, "--seconds", str(seconds)]
    # At the lowest CPU priority: on a real network the attacker's CPU is not the node's. On this
    # 2-core machine an attacker process at normal priority would take a core from the node and
    # the legitimate clients whatever the node does, and the bench would measure the scheduler.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, preexec_fn=lambda: os.nice(19))


def attacker_report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        return {"error": "the attacker did not stop by itself"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": f"exit {proc.returncode}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per workload per phase")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warmup", type=float, default=1.5, help="seconds a flood runs before the measurement starts")
    ap.add_argument("--floods", default=",".join(KINDS), help=f"comma-separated, of: {', '.join(KINDS)}")
    ap.add_argument("--creates", type=int, default=0, help="pre-made creates (default: enough for the phases at 3,000/s)")
    ap.add_argument("--node-args", default="", help="more didnode serve options, e.g. tighter limits: '--submit-rate 200'")
    args = ap.parse_args()
    floods = [f for f in args.floods.split(",") if f]
    for f in floods:
        if f not in KINDS:
            raise SystemExit(f"abuse: unknown flood {f!r}")

    tmp = Path(tempfile.mkdtemp(prefix="bench-abuse-"))
    node, address = start_didnode(tmp / "node", extra=args.node_args.split())
    try:
        phases = 1 + len(floods)
        creates = make_creates(args.creates or int(3000 * args.seconds * phases) + 1000)
        identities = []
        with Client(address) as c:
            for _ in range(args.concurrency):
                key, op = device_create()
                c.submit(op)
                identities.append(LocalIdentity.from_signing_key(op.did, "key-1", key))
        legit = Legit(address, identities, creates, args.concurrency)
        with PeakRss(node.pid) as rss:
            alone = asyncio.run(legit.measure(args.seconds))
        alone["peak_rss_mb"] = rss.peak
        print(f"alone: {alone['creates_per_s']:.0f} creates/s, {alone['handshakes_per_s']:.0f} handshakes/s, peak RSS {rss.peak:.0f} MB", flush=True)
        results: dict[str, Any] = {}
        for kind in floods:
            attacker = start_attacker(kind, address, args.warmup + 2 * args.seconds + 2)
            time.sleep(args.warmup)
            with PeakRss(node.pid) as rss:
                under = asyncio.run(legit.measure(args.seconds))
                report = attacker_report(attacker)
            if node.poll() is not None:
                raise SystemExit(f"abuse: the node died under {kind} (exit {node.returncode})")
            r = {
                **under,
                "creates_ratio": under["creates_per_s"] / alone["creates_per_s"],
                "handshakes_ratio": under["handshakes_per_s"] / alone["handshakes_per_s"],
                "peak_rss_mb": rss.peak,
                "attacker": report,
            }
            results[kind] = r
            print(
                f"{kind:17} creates {r['creates_ratio']:.2f}x  handshakes {r['handshakes_ratio']:.2f}x  "
                f"lockouts {r['lockouts']}  peak RSS {rss.peak:.0f} MB  attacker {report}",
                flush=True,
            )
    finally:
        stop_process(node)
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [min(r["creates_ratio"], r["handshakes_ratio"]) for r in results.values()]
    emit(
        {
            "bench": "abuse",
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "node_args": args.node_args,
            "alone": alone,
            "floods": results,
            "min_ratio": min(ratios) if ratios else None,
            "lockouts": sum(r["lockouts"] for r in results.values()),
            "max_peak_rss_mb": max((r["peak_rss_mb"] for r in results.values()), default=alone["peak_rss_mb"]),
            "failures_by_reason": legit.failures,
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        }
    )


if __name__ == "__main__":
    main()
