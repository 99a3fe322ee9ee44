"""Operation parsing: schema, limits, network, canonical bytes, domain-separated signatures."""

from __future__ import annotations

import json

import pytest
from nacl.signing import SigningKey

from didnode import errors
from didnode.core import builder, canonical, operations
from didnode.core.operations import Proof, parse, signing_bytes
from tests.factory import NET, new_create


def _body(op: builder.SignedOperation) -> dict:
    return json.loads(op.payload)


def _resign(body: dict, key: SigningKey, kid: str, op_type: str = "create", network: str = NET) -> tuple[bytes, tuple[Proof, ...]]:
    payload = canonical.encode(body)
    return payload, (Proof(kid, key.sign(signing_bytes(network, op_type, payload)).signature),)


def test_parse_returns_the_self_certified_did() -> None:
    ident, op = new_create()
    parsed = parse(op.payload, op.proofs, NET)
    assert parsed.did == ident.did and parsed.type == "create" and parsed.seq == 0


def test_wrong_network_is_rejected() -> None:
    _, op = new_create(network="factory-7")
    with pytest.raises(errors.WrongNetwork):
        parse(op.payload, op.proofs, NET)


def test_signature_is_bound_to_network_and_type() -> None:
    """The same payload signed for another network or type does not verify."""
    ident, op = new_create()
    parsed = parse(op.payload, op.proofs, NET)
    key = ident.key.verify_key
    other_net = Proof(op.proofs[0].kid, ident.key.sign(signing_bytes("other", "create", op.payload)).signature)
    other_type = Proof(op.proofs[0].kid, ident.key.sign(signing_bytes(NET, "update", op.payload)).signature)
    for proof in (other_net, other_type):
        with pytest.raises(errors.InvalidSignature):
            parse(op.payload, (proof,), NET).check_signature(proof, bytes(key))
    parsed.check_signature(op.proofs[0], bytes(key))


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda b: b.update(type="explode"), errors.MalformedOperation),
        (lambda b: b.update(extra=1), errors.MalformedOperation),
        (lambda b: b.pop("next"), errors.MalformedOperation),
        (lambda b: b.update(seq=1), errors.MalformedOperation),
        (lambda b: b.update(seq=True), errors.MalformedOperation),
        (lambda b: b.update(next="ab"), errors.MalformedOperation),
        (lambda b: b.update(network="Local"), errors.MalformedOperation),
        (lambda b: b.update(keys=[]), errors.MalformedOperation),
        (lambda b: b["keys"][0].update(purposes=["authentication", "assertionMethod"]), errors.MalformedOperation),
        (lambda b: b["keys"][0].update(purposes=["signing"]), errors.MalformedOperation),
        (lambda b: b["keys"][0].update(id="next"), errors.MalformedOperation),
        (lambda b: b["keys"][0].update(id="key-1-jwk"), errors.MalformedOperation),
        (lambda b: b["keys"][0].update(publicKeyMultibase="z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc"), errors.InvalidKey),
        (lambda b: b.update(controllers=["did:dnode:nope"]), errors.InvalidDid),
        (lambda b: b.update(services=[{"id": "s", "type": "T", "serviceEndpoint": "no scheme"}]), errors.MalformedOperation),
        (lambda b: b.update(services=[{"id": "s", "type": "T", "serviceEndpoint": "https://x/" + "a" * 600}]), errors.TooLarge),
        (lambda b: b.update(services=[{"id": f"s{i}", "type": "T", "serviceEndpoint": "https://x"} for i in range(17)]), errors.TooLarge),
        (lambda b: b.update(keys=b["keys"] * 9), errors.TooLarge),
    ],
    ids=[
        "unknown-type", "extra-member", "missing-member", "create-seq", "bool-seq", "short-hash", "network-case",
        "no-keys", "unsorted-purposes", "unknown-purpose", "reserved-next", "reserved-jwk", "x25519-as-signing-key",
        "bad-controller", "bad-endpoint", "long-endpoint", "too-many-services", "too-many-keys",
    ],
)
def test_schema_violations_are_rejected(mutate, error) -> None:  # type: ignore[no-untyped-def]
    ident, op = new_create()
    body = _body(op)
    mutate(body)
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(error):
        parse(payload, op.proofs, NET)


def test_oversized_payload_is_rejected_before_parsing() -> None:
    _, op = new_create()
    with pytest.raises(errors.TooLarge):
        parse(b"{" + b" " * operations.MAX_PAYLOAD_BYTES + b"}", op.proofs, NET)


def test_non_canonical_payload_is_rejected() -> None:
    _, op = new_create()
    pretty = json.dumps(json.loads(op.payload), indent=1).encode()
    with pytest.raises(errors.NonCanonicalEncoding):
        parse(pretty, op.proofs, NET)


def test_proof_limits_and_duplicates() -> None:
    _, op = new_create()
    with pytest.raises(errors.MissingSignature):
        parse(op.payload, (), NET)
    with pytest.raises(errors.MalformedOperation):
        parse(op.payload, op.proofs * 2, NET)
    with pytest.raises(errors.TooLarge):
        parse(op.payload, tuple(Proof(f"{op.did}#k{i}", b"x" * 64) for i in range(17)), NET)
    with pytest.raises(errors.InvalidDid):
        parse(op.payload, (Proof("did:dnode:bad#key-1", b"x" * 64),), NET)


def test_truncated_signature_is_rejected() -> None:
    ident, op = new_create()
    proof = Proof(op.proofs[0].kid, op.proofs[0].signature[:63])
    parsed = parse(op.payload, (proof,), NET)
    with pytest.raises(errors.InvalidSignature):
        parsed.check_signature(proof, bytes(ident.key.verify_key))


def test_every_flipped_signature_bit_fails() -> None:
    ident, op = new_create()
    sig = op.proofs[0].signature
    for i in range(0, 64 * 8, 7):
        bad = bytearray(sig)
        bad[i // 8] ^= 1 << (i % 8)
        proof = Proof(op.proofs[0].kid, bytes(bad))
        with pytest.raises(errors.InvalidSignature):
            parse(op.payload, (proof,), NET).check_signature(proof, bytes(ident.key.verify_key))
