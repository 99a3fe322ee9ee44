"""Handshakes over real gRPC on 127.0.0.1: the node as responder, and a device responder served from this process.

The node is a real ``didnode serve`` subprocess; device responders are
grpc.aio servers started here (bounded: every test stops its server), their
nonce stores real LMDB environments in tmp dirs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from didnode import errors
from didnode.api.v1 import auth_pb2 as pb
from didnode.auth import Authenticator, add_auth_responder, authenticate, device_responder
from didnode.client import AsyncClient, Client
from didnode.core import builder
from didnode.core.credentials import NODE_SESSION
from didnode.core.handshake import Fresh, HandshakeLimits, Initiator, LocalIdentity, MemoryNonceStore, Policy, require_credentials
from didnode.core.handshake.messages import CredentialRequest
from didnode.auth.peers import ClientCredentials, ClientKeyStates
from didnode.client.trust import policy_from_node
from didnode.clock import wall_ms
from didnode.core.trust import TrustPolicy
from didnode.auth.lmdb_nonces import LmdbNonceStore
from didnode.wire.handshake import METHOD
from didnode.wire.handshake import decode, encode
from tests.conftest import RunningNode
from tests.factory import Identity, new_create


@pytest.fixture(scope="module")
def client(shared_node: RunningNode) -> Client:
    with Client(shared_node.address) as c:
        yield c


def make(client: Client, controllers: tuple[Identity, ...] = ()) -> Identity:
    ident, op = new_create(controllers=controllers)
    client.submit(op)
    return ident


_TRUST: dict[str, TrustPolicy] = {}


def trust_of(node: RunningNode) -> TrustPolicy:
    """The trust policy of ``node``, taken from it on first use (as a device's provisioning would)."""
    key = f"{node.address} {node.data_dir}"  # a port may be reused by a later node
    policy = _TRUST.get(key)
    if policy is None:
        with Client(node.address) as c:
            policy = _TRUST[key] = policy_from_node(c)
    return policy


def me(ident: Identity) -> LocalIdentity:
    return LocalIdentity.from_signing_key(ident.did, ident.current, ident.key)


def revoke(client: Client, ident: Identity, by: Identity) -> None:
    st = client.state(ident.did)
    client.submit(builder.sign(builder.revoke("local", ident.did, st.seq + 1, st.last, "key-1", "compromised"), [(by.kid, by.key)]))


def status_reason(err: grpc.aio.AioRpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            info = error_details_pb2.ErrorInfo()
            status_pb2.Status.FromString(value).details[0].Unpack(info)
            return info.reason
    return ""


async def with_device(
    node: RunningNode, ident: Identity, tmp: Path, body: Callable[[str], Awaitable[Any]], limits: HandshakeLimits = HandshakeLimits(), **kw: Any
) -> Any:
    """Serve a device responder for ``ident`` on 127.0.0.1 while ``body(address)`` runs; always stopped."""
    store = LmdbNonceStore(tmp / f"dev-{ident.did[-6:]}", wall_ms(), limits)
    async with AsyncClient(node.address) as nc:
        kw.setdefault("trust", trust_of(node))
        responder = await device_responder(me(ident), nc, nonces=store, **kw)
        server = grpc.aio.server()
        add_auth_responder(server, responder)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await asyncio.wait_for(body(f"127.0.0.1:{port}"), 30)
        finally:
            await server.stop(0)
            store.close()


async def raw_call(address: str, frames: list[bytes], read: int = 1, timeout: float = 10) -> tuple[list[bytes], grpc.aio.AioRpcError | None]:
    """Send raw frames on one Handshake stream; read up to ``read`` replies; return them and the final error, if any."""
    async with grpc.aio.insecure_channel(address) as ch:
        call = ch.stream_stream(METHOD)(timeout=timeout)
        got: list[bytes] = []
        try:
            for f in frames:
                await call.write(f)
            for _ in range(read):
                m = await call.read()
                if m is grpc.aio.EOF:
                    break
                got.append(m)
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as err:
            return got, err
        return got, None


# --------------------------------------------------------------------------
# The node as responder
# --------------------------------------------------------------------------


def test_device_authenticates_to_the_node_and_gets_a_session_credential(shared_node: RunningNode, client: Client) -> None:
    dev = make(client)
    est = asyncio.run(authenticate(shared_node.address, me(dev), node=shared_node.address, trust=trust_of(shared_node)))
    info = client.node_info()
    assert est.peer_did == info.node_did
    report = client.verify_credential(est.credential, expected_subject=dev.did, expected_issuer=info.node_did, expected_type=NODE_SESSION)
    assert report.valid, report
    assert report.credential is not None and report.credential.claims["credentialSubject"]["sessionId"] == est.session_id.hex()
    assert est.expires_ms > wall_ms()


def test_node_refuses_a_revoked_device_key(shared_node: RunningNode, client: Client) -> None:
    admin = make(client)
    dev = make(client, (admin,))
    asyncio.run(authenticate(shared_node.address, me(dev), node=shared_node.address, trust=trust_of(shared_node)))
    revoke(client, dev, admin)
    with pytest.raises(errors.KeyRevoked) as exc:
        asyncio.run(authenticate(shared_node.address, me(dev), node=shared_node.address, trust=trust_of(shared_node)))
    assert exc.value.reason == "PEER_KEY_REVOKED" and exc.value.details["by"] == "responder"


def test_node_refuses_garbage_and_truncated_frames(shared_node: RunningNode) -> None:
    _, err = asyncio.run(raw_call(shared_node.address, [b"\xff\x00garbage"]))
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT and status_reason(err) == "HANDSHAKE_MALFORMED"
    _, err = asyncio.run(raw_call(shared_node.address, [encode(_hello_of(make_identity_for_frames()))[:20]]))
    assert err is not None and status_reason(err) == "HANDSHAKE_MALFORMED"


def make_identity_for_frames() -> Identity:
    ident, _ = new_create()
    return ident


def _hello_of(ident: Identity, network: str = "local") -> Any:
    i = Initiator(me(ident), network, Fresh.draw(__import__("os").urandom), MemoryNonceStore())
    return i.hello(wall_ms())


def test_node_refuses_messages_out_of_order(shared_node: RunningNode, client: Client) -> None:
    dev = make(client)
    session = pb.AuthMessage(session=pb.Session(session_id=bytes(16), mac=bytes(32))).SerializeToString()
    _, err = asyncio.run(raw_call(shared_node.address, [session]))
    assert err is not None and status_reason(err) == "OUT_OF_ORDER"
    # A second hello where the response belongs.
    hello = encode(_hello_of(dev))
    got, err = asyncio.run(raw_call(shared_node.address, [hello, encode(_hello_of(dev))], read=2))
    assert len(got) == 1 and decode(got[0]).__class__.__name__ == "Challenge"
    assert err is not None and status_reason(err) == "OUT_OF_ORDER"


def test_node_refuses_a_replayed_hello_across_sessions(shared_node: RunningNode, client: Client) -> None:
    dev = make(client)
    hello = encode(_hello_of(dev))
    got, _ = asyncio.run(raw_call(shared_node.address, [hello]))
    assert len(got) == 1  # the first time it is answered with a challenge (then abandoned)
    _, err = asyncio.run(raw_call(shared_node.address, [hello]))
    assert err is not None and status_reason(err) == "REPLAY"


def test_node_refuses_the_wrong_network_and_unknown_dids(shared_node: RunningNode, client: Client) -> None:
    dev = make(client)
    _, err = asyncio.run(raw_call(shared_node.address, [encode(_hello_of(dev, "othernet"))]))
    assert err is not None and status_reason(err) == "PEER_WRONG_NETWORK"
    _, err = asyncio.run(raw_call(shared_node.address, [encode(_hello_of(make_identity_for_frames()))]))
    assert err is not None and status_reason(err) == "PEER_UNKNOWN" and err.code() == grpc.StatusCode.NOT_FOUND


# --------------------------------------------------------------------------
# A device responder embedded in a grpc.aio server
# --------------------------------------------------------------------------


def test_device_to_device_then_revocation_applies_to_the_next_handshake(shared_node: RunningNode, client: Client, tmp_path: Path) -> None:
    admin = make(client)
    a, b = make(client, (admin,)), make(client)

    async def body(address: str) -> None:
        first = await authenticate(address, me(b), node=shared_node.address, trust=trust_of(shared_node))
        assert first.peer_did == a.did and not first.credential
        revoke(client, a, admin)
        with pytest.raises(errors.PeerKeyRevoked) as exc:
            await authenticate(address, me(b), node=shared_node.address, trust=trust_of(shared_node))
        assert exc.value.reason == "PEER_KEY_REVOKED"

    asyncio.run(with_device(shared_node, a, tmp_path, body))


def test_half_open_handshakes_time_out_and_are_bounded_per_peer(shared_node: RunningNode, client: Client, tmp_path: Path) -> None:
    a = make(client)
    peers = [make(client) for _ in range(3)]
    limits = HandshakeLimits(timeout_ms=600, max_pending_per_peer=2, max_pending_total=10)

    async def body(address: str) -> None:
        async with grpc.aio.insecure_channel(address) as ch:
            calls = []
            for p in peers[:2]:
                call = ch.stream_stream(METHOD)(timeout=10)
                await call.write(encode(_hello_of(p)))
                assert decode(await call.read()).__class__.__name__ == "Challenge"
                calls.append(call)
            # The third half-open handshake from the same address is refused at once.
            _, err = await raw_call(address, [encode(_hello_of(peers[2]))])
            assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and status_reason(err) == "TOO_MANY_PENDING"
            # The two that never answer time out ...
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await call.read()
                assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and status_reason(exc.value) == "HANDSHAKE_TIMEOUT"
            # ... which frees their slots.
            est = await authenticate(address, me(peers[2]), node=shared_node.address, trust=trust_of(shared_node))
            assert est.peer_did == a.did

    asyncio.run(with_device(shared_node, a, tmp_path, body, limits))


def test_device_policy_requires_a_node_session_credential(shared_node: RunningNode, client: Client, tmp_path: Path) -> None:
    a, b = make(client), make(client)
    node_did = client.node_info().node_did
    policy = require_credentials([CredentialRequest(NODE_SESSION, node_did)])

    async def body(address: str) -> None:
        with pytest.raises(errors.CredentialRequired) as exc:
            await authenticate(address, me(b), node=shared_node.address, trust=trust_of(shared_node))
        assert exc.value.reason == "CREDENTIAL_REQUIRED"
        session = await authenticate(shared_node.address, me(b), node=shared_node.address, trust=trust_of(shared_node))
        est = await authenticate(address, me(b), node=shared_node.address, trust=trust_of(shared_node), present=[session.credential])
        assert est.peer_did == a.did

    asyncio.run(with_device(shared_node, a, tmp_path, body, policy=policy))


def test_stapled_state_proof_lets_the_initiator_skip_the_node(shared_node: RunningNode, client: Client, tmp_path: Path) -> None:
    a, b = make(client), make(client)

    async def body(address: str) -> None:
        est = await authenticate(address, me(b), node=shared_node.address, trust=trust_of(shared_node), max_staleness_ms=60_000)
        assert any("stapled state proof" in c for c in est.checks), est.checks

    asyncio.run(with_device(shared_node, a, tmp_path, body, staple=True))


def test_initiator_times_out_against_a_silent_responder(tmp_path: Path) -> None:
    class Silent:
        async def Handshake(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
            await context.read()
            await asyncio.sleep(5)

        async def HandshakeInHeaders(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
            await asyncio.sleep(5)  # the hello came with the request headers

    async def run() -> None:
        from didnode.wire.handshake import SERVICE
        from didnode.wire.handlers import generic_handler

        server = grpc.aio.server()
        server.add_generic_rpc_handlers((generic_handler(SERVICE, Silent()),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            ident, _ = new_create()

            class NoLedger:
                async def key_state(self, did: str) -> Any:
                    raise errors.UnknownDid(did)

            auth = Authenticator(me(ident), "local", NoLedger())
            t = time.monotonic()
            with pytest.raises(errors.HandshakeTimeout) as exc:
                await auth.authenticate(f"127.0.0.1:{port}", timeout=0.3)
            assert exc.value.reason == "HANDSHAKE_TIMEOUT" and time.monotonic() - t < 3
            await auth.close()
        finally:
            await server.stop(0)

    asyncio.run(run())


def test_client_credentials_checker_verifies_through_the_node(shared_node: RunningNode, client: Client) -> None:
    dev = make(client)

    async def run() -> None:
        async with AsyncClient(shared_node.address) as nc:
            session = await authenticate(shared_node.address, me(dev), node=shared_node.address, trust=trust_of(shared_node))
            node_did = (await nc.node_info()).node_did
            checker = ClientCredentials(nc, trust_of(shared_node))
            desc = await checker.check(session.credential, wall_ms(), dev.did, CredentialRequest(NODE_SESSION, node_did))
            assert "valid until" in desc
            with pytest.raises(errors.SubjectMismatch):
                await checker.check(session.credential, wall_ms(), node_did, CredentialRequest(NODE_SESSION, node_did))
            assert ClientKeyStates(nc, trust_of(shared_node)) is not None and Policy

    asyncio.run(run())


def test_stapled_state_proofs_are_checked_not_trusted(shared_node: RunningNode, client: Client) -> None:
    import dataclasses
    import json as _json

    from didnode.auth.peers import StapledStateVerifier
    from didnode.core.trust import TrustedKey

    a, b = make(client), make(client)
    proof = _json.dumps(client.state_proof(a.did).to_json()).encode()
    policy = trust_of(shared_node)
    now = wall_ms()
    assert StapledStateVerifier(policy, 60_000).verify(a.did, proof, now).did == a.did
    other_key = dataclasses.replace(policy, keys=(TrustedKey(policy.keys[0].kid, bytes(32)),))
    with pytest.raises(errors.BadCheckpointSignature):
        StapledStateVerifier(other_key, 60_000).verify(a.did, proof, now)
    other_kid = dataclasses.replace(policy, keys=(TrustedKey("did:dnode:other#key-1", policy.keys[0].public_key),))
    with pytest.raises(errors.UntrustedCheckpointSigner):
        StapledStateVerifier(other_kid, 60_000).verify(a.did, proof, now)
    with pytest.raises(errors.PeerWrongNetwork):
        StapledStateVerifier(dataclasses.replace(policy, network="othernet", latest=None), 60_000).verify(a.did, proof, now)
    with pytest.raises(errors.StaleCheckpoint):
        StapledStateVerifier(policy, 1_000).verify(a.did, proof, now + 5_000)
    with pytest.raises(errors.ProofClaimMismatch):
        StapledStateVerifier(policy, 60_000).verify(b.did, proof, now)
    with pytest.raises(errors.MalformedProof):
        StapledStateVerifier(policy, 60_000).verify(a.did, b"{not json", now)


def test_device_policy_refuses_a_revoked_attestation_published_on_the_ledger(shared_node: RunningNode, client: Client, tmp_path: Path) -> None:
    from didnode.core.credentials import DEVICE_ATTESTATION, Bitstring, Issuer, device_attestation_claims

    maker, a, b, d = make(client), make(client), make(client), make(client)
    issuer = Issuer(maker.did, "key-1", maker.key)
    now = wall_ms()
    attest = {}
    for dev, index in ((b, 11), (a, 12), (d, 13)):
        entry = issuer.status_entries(0, index)[0]
        claims = device_attestation_claims("M1", f"SN-{index}", "hw", "fw", now - 86_400_000)
        attest[dev.did] = issuer.issue(dev.did, [DEVICE_ATTESTATION], claims, now - 5_000, now + 86_400_000, status=[entry])
    bits = Bitstring()
    bits.set(11, True)  # b's attestation is revoked
    st = client.state(maker.did)
    lst = issuer.status_list("revocation", 0, bits, now - 1_000)
    client.submit(builder.sign(builder.publish("local", maker.did, st.seq + 1, st.last, "revocation-0", "application/vc+jwt", lst), [(maker.kid, maker.key)]))
    wanted = CredentialRequest(DEVICE_ATTESTATION, maker.did)
    c_id = make(client)  # a device that presents nothing

    async def body(address: str) -> None:
        with pytest.raises(errors.CredentialRevoked) as exc:
            await authenticate(address, me(b), node=shared_node.address, trust=trust_of(shared_node), present=[attest[b.did]])
        assert exc.value.reason == "REVOKED" and exc.value.details["by"] == "responder"
        with pytest.raises(errors.CredentialRequired):
            await authenticate(address, me(c_id), node=shared_node.address, trust=trust_of(shared_node))
        # Both ways: d requires A's attestation (checked against the published list) and presents its own.
        est = await authenticate(address, me(d), node=shared_node.address, trust=trust_of(shared_node), present=[attest[d.did]], require=[wanted])
        assert any(DEVICE_ATTESTATION in c and "verified" in c for c in est.checks), est.checks

    asyncio.run(with_device(shared_node, a, tmp_path, body, policy=require_credentials([wanted]), present=[attest[a.did]]))
