"""base58btc, multihash, Multikey and JWK encodings, cross-checked with independent libraries."""

from __future__ import annotations

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jwcrypto import jwk
from multiformats import multibase, multicodec
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from didnode import errors
from didnode.core import encoding


@given(st.binary(max_size=80))
def test_b58_matches_the_base58_package(data: bytes) -> None:
    text = encoding.b58encode(data)
    assert text == base58.b58encode(data).decode()
    assert encoding.b58decode(text) == data


def test_b58_rejects_characters_outside_the_alphabet() -> None:
    for bad in ("0", "O", "I", "l", "+"):
        with pytest.raises(ValueError):
            encoding.b58decode("z" + bad)


def test_multikey_decodes_with_multiformats() -> None:
    pub = bytes(SigningKey.generate().verify_key)
    mk = encoding.multikey_encode(pub)
    assert mk.startswith("z6Mk")
    raw = multibase.decode(mk)
    codec, key = multicodec.unwrap(raw)
    assert codec.name == "ed25519-pub" and key == pub
    x = bytes(PrivateKey.generate().public_key)
    xk = encoding.multikey_encode(x, encoding.X25519_PUB)
    assert xk.startswith("z6LS")
    codec, key = multicodec.unwrap(multibase.decode(xk))
    assert codec.name == "x25519-pub" and key == x


def test_jwk_matches_jwcrypto() -> None:
    sk = SigningKey.generate()
    ours = encoding.jwk_from_raw(bytes(sk.verify_key))
    theirs = jwk.JWK.from_json(__import__("json").dumps(ours))
    assert theirs.export_public(as_dict=True)["x"] == ours["x"]
    assert encoding.raw_from_jwk(ours) == bytes(sk.verify_key)


@pytest.mark.parametrize(
    "text",
    ["6Mk", "z", "z0000", encoding.multikey_encode(b"\x01" * 32, encoding.X25519_PUB), "z" + encoding.b58encode(encoding.ED25519_PUB + b"\x01" * 31)],
    ids=["no-multibase-prefix", "empty", "bad-alphabet", "wrong-codec", "short-key"],
)
def test_bad_multikeys_are_rejected(text: str) -> None:
    with pytest.raises(errors.InvalidKey):
        encoding.multikey_decode(text)


def test_jwk_with_private_member_is_rejected() -> None:
    with pytest.raises(errors.InvalidKey):
        encoding.raw_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": encoding.b64url(b"\x00" * 32), "d": "x"})
