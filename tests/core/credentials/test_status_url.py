"""``statusListCredential`` URLs: the HTTP(S) form issuers write and the DID URL form of older credentials,
both mapped to the ledger resource whatever the host; checked against ``urllib.parse`` (independent)."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from didnode import errors
from didnode.core.credentials import Issuer
from didnode.core.credentials.status_url import DEFAULT_STATUS_BASE_URL, parse_status_list_url, status_list_url, validate_base_url

DID = "did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE"
OTHER = "did:dnode:QmW9CnrzpB8unZrYyjUN7h8h9Kfr72Ju19ijJ1zx5snX8Z"
ENC = DID.replace(":", "%3A")


@pytest.mark.parametrize(
    "url",
    [
        f"{DID}?resource=revocation-1",  # credentials issued before HTTP URLs
        f"https://resolver.example.com/1.0/identifiers/{DID}?resource=revocation-1",
        f"http://127.0.0.1:8080/1.0/identifiers/{DID}?resource=revocation-1",
        f"HTTPS://[::1]:8443/1.0/identifiers/{DID}?resource=revocation-1",
        f"https://proxy.example/didnode/v2/1.0/identifiers/{DID}?resource=revocation-1",
        f"https://r.example/1.0/identifiers/{ENC}?resource=revocation-1",
        f"https://r.example/1.0/identifiers/{DID}?resource=revocation%2D1",
        f"https://r.example/1.0/identifiers/{ENC}%3Fresource%3Drevocation-1",  # the whole DID URL in the path
        f"https://r.example/1.0/identifiers/{DID}%3fresource%3drevocation-1",
    ],
)
def test_every_form_maps_to_the_ledger_resource(url: str) -> None:
    assert parse_status_list_url(url) == (DID, "revocation-1")


@pytest.mark.parametrize(
    "url",
    [
        "",
        DID,
        f"{DID}?resource=",
        f"{DID}?resource=bad/id",
        f"did:web:example.com?resource=revocation-1",
        f"ftp://r.example/1.0/identifiers/{DID}?resource=revocation-1",
        f"https://r.example/1.0/identifiers/{DID}",
        f"https://r.example/1.0/identifiers/{DID}?",
        f"https://r.example/1.0/identifiers/{DID}?resource=revocation-1&versionId=3",
        f"https://r.example/1.0/identifiers/{DID}?resource=revocation-1&resource=revocation-2",
        f"https://r.example/1.0/identifiers/{DID}?versionId=3",
        f"https://r.example/1.0/identifiers/{DID}?resource=revocation-1#frag",
        f"https://r.example/1.0/identifiers/{DID}/x?resource=revocation-1",
        f"https://r.example/2.0/identifiers/{DID}?resource=revocation-1",
        f"https://r.example/identifiers/{DID}?resource=revocation-1",
        f"https://user:pw@r.example/1.0/identifiers/{DID}?resource=revocation-1",
        f"https:///1.0/identifiers/{DID}?resource=revocation-1",
        f"https://r.example/1.0/identifiers/{DID}?resource=revocation-1%",
        f"https://r.example/1.0/identifiers/{DID}?resource=revocation-1%zz",
        f"https://r.example/1.0/identifiers/{DID}?resource=%ff",
        f"https://r.example/1.0/identifiers/{DID}?resource=a+b",
        f"https://r.example/1.0/identifiers/{DID}?resource=revocation 1",
        f"https://r.example/1.0/identifiers/{DID}%2Fx?resource=revocation-1",
        f"https://r.example/1.0/identifiers/{ENC}%3Fresource%3Drevocation-1?resource=revocation-1",
        f"https://r.example/1.0/identifiers/did:dnode:Qm123?resource=revocation-1",
        f"https://r.example/1.0/identifiers/{DID}?resource=revocation-1é",
        "https://r.example/" + "a" * 3000,
    ],
)
def test_malformed_urls_are_claims_invalid(url: str) -> None:
    with pytest.raises(errors.ClaimsInvalid):
        parse_status_list_url(url)


def test_non_strings_are_claims_invalid() -> None:
    for value in (None, 7, ["x"], {"a": 1}):
        with pytest.raises(errors.ClaimsInvalid):
            parse_status_list_url(value)


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://resolver.example.com", "https://resolver.example.com"),
        ("https://resolver.example.com/", "https://resolver.example.com"),
        ("http://10.0.0.5:8080/dnode/", "http://10.0.0.5:8080/dnode"),
        ("https://[2001:db8::1]:443", "https://[2001:db8::1]:443"),
    ],
)
def test_base_urls(base: str, expected: str) -> None:
    assert validate_base_url(base) == expected


@pytest.mark.parametrize("base", ["", "resolver.example.com", "ftp://x", "https://", "https://x?y=1", "https://x#f", "https://u@x", "https://x y", 7, None])
def test_bad_base_urls_are_invalid_arguments(base: object) -> None:
    with pytest.raises(errors.InvalidArgument):
        validate_base_url(base)


def test_issuer_default_and_chosen_base() -> None:
    seed = bytes(range(32))
    default = Issuer(DID, "key-1", seed)
    assert default.status_url("revocation-1") == f"{DEFAULT_STATUS_BASE_URL}/1.0/identifiers/{DID}?resource=revocation-1"
    rev, sus = Issuer(DID, "key-1", seed, "https://resolver.example.com/").status_entries(2, 77)
    assert rev.list_url == f"https://resolver.example.com/1.0/identifiers/{DID}?resource=revocation-2"
    assert rev.to_json()["id"] == rev.list_url + "#77" and (sus.list_did, sus.resource_id) == (DID, "suspension-2")
    legacy = Issuer(DID, "key-1", seed, None).status_entries(1, 3)[0]
    assert legacy.list_url == f"{DID}?resource=revocation-1"


# -- property: our mapping agrees with urllib's reading of the same URL --------------------------------

_HOSTS = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.just("[::1]"),
)
_PORTS = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
_PREFIX = st.lists(st.from_regex(r"[A-Za-z0-9._~-]{1,12}", fullmatch=True), max_size=3).map(lambda parts: "".join("/" + p for p in parts))
_RID = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
_QUOTE = st.sampled_from(["none", "did", "all"])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["http", "https"]), _HOSTS, _PORTS, _PREFIX, st.sampled_from([DID, OTHER]), _RID, _QUOTE)
def test_mapping_agrees_with_urllib(scheme: str, host: str, port: str, prefix: str, did: str, rid: str, quote: str) -> None:
    base = validate_base_url(f"{scheme}://{host}{port}{prefix}")
    built = status_list_url(did, rid, base)
    # urllib reads what we build as the HTTP(S) URL we mean.
    parts = urllib.parse.urlsplit(built)
    assert parts.scheme == scheme and parts.netloc == f"{host}{port}" and parts.fragment == ""
    assert parts.path == f"{prefix}/1.0/identifiers/{did}"
    assert urllib.parse.parse_qs(parts.query, strict_parsing=True) == {"resource": [rid]}
    assert parse_status_list_url(built) == (did, rid)
    # A URL urllib builds, percent-encoding as much as it likes, maps to the same resource.
    safe = {"none": ":", "did": "", "all": ""}[quote]
    path = f"{prefix}/1.0/identifiers/{urllib.parse.quote(did, safe=safe)}"
    query = urllib.parse.urlencode({"resource": rid}) if quote != "all" else "resource=" + "".join(f"%{b:02X}" for b in rid.encode())
    assert parse_status_list_url(urllib.parse.urlunsplit((scheme, f"{host}{port}", path, query, ""))) == (did, rid)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_maps_or_is_claims_invalid(text: str) -> None:
    for candidate in (text, f"https://h/1.0/identifiers/{DID}?resource={text}", f"https://h/1.0/identifiers/{text}?resource=r", f"{DID}?resource={text}"):
        try:
            did, rid = parse_status_list_url(candidate)
        except errors.ClaimsInvalid:
            continue
        assert did in (DID,) or did.startswith("did:dnode:Qm")
        assert 1 <= len(rid) <= 32
