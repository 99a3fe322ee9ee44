"""The harness itself: the oracle, the byte mutations, and a batch run that finds a planted bug."""

from __future__ import annotations

import importlib
import json
import os
import random
import subprocess
import sys

import pytest

from didnode.errors import MalformedMessage
from tests.fuzz import harness
from tests.fuzz.harness import ROOT, check, mutate, random_mutations


def test_the_oracle_accepts_typed_errors_and_nothing_else() -> None:
    importlib.import_module("tests.fuzz.selftest_targets")
    check("selftest_typed", b"ok")
    check("selftest_typed", b"garbage")  # MalformedMessage: a typed error is a pass
    check("selftest_planted_bug", b"FUZ")
    check("selftest_planted_bug", b"")
    with pytest.raises(KeyError):
        check("selftest_planted_bug", b"FUZZ!")


def test_mutations_flip_insert_delete_and_splice() -> None:
    seed = b"abcdef"
    assert mutate(seed, [(0, 0, b"\x01")], ()) == b"`bcdef"
    assert mutate(seed, [(1, 3, b"XY")], ()) == b"abcXYdef"
    assert mutate(seed, [(2, 1, b"..")], ()) == b"adef"
    assert mutate(seed, [(3, 6, b"\x01")], (b"T0", b"T1")) == b"abcdefT1"
    many = random_mutations([seed], (b"{",), 200, random.Random(1))
    assert len(set(many)) > 100


@pytest.mark.skipif(harness.engine() != "atheris", reason="atheris is not installed here")
def test_a_batch_run_finds_the_planted_bug_and_reports_its_input(tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "tests.fuzz.run", "--batch=selftest_typed,selftest_planted_bug", f"--report={report}", f"--base={tmp_path}", "-runs=200000", "-seed=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "DIDNODE_FUZZ_EXTRA": "tests.fuzz.selftest_targets"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    results = json.loads(report.read_text())
    assert results["selftest_typed"]["rc"] == 0 and results["selftest_typed"]["crash"] is None
    bug = results["selftest_planted_bug"]
    assert bug["rc"] != 0 and bug["crash"] is not None
    assert open(bug["crash"], "rb").read().startswith(b"FUZZ")
    assert "KeyError: 'planted'" in open(bug["log"]).read()
    # MalformedMessage is what the typed target raised for everything but its seed.
    assert issubclass(MalformedMessage, harness.DidnodeError)
