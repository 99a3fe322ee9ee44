"""bench/witness.py --quick runs to the end by itself and prints its figures, each with its same-run reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_witness_bench_quick_prints_figures_with_references() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "witness.py"), "--quick"], capture_output=True, text=True, timeout=120, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for figure, reference in (
        ("cosigned_checkpoints_per_s", "ref_get_rounds_per_s"),
        ("kth_cosign_p50_ms", "ref_kth_get_p50_ms"),
        ("kth_cosign_p99_ms", "ref_kth_get_p99_ms"),
        ("cached_proofs_per_s", "raw_verify_per_s"),
        ("uncached_proofs_per_s", "raw_verify_per_s"),
    ):
        assert figures[figure] > 0 and figures[reference] > 0, (figure, reference)
    assert figures["cached_proofs_per_raw_verify"] > figures["uncached_proofs_per_raw_verify"]
    assert figures["cached_signatures_checked"] == figures["uncached_signatures_per_proof"]  # the note verified once when cached
    assert figures["witnesses"] == 3 and figures["k"] == 2
