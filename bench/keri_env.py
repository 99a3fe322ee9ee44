"""Create the benchmark's own environment, bench/.venv-keri: keripy (the peer) and matplotlib (the plot).

keripy 1.3.6 requires Python >= 3.12.2, newer than didnode needs, so the
environment gets its own interpreter: $KERI_PYTHON if set, else the first
suitable one of python3.13, python3.12, python3.14 on PATH and of pyenv's
installed versions. Packages come from bench/requirements-bench.txt; they
are never didnode dependencies.

``keri_env.py`` creates (or completes) the environment; ``--check`` only
says whether it is usable and, if not, why (bench/run_all.py shows that
reason in the table). Uses only the standard library, so any Python 3 runs it.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = HERE / ".venv-keri"
PYTHON = ENV / "bin" / "python"
STAMP = ENV / ".installed"
REQUIREMENTS = HERE / "requirements-bench.txt"
MIN_VERSION = (3, 12, 2)


def _version(python: str) -> tuple[int, ...] | None:
    """The interpreter's (major, minor, micro), or None when it cannot run or lacks venv/ssl."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys, ssl, venv; print(*sys.version_info[:3])"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return tuple(int(x) for x in out.stdout.split())


def candidates() -> list[str]:
    """Interpreters to try, in order of preference."""
    found: list[str] = []
    if os.environ.get("KERI_PYTHON"):
        found.append(os.environ["KERI_PYTHON"])
    for name in ("python3.13", "python3.12", "python3.14"):
        path = shutil.which(name)
        if path:
            found.append(path)
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for minor in ("3.13", "3.12", "3.14"):
        found += sorted(glob.glob(os.path.join(root, "versions", f"{minor}.*", "bin", "python3")), reverse=True)
    return list(dict.fromkeys(found))


def find_python() -> tuple[str | None, str]:
    """(a suitable interpreter, what was tried) for keripy."""
    tried = []
    for python in candidates():
        version = _version(python)
        tried.append(f"{python} ({'.'.join(map(str, version)) if version else 'unusable'})")
        if version and version >= MIN_VERSION:
            return python, "; ".join(tried)
    return None, "; ".join(tried) or "no python3.12/3.13/3.14 on PATH or under pyenv"


def problem() -> str | None:
    """Why the environment cannot run bench/keri_peer.py now, or None when it can."""
    if not PYTHON.exists():
        python, tried = find_python()
        if python is None:
            return f"no Python >= {'.'.join(map(str, MIN_VERSION))} for keripy (tried: {tried}); set KERI_PYTHON"
        return f"{ENV.relative_to(HERE.parent)} does not exist: run make bench-keri-env"
    out = subprocess.run([str(PYTHON), "-c", "import keri"], capture_output=True, text=True)
    if out.returncode != 0:
        return f"keripy does not import in {ENV.relative_to(HERE.parent)}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'unknown error'}"
    return None


def create() -> None:
    """Create the environment and install the requirements; exits non-zero with the reason on failure."""
    if not PYTHON.exists():
        python, tried = find_python()
        if python is None:
            raise SystemExit(f"keri_env: no Python >= {'.'.join(map(str, MIN_VERSION))} for keripy (tried: {tried}); set KERI_PYTHON")
        print(f"keri_env: creating {ENV} with {python}", file=sys.stderr)
        subprocess.run([python, "-m", "venv", str(ENV)], check=True)
    done = subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)])
    if done.returncode != 0:
        raise SystemExit(f"keri_env: pip install -r {REQUIREMENTS} failed ({done.returncode})")
    why = problem()
    if why:
        raise SystemExit(f"keri_env: {why}")
    STAMP.touch()
    print(f"keri_env: {ENV} ready", file=sys.stderr)


def main() -> None:
    """Create the environment, or (--check) say whether it is usable."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report whether the environment is usable")
    args = ap.parse_args()
    if args.check:
        why = problem()
        print(why or f"{ENV} is usable")
        sys.exit(1 if why else 0)
    create()


if __name__ == "__main__":
    main()
