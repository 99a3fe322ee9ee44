"""DID documents: valid for an independent DID Core library, keys decode with independent libraries."""

from __future__ import annotations

import json

import pytest
from jwcrypto import jwk
from multiformats import multibase, multicodec
from pydid import DIDDocument, DIDUrl

from didnode.core.document import did_document, document_metadata, resolution_result
from didnode.core.encoding import raw_from_jwk
from tests.factory import MemLedger, new_create


@pytest.fixture
def state():  # type: ignore[no-untyped-def]
    led = MemLedger()
    admin, aop = new_create()
    led.submit(aop)
    ident, op = new_create(controllers=[admin], services=[{"id": "mqtt", "type": "MQTTBroker", "serviceEndpoint": "mqtts://b:8883"}])
    return ident, led.submit(op)


def test_document_passes_pydid_and_dereferences(state) -> None:  # type: ignore[no-untyped-def]
    ident, st = state
    doc = did_document(st)
    parsed = DIDDocument.deserialize(doc)
    assert str(parsed.id) == ident.did
    assert [str(c) for c in parsed.controller] == list(st.controllers)
    for ref in doc["authentication"] + doc["assertionMethod"] + doc["keyAgreement"]:
        assert parsed.dereference(DIDUrl.parse(ref)) is not None
    assert parsed.service[0].service_endpoint == "mqtts://b:8883"


def test_pydid_rejects_a_broken_document(state) -> None:  # type: ignore[no-untyped-def]
    _, st = state
    doc = did_document(st)
    doc["id"] = "not a did"
    with pytest.raises(ValueError):  # pydid (pydantic) validation errors are ValueErrors
        DIDDocument.deserialize(doc)


def test_multikey_and_jwk_forms_decode_to_the_same_key(state) -> None:  # type: ignore[no-untyped-def]
    ident, st = state
    doc = did_document(st)
    methods = {m["id"]: m for m in doc["verificationMethod"]}
    mk = methods[f"{ident.did}#key-1"]["publicKeyMultibase"]
    codec, raw = multicodec.unwrap(multibase.decode(mk))
    jwk_form = methods[f"{ident.did}#key-1-jwk"]["publicKeyJwk"]
    key = jwk.JWK.from_json(json.dumps(jwk_form))
    assert codec.name == "ed25519-pub"
    assert raw == bytes(ident.key.verify_key) == raw_from_jwk(key.export_public(as_dict=True))
    ka_codec, ka_raw = multicodec.unwrap(multibase.decode(methods[f"{ident.did}#ka-1"]["publicKeyMultibase"]))
    assert ka_codec.name == "x25519-pub" and ident.ka is not None and ka_raw == bytes(ident.ka.public_key)


def test_resolution_result_shape(state) -> None:  # type: ignore[no-untyped-def]
    _, st = state
    result = resolution_result(st, st.created_time)
    assert set(result) == {"didDocument", "didDocumentMetadata", "didResolutionMetadata"}
    meta = document_metadata(st, st.created_time, (1, st.updated_time + 1000))
    assert meta["versionId"] == "0" and meta["nextVersionId"] == "1" and meta["created"].endswith("Z")


def test_updated_is_omitted_until_the_first_update() -> None:
    """DID Core 7.1.3: ``updated`` is absent while the DID was never updated; pydid still reads
    the document, and the stdlib's ISO 8601 parser reads the times (independent of our formatter)."""
    import datetime

    from didnode.core import builder

    led = MemLedger()
    ident, op = new_create()
    fresh = led.submit(op)
    meta = document_metadata(fresh, fresh.created_time)
    assert "updated" not in meta and meta["versionTime"] == meta["created"] and meta["versionId"] == "0"
    DIDDocument.deserialize(did_document(fresh))
    later = led.submit(builder.sign(builder.update(led.network, ident.did, 1, fresh.last, [builder.service("web", "LinkedDomains", "https://example.com/")], None), [(ident.kid, ident.key)]))
    meta = document_metadata(later, later.created_time)
    created, updated = (datetime.datetime.fromisoformat(meta[k].replace("Z", "+00:00")) for k in ("created", "updated"))
    assert meta["updated"] == meta["versionTime"] and updated >= created and meta["versionId"] == "1"
    assert DIDDocument.deserialize(did_document(later)).service[0].service_endpoint == "https://example.com/"
    # A past version that was the create: no updated either.
    assert "updated" not in document_metadata(fresh, fresh.created_time, (1, later.updated_time))
