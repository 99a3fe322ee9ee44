"""Summarize a py-spy raw profile: the functions with the most samples, own and inclusive.

    py-spy record -f raw -r 200 --threads --subprocesses -o ledger.txt -- \\
        .venv/bin/python bench/ledger.py --prefill 100000 --n 20000
    .venv/bin/python bench/pyspy_top.py ledger.txt --within LocalOrderer._run

``--process TEXT`` keeps the samples of processes whose command line
contains TEXT (e.g. ``serve``: the node under bench/resolve.py's load).
``--within NAME`` keeps only stacks that pass through a frame whose function
name contains NAME (e.g. ``LocalOrderer._run``: the single writer thread;
``LedgerServicer.Resolve``: the node's Resolve handler), so that the
workload generation of a bench script does not drown the path of interest.
Shares are of the kept samples. Frames are grouped by function and file
(line numbers dropped). Standard library only.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def frame_key(frame: str) -> str:
    """``name (file:line)`` -> ``name (file)``; other frames (process, thread) as they are."""
    m = _FRAME.match(frame.strip())
    return f"{m['name']} ({m['file']})" if m else frame.strip()


def summarize(lines: list[str], within: str = "", process: str = "") -> tuple[int, Counter[str], Counter[str]]:
    """(kept samples, own samples per function, inclusive samples per function) of raw py-spy lines."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        if process and not any(f.startswith("process ") and process in f for f in parts):
            continue
        frames = [f for f in parts if not f.startswith(("process ", "thread "))]
        if within:
            cut = next((i for i, f in enumerate(frames) if within in f.split(" (")[0]), None)
            if cut is None:
                continue
            frames = frames[cut:]
        if not frames:
            continue
        n = int(count)
        total += n
        own[frame_key(frames[-1])] += n
        for key in {frame_key(f) for f in frames}:
            inclusive[key] += n
    return total, own, inclusive


def main() -> None:
    """Print the top functions of one raw profile."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw", type=Path, help="py-spy record -f raw output")
    ap.add_argument("--within", default="", help="keep only stacks through a function whose name contains this")
    ap.add_argument("--process", default="", help="keep only samples of processes whose command line contains this (with --subprocesses)")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    total, own, inclusive = summarize(args.raw.read_text().splitlines(), args.within, args.process)
    if not total:
        raise SystemExit(f"no samples{' through ' + args.within if args.within else ''} in {args.raw}")
    print(f"{total} samples{' through ' + args.within if args.within else ''}")
    print("\nown time (the function itself):")
    for key, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {key}")
    print("\ninclusive time (the function and what it calls):")
    for key, n in inclusive.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {key}")


if __name__ == "__main__":
    main()
