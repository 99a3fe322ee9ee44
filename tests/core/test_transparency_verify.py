"""The pure verifier on bundles built from in-memory trees: valid bundles pass, every mutation fails typed."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace

import pytest
from nacl.signing import SigningKey

from didnode.core import entry as entry_codec
from didnode.core import proof_bundle
from didnode.core.checkpoint import Checkpoint, sign
from didnode.core.encoding import multikey_encode
from didnode.core.merkle import log_tree, proof_build, sparse
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.proof_bundle import ConsistencyProof, InclusionProof, StateProof
from didnode.core.transparency_verify import verify_bundle
from didnode.errors import (
    BadCheckpointSignature,
    InvalidArgument,
    InvalidProof,
    MalformedProof,
    ProofClaimMismatch,
    RootMismatch,
)
from didnode.client.proofs import bundle_kid, load_bundle, signer_key_from_did_document, verify_offline
from tests.factory import MemLedger, new_create

KEY = SigningKey(hashlib.sha256(b"verifier tests").digest())
PUB = bytes(KEY.verify_key)
NODE = "did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
KID = f"{NODE}#key-1"


class Ledger:
    """Entries, both trees and signed checkpoints, all in memory."""

    def __init__(self, n: int, network: str = "local") -> None:
        self.entries: list[bytes] = []
        self.nodes = log_tree.MemoryNodeStore()
        self.smt = sparse.MemorySparseStore()
        self.records: dict[str, bytes] = {}
        mem = MemLedger(network)
        for i in range(n):
            ident, op = new_create(network=network)
            e = entry_codec.encode(i, 1_700_000_000_000 + i, op.payload, op.proofs)
            log_tree.append(self.nodes, i, leaf_hash(e))
            self.entries.append(e)
            record = mem.submit(op).to_record()
            self.records[ident.did] = record
            sparse.update(self.smt, sparse.key_for_did(ident.did), hashlib.sha256(record).digest())
        self.network = network

    def checkpoint(self, size: int, state_root: bytes | None = None):  # type: ignore[no-untyped-def]
        root = log_tree.root(self.nodes, size)
        cp = Checkpoint(self.network, size, root, sparse.root(self.smt) if state_root is None else state_root, 1_700_000_000_000 + size)
        return sign(cp, KEY, KID)

    def inclusion(self, index: int, size: int) -> InclusionProof:
        return InclusionProof(self.entries[index], index, size, tuple(proof_build.inclusion_proof(self.nodes, index, size)), self.checkpoint(size))

    def consistency(self, size1: int, size2: int) -> ConsistencyProof:
        hashes = tuple(proof_build.consistency_proof(self.nodes, size1, size2))
        return ConsistencyProof(size1, size2, hashes, self.checkpoint(size1), self.checkpoint(size2))

    def state(self, did: str) -> StateProof:
        proof = sparse.prove(self.smt, sparse.key_for_did(did))
        record = self.records.get(did)
        cp = self.checkpoint(len(self.entries))
        return StateProof(did, record is not None, record or b"", proof, cp)


@pytest.fixture(scope="module")
def led() -> Ledger:
    return Ledger(13)


def _flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes((b[i] ^ 1,)) + b[i + 1 :]


def test_valid_bundles_verify_and_survive_json(led: Ledger) -> None:
    dids = list(led.records)
    bundles = [
        *(led.inclusion(i, s) for s in (1, 7, 13) for i in range(s)),
        *(led.consistency(a, b) for a, b in ((1, 13), (4, 13), (6, 7), (13, 13), (5, 5))),
        led.state(dids[0]),
        led.state(dids[-1]),
        led.state(new_create()[0].did),
    ]
    for b in bundles:
        verify_bundle(b, PUB, NODE)
        again = load_bundle(json.dumps(b.to_json()))
        assert again == b
        verify_offline(again, public_key=PUB)


def test_inclusion_mutations(led: Ledger) -> None:
    good = led.inclusion(5, 13)
    cases: list[tuple[object, type[Exception]]] = [
        (replace(good, index=6), ProofClaimMismatch),  # the entry names its own position
        (replace(good, entry=led.entries[6]), ProofClaimMismatch),
        (replace(good, entry=led.entries[5][:-1]), MalformedProof),
        (replace(good, hashes=good.hashes[:-1]), MalformedProof),
        (replace(good, hashes=good.hashes + (good.hashes[0],)), MalformedProof),
        (replace(good, hashes=()), MalformedProof),
        (replace(good, tree_size=12), ProofClaimMismatch),
        (replace(good, checkpoint=led.checkpoint(12), tree_size=12), RootMismatch),
        (replace(good, checkpoint=None), MalformedProof),
        (replace(good, checkpoint=replace(good.checkpoint, signature=_flip(good.checkpoint.signature))), BadCheckpointSignature),
    ]
    for i in range(len(good.hashes)):
        for byte in (0, 31):
            hashes = list(good.hashes)
            hashes[i] = _flip(hashes[i], byte)
            cases.append((replace(good, hashes=tuple(hashes)), RootMismatch))
    for bundle, err in cases:
        with pytest.raises(err):
            verify_bundle(bundle, PUB)  # type: ignore[arg-type]
    # A perfectly valid tree of another network's operations does not pass as this network's.
    other = Ledger(3, network="testnet")
    p = other.inclusion(1, 3)
    foreign = replace(p, checkpoint=sign(replace(p.checkpoint.checkpoint, network="local"), KEY, KID))
    with pytest.raises(ProofClaimMismatch):
        verify_bundle(foreign, PUB)


def test_consistency_mutations(led: Ledger) -> None:
    good = led.consistency(6, 13)
    cases: list[tuple[object, type[Exception]]] = [
        (replace(good, size1=5), ProofClaimMismatch),
        (replace(good, hashes=good.hashes[:-1]), MalformedProof),
        (replace(good, hashes=good.hashes + (good.hashes[0],)), MalformedProof),
        (replace(good, checkpoint1=None), MalformedProof),
        (replace(good, checkpoint2=led.checkpoint(12), size2=12), InvalidProof),  # shape or root, by geometry
        (replace(good, checkpoint2=replace(good.checkpoint2, kid="did:dnode:QmOther#key-1")), BadCheckpointSignature),
    ]
    for i in range(len(good.hashes)):
        hashes = list(good.hashes)
        hashes[i] = _flip(hashes[i], 7)
        cases.append((replace(good, hashes=tuple(hashes)), RootMismatch))
    for bundle, err in cases:
        with pytest.raises(err):
            verify_bundle(bundle, PUB, NODE)  # type: ignore[arg-type]


def test_state_mutations(led: Ledger) -> None:
    dids = list(led.records)
    present = led.state(dids[2])
    absent = led.state(new_create()[0].did)
    assert present.present and not absent.present
    cases: list[tuple[object, type[Exception]]] = [
        (replace(present, state_record=led.records[dids[3]]), RootMismatch),  # another DID's record
        (replace(present, present=False, state_record=b""), RootMismatch),  # claim absent
        (replace(absent, present=True, state_record=led.records[dids[0]]), InvalidProof),  # claim present
        (replace(present, did=dids[3]), RootMismatch),
        (replace(present, proof=replace(present.proof, siblings=present.proof.siblings[:-1])), MalformedProof),
        (replace(present, checkpoint=led.checkpoint(13, state_root=bytes(32))), RootMismatch),
    ]
    for bundle, err in cases:
        with pytest.raises(err):
            verify_bundle(bundle, PUB)  # type: ignore[arg-type]
    # A record that hashes right but names another DID is caught too.
    smt = sparse.MemorySparseStore()
    liar = led.records[dids[4]]
    sparse.update(smt, sparse.key_for_did(dids[5]), hashlib.sha256(liar).digest())
    cp = sign(Checkpoint("local", 13, log_tree.root(led.nodes, 13), sparse.root(smt), 1), KEY, KID)
    bundle = StateProof(dids[5], True, liar, sparse.prove(smt, sparse.key_for_did(dids[5])), cp)
    with pytest.raises(ProofClaimMismatch):
        verify_bundle(bundle, PUB)
    # So is one that hashes right but is not a state record at all (the JSON of the old format, a
    # record with a trailing byte): malformed, never a decoding error of another kind.
    for junk in (b'{"did":"%s","seq":0}' % dids[5].encode(), led.records[dids[5]] + b"\x00"):
        smt = sparse.MemorySparseStore()
        sparse.update(smt, sparse.key_for_did(dids[5]), hashlib.sha256(junk).digest())
        cp = sign(Checkpoint("local", 13, log_tree.root(led.nodes, 13), sparse.root(smt), 1), KEY, KID)
        bundle = StateProof(dids[5], True, junk, sparse.prove(smt, sparse.key_for_did(dids[5])), cp)
        with pytest.raises(MalformedProof, match="state record does not decode"):
            verify_bundle(bundle, PUB)


def test_bundle_json_parsing_is_strict(led: Ledger) -> None:
    good = led.inclusion(2, 13).to_json()
    for bad in (
        {**good, "type": "didnode/inclusion-proof/v9"},
        {**good, "extra": 1},
        {**good, "entry": good["entry"].upper()},
        {**good, "proof": good["proof"] + "00"},
        {**good, "leafIndex": "2"},
        [],
    ):
        with pytest.raises(MalformedProof):
            proof_bundle.from_json(bad)
    state = led.state(list(led.records)[0]).to_json()
    with pytest.raises(MalformedProof):
        proof_bundle.from_json({**state, "present": False})
    # stateRecord is the record as unpadded base64url, in its one canonical form.
    record = state["stateRecord"]
    assert proof_bundle.from_json(state).state_record == led.records[list(led.records)[0]]
    assert base64.urlsafe_b64decode(record + "=" * (-len(record) % 4)) == led.records[list(led.records)[0]]
    assert len(record) % 4 in (2, 3)  # so that the last character carries padding bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    stray_bits = record[:-1] + alphabet[alphabet.index(record[-1]) ^ 1]
    for text in (record + "=" * (4 - len(record) % 4), record + "!", record[:-1] + "/", stray_bits, 5):
        with pytest.raises(MalformedProof):
            proof_bundle.from_json({**state, "stateRecord": text})
    with pytest.raises(MalformedProof):
        load_bundle("{not json")


def test_offline_trust_anchors(led: Ledger) -> None:
    bundle = led.state(list(led.records)[1])
    doc = {
        "id": NODE,
        "verificationMethod": [
            {"id": KID, "type": "Multikey", "controller": NODE, "publicKeyMultibase": multikey_encode(PUB)},
        ],
    }
    assert bundle_kid(bundle) == KID
    assert signer_key_from_did_document({"didDocument": doc}, KID) == PUB
    verify_offline(bundle, did_document=doc)
    verify_offline(bundle, did_document={"didDocument": doc, "didDocumentMetadata": {}})
    with pytest.raises(BadCheckpointSignature):
        verify_offline(bundle, did_document={**doc, "id": "did:dnode:QmOther"})
    with pytest.raises(BadCheckpointSignature):
        verify_offline(bundle, did_document={**doc, "verificationMethod": []})
    other = {**doc, "verificationMethod": [{**doc["verificationMethod"][0], "publicKeyMultibase": multikey_encode(bytes(SigningKey.generate().verify_key))}]}
    with pytest.raises(BadCheckpointSignature):
        verify_offline(bundle, did_document=other)
    with pytest.raises(InvalidArgument):
        verify_offline(bundle)
    with pytest.raises(InvalidArgument):
        verify_offline(bundle, public_key=PUB, did_document=doc)
