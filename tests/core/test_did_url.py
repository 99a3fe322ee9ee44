"""DID URLs (didnode.core.did_url) and dereferencing with content negotiation (didnode.core.dereference): pure."""

from __future__ import annotations

import pytest

from didnode import errors
from didnode.core.dereference import (
    DEREFERENCING,
    DID,
    DID_JSON,
    DOCUMENT_OFFERS,
    FRAGMENT_OFFERS,
    LEGACY_RESULT,
    RESULT,
    choose,
    error_representation,
    parse_accept,
    represent_document,
    represent_fragment,
    represent_resource,
    resolve_reference,
    safe_media_type,
    service_location,
)
from didnode.core.did_url import DID_ERROR_NS, DidUrl, error_object, error_type, parse_did_url, parse_http_target, percent_decode
from didnode.core.document import DID_LD_JSON, resolution_result
from didnode.core.results import Resource
from tests.factory import MemLedger, new_create

SERVICES = [{"id": "mqtt", "type": "MQTTBroker", "serviceEndpoint": "mqtts://broker.example:8883/base/x"}]


@pytest.fixture(scope="module")
def did() -> str:
    return new_create()[0].did


@pytest.fixture(scope="module")
def result() -> dict:
    ledger = MemLedger()
    ident, op = new_create(services=SERVICES)
    state = ledger.submit(op)
    return resolution_result(state, state.created_time)


# -- parsing -------------------------------------------------------------------


def test_a_did_and_its_parameters(did: str) -> None:
    assert parse_did_url(did) == DidUrl(did)
    assert parse_did_url(did).is_did and parse_did_url(f"{did}?versionId=2").is_did
    url = parse_did_url(f"{did}?service=mqtt&relativeRef=%2Fa%2Fb%3Fq%3D1#frag")
    assert (url.service, url.relative_ref, url.fragment) == ("mqtt", "/a/b?q=1", "frag") and not url.is_did
    assert parse_did_url(f"{did}?versionTime=2026-01-31T12:00:00Z").version_time == "2026-01-31T12:00:00Z"
    assert parse_did_url(f"{did}?resource=revocation-1#94567").resource == "revocation-1"
    assert parse_did_url(f"{did}?") == DidUrl(did)  # an empty query is a query
    assert parse_did_url(f"{did}?versionId=0&service=mqtt").text == f"{did}?service=mqtt&versionId=0"


@pytest.mark.parametrize(
    ("tail", "cls"),
    [
        ("did:web:example.com", errors.MethodNotSupported),
        ("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK#x", errors.MethodNotSupported),
        ("did:dnode:Qm123", errors.InvalidDid),
        ("DID:dnode:x", errors.InvalidDid),
        ("http://example.com", errors.InvalidDid),
        ("{did}/path", errors.InvalidDidUrl),
        ("{did}?unknown=1", errors.InvalidDidUrl),
        ("{did}?versionId=1&versionId=2", errors.InvalidDidUrl),
        ("{did}?versionId=01", errors.InvalidDidUrl),
        ("{did}?versionId=-1", errors.InvalidDidUrl),
        ("{did}?versionId=99999999999999999", errors.InvalidDidUrl),
        ("{did}?versionTime=yesterday", errors.InvalidDidUrl),
        ("{did}?versionTime=2026-02-30T00:00:00Z", errors.InvalidDidUrl),
        ("{did}?versionId=1&versionTime=2026-01-01T00:00:00Z", errors.InvalidOptions),
        ("{did}?service=a%20b", errors.InvalidDidUrl),
        ("{did}?relativeRef=%2Fx", errors.InvalidDidUrl),
        ("{did}?service=mqtt&relativeRef=https%3A%2F%2Fevil.example", errors.InvalidDidUrl),
        ("{did}?service=mqtt&relativeRef=%2F%2Fevil.example", errors.InvalidDidUrl),
        ("{did}?service=mqtt&resource=r", errors.InvalidDidUrl),
        ("{did}?resource=r&versionId=1", errors.InvalidDidUrl),
        ("{did}?service=", errors.InvalidDidUrl),
        ("{did}?service", errors.InvalidDidUrl),
        ("{did}?&service=mqtt", errors.InvalidDidUrl),
        ("{did}?service=%zz", errors.InvalidDidUrl),
        ("{did}?service=%ff", errors.InvalidDidUrl),
        ("{did}?service=a b", errors.InvalidDidUrl),
        ("{did}#", errors.InvalidDidUrl),
        ("{did}#a#b", errors.InvalidDidUrl),
        ("{did}#%0a", errors.InvalidDidUrl),
    ],
)
def test_what_does_not_parse(did: str, tail: str, cls: type) -> None:
    with pytest.raises(cls) as info:
        parse_did_url(tail.format(did=did))
    assert type(info.value) is cls


def test_bounds(did: str) -> None:
    with pytest.raises(errors.InvalidDidUrl):
        parse_did_url(did + "#" + "a" * 3000)
    with pytest.raises(errors.InvalidDidUrl):
        parse_did_url(f"{did}#{'a' * 129}")
    with pytest.raises(errors.InvalidDidUrl):
        parse_did_url(f"{did}?service=mqtt&relativeRef=%2F{'a' * 600}")


def test_percent_decoding_is_strict() -> None:
    assert percent_decode("did%3Adnode%3Ax", "p") == "did:dnode:x"
    assert percent_decode("%C3%A9", "p") == "é"
    for bad in ("%", "%4", "%G1", "%C3", "%00", "\x01", "é", "%7F"):
        with pytest.raises(errors.InvalidDidUrl):
            percent_decode(bad, "p")


def test_http_targets(did: str) -> None:
    enc = did.replace(":", "%3A")
    assert parse_http_target(enc, "") == DidUrl(did)
    assert parse_http_target(did + "%23key-1", "").fragment == "key-1"
    # The DID URL's query in the path (encoded), options in the HTTP query.
    url = parse_http_target(enc + "%3Fservice%3Dmqtt", "proof=false")
    assert url.service == "mqtt" and not url.proof
    # No query in the path: the HTTP query is the DID URL's query (the Universal Resolver's form).
    url = parse_http_target(did, "versionId=3&proof=true")
    assert url.version_id == 3 and url.proof
    with pytest.raises(errors.InvalidOptions):
        parse_http_target(enc + "%3FversionId%3D1", "versionId=2")  # the same parameter twice
    with pytest.raises(errors.InvalidOptions):
        parse_http_target(enc + "%3FversionId%3D1", "nonsense=1")  # an unknown option
    with pytest.raises(errors.InvalidDidUrl):
        parse_http_target(did, "nonsense=1")
    with pytest.raises(errors.InvalidOptions):
        parse_http_target(did, "proof=yes")
    with pytest.raises(errors.InvalidDidUrl):
        parse_http_target("x" * 3000, "")
    with pytest.raises(errors.InvalidDid):
        parse_http_target("", "")


def test_error_types_and_objects(did: str) -> None:
    assert error_type(errors.UnknownDid("x")) == "NOT_FOUND"
    assert error_type(errors.UnknownVersion("x")) == "NOT_FOUND"
    assert error_type(errors.InvalidDid("x"), "did:web:example.com") == "METHOD_NOT_SUPPORTED"
    assert error_type(errors.InvalidDid("x"), "did:dnode:x") == "INVALID_DID"
    assert error_type(errors.InvalidArgument("x")) == "INVALID_OPTIONS"
    assert error_type(errors.Internal("x")) == "INTERNAL_ERROR"
    assert error_type(errors.StoreCorrupted("x")) == "INTERNAL_ERROR"
    obj = error_object(errors.UnknownDid(f"{did} does not exist"))
    assert obj == {"type": DID_ERROR_NS + "NOT_FOUND", "title": "Not found", "detail": f"{did} does not exist", "reason": "UNKNOWN_DID"}


# -- negotiation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, RESULT),
        ("", RESULT),
        ("*/*", RESULT),
        ("application/*", RESULT),
        ("application/did-resolution", RESULT),
        ('application/ld+json;profile="https://w3id.org/did-resolution"', LEGACY_RESULT),
        ("application/ld+json; profile=https://w3id.org/did-resolution", LEGACY_RESULT),
        ("application/ld+json", "application/ld+json"),
        ("application/did", DID),
        ("application/did+ld+json", DID_LD_JSON),
        ("application/did+json, application/did-resolution;q=0.5", DID_JSON),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", RESULT),
        ("application/did-resolution;q=0, */*", LEGACY_RESULT),
        ("APPLICATION/DID", DID),
    ],
)
def test_negotiating_a_document(accept: str | None, chosen: str) -> None:
    assert choose(accept, DOCUMENT_OFFERS) == chosen


def test_what_cannot_be_negotiated() -> None:
    for accept in ("text/html", "application/did;q=0", "image/*", "application/did-resolution;charset=utf-16"):
        with pytest.raises(errors.RepresentationNotSupported):
            choose(accept, DOCUMENT_OFFERS)
    for accept in ("nonsense", "*/json", "application/did;q=2", "a/b;q=0.1234", "a/b," * 40, "a" * 2000):
        with pytest.raises(errors.InvalidOptions):
            parse_accept(accept)
    assert choose(None, FRAGMENT_OFFERS) == DEREFERENCING
    assert choose("application/vc+jwt", ("application/vc+jwt", DEREFERENCING)) == "application/vc+jwt"
    assert choose("*/*", ("application/vc+jwt", DEREFERENCING)) == "application/vc+jwt"


# -- dereferencing -------------------------------------------------------------


def test_documents_and_fragments(result: dict) -> None:
    did = result["didDocument"]["id"]
    assert represent_document(result, RESULT).body is result
    assert represent_document(result, DID).body == result["didDocument"]
    deref = represent_document(result, DEREFERENCING).body
    assert deref["content"] == result["didDocument"] and deref["dereferencingMetadata"]["contentType"] == DID_LD_JSON
    vm = represent_fragment(result, DidUrl(did, fragment="key-1-jwk"), DID_JSON)
    assert vm.body["type"] == "JsonWebKey" and vm.body["id"] == f"{did}#key-1-jwk" and vm.media_type == DID_JSON
    svc = represent_fragment(result, DidUrl(did, fragment="mqtt"), DEREFERENCING).body["content"]
    assert svc["serviceEndpoint"] == SERVICES[0]["serviceEndpoint"]
    with pytest.raises(errors.UnknownFragment):
        represent_fragment(result, DidUrl(did, fragment="key-9"), DID)


def test_service_redirects(result: dict) -> None:
    did = result["didDocument"]["id"]
    assert service_location(result, DidUrl(did, service="mqtt")).location == "mqtts://broker.example:8883/base/x"
    rel = service_location(result, DidUrl(did, service="mqtt", relative_ref="../y?z=1", fragment="f g")).location
    assert rel == "mqtts://broker.example:8883/y?z=1#f%20g"
    with pytest.raises(errors.UnknownService):
        service_location(result, DidUrl(did, service="nope"))


def test_deactivated_documents_are_gone(result: dict) -> None:
    gone = {**result, "didDocument": {"@context": [], "id": "x"}, "didDocumentMetadata": {**result["didDocumentMetadata"], "deactivated": True}}
    assert represent_document(gone, DID).deactivated
    assert represent_fragment(gone, DidUrl("x", fragment="key-1"), DID_JSON).deactivated
    assert service_location(gone, DidUrl("x", service="mqtt")).deactivated


def test_resources() -> None:
    res = Resource("did:dnode:x", "revocation-1", "application/vc+jwt", "a.b.c", 7, 3, 1_700_000_000_000, b"\x01" * 32)
    assert represent_resource(res, "application/vc+jwt").body == "a.b.c"
    meta = represent_resource(res, DEREFERENCING).body["contentMetadata"]
    assert meta["versionId"] == "3" and meta["ledgerPosition"] == 7 and meta["mediaType"] == "application/vc+jwt"
    assert safe_media_type("text/html\r\nSet-Cookie: x") == "application/octet-stream"
    assert safe_media_type("application/vc+jwt") == "application/vc+jwt"


def test_error_representations() -> None:
    rep = error_representation(errors.UnknownDid("gone"), None, dereferencing=False)
    assert rep.media_type == RESULT and rep.body["didDocument"] is None
    assert rep.body["didResolutionMetadata"]["error"]["type"] == DID_ERROR_NS + "NOT_FOUND"
    rep = error_representation(errors.UnknownFragment("x"), None, dereferencing=True)
    assert rep.media_type == DEREFERENCING and rep.body["dereferencingMetadata"]["error"]["reason"] == "UNKNOWN_FRAGMENT"


@pytest.mark.parametrize(
    ("ref", "target"),
    [  # RFC 3986 section 5.4.1 (normal examples) and 5.4.2 (abnormal)
        ("g:h", "g:h"), ("g", "http://a/b/c/g"), ("./g", "http://a/b/c/g"), ("g/", "http://a/b/c/g/"), ("/g", "http://a/g"),
        ("//g", "http://g"), ("?y", "http://a/b/c/d;p?y"), ("g?y", "http://a/b/c/g?y"), ("#s", "http://a/b/c/d;p?q#s"),
        ("g#s", "http://a/b/c/g#s"), ("g?y#s", "http://a/b/c/g?y#s"), (";x", "http://a/b/c/;x"), ("g;x", "http://a/b/c/g;x"),
        ("", "http://a/b/c/d;p?q"), (".", "http://a/b/c/"), ("./", "http://a/b/c/"), ("..", "http://a/b/"), ("../", "http://a/b/"),
        ("../g", "http://a/b/g"), ("../..", "http://a/"), ("../../g", "http://a/g"),
        ("../../../g", "http://a/g"), ("../../../../g", "http://a/g"), ("/./g", "http://a/g"), ("/../g", "http://a/g"),
        ("g.", "http://a/b/c/g."), (".g", "http://a/b/c/.g"), ("g..", "http://a/b/c/g.."), ("..g", "http://a/b/c/..g"),
        ("./../g", "http://a/b/g"), ("./g/.", "http://a/b/c/g/"), ("g/./h", "http://a/b/c/g/h"), ("g/../h", "http://a/b/c/h"),
        ("g;x=1/./y", "http://a/b/c/g;x=1/y"), ("g;x=1/../y", "http://a/b/c/y"),
    ],
)
def test_rfc3986_reference_resolution(ref: str, target: str) -> None:
    assert resolve_reference("http://a/b/c/d;p?q", ref) == target
