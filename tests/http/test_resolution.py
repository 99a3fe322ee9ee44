"""DID resolution and dereferencing over real HTTP (W3C DID Resolution's HTTP(S) binding), against a real node.

Each status and error type of the binding's table, content negotiation,
fragments, services, versions, resources, the state proof option, and the
bounds on every part of the request. The client is ``http.client`` (the
target sent exactly as written, redirects not followed).
"""

from __future__ import annotations

import json
import time

import grpc
import pytest

from didnode import errors
from didnode.client import Client
from didnode.core import builder
from didnode.core import proof_bundle
from didnode.core.did_url import DID_ERROR_NS
from didnode.core.keystate import DidState
from didnode.core.transparency_verify import verify_bundle
from tests.factory import Identity, new_create
from tests.http.conftest import HttpNode, Reply, get

ID = "/1.0/identifiers/"
SERVICES = [{"id": "mqtt", "type": "MQTTBroker", "serviceEndpoint": "mqtts://broker.example:8883/devices/a"}]


@pytest.fixture(scope="module")
def device(client: Client) -> Identity:
    ident, op = new_create(services=SERVICES)
    client.submit(op)
    return ident


@pytest.fixture(scope="module")
def updated(client: Client) -> Identity:
    """A DID with two versions: created without services, then given one."""
    ident, op = new_create()
    client.submit(op)
    time.sleep(1.1)  # versionTime has second precision: the update lands in a later second
    st = client.state(ident.did)
    client.submit(builder.sign(builder.update("local", ident.did, st.seq + 1, st.last, SERVICES, None), [(ident.kid, ident.key)]))
    return ident


@pytest.fixture(scope="module")
def deactivated(client: Client) -> Identity:
    ident, op = new_create()
    client.submit(op)
    st = client.state(ident.did)
    client.submit(builder.sign(builder.deactivate("local", ident.did, st.seq + 1, st.last, "retired", bytes(ident.next_key.verify_key)), [(builder.next_kid(ident.did), ident.next_key)]))
    return ident


def error_of(reply: Reply, member: str = "didResolutionMetadata") -> dict:
    body = reply.json()
    return body[member]["error"]  # type: ignore[no-any-return]


# -- resolution ----------------------------------------------------------------


def test_resolution_result_by_default(http_node: HttpNode, device: Identity, client: Client) -> None:
    r = get(http_node.base, ID + device.did)
    assert r.status == 200 and r.content_type == "application/did-resolution"
    body = r.json()
    assert body == client.resolve(device.did)  # the same answer as gRPC
    assert body["didDocument"]["id"] == device.did and body["didResolutionMetadata"]["contentType"] == "application/did+ld+json"
    assert r.headers["Vary"] == "Accept" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    # The DID percent-encoded as a whole is the same request (the binding's form when options are given).
    assert get(http_node.base, ID + device.did.replace(":", "%3A")).json() == body


@pytest.mark.parametrize(
    ("accept", "content_type", "whole"),
    [
        ("application/did-resolution", "application/did-resolution", True),
        ('application/ld+json;profile="https://w3id.org/did-resolution"', 'application/ld+json;profile="https://w3id.org/did-resolution"', True),
        ("application/did", "application/did", False),
        ("application/did+json", "application/did+json", False),
        ("application/did+ld+json", "application/did+ld+json", False),
        ("application/ld+json", "application/ld+json", False),
        ("application/json", "application/json", False),
        ("*/*", "application/did-resolution", True),
        ("text/html, application/did;q=0.9", "application/did", False),
    ],
)
def test_content_negotiation(http_node: HttpNode, device: Identity, accept: str, content_type: str, whole: bool) -> None:
    r = get(http_node.base, ID + device.did, {"Accept": accept})
    assert r.status == 200 and r.content_type == content_type
    doc = r.json()["didDocument"] if whole else r.json()
    assert doc["id"] == device.did and doc["service"][0]["serviceEndpoint"] == SERVICES[0]["serviceEndpoint"]


def test_dereferencing_result_of_a_did(http_node: HttpNode, device: Identity) -> None:
    r = get(http_node.base, ID + device.did, {"Accept": "application/did-url-dereferencing"})
    assert r.status == 200 and r.content_type == "application/did-url-dereferencing"
    body = r.json()
    assert body["content"]["id"] == device.did and body["contentMetadata"]["versionId"] == "0"


def test_versions(http_node: HttpNode, updated: Identity, client: Client) -> None:
    first = get(http_node.base, f"{ID}{updated.did}?versionId=0").json()
    assert "service" not in first["didDocument"] and first["didDocumentMetadata"]["nextVersionId"] == "1"
    assert first == client.resolve(updated.did, version_id=0)
    at = first["didDocumentMetadata"]["versionTime"]
    by_time = get(http_node.base, f"{ID}{updated.did}?versionTime={at}").json()
    assert by_time["didDocumentMetadata"]["versionId"] == "0"
    # The binding's own form: the DID encoded, the version as an option of the HTTP query.
    assert get(http_node.base, f"{ID}{updated.did.replace(':', '%3A')}?versionId=1").json()["didDocument"]["service"][0]["id"].endswith("#mqtt")
    # In the DID URL itself (encoded in the path).
    assert get(http_node.base, f"{ID}{updated.did}%3FversionId%3D1").json()["didDocumentMetadata"]["versionId"] == "1"
    r = get(http_node.base, f"{ID}{updated.did}?versionId=7")
    assert r.status == 404 and error_of(r)["type"] == DID_ERROR_NS + "NOT_FOUND" and error_of(r)["reason"] == "UNKNOWN_VERSION"
    r = get(http_node.base, f"{ID}{updated.did}?versionTime=2001-01-01T00:00:00Z")
    assert r.status == 404 and error_of(r)["reason"] == "UNKNOWN_VERSION"


def test_deactivated_is_410_with_the_result(http_node: HttpNode, deactivated: Identity) -> None:
    r = get(http_node.base, ID + deactivated.did)
    assert r.status == 410 and r.content_type == "application/did-resolution"
    body = r.json()
    assert body["didDocumentMetadata"]["deactivated"] is True and set(body["didDocument"]) == {"@context", "id"}
    r = get(http_node.base, ID + deactivated.did, {"Accept": "application/did"})
    assert r.status == 410 and r.json()["id"] == deactivated.did
    assert get(http_node.base, ID + deactivated.did + "%23key-1").status == 410
    assert get(http_node.base, f"{ID}{deactivated.did}?versionId=0").status == 200  # its first version was active


# -- errors: each type of the binding's table ------------------------------------------


@pytest.mark.parametrize(
    ("target", "status", "kind", "reason"),
    [
        ("did:web:example.com", 501, "METHOD_NOT_SUPPORTED", "METHOD_NOT_SUPPORTED"),
        ("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", 501, "METHOD_NOT_SUPPORTED", "METHOD_NOT_SUPPORTED"),
        ("did:dnode:QmNotAValidIdentifier", 400, "INVALID_DID", "INVALID_DID"),
        ("not-a-did", 400, "INVALID_DID", "INVALID_DID"),
        ("did%3Adnode%3A%ZZ", 400, "INVALID_DID_URL", "INVALID_DID_URL"),
        ("did:dnode:%C3%28", 400, "INVALID_DID_URL", "INVALID_DID_URL"),
        ("{did}/some/path", 400, "INVALID_DID_URL", "INVALID_DID_URL"),
        ("{did}?unknown=1", 400, "INVALID_DID_URL", "INVALID_DID_URL"),
        ("{did}?versionId=1&versionId=1", 400, "INVALID_DID_URL", "INVALID_DID_URL"),
        ("{did}%3FversionId%3D0?versionId=0", 400, "INVALID_OPTIONS", "INVALID_OPTIONS"),
        ("{did}?versionId=0&versionTime=2026-01-01T00:00:00Z", 400, "INVALID_OPTIONS", "INVALID_OPTIONS"),
        ("{did}?versionId=x", 400, "INVALID_DID_URL", "INVALID_DID_URL"),
        ("{did}?proof=maybe", 400, "INVALID_OPTIONS", "INVALID_OPTIONS"),
        ("{unknown}", 404, "NOT_FOUND", "UNKNOWN_DID"),
        ("{did}%23key-9", 404, "NOT_FOUND", "UNKNOWN_FRAGMENT"),
        ("{did}?service=nope", 404, "NOT_FOUND", "UNKNOWN_SERVICE"),
        ("{did}?resource=revocation-1", 404, "NOT_FOUND", "UNKNOWN_RESOURCE"),
    ],
)
def test_error_types(http_node: HttpNode, device: Identity, target: str, status: int, kind: str, reason: str) -> None:
    unknown = new_create()[0].did
    r = get(http_node.base, ID + target.format(did=device.did, unknown=unknown))
    assert r.status == status
    member = "dereferencingMetadata" if r.content_type == "application/did-url-dereferencing" else "didResolutionMetadata"
    err = error_of(r, member)
    assert err["type"] == DID_ERROR_NS + kind and err["reason"] == reason and err["status"] == status
    assert err["title"] and err["detail"] and "Traceback" not in r.body.decode()


def test_representation_not_supported(http_node: HttpNode, device: Identity) -> None:
    r = get(http_node.base, ID + device.did, {"Accept": "text/html"})
    assert r.status == 406 and r.content_type == "application/did-resolution"
    assert error_of(r)["type"] == DID_ERROR_NS + "REPRESENTATION_NOT_SUPPORTED"
    r = get(http_node.base, ID + device.did, {"Accept": "definitely not a media type"})
    assert r.status == 400 and error_of(r)["type"] == DID_ERROR_NS + "INVALID_OPTIONS"


def test_grpc_resolve_carries_the_same_error_type(http_node: HttpNode) -> None:
    from didnode.api.v1 import ledger_pb2, ledger_pb2_grpc
    from didnode.wire.status import from_rpc_error

    with grpc.insecure_channel(http_node.address) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        for did, reason, kind in [
            (new_create()[0].did, "UNKNOWN_DID", "NOT_FOUND"),
            ("did:web:example.com", "INVALID_DID", "METHOD_NOT_SUPPORTED"),
            ("did:dnode:x", "INVALID_DID", "INVALID_DID"),
        ]:
            with pytest.raises(grpc.RpcError) as info:
                stub.Resolve(ledger_pb2.ResolveRequest(did=did))
            err = from_rpc_error(info.value.code(), info.value.details(), info.value.trailing_metadata())
            assert err.reason == reason and err.details["did_error_type"] == DID_ERROR_NS + kind


# -- dereferencing ---------------------------------------------------------------


def test_fragments(http_node: HttpNode, device: Identity) -> None:
    r = get(http_node.base, ID + device.did + "%23key-1-jwk", {"Accept": "application/did+json"})
    assert r.status == 200 and r.content_type == "application/did+json"
    vm = r.json()
    assert vm["id"] == f"{device.did}#key-1-jwk" and vm["type"] == "JsonWebKey" and vm["publicKeyJwk"]["crv"] == "Ed25519"
    r = get(http_node.base, ID + device.did + "%23key-1")
    assert r.status == 200 and r.content_type == "application/did-url-dereferencing"
    assert r.json()["content"]["publicKeyMultibase"].startswith("z6Mk")
    svc = get(http_node.base, ID + device.did + "%23mqtt", {"Accept": "application/did"}).json()
    assert svc == {"id": f"{device.did}#mqtt", "type": "MQTTBroker", "serviceEndpoint": SERVICES[0]["serviceEndpoint"]}


def test_service_redirect(http_node: HttpNode, device: Identity) -> None:
    r = get(http_node.base, f"{ID}{device.did}?service=mqtt")
    assert r.status == 303 and r.headers["Location"] == SERVICES[0]["serviceEndpoint"] and r.body == b""
    r = get(http_node.base, f"{ID}{device.did}?service=mqtt&relativeRef=%2Fstatus%3Fq%3D1")
    assert r.status == 303 and r.headers["Location"] == "mqtts://broker.example:8883/status?q=1"
    r = get(http_node.base, f"{ID}{device.did}%3Fservice%3Dmqtt%26relativeRef%3Dsub%23top")
    assert r.status == 303 and r.headers["Location"] == "mqtts://broker.example:8883/devices/sub#top"


def test_state_proof_in_the_metadata(http_node: HttpNode, device: Identity, client: Client) -> None:
    body = get(http_node.base, f"{ID}{device.did}?proof=true").json()
    proof = proof_bundle.from_json(body["didResolutionMetadata"].pop("proof"))
    assert isinstance(proof, proof_bundle.StateProof) and proof.did == device.did and proof.present
    _, node_key = client.node_signer_key()
    assert verify_bundle(proof, node_key, client.node_info().node_did).kind == "state"
    assert DidState.from_record(proof.state_record).did == device.did
    assert body == client.resolve(device.did)
    assert get(http_node.base, f"{ID}{device.did}?proof=true&versionId=0").status == 400


# -- bounds on the request -----------------------------------------------------------


def test_request_bounds(http_node: HttpNode, device: Identity) -> None:
    long = get(http_node.base, ID + device.did + "%23" + "a" * 3000)
    assert long.status == 400 and error_of(long, "dereferencingMetadata")["type"] == DID_ERROR_NS + "INVALID_DID_URL"
    huge = get(http_node.base, ID + "a" * 10_000)  # over the request line limit: aiohttp refuses it
    assert huge.status in (400, 414) and b"Traceback" not in huge.body
    many = get(http_node.base, ID + device.did, {f"X-H{i}": "1" for i in range(100)})
    assert many.status == 400 and b"Traceback" not in many.body
    accept = get(http_node.base, ID + device.did, {"Accept": "application/did," * 200})
    assert accept.status == 400


def test_other_routes_answer_problem_documents(http_node: HttpNode, device: Identity) -> None:
    r = get(http_node.base, "/nothing/here")
    assert r.status == 404 and r.content_type == "application/problem+json"
    assert r.json()["status"] == 404 and r.json()["reason"] == "NOT_FOUND"
    r = get(http_node.base, ID + device.did, method="POST", body=b"{}")
    assert r.status == 405 and r.content_type == "application/problem+json" and "GET" in r.headers["Allow"]
    r = get(http_node.base, ID + device.did, method="PUT", body=b"x" * 100_000)
    assert r.status in (405, 413) and r.content_type == "application/problem+json"
    r = get(http_node.base, f"/status/{device.did}/not%20an%20id")
    assert r.status == 400 and r.json()["reason"] == "INVALID_DID_URL"
    r = get(http_node.base, f"/status/did:web:example.com/revocation-1")
    assert r.status == 501 and r.json()["reason"] == "METHOD_NOT_SUPPORTED"
    r = get(http_node.base, f"/status/{device.did}/revocation-1")
    assert r.status == 404 and r.json()["reason"] == "UNKNOWN_RESOURCE"
    assert get(http_node.base, "/1.0/methods").json() == ["dnode"]
    absolute = get(http_node.base, f"{http_node.base}{ID}{device.did}%23key-1", {"Accept": "application/did"})  # RFC 9112 absolute-form
    assert absolute.status == 200 and absolute.json()["id"] == f"{device.did}#key-1"
    head = get(http_node.base, ID + device.did, method="HEAD")
    assert head.status == 200 and head.body == b"" and head.content_type == "application/did-resolution"


def test_resolution_results_are_json_parsable_everywhere(http_node: HttpNode, device: Identity) -> None:
    """Every answer of the identifiers route is a JSON document a client can read, whatever went wrong."""
    for target in ["did:dnode:" + "\u00e9".encode().hex(), "%FF%FE", "did:dnode:Qm%00", "%", "did%3", device.did + "?service=%"]:
        r = get(http_node.base, ID + target)
        assert 400 <= r.status < 500, (target, r.status)
        json.loads(r.body)
