"""Reference: raw Ed25519 sign and verify rates (pynacl, one thread, 300-byte messages).

The ceiling for anything that signs or verifies one signature per
operation in one Python thread: ``SigningKey.sign`` and ``VerifyKey.verify``
called back to back, nothing else. Rounds keep their best rate, so a burst
of background load on the machine lowers the figure less.

Last line: one JSON object {"sign_per_s", "verify_per_s", "n", "rounds"}.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, raw_sign_rate, raw_verify_rate  # noqa: E402


def main() -> None:
    """Measure and emit the best of --rounds sign and verify rates."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="signatures per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sign = max(raw_sign_rate(args.n) for _ in range(args.rounds))
    verify = max(raw_verify_rate(args.n) for _ in range(args.rounds))
    print(f"raw Ed25519 sign (1 thread):   {sign:>10,.0f}/s", file=sys.stderr)
    print(f"raw Ed25519 verify (1 thread): {verify:>10,.0f}/s", file=sys.stderr)
    emit({"sign_per_s": sign, "verify_per_s": verify, "n": args.n, "rounds": args.rounds})


if __name__ == "__main__":
    main()
