"""bench/serving.py's one load loop and the handshake tally built on it: what is counted and what ``i`` is."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from serving import Tally, load_loop  # noqa: E402


def test_caller_index_counts_every_completed_call_of_every_caller() -> None:
    seen: list[int] = []

    async def one(i: int) -> None:
        await asyncio.sleep(0.001)
        seen.append(i)

    res = asyncio.run(load_loop(one, 0.1, 3))
    assert set(seen) == {0, 1, 2}  # each caller passes its own number
    assert res.calls == len(seen) == len(res.latencies) > 3
    assert res.seconds >= 0.1  # the calls under way at the deadline are awaited and counted
    assert res.rate == res.calls / res.seconds
    assert res.sorted_latencies == sorted(res.latencies) and 1.0 <= res.p50_ms <= res.p99_ms


def test_call_index_runs_across_callers_and_restarts_after_the_warmup() -> None:
    seen: list[int] = []

    async def one(i: int) -> None:
        await asyncio.sleep(0.001)
        seen.append(i)

    res = asyncio.run(load_loop(one, 0.05, 4, warmup=0.05, index="call"))
    warm, measured = seen[: len(seen) - res.calls], seen[len(seen) - res.calls :]
    assert warm and sorted(warm) == list(range(len(warm)))  # the warm-up's calls are not counted ...
    assert sorted(measured) == list(range(res.calls))  # ... and the measured window counts from 0 again


def test_tally_adds_rounds_and_charges_cpu_per_handshake() -> None:
    async def one(i: int) -> None:
        await asyncio.sleep(0.001)

    tally = Tally(os.getpid())

    async def rounds() -> None:
        await tally.round(0.05, one, 2)
        first = tally.n
        await tally.round(0.05, one, 2)
        assert tally.n > first and len(tally.lat) == tally.n

    asyncio.run(rounds())
    r = tally.result()
    assert r["n"] == tally.n and r["rate"] == tally.n / tally.elapsed and tally.elapsed >= 0.1
    assert r["p50"] <= r["p99"] and len(r["cpu"]) == 2 and all(c >= 0 for c in r["cpu"])
