"""Run fuzz targets under atheris (libFuzzer). See :mod:`tests.fuzz.harness`.

``python -m tests.fuzz.run NAME [--base=DIR] [libFuzzer flags]``
    one target in this process (``make fuzz`` runs each target this way).
``python -m tests.fuzz.run --batch=NAME,NAME,... --report=FILE [--base=DIR] [libFuzzer flags]``
    several targets, one after the other, each in a child forked from this process, so
    the instrumented imports and the valid samples are built once (``make test``'s short
    runs); FILE gets a JSON object ``{name: {"rc": int, "crash": path or null}}``.
``python -m tests.fuzz.run --list``
    every target's name.

The ``didnode`` package is instrumented as the target modules import it, so the fuzzer
sees the parsers' branch coverage. ``--base`` holds ``corpus/NAME`` (grows; ``make fuzz``
keeps it), ``seeds/NAME`` (the target's valid samples, written afresh), ``crashes/NAME``
(crash inputs), ``logs/NAME.log`` (a batch child's output) and the dictionaries; without
``--base`` a temporary directory is used. Exit status 0: no crash.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import pkgutil
import sys
import tempfile
from pathlib import Path

import atheris

FAMILIES = [m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("test_fuzz_")]


def _load_families() -> None:
    # Instrument didnode as the families import it (nothing of didnode beyond the
    # error tree is imported before this point). DIDNODE_FUZZ_EXTRA names more modules
    # that register targets (the harness's own test uses it).
    extra = [m for m in os.environ.get("DIDNODE_FUZZ_EXTRA", "").split(",") if m]
    with atheris.instrument_imports(include=["didnode", *extra]):
        for module in [f"tests.fuzz.{fam}" for fam in FAMILIES] + extra:
            importlib.import_module(module)


def _fuzz(name: str, flags: list[str], base: Path) -> None:
    """Set up libFuzzer for ``name`` and run it; never returns (libFuzzer exits the process)."""
    from tests.fuzz.harness import TARGETS, check, prepare_dirs

    corpus, seeds, crashes, dict_file = prepare_dirs(TARGETS[name], base)

    def one(data: bytes) -> None:
        check(name, data)

    dictionary = [f"-dict={dict_file}"] if dict_file is not None else []
    atheris.Setup([sys.argv[0], *flags, f"-artifact_prefix={crashes}/", *dictionary, str(corpus), str(seeds)], one)
    atheris.Fuzz()


def _batch(names: list[str], flags: list[str], base: Path, report: Path) -> int:
    from tests.fuzz.harness import TARGETS

    for name in names:  # build every sample before forking: each child then starts at once
        TARGETS[name].seeds()
    results = {}
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name in names:
        crash_dir = base / "crashes" / name
        before = set(crash_dir.glob("crash-*")) if crash_dir.exists() else set()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: libFuzzer's output to the target's log; exits when done
            try:
                fd = os.open(logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                _fuzz(name, flags, base)
            finally:
                # A crash leaves Fuzz() as the Python exception (atheris printed it). C's exit()
                # runs libFuzzer's exit hook, which writes the crash input; the parent's Python
                # exit handlers (temporary directories it owns) must not run in the child.
                sys.stdout.flush()
                sys.stderr.flush()
                ctypes.CDLL(None).exit(1)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        new = sorted(set(crash_dir.glob("crash-*")) - before)
        results[name] = {"rc": rc, "crash": str(new[-1]) if new else None, "log": str(logs / f"{name}.log")}
    report.write_text(json.dumps(results, indent=1))
    return 0 if all(r["rc"] == 0 for r in results.values()) else 1


def main(argv: list[str]) -> int:
    opts = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv[1:] if a.startswith("--") and "=" in a}
    args = [a for a in argv[1:] if not (a.startswith("--") and "=" in a)]
    if args[:1] == ["--list"]:
        from tests.fuzz.harness import TARGETS

        _load_families()
        print("\n".join(sorted(TARGETS)))
        return 0
    tmp = tempfile.TemporaryDirectory(prefix="fuzz-") if "--base" not in opts else None
    base = Path(opts["--base"]) if tmp is None else Path(tmp.name)
    _load_families()
    from tests.fuzz.harness import TARGETS

    if "--batch" in opts:
        names = [n for n in opts["--batch"].split(",") if n]
        unknown = [n for n in names if n not in TARGETS]
        if unknown or "--report" not in opts:
            print(f"unknown fuzz target(s) {unknown}, or no --report=FILE", file=sys.stderr)
            return 2
        return _batch(names, [a for a in args if a.startswith("-")], base, Path(opts["--report"]))
    if not args or args[0].startswith("-") or args[0] not in TARGETS:
        print(__doc__, file=sys.stderr)
        print(f"known targets: {', '.join(sorted(TARGETS))}", file=sys.stderr)
        return 2
    _fuzz(args[0], args[1:], base)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
