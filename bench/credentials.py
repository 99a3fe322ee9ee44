"""Credential issue and verify rates, next to raw pynacl Ed25519 verify measured in the same run.

* issue: DeviceAttestationCredential tokens (build claims, compact JSON,
  base64url, one Ed25519 signature) by :class:`didnode.core.credentials.Issuer`;
* verify: the full offline verification (strict JWS parse, VC 2.0 claims
  profile, kid/issuer binding, key fate, Ed25519, validity, subject) with a
  warm resolver cache, over distinct tokens from several issuers;
* verify_status: the same with a Bitstring Status List entry checked (list
  cached, as an offline verifier holds it);
* raw: ``VerifyKey.verify`` of a 300-byte message (the reference);
* jwcrypto: a new ``JWS`` object per token, verified with the issuer's JWK
  (the independent implementation, for scale).

Rounds alternate between ours and raw and each keeps its best, so both see
the same machine state. Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, rate, raw_verify_rate  # noqa: E402

from jwcrypto import jwk, jws  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from didnode.core import builder  # noqa: E402
from didnode.core.credentials import (  # noqa: E402
    DEVICE_ATTESTATION,
    Bitstring,
    Issuer,
    IssuerRecord,
    Verifier,
    VerifyPolicy,
    device_attestation_claims,
)
from didnode.core.encoding import b64url  # noqa: E402
from didnode.core.keystate import ApplyContext, DidState, apply  # noqa: E402
from didnode.core.operations import parse  # noqa: E402
from didnode.errors import UnknownDid, UnknownResource  # noqa: E402

NET = "local"
T0 = 1_750_000_000_000


def _no_resolve(did: str) -> DidState:
    raise UnknownDid(did)


def make_issuers(n: int) -> tuple[dict[str, IssuerRecord], list[tuple[Issuer, SigningKey]]]:
    """``n`` issuer DIDs created on a pure in-memory ledger (no LMDB: this measures verification only)."""
    records: dict[str, IssuerRecord] = {}
    issuers = []
    for pos in range(n):
        key = SigningKey.generate()
        u = builder.create(NET, [builder.NewKey("key-1", bytes(key.verify_key))], bytes(SigningKey.generate().verify_key))
        op = builder.sign(u, [(f"{u.did}#key-1", key)])
        state = apply(None, parse(op.payload, op.proofs, NET), ApplyContext(pos, T0, _no_resolve))
        records[u.did] = IssuerRecord(state, {"key-1": (T0, -1)})
        issuers.append((Issuer(u.did, "key-1", key), key))
    return records, issuers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="tokens per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small run (CI smoke)")
    args = ap.parse_args()
    n, rounds = (2_000, 1) if args.quick else (args.n, args.rounds)

    records, issuers = make_issuers(8)
    subject = "did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE"
    claims = device_attestation_claims("X1", "SN-0001", "rev-b", "1.4.2", T0)
    now = T0 + 60_000
    lists: dict[tuple[str, str], str] = {}
    for iss, _ in issuers:
        lists[(iss.did, "revocation-1")] = iss.status_list("revocation", 1, Bitstring(), now, allocated=n)

    def fetch(did: str, rid: str) -> str:
        try:
            return lists[(did, rid)]
        except KeyError:
            raise UnknownResource(rid) from None

    distinct = min(n, 4000)
    tokens = [issuers[i % len(issuers)][0].issue(subject, [DEVICE_ATTESTATION], claims, now) for i in range(distinct)]
    with_status = [
        issuers[i % len(issuers)][0].issue(subject, [DEVICE_ATTESTATION], claims, now, status=issuers[i % len(issuers)][0].status_entries(1, i)[:1])
        for i in range(distinct)
    ]
    work = (tokens * (n // distinct + 1))[:n]
    work_status = (with_status * (n // distinct + 1))[:n]
    verifier = Verifier(records.__getitem__, fetch, VerifyPolicy(), cache_ttl_ms=3_600_000)
    for t in tokens[:50] + with_status[:50]:  # warm the caches (issuer keys, headers, status lists)
        assert verifier.verify(t, now, expected_subject=subject).valid

    def run_verify(batch: list[str]) -> None:
        v = verifier.verify
        for t in batch:
            if not v(t, now, subject).valid:
                raise SystemExit(f"bench token failed verification: {v(t, now, subject).to_json()}")

    def run_issue() -> None:
        iss = issuers[0][0]
        for _ in range(n):
            iss.issue(subject, [DEVICE_ATTESTATION], claims, now)

    best = {"issue": 0.0, "verify": 0.0, "verify_status": 0.0, "raw": 0.0}
    for _ in range(rounds):
        best["raw"] = max(best["raw"], raw_verify_rate(n))
        best["verify"] = max(best["verify"], rate(n, lambda: run_verify(work)))
        best["verify_status"] = max(best["verify_status"], rate(n, lambda: run_verify(work_status)))
        best["issue"] = max(best["issue"], rate(n, run_issue))

    # jwcrypto as the independent reference (new JWS object per token, as a verifier of arbitrary tokens does).
    keys = {iss.kid: jwk.JWK(kty="OKP", crv="Ed25519", x=b64url(bytes(sk.verify_key))) for iss, sk in issuers}
    jn = max(500, n // 4)
    jwork = work[:jn]

    def run_jwcrypto() -> None:
        for t in jwork:
            j = jws.JWS()
            j.deserialize(t)
            j.verify(keys[j.jose_header["kid"]], alg="EdDSA")

    jw = rate(len(jwork), run_jwcrypto)
    token_chars = sum(len(x) for x in tokens) / len(tokens)
    print(f"issue            {best['issue']:>10,.0f} /s")
    print(f"verify (offline) {best['verify']:>10,.0f} /s   warm resolver cache, {distinct} distinct tokens of ~{token_chars:.0f} chars")
    print(f"verify + status  {best['verify_status']:>10,.0f} /s")
    print(f"raw pynacl       {best['raw']:>10,.0f} /s   ratio {best['verify'] / best['raw']:.2f}")
    print(f"jwcrypto verify  {jw:>10,.0f} /s")
    emit(
        {
            "issue_per_s": best["issue"],
            "verify_per_s": best["verify"],
            "verify_with_status_per_s": best["verify_status"],
            "raw_verify_per_s": best["raw"],
            "ratio": best["verify"] / best["raw"],
            "jwcrypto_verify_per_s": jw,
        }
    )


if __name__ == "__main__":
    main()
