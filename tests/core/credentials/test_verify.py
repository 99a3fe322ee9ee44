"""The verifier against a pure in-memory ledger: one test per reason code, key fates, status lists, the report."""

from __future__ import annotations

import json

import pytest
from nacl.bindings import crypto_sign_seed_keypair
from nacl.signing import SigningKey

from didnode import errors
from didnode.core.credentials import DEVICE_ATTESTATION, Bitstring, Issuer, VerifyPolicy, device_attestation_claims
from didnode.core.credentials.jose import sign_compact
from didnode.core.credentials.model import build_claims
from didnode.core.credentials.verify import CHECK_NAMES, FAILED, PASSED, SKIPPED
from didnode.core.encoding import b64url, b64url_decode
from tests.core.credentials.helpers import T0, TimedLedger, device

MINUTE = 60_000
DAY = 86_400_000


@pytest.fixture
def ledger() -> TimedLedger:
    return TimedLedger()


def attestation(iss: Issuer, subject: str, now: int, **kw: object) -> str:
    return iss.issue(subject, [DEVICE_ATTESTATION], device_attestation_claims("X1", "SN-1", "hw1", "fw1.0", T0), now, **kw)  # type: ignore[arg-type]


def reason_of(ledger: TimedLedger, token: str, now: int, **expect: str) -> str:
    report = ledger.verifier().verify(token, now, **expect)
    assert not report.valid and report.error is not None
    assert isinstance(report.error, errors.CredentialInvalid)
    return report.reason


def test_valid_attestation_report(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    now = T0 + MINUTE
    tok = attestation(iss, dev.did, now, valid_until_ms=now + DAY)
    report = ledger.verifier().verify(tok, now + 1000, expected_subject=dev.did, expected_issuer=ident.did, expected_type=DEVICE_ATTESTATION)
    assert report.valid and report.error is None
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert [c.outcome for c in report.checks] == [PASSED] * 7 + [SKIPPED]  # no credentialStatus
    cred = report.raise_if_invalid()
    assert cred.issuer == ident.did and cred.subject == dev.did and cred.types[-1] == DEVICE_ATTESTATION
    doc = report.to_json()
    assert doc["valid"] is True and doc["credentialSubject"]["serialNumber"] == "SN-1"
    claims = json.loads(b64url_decode(tok.split(".")[1]))
    assert claims["iss"] == ident.did and claims["sub"] == dev.did and claims["jti"] == claims["id"]
    assert "nbf" not in claims and claims["iat"] == now // 1000 and claims["exp"] == (now + DAY) // 1000


def test_gate_failure_skips_the_rest(ledger: TimedLedger) -> None:
    _, iss = ledger.new_issuer()
    dev = device(ledger)
    tok = attestation(iss, dev.did, T0 + MINUTE)
    h, p, s = tok.split(".")
    tampered = f"{h}.{p}.{s[:10]}{'A' if s[10] != 'A' else 'B'}{s[11:]}"
    report = ledger.verifier().verify(tampered, T0 + MINUTE)
    outcomes = {c.name: c.outcome for c in report.checks}
    assert report.reason == "CREDENTIAL_BAD_SIGNATURE" and isinstance(report.error, errors.InvalidSignature)
    assert outcomes == {
        "format": PASSED, "claims": PASSED, "issuer": PASSED, "key_state": PASSED, "signature": FAILED,
        "validity": SKIPPED, "subject": SKIPPED, "status": SKIPPED,
    }
    with pytest.raises(errors.CredentialBadSignature):
        report.raise_if_invalid()


def test_tampered_payload_and_header(ledger: TimedLedger) -> None:
    _, iss = ledger.new_issuer()
    dev = device(ledger)
    other = device(ledger)
    now = T0 + MINUTE
    tok = attestation(iss, dev.did, now)
    h, p, s = tok.split(".")
    claims = json.loads(b64url_decode(p))
    claims["credentialSubject"]["id"] = claims["sub"] = other.did
    assert reason_of(ledger, f"{h}.{b64url(json.dumps(claims).encode())}.{s}", now) == "CREDENTIAL_BAD_SIGNATURE"
    header = json.loads(b64url_decode(h))
    header["typ"] = "application/vc+jwt"  # still in the profile, but not what was signed
    assert reason_of(ledger, f"{b64url(json.dumps(header).encode())}.{p}.{s}", now) == "CREDENTIAL_BAD_SIGNATURE"


@pytest.mark.parametrize(("alg", "reason"), [("none", "ALG_NOT_ALLOWED"), ("HS256", "ALG_NOT_ALLOWED"), ("ES256K", "ALG_NOT_ALLOWED")])
def test_alg_outside_policy(ledger: TimedLedger, alg: str, reason: str) -> None:
    _, iss = ledger.new_issuer()
    dev = device(ledger)
    h, p, _ = attestation(iss, dev.did, T0 + MINUTE).split(".")
    header = json.loads(b64url_decode(h))
    header["alg"] = alg
    tok = f"{b64url(json.dumps(header).encode())}.{p}." + ("" if alg == "none" else b64url(bytes(32)))
    report = ledger.verifier().verify(tok, T0 + MINUTE)
    assert report.reason == reason and report.checks[0].outcome == FAILED


def _resign(iss_seed: bytes, kid: str, claims: dict) -> str:
    return sign_compact(claims, kid, crypto_sign_seed_keypair(iss_seed)[1])


def test_kid_rules(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    other, _ = ledger.new_issuer()
    dev = device(ledger)
    now = T0 + MINUTE
    claims = build_claims(ident.did, dev.did, [DEVICE_ATTESTATION], device_attestation_claims("X", "S", "h", "f", T0), now)
    seed = bytes(ident.key)
    # kid of another DID (signed by that DID's key: a valid signature, wrong issuer)
    assert reason_of(ledger, _resign(bytes(other.key), other.kid, claims), now) == "KID_NOT_ISSUER"
    # kid naming a key the issuer never had
    assert reason_of(ledger, _resign(seed, f"{ident.did}#key-9", claims), now) == "KID_UNKNOWN"
    # kid not on this ledger at all
    foreign = _resign(seed, f"{ident.did}#key-1", claims).split(".")
    foreign[0] = b64url(json.dumps({"alg": "EdDSA", "kid": "did:key:z6Mk#z6Mk", "typ": "vc+jwt"}).encode())
    assert reason_of(ledger, ".".join(foreign), now) == "KID_FOREIGN"
    foreign[0] = b64url(json.dumps({"alg": "EdDSA", "typ": "vc+jwt"}).encode())
    assert reason_of(ledger, ".".join(foreign), now) == "KID_MISSING"
    # the JsonWebKey form of the same verification method is accepted
    assert ledger.verifier().verify(_resign(seed, f"{ident.did}#key-1-jwk", claims), now).valid


def test_expired_and_not_yet_valid(ledger: TimedLedger) -> None:
    _, iss = ledger.new_issuer()
    dev = device(ledger)
    now = T0 + MINUTE
    tok = attestation(iss, dev.did, now, valid_until_ms=now + DAY)
    skew = VerifyPolicy().clock_skew_ms
    assert ledger.verifier().verify(tok, now + DAY + skew - 1).valid
    assert reason_of(ledger, tok, now + DAY + skew) == "EXPIRED"
    assert ledger.verifier().verify(tok, now - skew).valid
    assert reason_of(ledger, tok, now - skew - 1000) == "NOT_YET_VALID"


def test_wrong_subject_issuer_and_type(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    dev, other = device(ledger), device(ledger)
    tok = attestation(iss, dev.did, T0 + MINUTE)
    now = T0 + MINUTE
    report = ledger.verifier().verify(tok, now, expected_subject=other.did)
    assert report.reason == "SUBJECT_MISMATCH" and report.check("subject").outcome == FAILED
    assert report.check("signature").outcome == PASSED
    assert reason_of(ledger, tok, now, expected_issuer=other.did) == "ISSUER_NOT_EXPECTED"
    assert reason_of(ledger, tok, now, expected_type="NodeSessionCredential") == "TYPE_NOT_EXPECTED"


def test_claims_shape(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    now = T0 + MINUTE
    good = build_claims(ident.did, dev.did, [DEVICE_ATTESTATION], device_attestation_claims("X", "S", "h", "f", T0), now)
    breakers = [
        lambda c: c["credentialSubject"].pop("serialNumber"),
        lambda c: c["credentialSubject"].update(manufactureTime="yesterday"),
        lambda c: c.update({"@context": ["https://www.w3.org/2018/credentials/v1"]}),
        lambda c: c.update(type=["DeviceAttestationCredential"]),
        lambda c: c.update(validFrom="2025-01-01T00:00:00"),  # no time zone
        lambda c: c.update(iss="did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE"),
        lambda c: c.update(exp=c["iat"] + 5),  # exp without validUntil
        lambda c: c.update(vc={}),
        lambda c: c.update(proof={"type": "DataIntegrityProof"}),
        lambda c: c.update(iat="now"),
        lambda c: c.update(credentialStatus={"type": "BitstringStatusListEntry", "statusPurpose": "revocation", "statusListIndex": "01", "statusListCredential": f"{ident.did}?resource=revocation-1"}),
        lambda c: c.update(credentialStatus={"type": "BitstringStatusListEntry", "statusPurpose": "revocation", "statusListIndex": "1", "statusListCredential": f"{dev.did}?resource=revocation-1"}),
    ]
    for breaker in breakers:
        claims = json.loads(json.dumps(good))
        breaker(claims)
        assert reason_of(ledger, iss.sign(claims), now) == "CLAIMS_INVALID", breaker


def test_payload_must_be_a_json_object_without_duplicates(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    h = iss.sign({}).split(".")[0]
    for payload in (b"[1]", b'{"a":1,"a":2}', b'{"a":NaN}', b"\xff"):
        tok = f"{h}.{b64url(payload)}.{b64url(bytes(64))}"
        assert reason_of(ledger, tok, T0) == "MALFORMED_CREDENTIAL"


# --------------------------------------------------------------------------
# Key fates
# --------------------------------------------------------------------------


def test_rotated_key_verifies_what_it_signed_before_the_rotation(ledger: TimedLedger) -> None:
    ident, old = ledger.new_issuer()
    dev = device(ledger)
    before = attestation(old, dev.did, T0 + 10 * MINUTE)
    ledger.at(T0 + 20 * MINUTE)
    new = ledger.rotate(ident)
    after_with_old_key = attestation(old, dev.did, T0 + 30 * MINUTE)
    after_with_new_key = attestation(new, dev.did, T0 + 30 * MINUTE)
    now = T0 + 40 * MINUTE
    v = ledger.verifier()
    report = v.verify(before, now)
    assert report.valid and "rotated out" in report.check("key_state").message
    assert reason_of(ledger, after_with_old_key, now) == "CREDENTIAL_KEY_ROTATED"
    assert v.verify(after_with_new_key, now).valid
    strict = ledger.verifier(VerifyPolicy(accept_rotated_keys=False))
    assert strict.verify(before, now).reason == "CREDENTIAL_KEY_ROTATED"
    # A credential claiming a time before the new key existed is refused.
    assert reason_of(ledger, attestation(new, dev.did, T0 + 5 * MINUTE), now) == "KEY_NOT_VALID_AT_ISSUANCE"


def test_revoked_key_verifies_nothing(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    tok = attestation(iss, dev.did, T0 + MINUTE)
    assert ledger.verifier().verify(tok, T0 + 2 * MINUTE).valid
    ledger.at(T0 + 10 * MINUTE)
    ledger.revoke(ident, "key-1")
    report = ledger.verifier().verify(tok, T0 + 11 * MINUTE)
    assert report.reason == "CREDENTIAL_KEY_REVOKED" and isinstance(report.error, errors.KeyRevoked)
    assert isinstance(report.error, errors.CredentialInvalid)


def test_revoked_after_rotation_still_verifies_nothing(ledger: TimedLedger) -> None:
    ident, old = ledger.new_issuer()
    dev = device(ledger)
    tok = attestation(old, dev.did, T0 + MINUTE)
    ledger.at(T0 + 2 * MINUTE)
    ledger.rotate(ident)
    assert ledger.verifier().verify(tok, T0 + 3 * MINUTE).valid
    ledger.revoke(ident, "key-1")
    assert reason_of(ledger, tok, T0 + 4 * MINUTE) == "CREDENTIAL_KEY_REVOKED"


def test_deactivated_issuer(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    tok = attestation(iss, dev.did, T0 + MINUTE)
    ledger.at(T0 + 5 * MINUTE)
    ledger.deactivate(ident)
    assert reason_of(ledger, tok, T0 + 6 * MINUTE) == "ISSUER_DEACTIVATED"


def test_unknown_issuer_and_non_assertion_key(ledger: TimedLedger) -> None:
    stranger = Issuer("did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE", "key-1", SigningKey.generate())
    dev = device(ledger)
    assert reason_of(ledger, attestation(stranger, dev.did, T0), T0) == "ISSUER_UNKNOWN"
    from didnode.core import builder

    auth_only = SigningKey.generate()
    u = builder.create("local", [builder.NewKey("key-1", bytes(auth_only.verify_key), ("authentication",))], bytes(SigningKey.generate().verify_key))
    ledger.submit(builder.sign(u, [(f"{u.did}#key-1", auth_only)]))
    assert reason_of(ledger, attestation(Issuer(u.did, "key-1", auth_only), dev.did, T0 + MINUTE), T0 + MINUTE) == "KEY_NOT_ASSERTION_METHOD"


def test_warm_cache_sees_revocation_only_after_its_ttl(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    tok = attestation(iss, dev.did, T0 + MINUTE)
    v = ledger.verifier(ttl=MINUTE)
    assert v.verify(tok, T0 + 2 * MINUTE).valid
    ledger.revoke(ident, "key-1")
    assert v.verify(tok, T0 + 2 * MINUTE + 1000).valid  # cached key state, within its TTL
    assert v.verify(tok, T0 + 3 * MINUTE).reason == "CREDENTIAL_KEY_REVOKED"


# --------------------------------------------------------------------------
# Status lists
# --------------------------------------------------------------------------


def _with_status(ledger: TimedLedger) -> tuple[object, Issuer, str, int]:
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    now = T0 + MINUTE
    ledger.publish(ident, "revocation-1", iss.status_list("revocation", 1, Bitstring(), now, allocated=8))
    ledger.publish(ident, "suspension-1", iss.status_list("suspension", 1, Bitstring(), now))
    tok = attestation(iss, dev.did, now, status=iss.status_entries(1, 5))
    return ident, iss, tok, now


def test_status_revoked_and_suspended(ledger: TimedLedger) -> None:
    ident, iss, tok, now = _with_status(ledger)
    report = ledger.verifier().verify(tok, now)
    assert report.valid and report.check("status").outcome == PASSED
    bits = Bitstring()
    bits.set(5, True)
    ledger.publish(ident, "suspension-1", iss.status_list("suspension", 1, bits, now + 1000))  # type: ignore[arg-type]
    assert reason_of(ledger, tok, now + 2000) == "SUSPENDED"
    ledger.publish(ident, "suspension-1", iss.status_list("suspension", 1, Bitstring(), now + 3000))  # type: ignore[arg-type]
    assert ledger.verifier().verify(tok, now + 4000).valid
    ledger.publish(ident, "revocation-1", iss.status_list("revocation", 1, bits, now + 5000, allocated=8))  # type: ignore[arg-type]
    report = ledger.verifier().verify(tok, now + 6000)
    assert report.reason == "REVOKED" and report.check("signature").outcome == PASSED


def test_expired_and_revoked_are_both_reported(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    now = T0 + MINUTE
    bits = Bitstring()
    bits.set(0, True)
    ledger.publish(ident, "revocation-1", iss.status_list("revocation", 1, bits, now, allocated=1))  # type: ignore[arg-type]
    tok = attestation(iss, dev.did, now, valid_until_ms=now + MINUTE, status=iss.status_entries(1, 0)[:1])
    report = ledger.verifier().verify(tok, now + DAY)
    assert [f.reason for f in report.failures] == ["EXPIRED", "REVOKED"]


def test_status_list_signed_by_someone_else(ledger: TimedLedger) -> None:
    ident, iss, tok, now = _with_status(ledger)
    _, mallory = ledger.new_issuer()
    # The issuer (its key publishes) puts up a list that someone else signed.
    ledger.publish(ident, "revocation-1", mallory.status_list("revocation", 1, Bitstring(), now, allocated=8))  # type: ignore[arg-type]
    assert reason_of(ledger, tok, now + 1000) == "STATUS_LIST_FOREIGN_SIGNER"


def test_status_list_relayed_by_a_lying_fetcher(ledger: TimedLedger) -> None:
    ident, iss, tok, now = _with_status(ledger)
    _, mallory = ledger.new_issuer()
    forged = Issuer(mallory.did, "key-1", SigningKey.generate())
    from didnode.core.credentials import Verifier

    v = Verifier(ledger.record, lambda did, rid: forged.status_list("revocation", 1, Bitstring(), now, 8), VerifyPolicy())
    assert v.verify(tok, now).reason == "STATUS_LIST_FOREIGN_SIGNER"


def test_status_list_older_than_the_freshness_policy(ledger: TimedLedger) -> None:
    _, _, tok, now = _with_status(ledger)
    fresh = ledger.verifier(VerifyPolicy(max_status_list_age_ms=DAY))
    assert fresh.verify(tok, now + DAY).valid
    assert fresh.verify(tok, now + DAY + 1000).reason == "STATUS_LIST_STALE"
    assert ledger.verifier().verify(tok, now + 30 * DAY).valid  # no freshness policy: any age


def test_status_list_missing_or_broken(ledger: TimedLedger) -> None:
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    now = T0 + MINUTE
    tok = attestation(iss, dev.did, now, status=iss.status_entries(1, 0))
    assert reason_of(ledger, tok, now) == "STATUS_LIST_NOT_FOUND"
    ledger.publish(ident, "revocation-1", iss.status_list("suspension", 1, Bitstring(), now))  # wrong purpose
    ledger.publish(ident, "suspension-1", iss.status_list("suspension", 1, Bitstring(), now))
    assert reason_of(ledger, tok, now) == "STATUS_LIST_INVALID"
    ledger.publish(ident, "revocation-1", "not a token")
    report = ledger.verifier().verify(tok, now)
    assert report.reason == "STATUS_LIST_INVALID" and report.error is not None and report.error.details["cause"] == "MALFORMED_CREDENTIAL"


def test_status_list_signed_by_a_key_revoked_later(ledger: TimedLedger) -> None:
    ident, iss, tok, now = _with_status(ledger)
    ledger.at(now + MINUTE)
    new = ledger.rotate(ident)
    assert ledger.verifier().verify(tok, now + 2 * MINUTE).valid  # list and credential signed before the rotation
    ledger.revoke(ident, "key-1")
    report = ledger.verifier().verify(tok, now + 3 * MINUTE)
    assert report.reason == "CREDENTIAL_KEY_REVOKED"  # the credential itself; its status is not even looked at
    assert new.kid.endswith("#key-2-jwk") and new.signer_kid.endswith("#key-2")
