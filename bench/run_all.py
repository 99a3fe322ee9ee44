"""One benchmark suite: run the bench/ scripts, print one table, write JSON and a plot.

Every bench script prints one JSON object of its figures on its last stdout
line. This runs them one after another as subprocesses (never two at once:
the machine has 2 cores), each in its own process group with a time limit,
and assembles, for each capability, the figure, the reference measured in
the same run, their ratio, the target and whether it is met:

    capability | figure | reference (same run) | ratio | target | met?

(which figure is compared with which reference and target, the table and
the JSON report: bench/report.py). A script that fails, times out or prints
no JSON shows as failed in the table with the tail of its stderr; the rest
of the run goes on. keripy runs in the benchmark's own environment
(bench/.venv-keri); when that cannot be used the keripy row says so and
why. The cluster benchmark (nats-server) is in the full profile only.

Profiles: ``quick`` (``make bench-quick``, under two minutes) and ``full``
(``make bench``). Output: the table on stdout, then the JSON report
(default ``bench/results/latest.json`` for full, ``bench/results/quick.json``
for quick) and a PNG of throughput and resolve latency against ledger size
beside it (drawn by bench/plot.py with matplotlib from bench/.venv-keri).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
KERI_PYTHON = HERE / ".venv-keri" / "bin" / "python"

sys.path.insert(0, str(HERE))
# The table and the report (what the results mean) live in report.py; this file runs the scripts.
from report import FAILED, OK, SKIPPED, UNAVAILABLE, ScriptResult, assemble, machine_info, render  # noqa: E402


# --------------------------------------------------------------------------
# what runs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """One bench script invocation: ``bench/<file>.py`` with ``args``, in the project's or keripy's environment."""

    name: str
    file: str
    args: tuple[str, ...] = ()
    timeout: float = 600.0
    env: str = "project"  # or "keri": bench/.venv-keri
    skip: str = ""  # non-empty: not run in this profile, and why


def profile_scripts(profile: str) -> list[Script]:
    """The scripts of a profile, in the order they run (references first)."""
    if profile == "quick":
        return [
            Script("ref_ed25519", "ref_ed25519.py", ("--n", "20000", "--rounds", "2"), 60),
            Script("ref_lmdb", "ref_lmdb.py", ("--prefill", "50000", "--batches", "4"), 60),
            Script("ref_grpc_echo", "ref_grpc_echo.py", ("--seconds", "2"), 60),
            Script("ledger", "ledger.py", ("--prefill", "20000", "--n", "5000"), 120),
            Script("resolve", "resolve.py", ("--sizes", "1000,5000,20000", "--apply-n", "500", "--seconds", "2", "--echo"), 120),
            Script("credentials", "credentials.py", ("--quick",), 60),
            Script("auth", "auth.py", ("--seconds", "2", "--rounds", "1", "--warmup", "0.5"), 90),
            Script("provision", "provision.py", ("--count", "2000", "--governed"), 150),
            Script("transparency", "transparency.py", ("--prefill", "20000", "--n", "2000", "--proofs", "500"), 90),
            Script("kel", "kel.py", ("--identifiers", "500"), 60),
            Script("witness", "witness.py", ("--quick",), 90),
            Script("data", "data.py", ("--quick",), 90),
            Script("keri_peer", "keri_peer.py", ("--identifiers", "500"), 90, env="keri"),
            Script("cluster", "cluster.py", (), 600, skip="full profile only (starts three nats-servers and three nodes)"),
            Script("abuse", "abuse.py", (), 300, skip="full profile only (floods a node for about a minute)"),
        ]
    if profile == "full":
        return [
            Script("ref_ed25519", "ref_ed25519.py", (), 120),
            Script("ref_lmdb", "ref_lmdb.py", (), 300),
            Script("ref_grpc_echo", "ref_grpc_echo.py", ("--seconds", "5"), 120),
            Script("ledger", "ledger.py", (), 900),
            Script("resolve", "resolve.py", ("--sizes", "10000,50000,200000", "--apply-n", "5000", "--seconds", "5", "--echo"), 900),
            Script("credentials", "credentials.py", (), 300),
            Script("auth", "auth.py", (), 300),
            Script("provision", "provision.py", ("--governed", "--rounds", "2"), 1200),
            Script("transparency", "transparency.py", (), 1200),
            Script("kel", "kel.py", ("--identifiers", "2000"), 300),
            Script("witness", "witness.py", (), 180),
            Script("data", "data.py", (), 600),
            Script("keri_peer", "keri_peer.py", ("--identifiers", "2000", "--nosync"), 600, env="keri"),
            Script("cluster", "cluster.py", (), 900),
            Script("abuse", "abuse.py", (), 300),
        ]
    raise ValueError(f"unknown profile {profile!r} (quick or full)")


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------


def parse_last_json(stdout: str) -> dict[str, Any]:
    """The JSON object on the last non-empty line of ``stdout`` (the bench contract); ValueError otherwise."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("printed nothing on stdout")
    try:
        value = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"last stdout line is not JSON ({exc}): {lines[-1][:200]!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"last stdout line is JSON but not an object: {lines[-1][:200]!r}")
    return value


def tail(text: str, lines: int = 15, chars: int = 2500) -> str:
    """The last ``lines`` lines of ``text``, at most ``chars`` characters."""
    return "\n".join(text.rstrip().splitlines()[-lines:])[-chars:]


def keri_problem() -> str | None:
    """Why bench/.venv-keri cannot run keripy now (None when it can)."""
    from keri_env import problem

    return problem()


def run_script(script: Script, python: str) -> ScriptResult:
    """Run one script to completion (or its time limit) and read its figures."""
    if script.skip:
        return ScriptResult(script.name, SKIPPED, error=script.skip)
    if script.env == "keri":
        why = keri_problem()
        if why:
            return ScriptResult(script.name, UNAVAILABLE, error=why)
        python = str(KERI_PYTHON)
    cmd = [python, str(HERE / script.file), *script.args]
    shown = " ".join(os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in cmd)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=script.timeout)
    except (KeyboardInterrupt, SystemExit):  # its own session gets neither the terminal's SIGINT nor our SIGTERM
        _kill_group(proc)
        raise
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return ScriptResult(
            script.name, FAILED, time.perf_counter() - t, error=f"timed out after {script.timeout:.0f}s", stderr_tail=tail(err or ""), command=shown
        )
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        return ScriptResult(script.name, FAILED, seconds, error=f"exit status {proc.returncode}", stderr_tail=tail(err), command=shown)
    try:
        figures = parse_last_json(out)
    except ValueError as exc:
        return ScriptResult(script.name, FAILED, seconds, error=str(exc), stderr_tail=tail(err), command=shown)
    return ScriptResult(script.name, OK, seconds, figures=figures, stderr_tail=tail(err), command=shown)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM: leave through SystemExit, so that the running script's process group is stopped too."""
    raise SystemExit(f"run_all: terminated by signal {signum}")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the script's process group (it and the nodes/servers it started), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def draw_plot(report_path: Path, png: Path) -> dict[str, Any]:
    """Run bench/plot.py in bench/.venv-keri (matplotlib lives there, never in didnode's environment)."""
    why = keri_problem()
    if why:
        return {"status": UNAVAILABLE, "reason": f"the plot needs matplotlib from bench/.venv-keri: {why}"}
    done = subprocess.run([str(KERI_PYTHON), str(HERE / "plot.py"), str(report_path), str(png)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    if done.returncode != 0:
        return {"status": FAILED, "reason": tail(done.stderr, 5)}
    return {"status": OK, "path": os.path.relpath(png, ROOT)}


def main() -> None:
    """Run the profile, print the table, write the report and the plot."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=["quick", "full"], default="full")
    ap.add_argument("--only", default="", help="comma-separated script names to run (the rest is left out of the table)")
    ap.add_argument("--out", default=None, help="report path (default bench/results/latest.json, quick: bench/results/quick.json)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    scripts = profile_scripts(args.profile)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            raise SystemExit(f"run_all: unknown script(s) {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in scripts)}")
        scripts = [s for s in scripts if s.name in wanted]
    out = Path(args.out) if args.out else RESULTS / ("latest.json" if args.profile == "full" else "quick.json")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_info()
    t0 = time.perf_counter()
    results: dict[str, ScriptResult] = {}

    def echo(msg: str) -> None:
        """Progress on stderr."""
        print(msg, file=sys.stderr, flush=True)

    for script in scripts:
        echo(f"== {script.name} ...")
        res = run_script(script, sys.executable)
        results[script.name] = res
        echo(f"   {res.status} in {res.seconds:.1f}s{(': ' + res.error) if res.error else ''}")
    machine["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    report = assemble(args.profile, results, machine, started, time.perf_counter() - t0)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    if not args.no_plot:
        report["plot"] = draw_plot(out, out.with_suffix(".png"))
        out.write_text(json.dumps(report, indent=1) + "\n")
    print(render(report, results))
    plot = report.get("plot", {})
    print(f"report: {os.path.relpath(out, ROOT)}; plot: {plot.get('path') or plot.get('status', 'not drawn') + ((': ' + plot['reason']) if plot.get('reason') else '')}")


if __name__ == "__main__":
    main()
