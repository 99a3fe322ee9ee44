"""Cluster benchmark: three nats-servers (JetStream R3, ``sync_interval: always``) and three
didnodes on this machine, all on loopback.

Measures:
  * durable create throughput through the cluster: --n signed creates streamed with the
    batch API to all three nodes at once (a third each); an operation counts when the node
    it was sent to acknowledged it, i.e. after the stream's quorum stored it and that node's
    LMDB applied it. Also the rate until all three nodes applied everything, and the CPU
    spent per create by the nats-servers, the didnodes (with their worker processes) and
    this client, next to how busy the whole machine was (the rest is other work: on two
    shared cores the rate depends on it);
  * revocation propagation, over --revocations revocations: the time from the
    acknowledgement on node A until nodes B and C both report the key revoked (each polled
    with GetKeyState, in parallel); p50 and p99.

Last stdout line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, emit, make_creates  # noqa: E402

sys.path.insert(0, ROOT)
from nacl.signing import SigningKey  # noqa: E402

from didnode.client import Client, Receipt  # noqa: E402
from didnode.core import builder  # noqa: E402
from didnode.core.keystate import REVOKED  # noqa: E402
from tools.cluster import NatsCluster, free_ports, start_didnode, wait_address  # noqa: E402

NET = "bench"


def stream_to(address: str, ops: list, chunk: int, window: int, out: list) -> None:  # type: ignore[type-arg]
    with Client(address, timeout=120) as c:
        out.extend(c.submit_batch(ops, chunk_size=chunk, window=window))


def wait_applied(addresses: list[str], seq: int, timeout: float = 300.0) -> float:
    """Seconds until every node applied the stream up to ``seq``."""
    t = time.perf_counter()
    clients = [Client(a) for a in addresses]
    try:
        while any(c.node_info().stream_seq < seq for c in clients):
            if time.perf_counter() - t > timeout:
                raise SystemExit(f"the nodes did not apply up to {seq} within {timeout}s")
            time.sleep(0.01)
    finally:
        for c in clients:
            c.close()
    return time.perf_counter() - t


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a didnode and its verifier processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds per role: each role's processes and their descendants, plus this process ("client")."""
    snap = {role: sum(_cpu(p) for pid in pids for p in _tree(pid)) for role, pids in roles.items()}
    t = os.times()
    snap["client"] = t.user + t.system
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    # Busy time of the whole machine (everything but idle and iowait): what no process
    # above accounts for (kernel threads, interrupts, other work on the machine) shows here.
    snap["machine"] = (sum(cpu) - cpu[3] - cpu[4]) / os.sysconf("SC_CLK_TCK")
    return snap


def throughput(addresses: list[str], n: int, chunk: int, window: int, roles: dict[str, list[int]] | None = None) -> tuple[float, float, dict[str, float]]:
    print(f"generating {n} creates ...", file=sys.stderr, flush=True)
    ops = [x[0] for x in make_creates(n, NET)]
    outs: list[list] = [[] for _ in addresses]  # type: ignore[type-arg]
    before = cpu_snapshot(roles or {})
    threads = [threading.Thread(target=stream_to, args=(a, ops[k :: len(addresses)], chunk, window, outs[k])) for k, a in enumerate(addresses)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    acked = time.perf_counter() - t
    bad = [o for out in outs for o in out if not isinstance(o, Receipt)]
    if bad or sum(len(o) for o in outs) != n:
        raise SystemExit(f"{len(bad)} creates rejected, e.g. {bad[:1]!r}")
    with Client(addresses[0]) as c:
        last = c.node_info().stream_last_seq
    all_applied = acked + wait_applied(addresses, last)
    after = cpu_snapshot(roles or {})
    # CPU per create, in microseconds, from the first submission until every node applied everything.
    cpu_us = {role: (after[role] - before[role]) / n * 1e6 for role in after}
    return n / acked, n / all_applied, cpu_us


def revocations(addresses: list[str], count: int) -> list[float]:
    """Per revocation: seconds from its acknowledgement on A until B and C both hold the key revoked."""
    a, b, c = addresses
    pairs = []
    for _ in range(count):
        auth, nxt = SigningKey.generate(), SigningKey.generate()
        u = builder.create(NET, [builder.NewKey("key-1", bytes(auth.verify_key))], bytes(nxt.verify_key))
        pairs.append((builder.sign(u, [(f"{u.did}#key-1", auth)]), nxt))
    with Client(a) as ca:
        outcomes = list(ca.submit_batch([op for op, _ in pairs], chunk_size=100))
        assert all(isinstance(o, Receipt) for o in outcomes), outcomes[:1]
        last = ca.node_info().stream_last_seq
    wait_applied(addresses, last)
    latencies = []
    with Client(a) as ca, Client(b) as cb, Client(c) as cc:
        for op, nxt in pairs:
            prev = hashlib.sha256(op.payload).hexdigest()
            u = builder.revoke(NET, op.did, 1, prev, "key-1", "compromised", next_key_public=bytes(nxt.verify_key))
            revoke = builder.sign(u, [(builder.next_kid(op.did), nxt)])
            seen: dict[str, float] = {}

            def poll(name: str, client: Client, did: str = op.did) -> None:
                deadline = time.perf_counter() + 30
                while time.perf_counter() < deadline:
                    if client.state(did).key("key-1").fate == REVOKED:
                        seen[name] = time.perf_counter()
                        return

            ca.submit(revoke)
            acked = time.perf_counter()
            pollers = [threading.Thread(target=poll, args=("b", cb)), threading.Thread(target=poll, args=("c", cc))]
            for p in pollers:
                p.start()
            for p in pollers:
                p.join()
            if len(seen) != 2:
                raise SystemExit(f"revocation of {op.did} not seen on B and C within 30s")
            latencies.append(max(seen.values()) - acked)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="creates for the throughput run")
    ap.add_argument("--revocations", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=512, help="operations per streamed chunk")
    ap.add_argument("--window", type=int, default=4, help="unacknowledged chunks per stream")
    ap.add_argument("--log-level", default="warning", help="the didnodes' log level (their logs: DIR/node-N.err)")
    ap.add_argument("--dir", default=None, help="where to put NATS and node data (default: a temp dir, removed after)")
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="didnode-cluster-bench-"))
    nats = NatsCluster.on_free_ports(base / "nats")
    procs = []
    started_workers: list[int] = []
    try:
        nats.start()
        nats.wait_ready()
        ports = free_ports(3)
        for i, port in enumerate(ports):
            log = base / f"node-{i + 1}.log"
            procs.append((start_didnode(base / f"node-{i + 1}", f"127.0.0.1:{port}", NET, nats.urls[i:] + nats.urls[:i], log, log_level=args.log_level), log))
        addresses = [wait_address(log, proc) for proc, log in procs]
        started_workers.extend(p for proc, _ in procs for p in _tree(proc.pid)[1:])
        print(f"cluster up: nodes {', '.join(addresses)}; NATS {', '.join(nats.urls)}", file=sys.stderr, flush=True)
        roles = {"nats": [s.proc.pid for s in nats.servers if s.proc is not None], "didnodes": [proc.pid for proc, _ in procs]}
        load = os.getloadavg()[0]
        acked_rate, applied_rate, cpu_us = throughput(addresses, args.n, args.chunk, args.window, roles)
        print(f"durable creates through the cluster: {acked_rate:,.0f}/s acknowledged; {applied_rate:,.0f}/s applied on all three nodes", file=sys.stderr, flush=True)
        print(
            "CPU per create: " + ", ".join(f"{role} {us:,.0f} us" for role, us in cpu_us.items() if role != "machine")
            + f"; total {sum(us for role, us in cpu_us.items() if role != 'machine'):,.0f} us; whole machine busy {cpu_us['machine']:,.0f} us"
            + f" (load average {load:.2f} before, {os.getloadavg()[0]:.2f} after)",
            file=sys.stderr,
            flush=True,
        )
        lat = revocations(addresses, args.revocations)
        p50, p99 = percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000
        print(f"revocation ack on A -> rejected on B and C: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lat) * 1000:.1f} ms", file=sys.stderr, flush=True)
        emit(
            {
                "nodes": 3,
                "nats_replicas": 3,
                "n": args.n,
                "chunk": args.chunk,
                "window": args.window,
                "creates_per_s": acked_rate,
                "creates_applied_everywhere_per_s": applied_rate,
                "cpu_us_per_create": cpu_us,
                "load_average_1m": load,
                "revocations": len(lat),
                "revocation_propagation_p50_ms": p50,
                "revocation_propagation_p99_ms": p99,
                "revocation_propagation_mean_ms": statistics.mean(lat) * 1000,
            }
        )
    finally:
        workers = set(started_workers) | {p for proc, _ in procs for p in _tree(proc.pid)[1:]}
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:  # never leave a node behind
                proc.kill()
        for pid in workers:  # nor its worker processes, should it have died without stopping them
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"multiprocessing" in f.read():
                        os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        nats.stop()
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
