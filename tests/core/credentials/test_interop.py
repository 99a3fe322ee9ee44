"""Interop with independent implementations: jwcrypto (JOSE, over OpenSSL), pydid (DID documents),
``cryptography`` (raw Ed25519) and the standard library's gzip, base64 and JSON.

The key material the independent libraries use comes from the DID document our
method resolves, found by dereferencing the token's ``kid`` with pydid: the
``kid`` names the ``JsonWebKey`` verification method, as VC-JOSE-COSE requires
for JOSE with keys from a controlled identifier document.
"""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwcrypto import jwk, jws, jwt
from jwcrypto.common import JWException, json_encode
from pydid import DIDDocument, DIDUrl

from didnode.core.credentials import DEVICE_ATTESTATION, VerifyPolicy, device_attestation_claims
from didnode.core.credentials.model import build_claims
from didnode.core.credentials.status_list import Bitstring
from didnode.core.document import did_document
from didnode.core.encoding import b64url
from tests.core.credentials.helpers import T0, TimedLedger, device
from tests.factory import Identity


def dereference_jwk(ledger: TimedLedger, kid: str) -> jwk.JWK:
    """The public JWK that ``kid`` dereferences to in the issuer's DID document (pydid does the dereferencing)."""
    did = kid.split("#")[0]
    doc = DIDDocument.deserialize(did_document(ledger.resolve(did)))
    method = doc.dereference(DIDUrl.parse(kid))
    assert method.type == "JsonWebKey", method.type
    assert kid in [str(ref) if isinstance(ref, DIDUrl) else str(ref.id) for ref in doc.assertion_method or ()]
    return jwk.JWK(**method.public_key_jwk)


def private_jwk(ident: Identity) -> jwk.JWK:
    """The issuer's private key as an RFC 8037 JWK (its public half is the one on our ledger)."""
    return jwk.JWK(kty="OKP", crv="Ed25519", d=b64url(bytes(ident.key)), x=b64url(bytes(ident.key.verify_key)))


def jwcrypto_token(ident: Identity, claims: dict, header: dict) -> str:
    signer = jws.JWS(json.dumps(claims))
    signer.allowed_algs = ["EdDSA", "Ed25519"]
    signer.add_signature(private_jwk(ident), alg=header["alg"], protected=json_encode(header))
    return signer.serialize(compact=True)  # type: ignore[no-any-return]


def raw_token(ident: Identity, claims: dict, header: dict) -> str:
    """A token over any header, signed with ``cryptography``'s Ed25519 (no JOSE library in between)."""
    key = Ed25519PrivateKey.from_private_bytes(bytes(ident.key))
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    return signing_input + "." + b64url(key.sign(signing_input.encode("ascii")))


def claims_for(ident: Identity, subject: str) -> dict:
    return build_claims(ident.did, subject, [DEVICE_ATTESTATION], device_attestation_claims("X", "S", "h", "f", T0), T0 + 1000)


def test_our_kid_dereferences_to_the_jsonwebkey_method_and_jwcrypto_verifies() -> None:
    ledger = TimedLedger()
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    token = iss.issue(dev.did, [DEVICE_ATTESTATION], device_attestation_claims("X", "S", "h", "f", T0), T0 + 1000, valid_until_ms=T0 + 10**9)
    checker = jws.JWS()
    checker.deserialize(token)
    assert checker.jose_header == {"alg": "EdDSA", "kid": f"{ident.did}#{ident.current}-jwk", "typ": "vc+jwt"}
    checker.verify(dereference_jwk(ledger, checker.jose_header["kid"]), alg="EdDSA")
    claims = json.loads(checker.payload)
    assert claims["issuer"] == ident.did and claims["credentialSubject"]["id"] == dev.did
    # ...and jwcrypto rejects it under another issuer's key.
    _, other = ledger.new_issuer()
    with pytest.raises(JWException):
        checker.verify(dereference_jwk(ledger, other.kid), alg="EdDSA")


def test_nbf_is_not_written_and_a_jwt_library_validates_the_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = TimedLedger()
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    token = iss.issue(dev.did, [DEVICE_ATTESTATION], device_attestation_claims("X", "S", "h", "f", T0), T0 + 1000, valid_until_ms=T0 + 10**9)
    # jwcrypto's JWT checks exp/nbf against its clock when present; pin its clock inside validity.
    monkeypatch.setattr(jwt.time, "time", lambda: (T0 + 5000) / 1000)
    checked = jwt.JWT(jwt=token, key=dereference_jwk(ledger, iss.kid), algs=["EdDSA"], check_claims={"iss": ident.did, "sub": dev.did, "exp": None})
    claims = json.loads(checked.claims)
    assert "nbf" not in claims and claims["iat"] == (T0 + 1000) // 1000 and claims["exp"] == (T0 + 10**9) // 1000
    lst = iss.status_list("revocation", 1, Bitstring(), T0 + 1000)
    assert "nbf" not in json.loads(base64.urlsafe_b64decode(lst.split(".")[1] + "=="))
    # A token that still carries nbf (issued before) verifies when it agrees with validFrom.
    old = raw_token(ident, {**claims_for(ident, dev.did), "nbf": (T0 + 1000) // 1000}, {"alg": "EdDSA", "kid": ident.kid, "typ": "vc+jwt"})
    assert ledger.verifier().verify(old, T0 + 2000).valid


def test_jwcrypto_signed_credential_verifies_with_ours_with_either_kid_form() -> None:
    ledger = TimedLedger()
    ident, _ = ledger.new_issuer()
    dev = device(ledger)
    claims = claims_for(ident, dev.did)
    for kid in (f"{ident.kid}-jwk", ident.kid):  # the JsonWebKey form, and the Multikey form of tokens issued before
        token = jwcrypto_token(ident, claims, {"alg": "EdDSA", "kid": kid, "typ": "vc+jwt"})
        report = ledger.verifier().verify(token, T0 + 2000, expected_subject=dev.did)
        assert report.valid and report.kid == kid, report.to_json()
    # A jwcrypto token with a key that is NOT the one registered fails as a bad signature.
    stranger = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    forged = jws.JWS(json.dumps(claims))
    forged.add_signature(stranger, alg="EdDSA", protected=json_encode({"alg": "EdDSA", "kid": ident.kid + "-jwk", "typ": "vc+jwt"}))
    assert ledger.verifier().verify(forged.serialize(compact=True), T0 + 2000).reason == "CREDENTIAL_BAD_SIGNATURE"


def test_alg_ed25519_of_rfc_9864_is_accepted_beside_eddsa() -> None:
    ledger = TimedLedger()
    ident, _ = ledger.new_issuer()
    dev = device(ledger)
    token = jwcrypto_token(ident, claims_for(ident, dev.did), {"alg": "Ed25519", "kid": ident.kid + "-jwk", "typ": "vc+jwt"})
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == "Ed25519"
    assert ledger.verifier().verify(token, T0 + 2000).valid
    # A verifier whose policy names EdDSA only refuses it.
    assert ledger.verifier(VerifyPolicy(allowed_algs=frozenset({"EdDSA"}))).verify(token, T0 + 2000).reason == "ALG_NOT_ALLOWED"
    # ... and an alg that merely looks alike is refused.
    for alg in ("ed25519", "Ed448", "ES256"):
        assert ledger.verifier().verify(raw_token(ident, claims_for(ident, dev.did), {"alg": alg, "kid": ident.kid, "typ": "vc+jwt"}), T0 + 2000).reason == "ALG_NOT_ALLOWED"


def test_unknown_non_critical_header_members_are_ignored() -> None:
    ledger = TimedLedger()
    ident, _ = ledger.new_issuer()
    dev = device(ledger)
    header = {"alg": "EdDSA", "kid": ident.kid + "-jwk", "typ": "vc+jwt", "x-vendor": {"trace": [1, 2]}, "iss": ident.did, "cty": "vc", "zip": "none"}
    token = jwcrypto_token(ident, claims_for(ident, dev.did), header)
    assert ledger.verifier().verify(token, T0 + 2000).valid


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("crit", ["exp"]),
        ("crit", ["x-vendor"]),
        ("jwk", {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        ("jku", "https://evil.example/keys.json"),
        ("x5u", "https://evil.example/cert.pem"),
        ("x5c", ["MIIB"]),
        ("x5t", "dGh1bWI"),
        ("x5t#S256", "dGh1bWI"),
        ("b64", False),
    ],
)
def test_crit_and_key_picking_header_members_are_refused(member: str, value: object) -> None:
    """Validly signed by the issuer's key (``cryptography``, no JOSE library): refused for the header alone."""
    ledger = TimedLedger()
    ident, _ = ledger.new_issuer()
    dev = device(ledger)
    header = {"alg": "EdDSA", "kid": ident.kid + "-jwk", "typ": "vc+jwt", member: value}
    report = ledger.verifier().verify(raw_token(ident, claims_for(ident, dev.did), header), T0 + 2000)
    assert report.reason == "HEADER_NOT_ALLOWED" and member in report.message


def test_status_list_decodes_with_the_standard_library_and_hides_the_count() -> None:
    ledger = TimedLedger()
    _, iss = ledger.new_issuer()
    bits = Bitstring()
    bits.set(94_567, True)
    token = iss.status_list("revocation", 1, bits, T0 + 1000)
    subject = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["credentialSubject"]
    assert "allocated" not in subject
    raw = gzip.decompress(base64.urlsafe_b64decode(subject["encodedList"][1:] + "=="))
    assert len(raw) * 8 == 131_072 and raw[94_567 // 8] == 0x80 >> (94_567 % 8) and sum(raw) == raw[94_567 // 8]
