"""The peer: keripy (the Python KERI reference implementation) validating the bench/kel.py workload.

Runs in the benchmark's own environment (bench/.venv-keri, made by
``make bench-keri-env``; keripy needs Python >= 3.12.2 and is never a
dependency of didnode), so it imports nothing from didnode.

Workload, as bench/kel.py: --identifiers K identifiers, each an inception
(one Ed25519 key, the digest of the next key) and two rotations (each
revealing the key committed before and committing to a new one), all built
and signed beforehand by keripy itself (``eventing.incept`` /
``eventing.rotate`` / ``eventing.messagize``) into one CESR stream, in the
order inception, rotation, rotation per identifier.

Timed: ``parsing.Parser(kvy=eventing.Kevery(db=Baser))`` parsing the stream
into a fresh ``basing.Baser``, keripy's own LMDB database, opened keripy's
normal way (``lmdb.open`` defaults: every write transaction fsync'd), i.e.
what a keripy validator does with a stream of events it receives. Checked
afterwards: K key states, each at sequence number 2, nothing escrowed.

With --nosync the same is measured once more into a second fresh Baser
whose environment is opened without fsync (not keripy's normal way: it
shows how much of keripy's time is its per-write fsyncs).

Last line: one JSON object {"keri_events_per_s", "keri_identifiers", "keri_version", ...}.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from typing import Any


def build_stream(k: int, rotations: int = 2) -> bytearray:
    """``k`` signed key event logs (inception + ``rotations`` rotations each) as one CESR stream."""
    from keri.core import coring, eventing, signing

    def digest(signer: Any) -> str:
        return coring.Diger(ser=signer.verfer.qb64b).qb64

    stream = bytearray()
    for _ in range(k):
        signers = [signing.Signer(transferable=True) for _ in range(rotations + 2)]
        icp = eventing.incept(keys=[signers[0].verfer.qb64], ndigs=[digest(signers[1])], code=coring.MtrDex.Blake3_256)
        stream += eventing.messagize(icp, sigers=[signers[0].sign(icp.raw, index=0)])
        prev = icp
        for sn in range(1, rotations + 1):
            rot = eventing.rotate(pre=icp.pre, keys=[signers[sn].verfer.qb64], dig=prev.said, ndigs=[digest(signers[sn + 1])], sn=sn)
            stream += eventing.messagize(rot, sigers=[signers[sn].sign(rot.raw, index=0)])
            prev = rot
    return stream


def validate(stream: bytearray, k: int, rotations: int, sync: bool) -> float:
    """Parse ``stream`` into a fresh Baser; returns seconds; raises if the key states are not as built."""
    from keri.core import eventing, parsing
    from keri.db import basing, dbing

    base = tempfile.mkdtemp(prefix="bench-keri-")
    original_open = dbing.lmdb.open
    if not sync:
        dbing.lmdb.open = lambda *a, **kw: original_open(*a, **{**kw, "sync": False, "metasync": False})  # type: ignore[attr-defined]
    try:
        db = basing.Baser(name="bench", headDirPath=base, reopen=True, temp=False)
        try:
            kvy = eventing.Kevery(db=db, lax=True, local=False)
            parser = parsing.Parser(kvy=kvy)
            t = time.perf_counter()
            parser.parse(ims=bytearray(stream))
            seconds = time.perf_counter() - t
            states = kvy.kevers
            if len(states) != k or any(kever.sn != rotations for kever in states.values()):
                bad = [(pre, kever.sn) for pre, kever in states.items() if kever.sn != rotations][:3]
                raise SystemExit(f"keripy accepted {len(states)} of {k} identifiers fully (e.g. not at sn {rotations}: {bad})")
        finally:
            db.close(clear=True)
    finally:
        dbing.lmdb.open = original_open  # type: ignore[attr-defined]
        shutil.rmtree(base, ignore_errors=True)
    return seconds


def main() -> None:
    """Build with keripy, time keripy's validation, emit the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identifiers", type=int, default=2000)
    ap.add_argument("--rotations", type=int, default=2)
    ap.add_argument("--nosync", action="store_true", help="also measure with keripy's LMDB opened without fsync")
    args = ap.parse_args()
    try:
        import keri
    except ImportError as exc:
        raise SystemExit(f"keripy is not importable by {sys.executable}: {exc} (make bench-keri-env)") from None
    events = args.identifiers * (args.rotations + 1)
    t = time.perf_counter()
    stream = build_stream(args.identifiers, args.rotations)
    print(f"keripy built {events:,} events ({len(stream):,} bytes of CESR) in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    seconds = validate(stream, args.identifiers, args.rotations, sync=True)
    figures: dict[str, Any] = {
        "keri_version": keri.__version__,
        "python": platform.python_version(),
        "keri_identifiers": args.identifiers,
        "keri_events": events,
        "keri_events_per_s": events / seconds,
    }
    print(f"keripy {keri.__version__} validate into its LMDB (fsync per write transaction): {events / seconds:,.0f} events/s", file=sys.stderr)
    if args.nosync:
        nosync = validate(stream, args.identifiers, args.rotations, sync=False)
        figures["keri_nosync_events_per_s"] = events / nosync
        print(f"keripy, LMDB without fsync: {events / nosync:,.0f} events/s", file=sys.stderr)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}), flush=True)


if __name__ == "__main__":
    main()
