"""Fuzz targets: signed checkpoints (binary and JSON), proof bundles (``didctl log verify``, stapled state proofs).

A bundle file is untrusted all the way: it is parsed (``didnode.client.load_bundle``,
``core.proof_bundle.from_text``) and then verified against the node's key
(``core.transparency_verify.verify_bundle``); both must fail typed for any bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json

from google.protobuf.message import DecodeError

from didnode.api.v1 import transparency_pb2 as tpb
from didnode.client.proofs import load_bundle
from didnode.core import canonical
from didnode.core import checkpoint as cp_codec
from didnode.core import proof_bundle
from didnode.core.checkpoint import Checkpoint, SignedCheckpoint
from didnode.core.keystate import DidState
from didnode.core.merkle import log_tree, proof_build, sparse
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.proof_bundle import ConsistencyProof, InclusionProof, StateProof
from didnode.core.transparency_verify import verify_bundle
from didnode.core.document import resolution_result
from didnode.errors import MalformedMessage, MalformedProof
from didnode.wire import transparency as tw
from didnode.wire.ledger import resolution_from_json
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, JSON_TOKENS, T0, signing_key, world

KEY = signing_key("node")
NODE = "did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
KID = f"{NODE}#key-1"


@functools.lru_cache(maxsize=1)
def _bundles() -> tuple[list[SignedCheckpoint], list[proof_bundle.Bundle]]:
    entries = world().entries
    nodes = log_tree.MemoryNodeStore()
    smt = sparse.MemorySparseStore()
    for i, e in enumerate(entries):
        log_tree.append(nodes, i, leaf_hash(e))
    records = {DidState.from_record(r).did: r for r in world().records}
    for did, r in records.items():
        sparse.update(smt, sparse.key_for_did(did), hashlib.sha256(r).digest())

    def checkpoint(size: int) -> SignedCheckpoint:
        return cp_codec.sign(Checkpoint("local", size, log_tree.root(nodes, size), sparse.root(smt), T0 + size), KEY, KID)

    n = len(entries)
    cps = [checkpoint(s) for s in (1, 5, n)]
    did = next(iter(records))
    absent = "did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
    bundles: list[proof_bundle.Bundle] = [
        InclusionProof(entries[3], 3, n, tuple(proof_build.inclusion_proof(nodes, 3, n)), cps[2]),
        InclusionProof(entries[0], 0, 1, (), cps[0]),
        ConsistencyProof(5, n, tuple(proof_build.consistency_proof(nodes, 5, n)), cps[1], cps[2]),
        StateProof(did, True, records[did], sparse.prove(smt, sparse.key_for_did(did)), cps[2]),
        StateProof(absent, False, b"", sparse.prove(smt, sparse.key_for_did(absent)), cps[2]),
    ]
    for b in bundles:
        verify_bundle(b, bytes(KEY.verify_key), NODE)  # the seeds are valid
    return cps, bundles


CP_TOKENS = (*JSON_TOKENS, *DID_TOKENS, '"network":', '"treeSize":', '"logRoot":', '"stateRoot":', '"timeMs":', '"kid":', '"signature":', '"local"')
BUNDLE_TOKENS = (
    *CP_TOKENS,
    *(f'"{t}"' for t in (proof_bundle.INCLUSION_TYPE, proof_bundle.CONSISTENCY_TYPE, proof_bundle.STATE_TYPE)),
    *(f'"{m}":' for m in ("type", "checkpoint", "checkpoint1", "checkpoint2", "entry", "leafIndex", "size1", "size2", "proof", "did", "present", "stateRecord")),
)


@target("checkpoint", seeds=lambda: [c.encode() for c in _bundles()[0]], tokens=(b"\x05local", *DID_TOKENS))
def fuzz_checkpoint(data: bytes) -> None:
    signed = cp_codec.decode(data)
    assert signed.encode() == data, "a decoded checkpoint must re-encode to the same bytes"


@target("checkpoint_json", seeds=lambda: [json.dumps(c.to_json()).encode() for c in _bundles()[0]], tokens=CP_TOKENS)
def fuzz_checkpoint_json(data: bytes) -> None:
    cp_codec.from_json(canonical.loads(data, MalformedProof, "checkpoint"))


@target("proof_bundle", seeds=lambda: [json.dumps(b.to_json(), indent=1).encode() for b in _bundles()[1]], tokens=BUNDLE_TOKENS, max_len=16384)
def fuzz_proof_bundle(data: bytes) -> None:
    """``didctl log verify FILE``: load the file, then verify it against the node's key."""
    bundle = load_bundle(data)
    assert proof_bundle.from_text(data) == bundle
    verify_bundle(bundle, bytes(KEY.verify_key), NODE)


_REPLIES = (
    (InclusionProof, tpb.InclusionProof, tw.inclusion_to_pb, tw.inclusion_from_pb),
    (ConsistencyProof, tpb.ConsistencyProof, tw.consistency_to_pb, tw.consistency_from_pb),
    (StateProof, tpb.StateProof, tw.state_proof_to_pb, tw.state_proof_from_pb),
)


def _replies() -> list[bytes]:
    out = []
    for b in _bundles()[1]:
        kind = next(i for i, r in enumerate(_REPLIES) if isinstance(b, r[0]))
        out.append(bytes([kind]) + _REPLIES[kind][2](b).SerializeToString())  # type: ignore[operator]
    return out


@target("proof_reply", seeds=_replies, tokens=(*DID_TOKENS, b"\x05local"), max_len=16384)
def fuzz_proof_reply(data: bytes) -> None:
    """A node's proof replies (GetInclusionProof, GetConsistencyProof, ResolveWithProof): the first byte picks
    the message; the client converts it and verifies it against the node's key."""
    if not data:
        return
    _, message, _, from_pb = _REPLIES[data[0] % len(_REPLIES)]
    try:
        m = message.FromString(data[1:])
    except DecodeError as exc:
        raise MalformedMessage(f"not a {message.DESCRIPTOR.name}: {exc}") from None
    verify_bundle(from_pb(m), bytes(KEY.verify_key), NODE)


@target("resolution_reply", seeds=lambda: [json.dumps(resolution_result(s, T0)).encode() for s in world().states[:3]], tokens=(*JSON_TOKENS, *DID_TOKENS, '"didDocument":'))
def fuzz_resolution_reply(data: bytes) -> None:
    """What the client library makes of a node's Resolve / ResolveWithProof reply (result_json, a protobuf string)."""
    resolution_from_json(data.decode("utf-8", "replace"))


test_fuzz = harness.fuzz_tests(__name__)


# Crashes the fuzzers found (each failed with a non-didnode exception before its fix).
def _state_bundle_about(did: str) -> bytes:
    doc = next(b for b in _bundles()[1] if isinstance(b, StateProof)).to_json()
    doc["did"] = did
    return json.dumps(doc).encode()


REGRESSIONS = {
    # A lone surrogate has no UTF-8 form: UnicodeEncodeError when hashing the state-tree key.
    "state-bundle-lone-surrogate-did": ("proof_bundle", _state_bundle_about("\ud800")),
    "bundle-nested-too-deep": ("proof_bundle", b'{"a":' * 100_000),
    # The client library read a node's result_json with json.loads: RecursionError, ValueError.
    "resolution-reply-nested-too-deep": ("resolution_reply", b"[" * 100_000),
    "resolution-reply-5000-digit-integer": ("resolution_reply", b'{"a":' + b"1" * 5000 + b"}"),
}
test_regression = harness.regression_tests(REGRESSIONS)
