"""Shared pieces of the benchmarks that serve over gRPC: a node subprocess, the load loop, CPU, RSS, LMDB usage.

Every benchmark that drives a server with concurrent callers over a time
window does it with :func:`load_loop` (``resolve.py`` and ``scale.py``
resolving, ``ref_grpc_echo.py`` echoing; through :class:`Tally`,
``auth.py`` and ``ref_bare_handshake.py`` handshaking), so that a figure
and its reference are driven by exactly the same client loop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Literal, Mapping, Sequence

import lmdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, chunks  # noqa: E402

BIN = Path(sys.executable).parent


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values (nearest rank); NaN when empty."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass(frozen=True)
class LoadResult:
    """Completed calls over a timed window and their latencies."""

    calls: int
    seconds: float
    latencies: list[float]  # seconds, in completion order

    @cached_property
    def sorted_latencies(self) -> list[float]:
        """The latencies, sorted (on first use: never inside a caller's CPU tally, see :class:`Tally`)."""
        return sorted(self.latencies)

    @property
    def rate(self) -> float:
        """Completed calls per second."""
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        """Median latency in ms."""
        return percentile(self.sorted_latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        """99th percentile latency in ms."""
        return percentile(self.sorted_latencies, 0.99) * 1000


async def load_loop(
    one: Callable[[int], Awaitable[object]],
    seconds: float,
    concurrency: int,
    *,
    warmup: float = 0.0,
    index: Literal["caller", "call"] = "caller",
) -> LoadResult:
    """The benchmarks' one load loop: ``concurrency`` asyncio callers await ``one(i)`` back to back for ``seconds``.

    A caller starts no call once ``seconds`` have passed; the calls under way
    then are awaited and counted. Each call is timed from just before
    ``one(i)`` to its completion; ``LoadResult.seconds`` runs from the
    callers' start to the last one's end, so the rate is completed calls over
    the time it really took. With ``warmup`` > 0 an unmeasured window of that
    length comes first (the same callers' work, thrown away).

    ``index`` says what ``i`` is: ``"caller"``, the caller's number
    0..concurrency-1 (callers that each own something: an identity, a
    channel); ``"call"``, the call's sequence number in the window, counted
    across all callers from 0 (round-robin over a sample of requests).
    """
    per_caller = index == "caller"

    async def window(length: float) -> LoadResult:
        lat: list[float] = []
        stop = time.perf_counter() + length
        counter = itertools.count()

        async def caller(c: int) -> None:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                await one(c if per_caller else next(counter))
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(caller(c) for c in range(concurrency)))
        return LoadResult(len(lat), time.perf_counter() - t0, lat)

    if warmup > 0:
        await window(warmup)
    return await window(seconds)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def alternating_loads(
    calls: Mapping[str, Callable[[int], Awaitable[object]]], node_pid: int, seconds: float, concurrency: int, rounds: int
) -> dict[str, Any]:
    """Several ways of doing one thing, compared under the same background load: each of ``calls`` warmed
    up for 0.5 s, then ``rounds`` rounds in which each runs for ``seconds`` in turn (``load_loop`` with
    ``concurrency`` callers, ``i`` the call's sequence number). Per name, the rounds' totals:
    ``{name}_resolve_per_s``, ``_p50_ms``, ``_p99_ms``, and the CPU time per call of this process
    (``{name}_client_cpu_us``) and of ``node_pid`` (``{name}_node_cpu_us``), which background load moves
    less than rates."""
    for one in calls.values():
        await load_loop(one, 0.5, concurrency, index="call")
    results: dict[str, list[LoadResult]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [0.0, 0.0] for k in calls}  # this process, the node: CPU seconds
    for _ in range(rounds):
        for kind, one in calls.items():
            client0, node0 = time.process_time(), cpu_seconds(node_pid)
            results[kind].append(await load_loop(one, seconds, concurrency, index="call"))
            cpu[kind][0] += time.process_time() - client0
            cpu[kind][1] += cpu_seconds(node_pid) - node0
    out: dict[str, Any] = {}
    for kind, rs in results.items():
        merged = LoadResult(sum(x.calls for x in rs), sum(x.seconds for x in rs), [t for x in rs for t in x.latencies])
        out.update({f"{kind}_resolve_per_s": merged.rate, f"{kind}_resolve_p50_ms": merged.p50_ms, f"{kind}_resolve_p99_ms": merged.p99_ms})
        out[f"{kind}_client_cpu_us"] = cpu[kind][0] / merged.calls * 1e6
        out[f"{kind}_node_cpu_us"] = cpu[kind][1] / merged.calls * 1e6
    return out


class Tally:
    """Completed handshakes, latencies, elapsed time and CPU (peer process, this process) over several rounds.

    Each round is one :func:`load_loop` window (``one(i)``: initiator ``i``);
    the CPU readings bracket exactly that window, so the CPU per handshake
    is the load's and nothing else's.
    """

    def __init__(self, peer_pid: int) -> None:
        self.peer_pid = peer_pid
        self.n = 0
        self.lat: list[float] = []
        self.elapsed = 0.0
        self.cpu_peer = 0.0
        self.cpu_self = 0.0

    async def round(self, seconds: float, one: Callable[[int], Awaitable[object]], conc: int) -> None:
        """One measured window of ``conc`` initiators for ``seconds``, added to the tally."""
        c_peer, c_self = cpu_seconds(self.peer_pid), time.process_time()
        res = await load_loop(one, seconds, conc, index="caller")
        self.cpu_peer += cpu_seconds(self.peer_pid) - c_peer
        self.cpu_self += time.process_time() - c_self
        self.n += res.calls
        self.lat += res.latencies
        self.elapsed += res.seconds

    def result(self) -> dict[str, Any]:
        """rate (/s), p50 and p99 (ms), n, and cpu: (peer, this process) CPU ms per handshake."""
        lat = sorted(self.lat)
        return {
            "rate": self.n / self.elapsed,
            "p50": percentile(lat, 0.5) * 1000,
            "p99": percentile(lat, 0.99) * 1000,
            "n": self.n,
            "cpu": (self.cpu_peer / self.n * 1000, self.cpu_self / self.n * 1000),
        }


# --------------------------------------------------------------------------
# a node subprocess
# --------------------------------------------------------------------------


class NodeStartError(RuntimeError):
    """``didnode serve`` did not print its address; ``returncode``: its exit status (None if it had to be stopped)."""

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


def start_didnode(
    data: Path, network: str = "local", log: Path | None = None, timeout: float = 60.0, prefix: Sequence[str] = (), extra: Sequence[str] = ()
) -> tuple[subprocess.Popen[str], str]:
    """Start ``didnode serve`` on a free loopback port; return the process and its address.

    Its stderr goes to ``log`` (default: ``data``/../node.log), whose tail is
    shown when the node fails to start. ``prefix``: a wrapper command that
    execs the rest of the command line (so the returned process is the node
    itself), e.g. one that joins a memory cgroup first (bench/scale.py). ``extra``: more
    ``didnode serve`` options (e.g. limits).
    """
    log = log or data.parent / f"{data.name}.log"
    cmd = [*prefix, str(BIN / "didnode"), "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--network", network, "--log-level", "warning", *extra]
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline and not line:
        line = proc.stdout.readline().strip()
        if not line and proc.poll() is not None:
            break
    if not line:
        exited = proc.poll()
        stop_process(proc)
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise NodeStartError(f"didnode serve did not print its address within {timeout:.0f}s (exit {proc.returncode}): {tail}", exited)
    return proc, line


async def serve_on_loopback(server: Any) -> None:
    """Start a grpc.aio ``server`` on a free 127.0.0.1 port, print the address on stdout (the
    parent's :func:`start_server_script` reads it), and serve until SIGTERM or SIGINT."""
    import signal

    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def start_server_script(script: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Run ``script`` (a bench file whose ``--serve`` mode calls :func:`serve_on_loopback`) with
    ``--serve`` and ``args`` in a subprocess; returns it and the address it serves on."""
    proc = subprocess.Popen([sys.executable, script, "--serve", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        stop_process(proc)
        raise RuntimeError(f"{os.path.basename(script)} --serve did not start (exit {proc.returncode})")
    return proc, line


def stop_process(proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _status_kb(pid: int) -> dict[str, int]:
    """The memory lines of /proc/PID/status, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[name] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads')."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def rss_mb(pid: int) -> dict[str, float]:
    """Memory of process ``pid`` in MB (Linux /proc): VmRSS, its anonymous and file-backed parts, peak, children.

    ``rss_mb`` is VmRSS of the process itself: its heap (``rss_anon_mb``) plus
    the pages of mapped files it touched (``rss_file_mb``: mostly the LMDB
    map, pages the kernel can drop and re-read at will). ``children_rss_mb``
    is the VmRSS of its child processes (the signature verifier), whose pages
    are partly shared with the parent (fork).
    """
    me = _status_kb(pid)
    kids = 0
    for kid in _children(pid):
        try:
            kids += _status_kb(kid).get("VmRSS", 0)
        except OSError:
            continue
    return {
        "rss_mb": me.get("VmRSS", 0) / 1024,
        "rss_anon_mb": me.get("RssAnon", 0) / 1024,
        "rss_file_mb": me.get("RssFile", 0) / 1024,
        "rss_peak_mb": me.get("VmHWM", 0) / 1024,
        "children_rss_mb": kids / 1024,
    }


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    out: list[int] = []
    todo = _children(pid)
    while todo:
        kid = todo.pop()
        out.append(kid)
        todo += _children(kid)
    return out


def _pss_kb(pid: int) -> int:
    """Proportional set size of ``pid`` in kB (/proc/PID/smaps_rollup): shared pages divided among their users."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def tree_rss_mb(pid: int) -> dict[str, float]:
    """Memory of ``pid`` and all its descendants in MB: summed VmRSS, RssAnon, and PSS.

    Summed VmRSS counts a page shared by several of them (libraries, the
    LMDB map, pages inherited over fork) once per process; PSS divides each
    shared page among the processes that map it, so ``tree_pss_mb`` is what
    the tree holds without double counting. ``tree_processes`` includes ``pid``.
    """
    rss = anon = pss = n = 0
    for p in [pid, *descendants(pid)]:
        try:
            st = _status_kb(p)
            pss += _pss_kb(p)
        except OSError:
            continue  # exited meanwhile
        rss += st.get("VmRSS", 0)
        anon += st.get("RssAnon", 0)
        n += 1
    return {"tree_rss_mb": rss / 1024, "tree_rss_anon_mb": anon / 1024, "tree_pss_mb": pss / 1024, "tree_processes": n}


def mapped_rss_mb(pid: int, path: Path) -> float:
    """The resident pages of ``pid``'s mappings of ``path`` (/proc/PID/smaps), in MB: its share of RssFile that is the LMDB map."""
    target, kb, inside = str(path.resolve()), 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:  # a mapping's header line
                inside = len(head) == 6 and head[5].strip() == target
            elif inside and line.startswith("Rss:"):
                kb += int(line.split()[1])
    return kb / 1024


# --------------------------------------------------------------------------
# the node's store
# --------------------------------------------------------------------------


def lmdb_usage(ledger_dir: Path) -> dict[str, float]:
    """Pages in use by every database of the environment at ``ledger_dir`` (opened read-only; the node must be stopped).

    ``used_bytes``: branch + leaf + overflow pages of the main and every named
    database, times the page size (what the data needs; free pages that LMDB
    keeps for reuse are not counted). ``file_bytes``: the size of data.mdb.
    ``dids``: entries of the ``state`` database.
    """
    env = lmdb.open(str(ledger_dir), readonly=True, lock=False, max_dbs=64, readahead=False)
    try:
        psize = env.stat()["psize"]

        def pages(st: Mapping[str, Any]) -> int:
            return st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]

        used = pages(env.stat())
        dids = 0
        per_db: dict[str, float] = {}
        with env.begin() as txn:
            names = [bytes(k) for k, _ in txn.cursor()]
            for name in names:
                try:
                    db = env.open_db(name, txn=txn, create=False)
                except lmdb.Error:
                    continue  # a plain key of the main database, not a named database
                st = txn.stat(db)
                used += pages(st)
                per_db[name.decode(errors="replace")] = pages(st) * psize
                if name == b"state":
                    dids = st["entries"]
    finally:
        env.close()
    return {
        "used_bytes": used * psize,
        "file_bytes": os.path.getsize(ledger_dir / "data.mdb"),
        "dids": dids,
        **{f"db_{k}_bytes": v for k, v in per_db.items()},
    }


def grow_ledger(ledger_dir: Path, ops: Sequence[object], batch: int = 8192, sync: bool = False) -> float:
    """Apply signed operations to the store through the node's write path (bench/ledger.py's Pipeline); ops/s."""
    from ledger import Pipeline

    p = Pipeline(str(ledger_dir), sync=sync, batch=batch)
    try:
        total, seconds = 0, 0.0
        for part in chunks(list(ops), 50_000):
            t = time.perf_counter()
            p.run(list(part))
            seconds += time.perf_counter() - t
            total += len(part)
    finally:
        p.close()
    return total / seconds if seconds else 0.0


class DidSample:
    """A uniform random sample (reservoir) of the DIDs written so far, for resolving."""

    def __init__(self, size: int, seed: int = 11) -> None:
        self.size = size
        self.seen = 0
        self.items: list[str] = []
        self._rnd = random.Random(seed)

    def add(self, dids: Iterator[str] | Sequence[str]) -> None:
        """Offer each DID to the sample."""
        for did in dids:
            self.seen += 1
            if len(self.items) < self.size:
                self.items.append(did)
            else:
                j = self._rnd.randrange(self.seen)
                if j < self.size:
                    self.items[j] = did
