"""Fuzz targets: canonical JSON, operations (payload and protobuf message), session credential requests."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from didnode.api.v1 import ledger_pb2 as pb
from didnode.core import canonical, operations
from didnode.core.credentials import session
from didnode.core.operations import Proof
from didnode.errors import DidnodeError, MalformedMessage
from didnode.wire import ledger as wire_ledger
from didnode.wire.ledger import operation_to_pb
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, JSON_TOKENS, NET, world

OP_TOKENS = (
    *JSON_TOKENS,
    *DID_TOKENS,
    *(f'"{t}"' for t in operations.OP_TYPES),
    *(f'"{m}":' for m in ("type", "network", "did", "seq", "prev", "keys", "next", "nextKey", "controllers", "services", "keyAgreement", "keyId", "reason", "resource", "id", "publicKeyMultibase", "purposes", "serviceEndpoint", "mediaType", "content")),
    '"assertionMethod"',
    '"authentication"',
    '"local"',
)
PROOFS = (Proof("did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG#key-1", bytes(64)),)


def _payloads() -> list[bytes]:
    return [op.payload for op in world().ops]


@target("canonical_json", seeds=_payloads, tokens=JSON_TOKENS, max_len=8192)
def fuzz_canonical(data: bytes) -> None:
    value = canonical.decode_canonical(data)
    # Documented: only the canonical encoding of a value decodes.
    assert canonical.encode(value) == data
    canonical.decode_strict(data)


@target("operation_payload", seeds=_payloads, tokens=OP_TOKENS, max_len=8192)
def fuzz_operation(data: bytes) -> None:
    op = operations.parse(data, PROOFS, NET)
    assert op.payload == data and op.type in operations.OP_TYPES


def _batch_requests() -> list[bytes]:
    ops = [operation_to_pb(op.payload, op.proofs) for op in world().ops]
    return [pb.SubmitBatchRequest(operations=ops).SerializeToString(), pb.SubmitBatchRequest(operations=ops[:1]).SerializeToString()]


@target("submit_batch_request", seeds=_batch_requests, tokens=OP_TOKENS, max_len=16384)
def fuzz_batch_request(data: bytes) -> None:
    """What SubmitBatch does with a chunk: parse the message, then each operation alone (wire conversion, parse)."""
    try:
        req = pb.SubmitBatchRequest.FromString(data)
    except DecodeError as exc:
        raise MalformedMessage(f"not a SubmitBatchRequest: {exc}") from None
    for msg in req.operations:
        try:
            payload, proofs = wire_ledger.operation_from_pb(msg)
            operations.parse(payload, proofs, NET)
        except DidnodeError:
            continue  # this operation's rejection; its neighbours go on


def _session_requests() -> list[bytes]:
    w = world()
    return [
        session.build_request(w.admin.did, w.issuer.did, 1_750_000_000_000),
        session.build_request(w.admin.did, w.issuer.did, 1_750_000_000_000, {"role": "gateway", "n": [1, 2, {"x": None}]}, 600),
    ]


@target("session_request", seeds=_session_requests, tokens=(*JSON_TOKENS, *DID_TOKENS, '"claims":', '"lifetime":', '"node":', '"nonce":', '"subject":', '"timestamp":'))
def fuzz_session_request(data: bytes) -> None:
    session.parse_request(data)


test_fuzz = harness.fuzz_tests(__name__)


REGRESSIONS = {
    # json's int() limit: ValueError inside the scanner (INTERNAL on Submit, a dead SubmitBatch stream).
    "payload-5000-digit-integer": ("operation_payload", b'{"seq":' + b"1" * 5000 + b',"type":"create"}'),
    "canonical-5000-digit-integer": ("canonical_json", b"[" + b"9" * 5000 + b"]"),
}
test_regression = harness.regression_tests(REGRESSIONS)
