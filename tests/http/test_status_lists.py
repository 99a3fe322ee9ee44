"""Status lists at HTTP URLs, read and checked by code that is not didnode's.

A credential is issued with status entries and its index revoked through the
ledger (gRPC, the client library); then, over real HTTP only:

* the status list credential is fetched from the URL its entry names (the
  host of an HTTP URL replaced by the test node's) and from ``/status/...``;
* its bitstring is decoded by this file's own decoder, written from the
  Bitstring Status List specification (multibase ``u`` + base64url, GZIP,
  most significant bit first), and the revoked bit is found set;
* the credential and the list are verified with jwcrypto (an independent JOSE
  library), each with the key found by dereferencing its ``kid`` over HTTP.
"""

from __future__ import annotations

import base64
import gzip
import json
from urllib.parse import quote, urlsplit

import base58
import pytest
from jwcrypto import jwk, jws

from didnode.client import Client, StatusLists
from didnode.clock import wall_ms
from didnode.core.credentials import DEVICE_ATTESTATION, Issuer, device_attestation_claims
from tests.factory import Identity, new_create
from tests.http.conftest import HttpNode, get

ID = "/1.0/identifiers/"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_bitstring(encoded_list: str) -> bytes:
    """Bitstring Status List v1.0, "Bitstring Expansion": multibase base64url (prefix 'u'), then GZIP."""
    assert encoded_list.startswith("u"), "the spec's encodedList is a multibase base64url string"
    return gzip.decompress(b64url_decode(encoded_list[1:]))


def bit(bits: bytes, index: int) -> bool:
    """The status of ``index``: the first index is the most significant bit of the first byte."""
    return bool(bits[index // 8] >> (7 - index % 8) & 1)


def jose_parts(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def fetch_key(http_node: HttpNode, kid: str) -> jwk.JWK:
    """The verification key ``kid`` names, dereferenced over HTTP: its JWK, or its Multikey converted here."""
    did, _, fragment = kid.partition("#")
    r = get(http_node.base, ID + quote(did, safe=":") + "%23" + quote(fragment, safe=""), {"Accept": "application/did+json"})
    assert r.status == 200 and r.content_type == "application/did+json", r.body
    method = r.json()
    assert method["id"] == kid and method["controller"] == did
    if "publicKeyJwk" in method:
        return jwk.JWK(**method["publicKeyJwk"])
    raw = base58.b58decode(method["publicKeyMultibase"][1:])
    assert method["publicKeyMultibase"][0] == "z" and raw[:2] == b"\xed\x01"
    return jwk.JWK(kty="OKP", crv="Ed25519", x=base64.urlsafe_b64encode(raw[2:]).rstrip(b"=").decode())


def jose_verify(http_node: HttpNode, token: str) -> dict:
    """Verify ``token`` with jwcrypto and the key of its kid (dereferenced over HTTP); its payload."""
    header, _ = jose_parts(token)
    assert header["alg"] in ("EdDSA", "Ed25519")
    key = fetch_key(http_node, header["kid"])
    checked = jws.JWS()
    checked.deserialize(token)
    checked.verify(key, alg=header["alg"])
    return json.loads(checked.payload)  # type: ignore[no-any-return]


def http_target(http_node: HttpNode, url: str) -> str:
    """The request target on the test node for a statusListCredential URL (an HTTP URL's host replaced, or a DID URL)."""
    if url.startswith(("http://", "https://")):
        parts = urlsplit(url)
        assert ID in parts.path, url
        return parts.path[parts.path.index(ID) :] + (f"?{parts.query}" if parts.query else "")
    did, _, query = url.partition("?")
    return ID + did + "?" + query


@pytest.fixture(scope="module")
def issued(http_node: HttpNode, client: Client) -> tuple[Identity, str, int]:
    """An issuer with status lists, a credential with status entries, its index revoked."""
    mfr, op = new_create()
    client.submit(op)
    dev, op = new_create()
    client.submit(op)
    iss = Issuer(mfr.did, "key-1", mfr.key)
    lists = StatusLists(client, iss, mfr.key, "local")
    lists.allocate(5)  # others first: the index under test is not the first
    alloc = lists.allocate(1)
    index = alloc.indices[0] if hasattr(alloc, "indices") else alloc.first  # random (issue #16) or sequential indices
    now = wall_ms()
    claims = device_attestation_claims("X1", "SN-9", "hw2", "fw3", now - 86_400_000)
    token = iss.issue(dev.did, [DEVICE_ATTESTATION], claims, now, status=iss.status_entries(alloc.number, index))
    lists.set_status("revocation", alloc.number, index, True)
    return mfr, token, index


def test_the_status_list_by_its_url_decoded_independently(http_node: HttpNode, issued: tuple[Identity, str, int]) -> None:
    mfr, token, index = issued
    _, payload = jose_parts(token)
    entries = {e["statusPurpose"]: e for e in payload["credentialStatus"]}
    assert set(entries) == {"revocation", "suspension"}
    for purpose, entry in entries.items():
        assert int(entry["statusListIndex"]) == index
        r = get(http_node.base, http_target(http_node, entry["statusListCredential"]), {"Accept": "application/vc+jwt"})
        assert r.status == 200 and r.content_type == "application/vc+jwt"
        list_token = r.body.decode()
        assert list_token.count(".") == 2
        _, list_claims = jose_parts(list_token)
        subject = list_claims["credentialSubject"]
        assert list_claims["issuer"] in (mfr.did, {"id": mfr.did}) and subject["statusPurpose"] == purpose
        bits = decode_bitstring(subject["encodedList"])
        assert len(bits) * 8 >= 131_072  # the spec's minimum size (herd privacy)
        assert bit(bits, index) is (purpose == "revocation")
        assert sum(bin(b).count("1") for b in bits) == (purpose == "revocation")  # only that index is set
        # The same bytes by the friendlier path, and by default (Accept */*).
        rid = entry["statusListCredential"].rpartition("resource=")[2]
        again = get(http_node.base, f"/status/{mfr.did}/{rid}")
        assert again.status == 200 and again.body == r.body and again.content_type == "application/vc+jwt"
        # As a dereferencing result: the token as a string, with its ledger metadata.
        deref = get(http_node.base, http_target(http_node, entry["statusListCredential"]), {"Accept": "application/did-url-dereferencing"}).json()
        assert deref["content"] == list_token and deref["dereferencingMetadata"]["contentType"] == "application/vc+jwt"
        assert int(deref["contentMetadata"]["versionId"]) >= 1
        # A client asking for something else than the token is told so.
        assert get(http_node.base, http_target(http_node, entry["statusListCredential"]), {"Accept": "application/did"}).status == 406


def test_credential_and_list_verified_with_jwcrypto_by_kid_over_http(http_node: HttpNode, issued: tuple[Identity, str, int]) -> None:
    mfr, token, _ = issued
    payload = jose_verify(http_node, token)
    assert payload["issuer"] in (mfr.did, {"id": mfr.did})
    for entry in payload["credentialStatus"]:
        list_token = get(http_node.base, http_target(http_node, entry["statusListCredential"])).body.decode()
        assert jose_verify(http_node, list_token)["credentialSubject"]["statusPurpose"] == entry["statusPurpose"]
    # A byte changed: jwcrypto refuses it with the same key.
    header, body, sig = token.split(".")
    forged = ".".join((header, body, ("A" if sig[0] != "A" else "B") + sig[1:]))
    with pytest.raises(jws.InvalidJWSSignature):
        jose_verify(http_node, forged)
