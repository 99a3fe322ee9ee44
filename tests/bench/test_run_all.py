"""bench/run_all.py (running the scripts) and bench/report.py (the table and the JSON report), on canned script outputs (no timing)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run_all"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ra = _load()
import report as rp  # noqa: E402  (on sys.path: run_all.py imports it from bench/)


def ok(name: str, **figures: object) -> Any:
    return rp.ScriptResult(name, rp.OK, 1.0, figures=dict(figures), command=f"bench/{name}.py")


def canned() -> dict[str, Any]:
    return {
        "ref_ed25519": ok("ref_ed25519", sign_per_s=60000.0, verify_per_s=20000.0),
        "ref_lmdb": ok("ref_lmdb", puts_per_s=150000.0, batch=8192, prefill=50000),
        "ref_grpc_echo": ok("ref_grpc_echo", unary_per_s=6000.0, unary_p50_ms=2.0, unary_p99_ms=4.0, stream_msgs_per_s=12000.0, concurrency=16),
        "ledger": ok("ledger", prefill_dids=20000, creates_per_s=12500.0, controller_creates_per_s=5000.0, rotations_per_s=7000.0, creates_with_trees_per_s=9500.0, rotations_with_trees_per_s=7000.0),
        "resolve": rp.ScriptResult("resolve", rp.FAILED, 3.0, error="exit status 1", stderr_tail="Traceback ...\nRuntimeError: boom", command="bench/resolve.py"),
        "kel": ok("kel", events_per_s=9000.0, events_with_trees_per_s=8000.0, identifiers=500),
        "keri_peer": rp.ScriptResult("keri_peer", rp.UNAVAILABLE, error="no Python >= 3.12.2 for keripy"),
        "cluster": rp.ScriptResult("cluster", rp.SKIPPED, error="full profile only"),
    }


def row(rows: list[dict], script: str, key: str, capability: str | None = None) -> dict:
    found = [r for r in rows if r["script"] == script and r["key"] == key and (capability is None or r["capability"] == capability)]
    assert found, (script, key)
    return found[0]


def test_parse_last_json_takes_the_last_non_empty_line() -> None:
    assert ra.parse_last_json("progress\n{\"a\": 1}\n\n") == {"a": 1}
    for bad, why in (("", "nothing"), ("{\"a\": 1}\nnot json", "not JSON"), ("[1, 2]", "not an object")):
        with pytest.raises(ValueError, match=why):
            ra.parse_last_json(bad)


def test_rows_have_figure_reference_ratio_and_verdict() -> None:
    rows = rp.build_rows(canned())
    apply = row(rows, "ledger", "creates_per_s", "durable ledger apply")
    assert apply["metric"] == "creates/s, ledger alone, fsync per batch, on 20,000 DIDs"
    assert (apply["figure"], apply["reference"]) == (12500.0, 20000.0)
    assert apply["ratio"] == pytest.approx(0.625)
    assert apply["met"] is True  # >= 12,000/s and ratio >= 0.5
    ctl = row(rows, "ledger", "controller_creates_per_s")
    assert ctl["met"] is False  # 5,000 < 8,000
    rot = row(rows, "ledger", "rotations_per_s")
    assert rot["met"] is None and rot["target"] is None  # no target
    trees = row(rows, "ledger", "creates_with_trees_per_s")
    assert trees["figure"] == 9500.0 and trees["met"] is True  # >= 9,000/s (issue #3)
    kel = row(rows, "kel", "events_per_s")
    assert kel["figure"] == 9000.0 and kel["ratio"] is None and kel["met"] is None
    assert "keri_peer" in kel["note"] and "3.12.2" in kel["note"]


def test_failed_skipped_and_unavailable_scripts_show_as_such() -> None:
    rows = rp.build_rows(canned())
    res = row(rows, "resolve", "resolve_per_s")
    assert res["status"] == rp.FAILED and res["figure"] is None and "exit status 1" in res["note"]
    assert res["metric"] == "resolves/s, … callers, … DIDs"  # label fields unknown without figures
    assert row(rows, "cluster", "creates_per_s")["status"] == rp.SKIPPED
    scripts_not_run = {"credentials", "auth", "provision", "transparency"}
    assert not any(r["script"] in scripts_not_run for r in rows)
    table = rp.render_table(rows)
    assert "FAILED" in table and "SKIPPED" in table and "12,500/s" in table and "0.62" in table
    assert table.count("resolve: exit status 1") == 1  # one note per failure, not one per row
    failures = rp.render_failures(canned())
    assert "resolve FAILED (exit status 1)" in failures and "RuntimeError: boom" in failures


def test_a_figure_missing_from_a_successful_script_fails_its_row() -> None:
    results = canned()
    results["ledger"] = ok("ledger", prefill_dids=1)
    apply = row(rp.build_rows(results), "ledger", "creates_per_s", "durable ledger apply")
    assert apply["status"] == rp.FAILED and "creates_per_s" in apply["note"]


def test_report_is_json_with_summary_references_and_scripts() -> None:
    results = canned()
    results["resolve"] = ok(
        "resolve", dids=20001, concurrency=16, resolve_per_s=3000.0, resolve_p50_ms=4.0, resolve_p99_ms=9.0, p99_growth=1.2,
        rss_mb=80.0, rss_anon_mb=25.0, lmdb_used_bytes_per_did=1900.0, sizes=[1000, 20000], points=[{"dids": 1001, "resolve_per_s": 3100.0}],
        echo_unary_per_s=5000.0, echo_unary_p50_ms=2.0, echo_unary_p99_ms=3.0,
    )  # fmt: skip
    report = rp.assemble("quick", results, {"cpus": 2}, "2026-01-01T00:00:00+00:00", 42.0)
    text = json.dumps(report)  # serializable as is
    back = json.loads(text)
    assert back["profile"] == "quick" and back["machine"] == {"cpus": 2}
    assert back["summary"]["scripts_failed"] == [] and back["summary"]["scripts_unavailable"] == ["keri_peer"]
    assert back["summary"]["scripts_skipped"] == ["cluster"]
    assert back["summary"]["targets_met"] + back["summary"]["targets_missed"] == sum(1 for r in back["rows"] if r["met"] is not None)
    # The resolve rows compare with the echo measured right after them (resolve.py --echo) ...
    assert back["scaling"] == {"points": [{"dids": 1001, "resolve_per_s": 3100.0}], "echo_unary_per_s": 5000.0, "lmdb_puts_per_s": 150000.0}
    resolve_rate = row(back["rows"], "resolve", "resolve_per_s")
    assert resolve_rate["ratio"] == pytest.approx(0.6) and resolve_rate["metric"] == "resolves/s, 16 callers, 20,001 DIDs"
    assert row(back["rows"], "resolve", "resolve_p99_ms")["ratio"] == pytest.approx(3.0)
    assert row(back["rows"], "resolve", "rss_anon_mb")["met"] is True
    # ... and the plot falls back to ref_grpc_echo's when resolve.py measured none.
    del results["resolve"].figures["echo_unary_per_s"]
    assert rp.scaling_points(results)["echo_unary_per_s"] == 6000.0
    assert row(back["rows"], "resolve", "p99_growth")["metric"] == "p99 at largest / smallest size (1000,20000); target judged at 1M by make bench-scale"
    assert {r["key"] for r in back["references"]} >= {"sign_per_s", "verify_per_s", "puts_per_s", "unary_per_s"}
    assert back["scripts"]["keri_peer"] == {"status": "unavailable", "seconds": 0.0, "command": "", "error": "no Python >= 3.12.2 for keripy"}


def test_render_prints_heading_table_references_and_summary() -> None:
    machine = {"cpus": 2, "load_avg_1m_start": 1.0, "load_avg_1m_end": 2.5}
    text = rp.render(rp.assemble("quick", canned(), machine, "2026-01-01T00:00:00+00:00", 42.0), canned())
    lines = text.splitlines()
    assert lines[0] == "didnode bench, quick profile, 2026-01-01T00:00:00+00:00, 2 CPUs, load 1.0 → 2.5"
    assert lines[1].split()[:3] == ["capability", "|", "figure"]  # the table follows
    assert "references measured in this run:" in lines and "  raw Ed25519 sign, pynacl, 1 thread: 60,000/s" in lines
    assert "== resolve FAILED (exit status 1): bench/resolve.py" in lines
    assert lines[-1].endswith("failed: resolve; unavailable: keri_peer; 42s in all")


def test_run_script_reports_failures_without_raising(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text("import sys\nprint('hello', file=sys.stderr)\nprint('x')\nprint('{\"v\": 2}')\n")
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nprint('about to fail', file=sys.stderr)\nsys.exit(3)\n")
    silent = tmp_path / "silent.py"
    silent.write_text("print('no json here')\n")
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(30)\n")
    res = ra.run_script(ra.Script("good", str(good)), sys.executable)
    assert res.status == rp.OK and res.figures == {"v": 2}
    res = ra.run_script(ra.Script("crash", str(crash)), sys.executable)
    assert res.status == rp.FAILED and res.error == "exit status 3" and "about to fail" in res.stderr_tail
    res = ra.run_script(ra.Script("silent", str(silent)), sys.executable)
    assert res.status == rp.FAILED and "not JSON" in res.error
    res = ra.run_script(ra.Script("slow", str(slow), timeout=0.5), sys.executable)
    assert res.status == rp.FAILED and "timed out" in res.error and res.seconds < 15
    assert ra.run_script(ra.Script("cluster", "cluster.py", skip="full only"), sys.executable).status == rp.SKIPPED


def test_profiles_name_existing_scripts_and_every_row_is_fed() -> None:
    for profile in ("quick", "full"):
        scripts = ra.profile_scripts(profile)
        assert all((BENCH / s.file).exists() for s in scripts), profile
        names = {s.name for s in scripts}
        assert {r.script for r in rp.ROWS} | {r.ref_script for r in rp.ROWS if r.ref_script} <= names
    quick = {s.name: s for s in ra.profile_scripts("quick")}
    assert quick["cluster"].skip and quick["keri_peer"].env == "keri"
    assert sum(s.timeout for s in quick.values() if not s.skip) < 20 * 60  # bounded even when everything hangs
    with pytest.raises(ValueError):
        ra.profile_scripts("huge")
