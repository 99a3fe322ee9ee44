"""A real node on a loopback port, driven through the client library and raw gRPC."""

from __future__ import annotations

import hashlib
import json
import signal

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from nacl.signing import SigningKey

from didnode import errors
from didnode.api.v1 import ledger_pb2 as pb
from didnode.client import Client, Receipt
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.operations import Proof
from tests.conftest import RunningNode, start_node
from tests.factory import new_create, rotate_op


@pytest.fixture(scope="module")
def client(shared_node: RunningNode):
    with Client(shared_node.address) as c:
        yield c


def _raw_status(node: RunningNode, method: str, request: bytes) -> tuple[grpc.StatusCode, str]:
    """Call ``method`` with raw bytes; return (code, ErrorInfo reason)."""
    with grpc.insecure_channel(node.address) as ch:
        call = ch.unary_unary(method)
        with pytest.raises(grpc.RpcError) as exc:
            call(request, timeout=10)
    err = exc.value
    reason = ""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            st.details[0].Unpack(info)
            reason = info.reason
    return err.code(), reason


def test_node_info_reports_network_did_and_size(client: Client) -> None:
    info = client.node_info()
    assert info.network == "local" and info.node_did.startswith("did:dnode:Qm")
    assert info.log_size >= 1 and info.version and info.mode == "embedded"


def test_submit_resolve_and_history(client: Client) -> None:
    ident, op = new_create(services=[builder.service("mqtt", "MQTTBroker", "mqtts://broker:8883")])
    receipt = client.submit(op)
    assert isinstance(receipt, Receipt) and receipt.did == ident.did
    result = client.resolve(ident.did)
    assert set(result) == {"didDocument", "didDocumentMetadata", "didResolutionMetadata"}
    assert result["didDocument"]["id"] == ident.did
    assert result["didDocumentMetadata"]["versionId"] == "0"
    state = client.state(ident.did)
    unsigned, auth, nxt, key_id = rotate_op(ident, state)
    r2 = client.submit(builder.sign(unsigned, [(builder.next_kid(ident.did), ident.next_key)]))
    hist = client.history(ident.did)
    assert [h.type for h in hist] == ["create", "rotate"]
    assert hist[1].signers == (builder.next_kid(ident.did),) and hist[1].position == r2.position
    # The past version still shows key-1; the current one shows key-2.
    v0 = client.resolve(ident.did, version_id=0)
    assert v0["didDocumentMetadata"]["nextVersionId"] == "1"
    assert v0["didDocument"]["verificationMethod"][0]["id"].endswith("#key-1")
    assert client.resolve(ident.did)["didDocument"]["verificationMethod"][0]["id"].endswith("#" + key_id)
    at_time = client.resolve(ident.did, version_time=v0["didDocumentMetadata"]["versionTime"])
    assert at_time["didDocumentMetadata"]["versionId"] in ("0", "1")  # same second: the later version wins
    ks = client.key_state(ident.did, at_position=receipt.position)
    assert ks.valid_at == ("key-1",)
    assert client.key_state(ident.did, at_position=r2.position).valid_at == (key_id,)


@pytest.mark.parametrize(
    "make, error, code",
    [
        (lambda i, op, c: SignedOperation(op.type, op.network, op.did, op.payload, (Proof(op.proofs[0].kid, b"\x01" * 64),)), errors.InvalidSignature, grpc.StatusCode.PERMISSION_DENIED),
        (lambda i, op, c: new_create(network="elsewhere")[1], errors.WrongNetwork, grpc.StatusCode.INVALID_ARGUMENT),
        (lambda i, op, c: SignedOperation(op.type, op.network, op.did, json.dumps(json.loads(op.payload), indent=2).encode(), op.proofs), errors.NonCanonicalEncoding, grpc.StatusCode.INVALID_ARGUMENT),
        (lambda i, op, c: SignedOperation(op.type, op.network, op.did, op.payload[:-1] + b',"type":"create"}', op.proofs), errors.DuplicateJsonKey, grpc.StatusCode.INVALID_ARGUMENT),
        (lambda i, op, c: SignedOperation(op.type, op.network, op.did, b'{"a":"' + b"x" * 9000 + b'"}', op.proofs), errors.TooLarge, grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["bad-signature", "wrong-network", "non-canonical", "duplicate-key", "oversized"],
)
def test_bad_submissions_map_to_precise_statuses(client: Client, shared_node: RunningNode, make, error, code) -> None:  # type: ignore[no-untyped-def]
    ident, op = new_create()
    bad = make(ident, op, client)
    with pytest.raises(error):
        client.submit(bad)
    req = pb.SubmitRequest(operation=pb.Operation(payload=bad.payload, proofs=[pb.Proof(kid=p.kid, signature=p.signature) for p in bad.proofs]))
    got_code, reason = _raw_status(shared_node, "/didnode.v1.LedgerService/Submit", req.SerializeToString())
    assert (got_code, reason) == (code, error.reason)


def test_ledger_state_errors(client: Client, shared_node: RunningNode) -> None:
    ident, op = new_create()
    client.submit(op)
    with pytest.raises(errors.DuplicateOperation) as dup:
        client.submit(op)
    assert dup.value.details["position"]
    state = client.state(ident.did)
    fork = builder.sign(builder.update("local", ident.did, 1, "f" * 64, [], None), [(ident.kid, ident.key)])
    with pytest.raises(errors.PrevMismatch):
        client.submit(fork)
    stale = builder.sign(builder.update("local", ident.did, 3, state.last, [], None), [(ident.kid, ident.key)])
    with pytest.raises(errors.SequenceMismatch):
        client.submit(stale)
    unsigned, *_ = rotate_op(ident, state)
    with pytest.raises(errors.NextKeyRequired):
        client.submit(builder.sign(unsigned, [(ident.kid, ident.key)]))
    with pytest.raises(errors.UnknownDid):
        client.resolve(new_create()[0].did)
    with pytest.raises(errors.InvalidDid):
        client.resolve("did:dnode:not-base58-0OIl")
    with pytest.raises(errors.UnknownVersion):
        client.resolve(ident.did, version_id=7)
    with pytest.raises(errors.InvalidArgument):
        client.resolve(ident.did, version_time="yesterday")


def test_garbage_protobuf_is_invalid_argument(shared_node: RunningNode) -> None:
    for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05\x0a\x03ab"):  # garbage, truncated nested message
        code, reason = _raw_status(shared_node, "/didnode.v1.LedgerService/Submit", garbage)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert reason in ("MALFORMED_MESSAGE", "MALFORMED_OPERATION")
    code, reason = _raw_status(shared_node, "/didnode.v1.LedgerService/Submit", b"")
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_MESSAGE")


def test_batch_stream_keeps_order_and_answers_per_operation(client: Client) -> None:
    ident, op = new_create()
    others = [new_create()[1] for _ in range(600)]
    bad = SignedOperation(op.type, op.network, op.did, op.payload, (Proof(op.proofs[0].kid, b"\x02" * 64),))
    ops = [op] + others[:300] + [bad] + others[300:]
    outcomes = list(client.submit_batch(ops, chunk_size=64))
    assert len(outcomes) == len(ops)
    assert isinstance(outcomes[0], Receipt) and isinstance(outcomes[301], errors.InvalidSignature)
    positions = [o.position for o in outcomes if isinstance(o, Receipt)]
    assert positions == sorted(positions) and len(positions) == 601
    # A create and a rotate of the same DID in different chunks apply in stream order.
    ident2, op2 = new_create()
    parsed_last = hashlib.sha256(op2.payload).hexdigest()
    new_auth, new_next = SigningKey.generate(), SigningKey.generate()
    rot = builder.sign(
        builder.rotate("local", ident2.did, 1, parsed_last, bytes(ident2.next_key.verify_key), [builder.NewKey("key-2", bytes(new_auth.verify_key))], bytes(new_next.verify_key)),
        [(builder.next_kid(ident2.did), ident2.next_key)],
    )
    filler = [new_create()[1] for _ in range(63)]
    out = list(client.submit_batch([op2, *filler, rot], chunk_size=64))
    assert all(isinstance(o, Receipt) for o in out), [o for o in out if not isinstance(o, Receipt)]


def test_health_and_reflection(shared_node: RunningNode) -> None:
    with grpc.insecure_channel(shared_node.address) as ch:
        h = health_pb2_grpc.HealthStub(ch)
        for name in ("", "didnode.v1.LedgerService", "didnode.v1.NodeService"):
            assert h.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        r = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(iter(r.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)))
        names = {s.name for s in resp.list_services_response.service}
        assert {"didnode.v1.LedgerService", "didnode.v1.NodeService", "grpc.health.v1.Health"} <= names


def test_unreachable_node_raises_node_unavailable() -> None:
    with Client("127.0.0.1:1", timeout=2) as c:
        with pytest.raises(errors.NodeUnavailable):
            c.node_info()


def test_sigterm_stops_gracefully_and_restart_keeps_everything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = start_node(tmp_path / "n")
    with Client(n.address) as c:
        ident, op = new_create()
        receipt = c.submit(op)
        node_did = c.node_info().node_did
    assert n.stop(signal.SIGTERM) == 0
    n2 = start_node(tmp_path / "n")
    try:
        with Client(n2.address) as c:
            assert c.node_info().node_did == node_did
            assert c.history(ident.did)[0].position == receipt.position
    finally:
        n2.stop()


def test_a_store_of_another_network_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = start_node(tmp_path / "n")
    n.stop()
    with pytest.raises(RuntimeError, match="belongs to network"):
        start_node(tmp_path / "n", network="other")
