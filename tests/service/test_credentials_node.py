"""Credentials against a real node (subprocess, loopback gRPC, LMDB): verify, status lists, session credentials."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest
from jwcrypto import jwk, jws
from jwcrypto.common import json_encode
from nacl.signing import SigningKey

from didnode import errors
from didnode.api.v1 import credentials_pb2
from didnode.client import Client
from didnode.core import builder
from didnode.core.credentials import DEVICE_ATTESTATION, NODE_SESSION, Issuer, device_attestation_claims
from didnode.core.credentials import session as session_request
from didnode.core.credentials.model import build_claims
from didnode.core.encoding import b64url
from didnode.client import StatusLists
from didnode.clock import wall_ms
from didnode.service.credentials import CredentialService
from didnode.service.ledger import LedgerService
from didnode.service.node import Node, NodeConfig
from tests.conftest import RunningNode
from tests.factory import Identity, adopt_rotation, new_create, rotate_op


@pytest.fixture(scope="module")
def client(shared_node: RunningNode) -> Iterator[Client]:
    with Client(shared_node.address) as c:
        yield c


def register(client: Client) -> Identity:
    ident, op = new_create()
    client.submit(op)
    return ident


def attestation(iss: Issuer, subject: str, **kw: object) -> str:
    now = wall_ms()
    return iss.issue(subject, [DEVICE_ATTESTATION], device_attestation_claims("X1", "SN-9", "hw2", "fw3", now - 86_400_000), now, **kw)  # type: ignore[arg-type]


def test_verify_on_the_node_and_offline(client: Client) -> None:
    mfr, dev = register(client), register(client)
    iss = Issuer(mfr.did, "key-1", mfr.key)
    token = attestation(iss, dev.did, valid_until_ms=wall_ms() + 3_600_000)
    remote = client.verify_credential(token, expected_subject=dev.did, expected_type=DEVICE_ATTESTATION)
    assert remote.valid and [c.outcome for c in remote.checks][:7] == ["passed"] * 7
    assert remote.credential is not None and remote.credential.subject == dev.did
    offline = client.offline_verifier()
    local = offline.verify(token, expected_subject=dev.did)
    assert local.valid and [c.outcome for c in local.checks] == [c.outcome for c in remote.checks]
    other = register(client)
    wrong = client.verify_credential(token, expected_subject=other.did)
    assert not wrong.valid and wrong.reason == "SUBJECT_MISMATCH" and isinstance(wrong.error, errors.SubjectMismatch)
    bad = client.verify_credential(token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"))
    assert bad.reason == "CREDENTIAL_BAD_SIGNATURE" and isinstance(bad.error, errors.CredentialBadSignature)
    assert client.verify_credential("x" * 20_000).reason == "TOKEN_TOO_LARGE"


def test_status_lists_through_the_ledger(client: Client) -> None:
    mfr, dev = register(client), register(client)
    iss = Issuer(mfr.did, "key-1", mfr.key)
    lists = StatusLists(client, iss, mfr.key, "local")
    first = lists.allocate(1)
    second = lists.allocate(2)
    assert (first.number, first.start) == (1, 0) and (second.start, second.count) == (1, 2)
    i = second.indices[1]
    assert len({*first.indices, *second.indices}) == 3
    token = attestation(iss, dev.did, status=iss.status_entries(1, i))
    offline = client.offline_verifier(cache_ttl_ms=0)
    assert client.verify_credential(token).valid and offline.verify(token).valid

    lists.set_status("suspension", 1, i, True)
    assert client.verify_credential(token).reason == "SUSPENDED"
    assert offline.verify(token).reason == "SUSPENDED"
    # The node answers for the list by any of its URLs: the HTTP(S) form whatever the host, the DID URL form.
    for url in (iss.status_url("suspension-1"), f"https://elsewhere.example/1.0/identifiers/{mfr.did}?resource=suspension-1", f"{mfr.did}?resource=suspension-1"):
        st = client.status(url, i, include_credential=True)
        assert st.set and st.purpose == "suspension" and st.size == 131_072 and st.credential.count(".") == 2
    lists.set_status("suspension", 1, i, False)
    assert client.verify_credential(token).valid
    lists.set_status("revocation", 1, i, True)
    report = client.verify_credential(token)
    assert report.reason == "REVOKED" and isinstance(report.error, errors.CredentialRevoked)
    rev = client.status(iss.status_url("revocation-1"), i)
    assert rev.set and rev.allocated == 0 and not client.status(iss.status_url("revocation-1"), first.indices[0]).set  # no count published
    with pytest.raises(errors.InvalidArgument):
        lists.set_status("revocation", 1, i, False)  # revocation is final
    rec = lists.record(1)
    assert rec is not None and rec.allocated == 3
    with pytest.raises(errors.InvalidArgument):
        lists.set_status("revocation", 1, next(j for j in range(131_072) if not rec.is_allocated(j)), True)  # never allocated
    # Every version of the list is on the ledger: the DID's history holds each publish.
    publishes = [h for h in client.history(mfr.did) if h.type == "publish"]
    assert len(publishes) == 2 + 2 + 3  # suspension-1, revocation-1 + 2 allocations + 3 status changes


def test_concurrent_allocation_never_reuses_an_index(client: Client) -> None:
    mfr = register(client)
    # Two "devices" with the same issuer key, each its own StatusLists (no shared memory).
    a = StatusLists(client, Issuer(mfr.did, "key-1", mfr.key), mfr.key, "local")
    b = StatusLists(client, Issuer(mfr.did, "key-1", mfr.key), mfr.key, "local")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: (a if i % 2 else b).allocate(1), range(8)))
    assert sorted(x.start for x in got) == list(range(8)) and len({x.indices[0] for x in got}) == 8


def test_key_fates_on_the_ledger(client: Client) -> None:
    mfr, dev = register(client), register(client)
    old = Issuer(mfr.did, "key-1", mfr.key)
    before = attestation(old, dev.did)
    time.sleep(1.1)  # second-precision credential times: the rotation lands in a later second
    u, auth, nxt, key_id = rotate_op(mfr, client.state(mfr.did))
    client.submit(builder.sign(u, [(builder.next_kid(mfr.did), mfr.next_key)]))
    adopt_rotation(mfr, auth, nxt, key_id)
    time.sleep(1.1)
    after_old = attestation(old, dev.did)
    assert client.verify_credential(before).valid
    assert client.verify_credential(after_old).reason == "CREDENTIAL_KEY_ROTATED"
    rec = client.issuer_record(mfr.did)
    assert rec.key_times["key-1"][1] > rec.key_times["key-1"][0] and rec.key_times["key-2"][1] == -1
    # Revoking the old key as compromised: nothing it signed verifies any more.
    st = client.state(mfr.did)
    client.submit(builder.sign(builder.revoke("local", mfr.did, st.seq + 1, st.last, "key-1", "compromised", bytes(mfr.next_key.verify_key)), [(builder.next_kid(mfr.did), mfr.next_key)]))
    assert client.verify_credential(before).reason == "CREDENTIAL_KEY_REVOKED"
    current = attestation(Issuer(mfr.did, key_id, auth), dev.did)
    assert client.verify_credential(current).valid
    st = client.state(mfr.did)
    client.submit(builder.sign(builder.deactivate("local", mfr.did, st.seq + 1, st.last, "retired", bytes(mfr.next_key.verify_key)), [(builder.next_kid(mfr.did), mfr.next_key)]))
    assert client.verify_credential(current).reason == "ISSUER_DEACTIVATED"


def test_interop_with_jwcrypto_on_the_ledger(client: Client) -> None:
    mfr, dev = register(client), register(client)
    # jwcrypto signs with the key registered on the ledger; the node verifies.
    private = jwk.JWK(kty="OKP", crv="Ed25519", d=b64url(bytes(mfr.key)), x=b64url(bytes(mfr.key.verify_key)))
    claims = build_claims(mfr.did, dev.did, [DEVICE_ATTESTATION], device_attestation_claims("X", "S", "h", "f", wall_ms()), wall_ms())
    signer = jws.JWS(json.dumps(claims))
    signer.add_signature(private, alg="EdDSA", protected=json_encode({"alg": "EdDSA", "kid": mfr.kid, "typ": "vc+jwt"}))
    assert client.verify_credential(signer.serialize(compact=True), expected_subject=dev.did).valid
    # Our token verifies in jwcrypto with the JWK of the resolved DID document.
    token = attestation(Issuer(mfr.did, "key-1", mfr.key), dev.did)
    doc = client.resolve(mfr.did)["didDocument"]
    key = jwk.JWK(**next(m["publicKeyJwk"] for m in doc["verificationMethod"] if m["id"] == mfr.kid + "-jwk"))
    checker = jws.JWS()
    checker.deserialize(token)
    checker.verify(key, alg="EdDSA")
    assert json.loads(checker.payload)["credentialSubject"]["id"] == dev.did


# --------------------------------------------------------------------------
# Session credentials
# --------------------------------------------------------------------------


def test_session_credential_for_a_signed_request(client: Client) -> None:
    dev = register(client)
    cred = client.issue_session_credential(dev.did, dev.kid, dev.key, {"role": "sensor"})
    info = client.node_info()
    assert cred.issuer == info.node_did and cred.kid == f"{info.node_did}#key-1-jwk"
    assert cred.valid_until_ms - cred.valid_from_ms == 15 * 60 * 1000
    report = client.verify_credential(cred.token, expected_subject=dev.did, expected_type=NODE_SESSION, expected_issuer=info.node_did)
    assert report.valid and report.credential is not None and report.credential.claims["credentialSubject"]["role"] == "sensor"
    short = client.issue_session_credential(dev.did, dev.kid, dev.key, lifetime_s=60)
    assert short.valid_until_ms - short.valid_from_ms == 60_000
    with pytest.raises(errors.InvalidArgument):
        client.issue_session_credential(dev.did, dev.kid, dev.key, lifetime_s=3600)


@pytest.mark.parametrize("form", ["fragment", "hash", "did_url", "jwk"])
def test_session_credential_takes_the_key_id_in_any_form_a_user_copies(client: Client, form: str) -> None:
    dev = register(client)
    fragment = dev.kid.partition("#")[2]
    ref = {"fragment": fragment, "hash": f"#{fragment}", "did_url": dev.kid, "jwk": f"{dev.kid}-jwk"}[form]
    assert client.issue_session_credential(dev.did, ref, dev.key).subject == dev.did


def test_session_credential_refuses_a_key_of_another_did(client: Client) -> None:
    dev, other = register(client), register(client)
    with pytest.raises(errors.InvalidArgument) as exc:
        client.issue_session_credential(dev.did, other.kid, dev.key)
    assert dev.did in exc.value.message and other.did in exc.value.message


def _raw(client: Client, req: credentials_pb2.IssueSessionCredentialRequest) -> object:
    return client._call(client._credentials.IssueSessionCredential, req)  # noqa: SLF001 - raw requests for negative tests


def test_session_request_proof_of_control(client: Client) -> None:
    dev, other = register(client), register(client)
    info = client.node_info()

    def request(subject: str = dev.did, kid: str = dev.kid, key: SigningKey = dev.key, now: int | None = None, node: str = info.node_did, network: str = "local") -> credentials_pb2.IssueSessionCredentialRequest:
        payload = session_request.build_request(subject, node, wall_ms() if now is None else now, {}, 0)
        return credentials_pb2.IssueSessionCredentialRequest(request=payload, kid=kid, signature=session_request.sign_request(network, payload, key))

    with pytest.raises(errors.WrongSigner):
        _raw(client, request(kid=other.kid, key=other.key))  # someone else's key
    with pytest.raises(errors.InvalidSignature):
        _raw(client, request(key=other.key))  # the subject's kid, a wrong key
    with pytest.raises(errors.InvalidSignature):
        _raw(client, request(network="othernet"))  # signed for another network
    with pytest.raises(errors.StaleRequest):
        _raw(client, request(now=wall_ms() - 5 * 60_000))
    with pytest.raises(errors.InvalidArgument):
        _raw(client, request(node=other.did))  # addressed to another node
    req = request()
    _raw(client, req)
    with pytest.raises(errors.ReplayedRequest):
        _raw(client, req)
    with pytest.raises(errors.MalformedMessage):
        _raw(client, credentials_pb2.IssueSessionCredentialRequest(request=b'{"subject": 1}', kid=dev.kid, signature=bytes(64)))
    # After a rotation the old key no longer proves control.
    u, auth, nxt, key_id = rotate_op(dev, client.state(dev.did))
    client.submit(builder.sign(u, [(builder.next_kid(dev.did), dev.next_key)]))
    old_kid, old_key = dev.kid, dev.key
    adopt_rotation(dev, auth, nxt, key_id)
    with pytest.raises(errors.KeyRotated):
        _raw(client, request(kid=old_kid, key=old_key))
    assert client.issue_session_credential(dev.did, dev.kid, dev.key).subject == dev.did


def test_in_process_session_credentials_with_configured_lifetime(tmp_path: Path) -> None:
    node = Node(NodeConfig(data_dir=str(tmp_path / "n"), session_lifetime_s=120))
    try:
        ledger = LedgerService(node)
        service = CredentialService(node, ledger)
        cred = service.issue_session_credential(node.node_did, {"via": "handshake"})
        assert cred.valid_until_ms - cred.valid_from_ms == 120_000
        report = service.verify(cred.token, expected_subject=node.node_did)
        assert report.valid, report.to_json()
        with pytest.raises(errors.InvalidArgument):
            service.issue_session_credential(node.node_did, None, 121)
        with pytest.raises(errors.UnknownDid):
            service.issue_session_credential("did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE")
    finally:
        node.close()
