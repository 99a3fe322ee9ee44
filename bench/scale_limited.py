"""bench/scale.py's memory-limited phase: the node serving the largest ledger inside a memory cgroup.

At the largest checkpoint, after the unconstrained measurement,
:func:`limited_phase` writes data.mdb back and drops it from the page cache
(that file only: a page already cached stays charged to the cgroup that read
it, this bench's), makes a memory cgroup of its own limited to
--memory-limit-mb MiB (:class:`MemoryCgroup`: cgroup v1
``memory.limit_in_bytes`` or v2 ``memory.max``), starts ``didnode serve``
through a ``sh`` wrapper that joins the cgroup and then execs the node (so
the node and the worker processes it spawns never run outside it), and runs
the checkpoint's resolve loads again after an unmeasured warm-up. Reported:
resolves/s, p50/p99 and their ratios to the unconstrained figures, the
node's and its children's memory, the cgroup's usage, peak, limit hits and
OOM kills (:func:`limited_verdicts`, :func:`describe_limited`). The cgroup is
removed afterwards, also on failure; without root or a memory controller the
phase is reported as unavailable, with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import mmap
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resolve import resolve_load  # noqa: E402
from serving import NodeStartError, mapped_rss_mb, rss_mb, start_didnode, stop_process, tree_rss_mb  # noqa: E402

NET = "local"
MiB = 1024 * 1024
START_TIMEOUT = 60.0


def log(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# a memory cgroup of its own
# --------------------------------------------------------------------------


class CgroupUnavailable(Exception):
    """No memory cgroup can be made here; the message says why."""


def _read(path: Path) -> str:
    return path.read_text().strip()


def _keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file (``name value`` per line) as a dict; empty when it does not exist."""
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
    except OSError:
        pass
    return out


def swap_bytes() -> int:
    """SwapTotal of /proc/meminfo, in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("SwapTotal:"):
            return int(line.split()[1]) * 1024
    return 0


class MemoryCgroup:
    """A child memory cgroup limited to ``limit`` bytes (swap included), made for one node and removed after.

    cgroup v2 when /sys/fs/cgroup/cgroup.controllers exists and lists
    ``memory`` (``memory.max``, ``memory.swap.max``, ``memory.peak``,
    ``memory.events``); else the v1 memory hierarchy from /proc/mounts
    (``memory.limit_in_bytes``, and ``memory.memsw.limit_in_bytes`` when
    the machine has swap, ``memory.max_usage_in_bytes``, ``memory.failcnt``,
    ``memory.oom_control``). On v1 it is made inside the bench's own memory
    cgroup (the supervisor's limits keep covering the node); on v2, whose
    "no internal processes" rule forbids a limited child of a cgroup that
    holds processes, directly under the root.
    """

    def __init__(self, path: Path, version: int, limit: int) -> None:
        self.path, self.version, self.limit = path, version, limit

    @classmethod
    def create(cls, name: str, limit: int) -> "MemoryCgroup":
        """Make the cgroup and set its limit; CgroupUnavailable (with the reason) when that cannot be done."""
        if sys.platform != "linux":
            raise CgroupUnavailable(f"not Linux ({sys.platform})")
        v2 = Path("/sys/fs/cgroup")
        if (v2 / "cgroup.controllers").exists():
            if "memory" not in _read(v2 / "cgroup.controllers").split():
                raise CgroupUnavailable("cgroup v2 without the memory controller")
            if "memory" not in _read(v2 / "cgroup.subtree_control").split():
                raise CgroupUnavailable("cgroup v2: memory is not enabled in /sys/fs/cgroup/cgroup.subtree_control")
            root, version = v2, 2
        else:
            mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
            roots = [m[1] for m in mounts if len(m) > 3 and m[2] == "cgroup" and "memory" in m[3].split(",")]
            if not roots:
                raise CgroupUnavailable("no cgroup v2 and no cgroup v1 memory hierarchy mounted")
            root, version = Path(roots[0]), 1
            # Nested inside this process's own memory cgroup, so that whatever limits and
            # accounting the machine's supervisor applies to the bench also cover the node.
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _, controllers, where = line.split(":", 2)
                if "memory" in controllers.split(",") and (root / where.lstrip("/")).is_dir():
                    root = root / where.lstrip("/")
                    break
        if not os.access(root, os.W_OK):
            raise CgroupUnavailable(f"{root} is not writable (euid {os.geteuid()}; creating a cgroup needs root)")
        path = root / name
        try:
            path.mkdir()
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create {path}: {exc}") from None
        cg = cls(path, version, limit)
        try:
            if version == 2:
                (path / "memory.max").write_text(str(limit))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
            else:
                (path / "memory.limit_in_bytes").write_text(str(limit))
                # With swap, memory+swap gets the same limit (else the node could page its heap out and
                # stay under the limit); without swap it changes nothing, and it would hide the limit hits
                # (this kernel counts no failcnt on either counter once memsw is limited).
                if swap_bytes() > 0 and (path / "memory.memsw.limit_in_bytes").exists():
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
        except OSError as exc:
            cg.remove()
            raise CgroupUnavailable(f"cannot set the limit in {path}: {exc}") from None
        return cg

    def join_then_exec(self) -> list[str]:
        """A command prefix that moves itself into the cgroup and then execs the rest: the node never runs outside it."""
        return ["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "join-cgroup", str(self.path / "cgroup.procs")]

    def pids(self) -> list[int]:
        """The processes in the cgroup."""
        try:
            return [int(x) for x in _read(self.path / "cgroup.procs").split()]
        except OSError:
            return []

    def stats(self) -> dict[str, Any]:
        """Usage now, peak usage, limit hits, OOM kills, and the charged anonymous and file memory, in MB."""
        f = self.path
        if self.version == 2:
            events = _keyed(f / "memory.events")
            stat = _keyed(f / "memory.stat")
            peak = int(_read(f / "memory.peak")) / MiB if (f / "memory.peak").exists() else None
            return {
                "cgroup_usage_mb": int(_read(f / "memory.current")) / MiB,
                "cgroup_peak_mb": peak,
                "cgroup_limit_hits": events.get("max", 0),
                "cgroup_oom_kills": events.get("oom_kill", 0),
                "cgroup_anon_mb": stat.get("anon", 0) / MiB,
                "cgroup_file_mb": stat.get("file", 0) / MiB,
                "cgroup_file_mapped_mb": stat.get("file_mapped", 0) / MiB,
            }
        oom = _keyed(f / "memory.oom_control")
        stat = _keyed(f / "memory.stat")
        memsw_hits = int(_read(f / "memory.memsw.failcnt")) if (f / "memory.memsw.failcnt").exists() else 0
        return {
            "cgroup_usage_mb": int(_read(f / "memory.usage_in_bytes")) / MiB,
            "cgroup_peak_mb": int(_read(f / "memory.max_usage_in_bytes")) / MiB,
            # a charge is refused by the memory+swap counter or by the memory counter, never both
            "cgroup_limit_hits": int(_read(f / "memory.failcnt")) + memsw_hits,
            "cgroup_oom_kills": oom.get("oom_kill", 0),
            "cgroup_anon_mb": stat.get("rss", 0) / MiB,
            "cgroup_file_mb": stat.get("cache", 0) / MiB,
            "cgroup_file_mapped_mb": stat.get("mapped_file", 0) / MiB,
        }

    def kill_all(self) -> None:
        """SIGKILL every process in it: only the node this bench started and the node's children get there."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        """Kill whatever is left in it, then remove it."""
        deadline = time.monotonic() + 10
        while True:
            left = self.pids()
            if not left:
                break
            if time.monotonic() > deadline:
                log(f"memory-limited phase: cannot empty {self.path} (pids {left}); left in place")
                return
            self.kill_all()
            time.sleep(0.1)
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)  # the last exits are still being accounted
        log(f"memory-limited phase: cannot remove {self.path}")


# --------------------------------------------------------------------------
# the phase
# --------------------------------------------------------------------------


def page_cache_mb(path: Path) -> float:
    """How much of ``path`` is in the page cache, in MB (mincore on a fresh mapping, which faults nothing in)."""
    size = path.stat().st_size
    if size == 0:
        return 0.0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            vec = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return sum(b & 1 for b in bytes(vec)) * mmap.PAGESIZE / MiB
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def drop_page_cache(path: Path) -> None:
    """Write back ``path``'s dirty pages and drop its pages from the page cache (that file only; nobody may map it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def limited_phase(data: Path, sample: list[str], args: argparse.Namespace, free: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's resolve load again, with the node (and its worker processes) in a memory cgroup of --memory-limit-mb.

    data.mdb's pages are dropped from the page cache first: a page already
    cached stays charged to the cgroup that read it (this bench's), so
    without the drop the node could map the whole ledger without any of it
    counting against its limit. ``free`` is the unconstrained checkpoint, for
    the latency ratios. ``status``: ok (served the whole load, nothing
    OOM-killed), oom (the kernel killed a process of the cgroup), failed
    (the node did not start or a call failed for another reason),
    unavailable (no cgroup here: ``reason``), skipped (--memory-limit-mb 0).
    """
    t0 = time.perf_counter()
    out: dict[str, Any] = {"limit_mb": args.memory_limit_mb}
    if args.memory_limit_mb <= 0:
        return {**out, "status": "skipped", "reason": "--memory-limit-mb 0"}
    try:
        cg = MemoryCgroup.create(f"didnode-bench-{os.getpid()}", int(args.memory_limit_mb * MiB))
    except CgroupUnavailable as exc:
        return {**out, "status": "unavailable", "reason": str(exc)}
    out.update({"cgroup_version": cg.version, "cgroup": str(cg.path), "dids": free["dids"]})
    mdb = data / "ledger" / "data.mdb"
    error = unavailable = ""
    node_exit: int | None = None
    try:
        proc = None
        serving: dict[str, Any] = {}
        try:
            drop_page_cache(mdb)
            out["data_mdb_mb"] = mdb.stat().st_size / MiB
            out["data_mdb_cached_mb_at_start"] = cached = page_cache_mb(mdb)
            if cached > 1 + 0.01 * out["data_mdb_mb"]:
                raise CgroupUnavailable(
                    f"{cached:.0f} of data.mdb's {out['data_mdb_mb']:.0f} MB stay in the page cache after dropping them (tmpfs? "
                    "another process mapping it?): they would stay charged to this bench, not to the node's cgroup"
                )
            # If the OOM killer takes the node but not its workers, they keep its stdout open and
            # start_didnode's readline would wait for them: past the start timeout, kill the cgroup.
            watchdog = threading.Timer(START_TIMEOUT + 5, cg.kill_all)
            watchdog.start()
            try:
                proc, address = start_didnode(
                    data, NET, log=data.parent / "node-limited.log", timeout=START_TIMEOUT, prefix=cg.join_then_exec()
                )
            finally:
                watchdog.cancel()
            out["node_in_cgroup"] = proc.pid in cg.pids()
            out["cgroup_processes_at_start"] = len(cg.pids())
            if args.limited_warmup_seconds > 0:
                asyncio.run(resolve_load(address, sample, args.limited_warmup_seconds, args.concurrency))
            loaded = asyncio.run(resolve_load(address, sample, args.seconds, args.concurrency))
            out.update({"resolve_per_s": loaded.rate, "resolve_p50_ms": loaded.p50_ms, "resolve_p99_ms": loaded.p99_ms})
            if args.latency_seconds > 0:
                single = asyncio.run(resolve_load(address, sample[::-1], args.latency_seconds, 1))
                out.update({"resolve_1_caller_per_s": single.rate, "resolve_1_caller_p50_ms": single.p50_ms, "resolve_1_caller_p99_ms": single.p99_ms})
            out.update(rss_mb(proc.pid))
            out["rss_data_mdb_mb"] = mapped_rss_mb(proc.pid, mdb)
            out.update(tree_rss_mb(proc.pid))
            out["cgroup_processes"] = len(cg.pids())
            serving = cg.stats()  # while the node still holds its memory
        except CgroupUnavailable as exc:
            unavailable = str(exc)
        except (Exception, SystemExit) as exc:  # resolve_load raises SystemExit (with a message) on a wrong answer
            if isinstance(exc, SystemExit) and not isinstance(exc.code, str):
                raise  # SIGTERM (common.py) or an exit: stop here, through the finally blocks
            error = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            if isinstance(exc, NodeStartError):
                node_exit = exc.returncode
        finally:
            if proc is not None:
                node_exit = proc.poll()
                stop_process(proc)
        end = cg.stats()
        # usage and its parts as the load ended (when the node lived that long); peak, limit hits and OOM kills over the whole phase
        out.update({**end, **{k: v for k, v in serving.items() if k in ("cgroup_usage_mb", "cgroup_anon_mb", "cgroup_file_mb", "cgroup_file_mapped_mb")}})
        if not serving:
            for k in ("cgroup_usage_mb", "cgroup_anon_mb", "cgroup_file_mb", "cgroup_file_mapped_mb"):
                out.pop(k, None)
    finally:
        cg.remove()
    if unavailable:
        return {**out, "status": "unavailable", "reason": unavailable, "seconds": time.perf_counter() - t0}
    out["node_exit"] = node_exit  # None: it was still serving when the load ended
    # A SIGKILL before we stopped it: nobody else here sends one but the kernel's OOM killer.
    out["oom_killed"] = bool(out.get("cgroup_oom_kills")) or node_exit == -signal.SIGKILL
    if error:
        out["error"] = error
    out["status"] = "oom" if out["oom_killed"] else "failed" if error or node_exit is not None else "ok"
    out["seconds"] = time.perf_counter() - t0
    for key in ("resolve_p99_ms", "resolve_p50_ms", "resolve_1_caller_p99_ms", "resolve_1_caller_p50_ms", "resolve_per_s"):
        if isinstance(out.get(key), float) and free.get(key):
            out[f"{key.removesuffix('_ms')}_ratio_to_unlimited"] = out[key] / free[key]
    return out


def limited_verdicts(limited: dict[str, Any]) -> dict[str, Any]:
    """The limited phase in the report: the phase itself, and whether the node served the load within the limit (None: not run)."""
    status = limited.get("status", "skipped")
    return {
        "memory_limited": limited,
        "rss_limited_status": status,
        "rss_limited_met": None if status in ("unavailable", "skipped") else status == "ok",
    }


def describe_limited(m: dict[str, Any], free: dict[str, Any] | None = None) -> str:
    """One line on the limited phase (with ``free``, the unconstrained checkpoint, for the comparison)."""
    status = m.get("status", "skipped")
    head = f"under a {m.get('limit_mb', 0):.0f} MB memory cgroup"
    if status in ("unavailable", "skipped"):
        return f"{head}: {status}: {m.get('reason', '')}"

    def f(key: str, fmt: str = ".0f") -> str:
        v = m.get(key)
        return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"

    verdict = {"ok": "served the whole load, nothing OOM-killed", "oom": "OOM-KILLED", "failed": "FAILED"}[status]
    parts = [f"{head} ({m.get('dids', 0):,} DIDs): {verdict}"]
    if "resolve_per_s" in m:
        parts.append(
            f"{f('resolve_per_s', ',.0f')} resolves/s, p50 {f('resolve_p50_ms', '.2f')} ms, p99 {f('resolve_p99_ms', '.2f')} ms; "
            f"1 caller p50 {f('resolve_1_caller_p50_ms', '.2f')} ms, p99 {f('resolve_1_caller_p99_ms', '.2f')} ms"
        )
    if "rss_mb" in m:
        parts.append(
            f"node VmRSS {f('rss_mb')} MB (anon {f('rss_anon_mb')}, file {f('rss_file_mb')}, of which data.mdb {f('rss_data_mdb_mb')}); "
            f"with its {max(int(m.get('tree_processes', 1)) - 1, 0)} child processes {f('tree_rss_mb')} MB (PSS {f('tree_pss_mb')}, anon {f('tree_rss_anon_mb')})"
        )
    parts.append(
        f"cgroup peak {f('cgroup_peak_mb')} MB, at the end of the load {f('cgroup_usage_mb')} MB (anon {f('cgroup_anon_mb')}, file {f('cgroup_file_mb')}); "
        f"limit hits {f('cgroup_limit_hits', ',d')}, OOM kills {f('cgroup_oom_kills', 'd')}, node exit {m.get('node_exit', 'n/a')}"
    )
    if free is not None and "resolve_p99_ratio_to_unlimited" in m:
        parts.append(
            f"p99 {f('resolve_p99_ratio_to_unlimited', '.2f')}x the unconstrained {free['resolve_p99_ms']:.2f} ms at the same size"
            + (f" (1 caller {f('resolve_1_caller_p99_ratio_to_unlimited', '.2f')}x)" if "resolve_1_caller_p99_ratio_to_unlimited" in m else "")
        )
    if m.get("error"):
        parts.append(f"error: {m['error'].splitlines()[0][:300]}")
    return "; ".join(parts)
