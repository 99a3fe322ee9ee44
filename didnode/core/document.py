"""W3C DID Core 1.0 documents and DID Resolution metadata from a key state.

Each Ed25519 key appears twice in ``verificationMethod``: as ``Multikey``
(``did#key-1``, ``publicKeyMultibase``) and as ``JsonWebKey``
(``did#key-1-jwk``, ``publicKeyJwk``, RFC 8037 OKP). DID Core forbids one
method carrying two encodings of the same material, so they are two methods;
key ids ending in ``-jwk`` are reserved for that reason. Relationships
(``authentication``, ``assertionMethod``, ``keyAgreement``) reference both.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from didnode.core.encoding import ED25519_PUB, X25519_PUB, jwk_from_raw
from didnode.core.keystate import ACTIVE, DidState, KeyRecord, X25519

CONTEXTS = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/multikey/v1",
    "https://w3id.org/security/jwk/v1",
]
DID_LD_JSON = "application/did+ld+json"


def iso8601(ms: int) -> str:
    """DID Core datetime: UTC, second precision, ``Z`` suffix."""
    return _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso8601(text: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 datetime (``Z`` or an offset; naive means UTC)."""
    value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return int(value.timestamp() * 1000)


def _methods(did: str, key: KeyRecord) -> list[dict[str, Any]]:
    codec = X25519_PUB if key.kind == X25519 else ED25519_PUB
    return [
        {"id": f"{did}#{key.id}", "type": "Multikey", "controller": did, "publicKeyMultibase": key.multibase},
        {"id": f"{did}#{key.id}-jwk", "type": "JsonWebKey", "controller": did, "publicKeyJwk": jwk_from_raw(key.raw, codec)},
    ]


def did_document(state: DidState) -> dict[str, Any]:
    """The DID document of ``state``. A deactivated DID has no keys or services."""
    doc: dict[str, Any] = {"@context": list(CONTEXTS), "id": state.did}
    if state.status != ACTIVE:
        return doc
    if state.controllers:
        doc["controller"] = list(state.controllers)
    methods: list[dict[str, Any]] = []
    auth: list[str] = []
    assertion: list[str] = []
    agreement: list[str] = []
    # Signing keys first, then key agreement, each in the order installed.
    for key in sorted(state.keys, key=lambda k: k.kind == X25519):
        if key.fate != "current":
            continue
        pair = _methods(state.did, key)
        methods.extend(pair)
        refs = [m["id"] for m in pair]
        if key.kind == X25519:
            agreement.extend(refs)
        else:
            if "authentication" in key.purposes:
                auth.extend(refs)
            if "assertionMethod" in key.purposes:
                assertion.extend(refs)
    doc["verificationMethod"] = methods
    doc["authentication"] = auth
    doc["assertionMethod"] = assertion
    if agreement:
        doc["keyAgreement"] = agreement
    if state.services:
        doc["service"] = [
            {"id": f"{state.did}#{s['id']}", "type": s["type"], "serviceEndpoint": s["serviceEndpoint"]} for s in state.services
        ]
    return doc


def document_metadata(state: DidState, created_time: int, next_version: tuple[int, int] | None = None) -> dict[str, Any]:
    """DID document metadata (DID Core section 7.1.3) for the version ``state``.

    ``next_version`` is (seq, time) of the following operation when ``state``
    is a past version. ``updated`` (the time of the last operation after the
    create) is omitted while the DID was never updated, as DID Core says: its
    ``versionTime`` is then its creation time.
    """
    meta: dict[str, Any] = {"created": iso8601(created_time)}
    if state.updated_pos != state.created_pos:
        meta["updated"] = iso8601(state.updated_time)
    meta |= {
        "versionId": str(state.seq),
        "versionTime": iso8601(state.updated_time),
        "ledgerPosition": state.updated_pos,
        "operationHash": state.last,
    }
    if state.status != ACTIVE:
        meta["deactivated"] = True
    if next_version is not None:
        meta["nextVersionId"] = str(next_version[0])
        meta["nextUpdate"] = iso8601(next_version[1])
    if state.controllers:
        meta["controllers"] = list(state.controllers)
    return meta


def resolution_result(state: DidState, created_time: int, next_version: tuple[int, int] | None = None) -> dict[str, Any]:
    """A W3C DID Resolution result: document, document metadata, resolution metadata."""
    return {
        "didDocument": did_document(state),
        "didDocumentMetadata": document_metadata(state, created_time, next_version),
        "didResolutionMetadata": {"contentType": DID_LD_JSON},
    }
