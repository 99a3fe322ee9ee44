"""The strict compact JWS parser and signer: encodings, header profile, bounds, malleability."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_seed_keypair

from didnode import errors
from didnode.core.credentials import jose
from didnode.core.credentials.jose import parse_compact, sign_compact
from didnode.core.encoding import b64url, b64url_decode

DID = "did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE"
KID = f"{DID}#key-1"
SEED = bytes(range(32))
PK, SK = crypto_sign_seed_keypair(SEED)


def token_with(header: dict, payload: dict | bytes = b'{"a":1}', sig: bytes = bytes(64)) -> str:
    p = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return ".".join([b64url(json.dumps(header).encode()), b64url(p), b64url(sig)])


GOOD_HEADER = {"alg": "EdDSA", "kid": KID, "typ": "vc+jwt"}


def test_roundtrip_and_signature() -> None:
    tok = sign_compact({"x": "é"}, KID, SK)
    jws = parse_compact(tok)
    assert jws.header.did == DID and jws.header.key_id == "key-1"
    assert json.loads(jws.payload) == {"x": "é"}
    jose.check_signature(jws, PK)
    h = json.loads(b64url_decode(tok.split(".")[0]))
    assert h == {"alg": "EdDSA", "kid": KID, "typ": "vc+jwt"}


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", bytes(range(256))])
def test_b64url_roundtrip(data: bytes) -> None:
    assert b64url_decode(b64url(data)) == data


@pytest.mark.parametrize("text", ["QR", "QUI=", "QU+B", "QU/B", "QUJ", "QUI", "Q", " QUJD", "QUJD\n", "QUJDé"])
def test_b64url_rejects_non_canonical_and_foreign_alphabets(text: str) -> None:
    # "QR" decodes to b"A" in lenient decoders (non-zero padding bits): a malleable twin of "QQ".
    if text == "QUI":
        assert b64url_decode(text) == b"AB"  # canonical: the control case
        return
    with pytest.raises(errors.MalformedCredential):
        b64url_decode(text, "segment", errors.MalformedCredential)


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ({"alg": "none", "kid": KID, "typ": "vc+jwt"}, errors.AlgNotAllowed),
        ({"alg": "HS256", "kid": KID, "typ": "vc+jwt"}, errors.AlgNotAllowed),
        ({"alg": "RS256", "kid": KID, "typ": "vc+jwt"}, errors.AlgNotAllowed),
        ({"alg": "ES256", "kid": KID, "typ": "vc+jwt"}, errors.AlgNotAllowed),
        ({"alg": "eddsa", "kid": KID, "typ": "vc+jwt"}, errors.AlgNotAllowed),
        ({"kid": KID, "typ": "vc+jwt"}, errors.AlgNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "crit": ["exp"]}, errors.HeaderNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "jwk": {"kty": "OKP"}}, errors.HeaderNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "b64": False}, errors.HeaderNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "jku": "https://evil.example/k"}, errors.HeaderNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "x5u": "https://evil.example/c"}, errors.HeaderNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "x5c": ["MIIB"]}, errors.HeaderNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "x5t": "AAAA"}, errors.HeaderNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "x5t#S256": "AAAA"}, errors.HeaderNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "crit": []}, errors.HeaderNotAllowed),
        ({"alg": "Ed448", "kid": KID, "typ": "vc+jwt"}, errors.AlgNotAllowed),
        ({"alg": "ED25519", "kid": KID, "typ": "vc+jwt"}, errors.AlgNotAllowed),
        ({"alg": "EdDSA", "kid": KID + "-jwk-jwk", "typ": "vc+jwt"}, errors.KidForeign),
        ({"alg": "EdDSA", "kid": DID + "#-jwk", "typ": "vc+jwt"}, errors.KidForeign),
        ({"alg": "EdDSA", "kid": KID, "typ": "vc+jwt", "cty": "json"}, errors.HeaderNotAllowed),
        ({"alg": "EdDSA", "kid": KID}, errors.TypNotAllowed),
        ({"alg": "EdDSA", "kid": KID, "typ": "JWT"}, errors.TypNotAllowed),
        ({"alg": "EdDSA", "typ": "vc+jwt"}, errors.KidMissing),
        ({"alg": "EdDSA", "kid": "", "typ": "vc+jwt"}, errors.KidMissing),
        ({"alg": "EdDSA", "kid": "https://evil.example/key", "typ": "vc+jwt"}, errors.KidForeign),
        ({"alg": "EdDSA", "kid": "did:web:example.com#key-1", "typ": "vc+jwt"}, errors.KidForeign),
        ({"alg": "EdDSA", "kid": DID, "typ": "vc+jwt"}, errors.KidForeign),
        ({"alg": "EdDSA", "kid": DID + "#bad/frag", "typ": "vc+jwt"}, errors.KidForeign),
        ({"alg": "EdDSA", "kid": 7, "typ": "vc+jwt"}, errors.KidForeign),
    ],
)
def test_header_profile(header: dict, error: type[errors.CredentialInvalid]) -> None:
    with pytest.raises(error):
        parse_compact(token_with(header))


def test_header_accepts_media_type_typ_cty_vc_and_jwk_kid() -> None:
    jws = parse_compact(token_with({"alg": "EdDSA", "kid": KID + "-jwk", "typ": "application/vc+jwt", "cty": "vc"}))
    assert jws.header.key_id == "key-1"


def test_header_ignores_unknown_members_and_accepts_alg_ed25519() -> None:
    header = {"alg": "Ed25519", "kid": f"{DID}#{'k' * 32}-jwk", "typ": "vc+jwt", "x-trace": {"a": [1]}, "iss": DID, "zip": "x"}
    jws = parse_compact(token_with(header))
    assert jws.header.alg == "Ed25519" and jws.header.key_id == "k" * 32
    with pytest.raises(errors.AlgNotAllowed):
        parse_compact(token_with(header), allowed_algs=frozenset({"EdDSA"}))


def test_issuers_header_names_the_jsonwebkey_method() -> None:
    from didnode.core.credentials import Issuer

    iss = Issuer(DID, "key-1", SEED)
    h = json.loads(b64url_decode(iss.sign({"x": 1}).split(".")[0]))
    assert h == {"alg": "EdDSA", "kid": f"{DID}#key-1-jwk", "typ": "vc+jwt"} and iss.signer_kid == KID


def test_duplicate_header_member_is_refused() -> None:
    raw = b'{"alg":"EdDSA","alg":"none","kid":"%s","typ":"vc+jwt"}' % KID.encode()
    tok = ".".join([b64url(raw), b64url(b"{}"), b64url(bytes(64))])
    with pytest.raises(errors.MalformedCredential):
        parse_compact(tok)


@pytest.mark.parametrize(
    "tok",
    [
        "a.b",
        "a.b.c.d",
        "",
        token_with(GOOD_HEADER, sig=bytes(63)),
        token_with(GOOD_HEADER, sig=b""),
        token_with(GOOD_HEADER, payload=b""),
        token_with(GOOD_HEADER) + "=",
    ],
)
def test_structure(tok: str) -> None:
    with pytest.raises(errors.MalformedCredential):
        parse_compact(tok)


def test_oversized_token_is_refused_before_decoding() -> None:
    tok = token_with(GOOD_HEADER, payload={"pad": "x" * 20000})
    with pytest.raises(errors.TokenTooLarge):
        parse_compact(tok)
    with pytest.raises(errors.TokenTooLarge):
        parse_compact("!" * 20000)  # not even base64: size comes first
    assert parse_compact(tok, max_chars=len(tok)).payload


def test_non_ascii_token() -> None:
    with pytest.raises(errors.MalformedCredential):
        parse_compact(token_with(GOOD_HEADER)[:-1] + "é")


_TOKEN = sign_compact({"iss": DID, "n": 1}, KID, SK)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(_TOKEN) - 1), st.integers(min_value=1, max_value=255))
def test_any_single_byte_mutation_fails(pos: int, delta: int) -> None:
    raw = bytearray(_TOKEN.encode())
    raw[pos] = (raw[pos] + delta) % 256
    mutated = raw.decode("latin-1")
    with pytest.raises(errors.CredentialInvalid):
        jws = parse_compact(mutated)
        jose.check_signature(jws, PK)
