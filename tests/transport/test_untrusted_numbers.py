"""Issue #14: integers beyond Python's int-to-str limit, and one bad operation in a batch, over a real node.

CPython refuses to convert a decimal literal of more than ``sys.get_int_max_str_digits()``
(4,300) digits with a ``ValueError`` raised inside the JSON scanner. Every parser of
untrusted bytes must answer that with its typed error (not INTERNAL and a traceback), and
a SubmitBatch stream answers per operation, always: a bad operation never takes its
valid neighbours (or the stream) down with it.
"""

from __future__ import annotations

import sys
from typing import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from nacl.signing import SigningKey

from didnode import errors
from didnode.api.v1 import ledger_pb2 as pb
from didnode.client import Client, Receipt
from didnode.clock import wall_ms
from didnode.core.builder import SignedOperation
from didnode.core.credentials import DEVICE_ATTESTATION, Issuer, device_attestation_claims
from didnode.core.credentials.jose import header_segment
from didnode.core.encoding import b64url
from didnode.core.operations import Proof
from tests.conftest import RunningNode
from tests.factory import new_create

DIGITS = 5000
assert DIGITS > sys.get_int_max_str_digits() > 0
HUGE = b"1" * DIGITS


@pytest.fixture(scope="module")
def client(shared_node: RunningNode) -> Iterator[Client]:
    with Client(shared_node.address) as c:
        yield c


def _huge_op(where: str = "seq") -> SignedOperation:
    """A create whose ``seq`` (or an extra member) is a 5,000-digit integer, signed like a real one."""
    _, op = new_create()
    if where == "seq":
        payload = op.payload.replace(b'"seq":0', b'"seq":' + HUGE)
    else:
        payload = b'{"a":[' + HUGE + b"]," + op.payload[1:]
    assert payload != op.payload
    return SignedOperation(op.type, op.network, op.did, payload, op.proofs)


def _status(address: str, method: str, request: bytes) -> tuple[grpc.StatusCode, str, str]:
    with grpc.insecure_channel(address) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            ch.unary_unary(method)(request, timeout=10)
    err = exc.value
    reason = ""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            info = error_details_pb2.ErrorInfo()
            status_pb2.Status.FromString(value).details[0].Unpack(info)
            reason = info.reason
    return err.code(), reason, err.details() or ""


@pytest.mark.parametrize("where", ["seq", "extra-member"])
def test_submit_with_a_5000_digit_integer_is_invalid_argument(client: Client, shared_node: RunningNode, where: str) -> None:
    bad = _huge_op(where)
    with pytest.raises(errors.MalformedOperation) as exc:
        client.submit(bad)
    assert f"integer of {DIGITS} digits; the limit is {sys.get_int_max_str_digits()} digits" in exc.value.message
    req = pb.SubmitRequest(operation=pb.Operation(payload=bad.payload, proofs=[pb.Proof(kid=p.kid, signature=p.signature) for p in bad.proofs]))
    code, reason, message = _status(shared_node.address, "/didnode.v1.LedgerService/Submit", req.SerializeToString())
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_OPERATION")
    assert "digits" in message
    # The node is fine afterwards.
    assert isinstance(client.submit(new_create()[1]), Receipt)


def _token_with(payload: bytes, kid: str, key: SigningKey) -> str:
    """A token with exactly these payload bytes, validly signed by ``key``."""
    signing_input = header_segment(kid) + "." + b64url(payload)
    return signing_input + "." + b64url(key.sign(signing_input.encode("ascii")).signature)


def test_verify_with_a_5000_digit_integer_is_a_malformed_credential(client: Client) -> None:
    ident, op = new_create()
    client.submit(op)
    iss = Issuer(ident.did, "key-1", ident.key)
    now = wall_ms()
    good = iss.issue(ident.did, [DEVICE_ATTESTATION], device_attestation_claims("X1", "SN-9", "hw2", "fw3", now - 86_400_000), now)
    assert client.verify_credential(good).valid
    payload = b'{"iat":' + HUGE + b',"@context":["https://www.w3.org/ns/credentials/v2"]}'
    token = _token_with(payload, iss.kid, ident.key)
    report = client.verify_credential(token)
    assert not report.valid
    assert report.reason == "MALFORMED_CREDENTIAL" and isinstance(report.error, errors.MalformedCredential)
    assert "digits" in report.message
    assert report.check("format").outcome == "failed"
    # The header too.
    header = b64url(b'{"alg":"EdDSA","kid":"' + iss.kid.encode() + b'","typ":"vc+jwt","x":' + HUGE + b"}")
    forged = header + "." + token.split(".", 1)[1]
    assert client.verify_credential(forged).reason == "MALFORMED_CREDENTIAL"


@pytest.mark.parametrize("chunk_size", [3, 64], ids=["inline-prepare", "worker-prepare"])
def test_submit_batch_applies_the_valid_neighbours_of_a_5000_digit_operation(client: Client, chunk_size: int) -> None:
    before = [new_create()[1] for _ in range(chunk_size - 2)]
    after = [new_create()[1] for _ in range(chunk_size + 5)]  # the next chunk(s) of the stream too
    bad = _huge_op()
    outcomes = list(client.submit_batch([*before, bad, *after], chunk_size=chunk_size))
    assert len(outcomes) == len(before) + 1 + len(after)
    rejected = outcomes[len(before)]
    assert isinstance(rejected, errors.MalformedOperation) and "digits" in rejected.message
    good = outcomes[: len(before)] + outcomes[len(before) + 1 :]
    assert all(isinstance(o, Receipt) for o in good), [o for o in good if not isinstance(o, Receipt)]
    for op in (*before, *after):
        assert client.resolve(op.did)["didDocument"]["id"] == op.did


def test_submit_batch_answers_an_empty_payload_per_operation(client: Client) -> None:
    ops = [new_create()[1] for _ in range(4)]
    empty = SignedOperation("create", "local", "", b"", (Proof("did:dnode:x#key-1", b"\0" * 64),))
    outcomes = list(client.submit_batch([ops[0], ops[1], empty, ops[2], ops[3]], chunk_size=16))
    assert isinstance(outcomes[2], errors.MalformedMessage)
    assert all(isinstance(o, Receipt) for o in outcomes[:2] + outcomes[3:]), outcomes
