"""bench/scale.py's memory-limited phase (bench/scale_limited.py): its report and verdicts on canned figures, and the cgroup plumbing that needs no root."""

from __future__ import annotations

import argparse
import importlib.util
import mmap
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module
    spec.loader.exec_module(module)
    return module


sc = _load()
import scale_limited as sl  # noqa: E402  (on sys.path: scale.py imports it from bench/)
import serving  # noqa: E402

FREE = {"dids": 1_000_001, "resolve_per_s": 3600.0, "resolve_p50_ms": 4.0, "resolve_p99_ms": 8.0, "resolve_1_caller_p99_ms": 1.0}


def served() -> dict[str, Any]:
    return {
        "limit_mb": 300.0,
        "status": "ok",
        "dids": 1_000_001,
        "resolve_per_s": 3000.0,
        "resolve_p50_ms": 5.0,
        "resolve_p99_ms": 12.0,
        "resolve_1_caller_p50_ms": 0.9,
        "resolve_1_caller_p99_ms": 2.0,
        "rss_mb": 250.0,
        "rss_anon_mb": 24.0,
        "rss_file_mb": 226.0,
        "rss_data_mdb_mb": 200.0,
        "tree_rss_mb": 350.0,
        "tree_pss_mb": 290.0,
        "tree_rss_anon_mb": 78.0,
        "tree_processes": 4,
        "cgroup_usage_mb": 299.0,
        "cgroup_peak_mb": 300.0,
        "cgroup_anon_mb": 78.0,
        "cgroup_file_mb": 221.0,
        "cgroup_limit_hits": 1234,
        "cgroup_oom_kills": 0,
        "node_exit": None,
        "resolve_p99_ratio_to_unlimited": 1.5,
        "resolve_1_caller_p99_ratio_to_unlimited": 2.0,
    }


def args(limit: float = 300.0) -> argparse.Namespace:
    return argparse.Namespace(memory_limit_mb=limit, limited_warmup_seconds=0.0, seconds=0.1, latency_seconds=0.0, concurrency=1)


def test_scale_runs_the_limited_phase_of_scale_limited() -> None:
    assert (sc.limited_phase, sc.limited_verdicts, sc.describe_limited) == (sl.limited_phase, sl.limited_verdicts, sl.describe_limited)
    assert sc.mapped_rss_mb is serving.mapped_rss_mb


def test_limited_verdicts_distinguish_met_missed_and_not_run() -> None:
    assert sl.limited_verdicts(served()) | {"memory_limited": None} == {"memory_limited": None, "rss_limited_status": "ok", "rss_limited_met": True}
    assert sl.limited_verdicts({"status": "oom"})["rss_limited_met"] is False
    assert sl.limited_verdicts({"status": "failed"})["rss_limited_met"] is False
    assert sl.limited_verdicts({"status": "unavailable", "reason": "x"})["rss_limited_met"] is None
    assert sl.limited_verdicts({})["rss_limited_status"] == "skipped"


def test_describe_limited_shows_rss_peak_and_p99_ratio() -> None:
    text = sl.describe_limited(served(), FREE)
    for part in ("300 MB memory cgroup", "served the whole load", "VmRSS 250 MB", "anon 24", "data.mdb 200", "3 child processes 350 MB", "cgroup peak 300 MB", "OOM kills 0", "p99 1.50x the unconstrained 8.00 ms"):
        assert part in text, (part, text)
    oom = sl.describe_limited({"limit_mb": 60.0, "status": "oom", "dids": 20001, "cgroup_peak_mb": 60.0, "cgroup_oom_kills": 1, "node_exit": -9, "error": "NodeStartError: boom\nmore"}, FREE)
    assert "OOM-KILLED" in oom and "node exit -9" in oom and "boom" in oom and "more" not in oom and "resolves/s" not in oom
    assert sl.describe_limited({"limit_mb": 300.0, "status": "unavailable", "reason": "not root"}) == "under a 300 MB memory cgroup: unavailable: not root"


def test_limited_phase_reports_unavailable_and_skipped_without_raising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sl.limited_phase(tmp_path, [], args(0), FREE)["status"] == "skipped"

    def no_cgroup(cls: type, name: str, limit: int) -> Any:
        raise sl.CgroupUnavailable("not root")

    monkeypatch.setattr(sl.MemoryCgroup, "create", classmethod(no_cgroup))
    assert sl.limited_phase(tmp_path, [], args(), FREE) == {"limit_mb": 300.0, "status": "unavailable", "reason": "not root"}


def test_create_says_why_when_the_hierarchy_is_not_writable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sl.os, "access", lambda path, mode: False)
    with pytest.raises(sl.CgroupUnavailable):
        sl.MemoryCgroup.create(f"didnode-bench-test-{os.getpid()}", 300 * sl.MiB)


def test_stats_read_v1_and_v2_files(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    v1.mkdir()
    for name, value in {
        "memory.usage_in_bytes": str(100 * sl.MiB),
        "memory.max_usage_in_bytes": str(300 * sl.MiB),
        "memory.failcnt": "7",
        "memory.memsw.failcnt": "2",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        "memory.stat": f"cache {20 * sl.MiB}\nrss {78 * sl.MiB}\nmapped_file {19 * sl.MiB}\n",
    }.items():
        (v1 / name).write_text(value + "\n")
    got = sl.MemoryCgroup(v1, 1, 300 * sl.MiB).stats()
    assert got == {
        "cgroup_usage_mb": 100.0,
        "cgroup_peak_mb": 300.0,
        "cgroup_limit_hits": 9,
        "cgroup_oom_kills": 1,
        "cgroup_anon_mb": 78.0,
        "cgroup_file_mb": 20.0,
        "cgroup_file_mapped_mb": 19.0,
    }
    v2 = tmp_path / "v2"
    v2.mkdir()
    for name, value in {
        "memory.current": str(100 * sl.MiB),
        "memory.events": "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
        "memory.stat": f"anon {78 * sl.MiB}\nfile {20 * sl.MiB}\nfile_mapped {19 * sl.MiB}\n",
    }.items():
        (v2 / name).write_text(value)
    got = sl.MemoryCgroup(v2, 2, 300 * sl.MiB).stats()
    assert got["cgroup_peak_mb"] is None  # memory.peak: kernels before 5.19 have none
    assert (got["cgroup_limit_hits"], got["cgroup_oom_kills"], got["cgroup_anon_mb"]) == (5, 1, 78.0)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux /proc and /bin/sh")
def test_join_then_exec_execs_the_command_after_writing_its_own_pid(tmp_path: Path) -> None:
    import subprocess

    cg = sl.MemoryCgroup(tmp_path, 1, 0)
    done = subprocess.run([*cg.join_then_exec(), "sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    assert (tmp_path / "cgroup.procs").read_text().strip() == done.stdout.strip()  # the same process: exec, not a child
    cg = sl.MemoryCgroup(tmp_path / "missing", 1, 0)
    assert subprocess.run([*cg.join_then_exec(), "true"], capture_output=True).returncode != 0  # never runs outside it


@pytest.mark.skipif(sys.platform != "linux", reason="Linux /proc/PID/smaps and mincore")
def test_page_cache_and_mapped_rss_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "data.mdb"
    path.write_bytes(os.urandom(4 * mmap.PAGESIZE))
    assert 0 <= sl.page_cache_mb(path) <= 4 * mmap.PAGESIZE / sl.MiB
    sl.drop_page_cache(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert m[0] == path.read_bytes()[0]  # touch the first page
        assert serving.mapped_rss_mb(os.getpid(), path) >= mmap.PAGESIZE / sl.MiB
    assert serving.mapped_rss_mb(os.getpid(), path) == 0.0
