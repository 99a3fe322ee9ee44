"""Coverage-guided fuzzing of every parser of untrusted bytes (issue #14): the shared harness.

A *target* is a function of ``bytes`` that hands them to one parser (and, where the
parser documents one, checks a property of the result, e.g. that decoding then
encoding gives the same bytes back). Every target has the same oracle: the parser
returns a valid result or raises a :class:`~didnode.errors.DidnodeError`; any other
exception (``ValueError``, ``KeyError``, ``RecursionError``, an ``AssertionError`` of
a documented property, ...) is a crash.

Engines. With **atheris** installed (``[dev]`` on Linux x86-64) a target runs under
libFuzzer in its own process (``python -m tests.fuzz.run NAME``): the ``didnode``
package is instrumented as it is imported, so the fuzzer is guided by the parsers'
branch coverage; its seed corpus is the target's valid samples and its dictionary
the target's tokens (member names, type names, prefixes), so mutations get past the
first checks. Without atheris, **hypothesis** runs the same targets in-process on
``st.binary()`` and on byte-level mutations (flip, insert, delete, splice a token)
of the valid samples.

Runs. ``make test`` runs every target briefly (``DIDNODE_FUZZ_RUNS``, default
:data:`QUICK_RUNS` inputs each, seeded, so a run is repeatable); ``make fuzz``
runs them long (``FUZZ_RUNS`` / ``FUZZ_SECONDS`` per target) with a corpus kept in
``var/fuzz/corpus/<target>`` between runs and crash inputs saved in
``var/fuzz/crashes/<target>``. A crash found becomes a regression test: the input
bytes in a plain test next to the target (:func:`check`), and the parser fixed to
raise its typed error.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pytest

from didnode.errors import DidnodeError

ROOT = Path(__file__).resolve().parents[2]
QUICK_RUNS = 1500  # inputs per target in `make test` (seed corpus included)
QUICK_EXAMPLES = 300  # the hypothesis fallback's examples per target in `make test`


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def runs() -> int:
    """Inputs per target: ``DIDNODE_FUZZ_RUNS`` (``make fuzz``), else the quick default."""
    return _env_int("DIDNODE_FUZZ_RUNS", QUICK_RUNS)


def seconds() -> int:
    """Wall-clock bound per target (0: none): ``DIDNODE_FUZZ_SECONDS``."""
    return _env_int("DIDNODE_FUZZ_SECONDS", 0)


def long_run() -> bool:
    return "DIDNODE_FUZZ_RUNS" in os.environ or seconds() > 0


def work_dir() -> Path | None:
    """Where a long run keeps its corpus and crashes (``DIDNODE_FUZZ_DIR``), or None (a temporary directory)."""
    value = os.environ.get("DIDNODE_FUZZ_DIR", "").strip()
    return Path(value) if value else None


def engine() -> str:
    """``atheris`` when importable (or ``DIDNODE_FUZZ_ENGINE`` forces one), else ``hypothesis``."""
    forced = os.environ.get("DIDNODE_FUZZ_ENGINE", "").strip()
    if forced:
        return forced
    return "atheris" if importlib.util.find_spec("atheris") is not None else "hypothesis"


# --------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One parser under fuzzing: ``fn(data)`` feeds it; ``seeds()`` are valid samples; ``tokens`` the dictionary."""

    name: str
    module: str
    fn: Callable[[bytes], object]
    seeds: Callable[[], Sequence[bytes]]
    tokens: tuple[bytes, ...]
    max_len: int


TARGETS: dict[str, Target] = {}


def target(
    name: str, seeds: Callable[[], Sequence[bytes]], tokens: Iterable[bytes | str] = (), max_len: int = 4096
) -> Callable[[Callable[[bytes], object]], Callable[[bytes], object]]:
    """Register ``fn`` as the fuzz target ``name`` (one module per parser family registers its targets)."""

    def register(fn: Callable[[bytes], object]) -> Callable[[bytes], object]:
        if name in TARGETS and TARGETS[name].module != fn.__module__:
            raise ValueError(f"fuzz target {name} is defined twice")
        toks = tuple(t.encode() if isinstance(t, str) else t for t in tokens)
        TARGETS[name] = Target(name, fn.__module__, fn, seeds, toks, max_len)
        return fn

    return register


def scratch_dir(prefix: str) -> Path:
    """A temporary directory for a target's files, removed at exit by the process that made it
    (never by a forked batch child, which shares it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))
    return path


def check(name: str, data: bytes) -> None:
    """The oracle on one input: a valid result or a :class:`DidnodeError`; anything else propagates."""
    try:
        TARGETS[name].fn(data)
    except DidnodeError:
        pass


def fuzz_tests(module: str) -> Callable[[str], None]:
    """The module's ``test_fuzz``: one short (or, under ``make fuzz``, long) run per target it registered."""
    names = sorted(n for n, t in TARGETS.items() if t.module == module)

    @pytest.mark.fuzz
    @pytest.mark.parametrize("name", names)
    def test_fuzz(name: str) -> None:
        fuzz(name)

    return test_fuzz


def regression_tests(cases: dict[str, tuple[str, bytes]]) -> Callable[[str], None]:
    """``test_regression``: each crash a fuzzer found, by name: (target, input bytes), checked by the oracle."""

    @pytest.mark.parametrize("case", sorted(cases))
    def test_regression(case: str) -> None:
        name, data = cases[case]
        check(name, data)

    return test_regression


def fuzz(name: str) -> None:
    """Run target ``name`` with the engine at hand; fail with the crashing input if it crashes."""
    if engine() == "atheris":
        run_atheris(name)
    else:
        run_hypothesis(name)


# --------------------------------------------------------------------------
# atheris (libFuzzer), one process per target
# --------------------------------------------------------------------------


def _dict_entry(token: bytes) -> str:
    return '"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in token) + '"'


def prepare_dirs(t: Target, base: Path) -> tuple[Path, Path, Path, Path | None]:
    """(corpus, seeds, artifacts, dictionary file or None) of ``t`` under ``base``; the seeds are written afresh."""
    corpus, seed_dir, crashes = base / "corpus" / t.name, base / "seeds" / t.name, base / "crashes" / t.name
    for d in (corpus, seed_dir, crashes):
        d.mkdir(parents=True, exist_ok=True)
    for old in seed_dir.iterdir():
        old.unlink()
    for i, s in enumerate(t.seeds()):
        (seed_dir / f"seed-{i:03d}").write_bytes(s)
    entries = [_dict_entry(tok) for tok in dict.fromkeys(t.tokens) if 0 < len(tok) <= 64]  # libFuzzer's bound on an entry
    if not entries:
        return corpus, seed_dir, crashes, None
    dict_file = base / "seeds" / f"{t.name}.dict"
    dict_file.write_text("".join(e + "\n" for e in entries), encoding="ascii")
    return corpus, seed_dir, crashes, dict_file


SELECTED: list[str] = []  # the targets this pytest session runs (tests/fuzz/conftest.py fills it)
_quick: dict[str, dict[str, object]] = {}
_quick_dir: tempfile.TemporaryDirectory[str] | None = None


def _crash_message(name: str, crash: str | None, log: str) -> str:
    data = Path(crash).read_bytes() if crash else b""
    tail = "\n".join([ln for ln in log.splitlines() if not ln.startswith("INFO: Instrumenting")][-40:])
    return (
        f"fuzz target {name} crashed on {len(data)} bytes {data[:300]!r}{'...' if len(data) > 300 else ''}\n"
        f"(input saved as {crash or 'nothing'}; reproduce with tests.fuzz.harness.check({name!r}, data), "
        f"and keep it as a regression test)\n{tail}"
    )


def run_atheris_quick(name: str) -> None:
    """``make test``: every selected target's short run happens in one process that forks a child per
    target (instrumentation and samples are built once); this reports ``name``'s outcome."""
    global _quick_dir
    if name not in _quick:
        names = [n for n in (SELECTED or sorted(TARGETS)) if n not in _quick] or [name]
        if name not in names:
            names.append(name)
        _quick_dir = _quick_dir or tempfile.TemporaryDirectory(prefix="fuzz-quick-")
        base = Path(_quick_dir.name)
        report = base / "report.json"
        cmd = [sys.executable, "-m", "tests.fuzz.run", f"--batch={','.join(names)}", f"--report={report}", f"--base={base}",
               f"-runs={runs()}", "-seed=1", "-print_final_stats=0"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONHASHSEED": "0"})
        if not report.exists():
            pytest.fail(f"the fuzz batch did not run (exit {proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
        _quick.update(json.loads(report.read_text()))
    r = _quick[name]
    if r["rc"] != 0:
        log = Path(str(r["log"])).read_text(errors="replace") if r.get("log") else ""
        pytest.fail(_crash_message(name, r["crash"], log), pytrace=False)  # type: ignore[arg-type]


def run_atheris(name: str) -> None:
    """``make fuzz``: one long run of ``name`` in its own process; the corpus and crashes kept in ``DIDNODE_FUZZ_DIR``."""
    if not long_run():
        run_atheris_quick(name)
        return
    t = TARGETS[name]
    persistent = work_dir()
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as tmp:
        base = persistent if persistent is not None else Path(tmp)
        secs = seconds()
        n = -1 if secs else runs()
        cmd = [sys.executable, "-m", "tests.fuzz.run", name, f"--base={base}", f"-runs={n}", f"-max_len={t.max_len}", "-print_final_stats=1"]
        if secs:
            cmd.append(f"-max_total_time={secs}")
        crash_dir = base / "crashes" / name
        before = set(crash_dir.glob("crash-*")) if crash_dir.exists() else set()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=secs * 2 + 600 if secs else None)
        sys.stderr.write("\n".join(ln for ln in proc.stderr.splitlines() if ln.startswith(("#", "stat::", "Done"))) + "\n")
        if proc.returncode != 0:
            new = sorted(set(crash_dir.glob("crash-*")) - before)
            pytest.fail(_crash_message(name, str(new[-1]) if new else None, proc.stderr), pytrace=False)


# --------------------------------------------------------------------------
# hypothesis, in-process (when atheris is not installed)
# --------------------------------------------------------------------------


def mutate(seed: bytes, edits: Sequence[tuple[int, int, bytes]], tokens: Sequence[bytes]) -> bytes:
    """``seed`` after byte-level edits: (kind, position, bytes) with kind 0 flip, 1 insert, 2 delete, 3 splice a token."""
    data = bytearray(seed)
    for kind, pos, blob in edits:
        at = pos % (len(data) + 1)
        if kind == 0 and data:
            data[at % len(data)] ^= blob[0] or 1
        elif kind == 1:
            data[at:at] = blob
        elif kind == 2:
            del data[at : at + len(blob)]
        elif kind == 3 and tokens:
            data[at:at] = tokens[blob[0] % len(tokens)]
    return bytes(data)


def run_hypothesis(name: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    t = TARGETS[name]
    seeds = list(t.seeds()) or [b""]
    edit = st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=16))
    mutated = st.builds(lambda s, e: mutate(s, e, t.tokens), st.sampled_from(seeds), st.lists(edit, max_size=8))
    data_strategy = st.one_of(st.sampled_from(seeds), mutated, st.binary(max_size=t.max_len))
    n = runs() if "DIDNODE_FUZZ_RUNS" in os.environ else QUICK_EXAMPLES

    @settings(
        max_examples=max(1, n),
        deadline=None,
        derandomize=not long_run(),
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data_strategy)
    def run(data: bytes) -> None:
        check(name, data)

    run()


def random_mutations(seeds: Sequence[bytes], tokens: Sequence[bytes], count: int, rng: random.Random) -> list[bytes]:
    """``count`` mutations of ``seeds`` (for tests of the harness itself)."""
    out = []
    for _ in range(count):
        edits = [(rng.randrange(4), rng.randrange(1 << 20), rng.randbytes(rng.randrange(1, 8))) for _ in range(rng.randrange(1, 6))]
        out.append(mutate(rng.choice(seeds), edits, tokens))
    return out
