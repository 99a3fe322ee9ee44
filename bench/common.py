"""Shared pieces of the bench scripts: timing, raw references, workload generation, JSON output."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from nacl.signing import SigningKey

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from didnode.core import builder  # noqa: E402
from didnode.core.builder import SignedOperation  # noqa: E402


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (bench/run_all.py's time limit) leaves through SystemExit: ``finally`` blocks stop nodes and remove temp dirs."""
    raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def rate(n: int, fn: Callable[[], Any]) -> float:
    """Operations per second of ``fn`` doing ``n`` operations."""
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def raw_verify_rate(n: int = 20000) -> float:
    """Single-thread pynacl Ed25519 verify rate over a 300-byte message (the reference)."""
    sk = SigningKey.generate()
    vk = sk.verify_key
    msg = os.urandom(300)
    sig = sk.sign(msg).signature

    def run() -> None:
        for _ in range(n):
            vk.verify(msg, sig)

    return rate(n, run)


def raw_sign_rate(n: int = 20000) -> float:
    """Single-thread pynacl Ed25519 sign rate over a 300-byte message (the reference)."""
    sk = SigningKey.generate()
    msg = os.urandom(300)

    def run() -> None:
        for _ in range(n):
            sk.sign(msg)

    return rate(n, run)


def _creates(args: tuple[int, str, int]) -> list[tuple[SignedOperation, bytes, bytes, bytes]]:
    n, network, seed = args
    out = []
    for _ in range(n):
        auth = SigningKey.generate()
        nxt = SigningKey.generate()
        u = builder.create(network, [builder.NewKey("key-1", bytes(auth.verify_key))], bytes(nxt.verify_key))
        out.append((builder.sign(u, [(f"{u.did}#key-1", auth)]), bytes(auth), bytes(nxt), b""))
    return out


def make_creates(n: int, network: str = "local") -> list[tuple[SignedOperation, bytes, bytes, bytes]]:
    """``n`` signed single-key creates with their (auth seed, next seed); generated on 2 threads."""
    chunk = max(1, n // 8)
    parts = [(min(chunk, n - i), network, i) for i in range(0, n, chunk)]
    with ThreadPoolExecutor(2) as ex:
        return [x for part in ex.map(_creates, parts) for x in part]


def rounded(value: Any) -> Any:
    """Floats rounded to 3 decimals (NaN and infinities as null: strict JSON), inside dicts and lists too."""
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


def emit(figures: dict[str, Any]) -> None:
    """Print the figures as one JSON object on the last line (the bench contract)."""
    print(json.dumps(rounded(figures)), flush=True)


def chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``seq`` cut into consecutive slices of at most ``size``."""
    return [seq[i : i + size] for i in range(0, len(seq), size)]
