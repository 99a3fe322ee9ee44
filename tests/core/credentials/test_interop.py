"""Interop with an independent JOSE implementation (jwcrypto, over OpenSSL), both ways.

The key material jwcrypto uses comes from the DID document our method
resolves (the ``JsonWebKey`` verification method), so the document's JWK
form is tested too.
"""

from __future__ import annotations

import json

import pytest
from jwcrypto import jwk, jws
from jwcrypto.common import JWException, json_encode

from didnode.core.credentials import DEVICE_ATTESTATION, device_attestation_claims
from didnode.core.credentials.model import build_claims
from didnode.core.document import did_document
from didnode.core.encoding import b64url
from tests.core.credentials.helpers import T0, TimedLedger, device


def document_jwk(ledger: TimedLedger, kid: str) -> jwk.JWK:
    """The public JWK of ``kid`` as the issuer's DID document publishes it."""
    did = kid.split("#")[0]
    doc = did_document(ledger.resolve(did))
    method = next(m for m in doc["verificationMethod"] if m["id"] == kid + "-jwk")
    assert method["type"] == "JsonWebKey" and kid + "-jwk" in doc["assertionMethod"]
    return jwk.JWK(**method["publicKeyJwk"])


def test_our_credentials_verify_with_jwcrypto() -> None:
    ledger = TimedLedger()
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    token = iss.issue(dev.did, [DEVICE_ATTESTATION], device_attestation_claims("X", "S", "h", "f", T0), T0 + 1000, valid_until_ms=T0 + 10**9)
    checker = jws.JWS()
    checker.deserialize(token)
    checker.verify(document_jwk(ledger, iss.kid), alg="EdDSA")
    assert checker.jose_header == {"alg": "EdDSA", "kid": iss.kid, "typ": "vc+jwt"}
    claims = json.loads(checker.payload)
    assert claims["issuer"] == ident.did and claims["credentialSubject"]["id"] == dev.did
    # ...and jwcrypto rejects it under a different key.
    _, other = ledger.new_issuer()
    with pytest.raises(JWException):
        checker.verify(document_jwk(ledger, other.kid), alg="EdDSA")


def test_jwcrypto_signed_credential_verifies_with_ours() -> None:
    ledger = TimedLedger()
    ident, _ = ledger.new_issuer()
    dev = device(ledger)
    # jwcrypto gets the private key as an RFC 8037 JWK; the public half is the one on our ledger.
    seed = bytes(ident.key)
    private = jwk.JWK(kty="OKP", crv="Ed25519", d=b64url(seed), x=b64url(bytes(ident.key.verify_key)))
    claims = build_claims(ident.did, dev.did, [DEVICE_ATTESTATION], device_attestation_claims("X", "S", "h", "f", T0), T0 + 1000)
    signer = jws.JWS(json.dumps(claims))
    signer.add_signature(private, alg="EdDSA", protected=json_encode({"alg": "EdDSA", "kid": ident.kid, "typ": "vc+jwt"}))
    token = signer.serialize(compact=True)
    report = ledger.verifier().verify(token, T0 + 2000, expected_subject=dev.did)
    assert report.valid, report.to_json()
    # A jwcrypto token with a key that is NOT the one registered fails as a bad signature.
    stranger = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    forged = jws.JWS(json.dumps(claims))
    forged.add_signature(stranger, alg="EdDSA", protected=json_encode({"alg": "EdDSA", "kid": ident.kid, "typ": "vc+jwt"}))
    assert ledger.verifier().verify(forged.serialize(compact=True), T0 + 2000).reason == "CREDENTIAL_BAD_SIGNATURE"
