"""Client-side construction of did:dnode operations: canonical payloads and signatures.

Pure: keys come in as :class:`nacl.signing.SigningKey` objects or raw public
keys; nothing here touches a keystore, a clock or the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from nacl.signing import SigningKey

from didnode.core.did import did_from_create_payload
from didnode.core.encoding import ED25519_PUB, X25519_PUB, b64url, multikey_encode
from didnode.core.operations import (
    NEXT_FRAGMENT,
    PURPOSES,
    Proof,
    build_payload,
    next_commitment,
    signing_bytes,
)
from didnode.core.service_rules import check_service


@dataclass(frozen=True, slots=True)
class UnsignedOperation:
    """Canonical payload bytes waiting for signatures."""

    type: str
    network: str
    did: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SignedOperation:
    """An operation ready to submit."""

    type: str
    network: str
    did: str
    payload: bytes
    proofs: tuple[Proof, ...]


@dataclass(frozen=True, slots=True)
class NewKey:
    """A public Ed25519 key to install, with its id and purposes."""

    id: str
    public: bytes
    purposes: tuple[str, ...] = PURPOSES

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "publicKeyMultibase": multikey_encode(self.public, ED25519_PUB), "purposes": sorted(set(self.purposes))}


@dataclass(frozen=True, slots=True)
class NewAgreementKey:
    """A public X25519 key-agreement key to install."""

    id: str
    public: bytes

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "publicKeyMultibase": multikey_encode(self.public, X25519_PUB)}


def service(id: str, type: str, endpoint: str) -> dict[str, str]:
    """A service entry as operations carry it; checked against the method's service rules.

    Raises :class:`~didnode.errors.InvalidService` or :class:`~didnode.errors.TooLarge`
    (see :mod:`didnode.core.service_rules`), as the node would.
    """
    check_service(id, type, endpoint)
    return {"id": id, "type": type, "serviceEndpoint": endpoint}


def sign(op: UnsignedOperation, signers: Sequence[tuple[str, SigningKey]]) -> SignedOperation:
    """Sign ``op`` with each (kid, key); kid is a DID URL such as ``did#key-1`` or ``did#next``."""
    msg = signing_bytes(op.network, op.type, op.payload)
    proofs = tuple(Proof(kid, key.sign(msg).signature) for kid, key in signers)
    return SignedOperation(op.type, op.network, op.did, op.payload, proofs)


def create(
    network: str,
    keys: Sequence[NewKey],
    next_public: bytes,
    controllers: Iterable[str] = (),
    services: Iterable[Mapping[str, str]] = (),
    key_agreement: NewAgreementKey | None = None,
) -> UnsignedOperation:
    """A create; its DID is derived from the payload (self-certifying)."""
    body: dict[str, Any] = {
        "type": "create",
        "network": network,
        "seq": 0,
        "keys": [k.to_json() for k in keys],
        "next": next_commitment(next_public),
        "controllers": sorted(set(controllers)),
        "services": [dict(s) for s in services],
    }
    if key_agreement is not None:
        body["keyAgreement"] = key_agreement.to_json()
    payload = build_payload(body)
    return UnsignedOperation("create", network, did_from_create_payload(payload), payload)


def _later(op_type: str, network: str, did: str, seq: int, prev: str, **fields: Any) -> UnsignedOperation:
    body = {"type": op_type, "network": network, "did": did, "seq": seq, "prev": prev, **fields}
    return UnsignedOperation(op_type, network, did, build_payload(body))


def rotate(network: str, did: str, seq: int, prev: str, next_key_public: bytes, keys: Sequence[NewKey], new_next_public: bytes) -> UnsignedOperation:
    """A rotate; sign it with the current next key as ``did#next``."""
    return _later(
        "rotate",
        network,
        did,
        seq,
        prev,
        nextKey=multikey_encode(next_key_public),
        keys=[k.to_json() for k in keys],
        next=next_commitment(new_next_public),
    )


def update(
    network: str, did: str, seq: int, prev: str, services: Iterable[Mapping[str, str]], key_agreement: NewAgreementKey | None
) -> UnsignedOperation:
    """An update: the full new service list and key-agreement key (None removes it)."""
    fields: dict[str, Any] = {"services": [dict(s) for s in services]}
    if key_agreement is not None:
        fields["keyAgreement"] = key_agreement.to_json()
    return _later("update", network, did, seq, prev, **fields)


def revoke(network: str, did: str, seq: int, prev: str, key_id: str, reason: str, next_key_public: bytes | None = None) -> UnsignedOperation:
    """A revoke; signed by a controller, or by the next key (then pass ``next_key_public``)."""
    fields: dict[str, Any] = {"keyId": key_id, "reason": reason}
    if next_key_public is not None:
        fields["nextKey"] = multikey_encode(next_key_public)
    return _later("revoke", network, did, seq, prev, **fields)


def recover(
    network: str,
    did: str,
    seq: int,
    prev: str,
    keys: Sequence[NewKey],
    new_next_public: bytes,
    key_agreement: NewAgreementKey | None = None,
) -> UnsignedOperation:
    """A recover, signed by a controller: new keys and a new next-key commitment."""
    fields: dict[str, Any] = {"keys": [k.to_json() for k in keys], "next": next_commitment(new_next_public)}
    if key_agreement is not None:
        fields["keyAgreement"] = key_agreement.to_json()
    return _later("recover", network, did, seq, prev, **fields)


def transfer(network: str, did: str, seq: int, prev: str, controllers: Iterable[str]) -> UnsignedOperation:
    """A transfer to a new controller set."""
    return _later("transfer", network, did, seq, prev, controllers=sorted(set(controllers)))


def deactivate(network: str, did: str, seq: int, prev: str, reason: str, next_key_public: bytes | None = None) -> UnsignedOperation:
    """A deactivate; signed by a controller, or by the next key when the DID has none."""
    fields: dict[str, Any] = {"reason": reason}
    if next_key_public is not None:
        fields["nextKey"] = multikey_encode(next_key_public)
    return _later("deactivate", network, did, seq, prev, **fields)


def publish(network: str, did: str, seq: int, prev: str, resource_id: str, media_type: str, content: str) -> UnsignedOperation:
    """A publish of a resource (e.g. a status list credential); sign with a current assertionMethod key."""
    return _later("publish", network, did, seq, prev, resource={"id": resource_id, "mediaType": media_type, "content": content})


def anchor(network: str, did: str, seq: int, prev: str, signed_heads: Sequence[bytes]) -> UnsignedOperation:
    """An anchor of devices' signed segment heads (their bytes); sign it with a current assertionMethod key of ``did``."""
    return _later("anchor", network, did, seq, prev, heads=[b64url(h) for h in signed_heads])


def next_kid(did: str) -> str:
    """The proof key id for a signature by the DID's committed next key."""
    return f"{did}#{NEXT_FRAGMENT}"
