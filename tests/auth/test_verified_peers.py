"""Verified by default (issue #15): the device SDK believes a node's answer only once it checks out against
the device's trust policy, in both handshake roles.

The attack: a proxy between a device and an honest node swaps one DID's key in its answers, and an attacker
holding that key runs a handshake as the DID. Here the proxy is real (:mod:`tests.lying_proxy`, a gRPC server
on 127.0.0.1 in front of a real ``didnode serve``) and re-signs nothing. Every forgery is refused with the
reason of the check it fails; each test shows, where it applies, that the same setup without verification
(``insecure_no_verify=True``) is fooled, so the proxy really lies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import grpc
import pytest
from nacl.signing import SigningKey

from didnode import errors
from didnode.auth import Authenticator, add_auth_responder, authenticate, device_responder, trusted_log
from didnode.auth.lmdb_nonces import LmdbNonceStore
from didnode.auth.peers import ClientCredentials, ClientKeyStates, StapledStateVerifier
from didnode.client import AsyncClient, Client
from didnode.clock import wall_ms
from didnode.core import builder
from didnode.core.credentials import DEVICE_ATTESTATION, Issuer, device_attestation_claims
from didnode.core.handshake import Established, LocalIdentity, require_credentials
from didnode.core.handshake.messages import CredentialRequest
from didnode.core.trust import TrustedLog, TrustPolicy
from didnode.errors import DidnodeError
from tests.auth.test_auth_grpc import client, make, me, trust_of  # noqa: F401  (client is a fixture)
from tests.conftest import RunningNode
from tests.factory import Identity
from tests.lying_proxy import STATE_PROOF, LyingProxy, Recorder, forge_checkpoint_with, forge_key_state, forge_state_proof

_n = itertools.count()


@pytest.fixture
def proxy(shared_node: RunningNode) -> Iterator[LyingProxy]:
    with LyingProxy(shared_node.address) as p:
        yield p


def impostor(ident: Identity) -> tuple[LocalIdentity, SigningKey]:
    """The attacker: a key of its own, presented as ``ident``'s current key."""
    key = SigningKey.generate()
    return LocalIdentity.from_signing_key(ident.did, ident.current, key), key


def forge(p: LyingProxy, did: str, key: SigningKey) -> None:
    """The proxy swaps ``did``'s key for ``key`` in every answer a device could ask for it."""
    raw = bytes(key.verify_key)
    p.set("/didnode.v1.LedgerService/GetKeyState", forge_key_state(did, raw))
    p.set(STATE_PROOF, forge_state_proof(did, raw))


@asynccontextmanager
async def device(
    identity: LocalIdentity, node: str, tmp: Path, trust: TrustPolicy | TrustedLog | None, outcomes: list[Any] | None = None, **kw: Any
) -> AsyncIterator[str]:
    """A device responder for ``identity`` whose node is ``node`` (the proxy, or the honest node), on 127.0.0.1."""
    store = LmdbNonceStore(tmp / f"dev-{next(_n)}", wall_ms())
    async with AsyncClient(node) as nc:
        responder = await device_responder(identity, nc, nonces=store, trust=trust, insecure_no_verify=trust is None, **kw)
        server = grpc.aio.server()
        add_auth_responder(server, responder, None if outcomes is None else (lambda outcome, peer: outcomes.append(outcome)))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            await server.stop(0)
            store.close()


# --------------------------------------------------------------------------
# The honest path, and one verification per checkpoint
# --------------------------------------------------------------------------


def test_honest_path_through_the_proxy_verifies_each_checkpoint_signature_once(
    shared_node: RunningNode, client: Client, proxy: LyingProxy, tmp_path: Path  # noqa: F811
) -> None:
    """A device (A) answers four initiators and authenticates to a fifth device, all through a proxy that
    forwards honestly: every peer's key state is read and verified (one GetStateProof each, the
    re-checks inside their bound), and the one checkpoint they share is signature-checked once."""
    a, c = make(client), make(client)
    peers = [make(client) for _ in range(4)]
    policy = trust_of(shared_node)
    log = trusted_log(policy)

    async def run() -> None:
        async with device(me(a), proxy.address, tmp_path, log) as a_addr, device(me(c), shared_node.address, tmp_path, policy) as c_addr:
            for p in peers:
                est = await authenticate(a_addr, me(p), trust=policy, node=shared_node.address)
                assert est.peer_did == a.did
            async with AsyncClient(proxy.address) as nc:
                auth = Authenticator(me(a), policy.network, ClientKeyStates(nc, log))
                assert (await auth.authenticate(c_addr, expect_peer=c.did)).peer_did == c.did
                await auth.close()

    asyncio.run(run())
    assert proxy.calls[STATE_PROOF] >= 5
    assert log.signatures_checked == 1, (log.signatures_checked, proxy.calls)


# --------------------------------------------------------------------------
# A forged key state, in both roles
# --------------------------------------------------------------------------


def test_initiator_refuses_a_responder_whose_key_state_is_forged(
    shared_node: RunningNode, client: Client, proxy: LyingProxy, tmp_path: Path  # noqa: F811
) -> None:
    """The attacker answers as A with its own key; the initiator's node (the proxy) swaps A's key for it."""
    a, b = make(client), make(client)
    fake_a, key = impostor(a)
    forge(proxy, a.did, key)

    async def run() -> None:
        async with device(fake_a, shared_node.address, tmp_path, trust_of(shared_node)) as addr:
            with pytest.raises(errors.RootMismatch) as exc:
                await authenticate(addr, me(b), trust=trust_of(shared_node), node=proxy.address, expect_peer=a.did)
            assert exc.value.reason == "ROOT_MISMATCH" and "by" not in exc.value.details
            # Unverified, the same proxy makes the initiator authenticate the attacker as A.
            est = await authenticate(addr, me(b), trust=None, insecure_no_verify=True, node=proxy.address, expect_peer=a.did)
            assert est.peer_did == a.did

    asyncio.run(run())


def test_responder_refuses_an_initiator_whose_key_state_is_forged(
    shared_node: RunningNode, client: Client, proxy: LyingProxy, tmp_path: Path  # noqa: F811
) -> None:
    """The attacker initiates as B with its own key; the responder's node (the proxy) swaps B's key for it."""
    a, b = make(client), make(client)
    fake_b, key = impostor(b)
    forge(proxy, b.did, key)
    outcomes: list[Established | DidnodeError] = []

    async def run() -> None:
        async with device(me(a), proxy.address, tmp_path, trust_of(shared_node), outcomes) as addr:
            with pytest.raises(errors.RootMismatch) as exc:
                await authenticate(addr, fake_b, trust=trust_of(shared_node), node=shared_node.address, expect_peer=a.did)
            assert exc.value.reason == "ROOT_MISMATCH" and exc.value.details["by"] == "responder"
        assert isinstance(outcomes[-1], errors.RootMismatch)
        async with device(me(a), proxy.address, tmp_path, None, outcomes) as addr:
            # Unverified, the responder authenticates the attacker as B.
            await authenticate(addr, fake_b, trust=trust_of(shared_node), node=shared_node.address, expect_peer=a.did)
        assert isinstance(outcomes[-1], Established) and outcomes[-1].peer_did == b.did

    asyncio.run(run())


def test_the_recheck_at_the_end_of_a_handshake_is_verified(
    shared_node: RunningNode, client: Client, proxy: LyingProxy, tmp_path: Path  # noqa: F811
) -> None:
    """The proxy answers the first read honestly and forges the re-read at the end of the handshake
    (a source whose re-check bound is 0 asks again): the forged re-read is refused too."""
    a, b = make(client), make(client)
    honest = [0]

    def forge_after_first(request: bytes, reply: bytes) -> bytes:
        honest[0] += 1
        return reply if honest[0] == 1 else forge_state_proof(a.did, bytes(32))(request, reply)

    proxy.set(STATE_PROOF, forge_after_first)

    async def run() -> None:
        async with device(me(a), shared_node.address, tmp_path, trust_of(shared_node)) as addr:
            async with AsyncClient(proxy.address) as nc:
                auth = Authenticator(me(b), "local", ClientKeyStates(nc, trust_of(shared_node), recheck_after_ms=-1))
                with pytest.raises(errors.RootMismatch):
                    await auth.authenticate(addr, expect_peer=a.did)
                await auth.close()

    asyncio.run(run())
    assert honest[0] == 2


# --------------------------------------------------------------------------
# Checkpoints: untrusted, below threshold, stale, rolled back
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kid", "error"),
    [("did:dnode:QmAttackerAttackerAttackerAttackerAttacker1#key-1", errors.UntrustedCheckpointSigner), (None, errors.BadCheckpointSignature)],
    ids=["untrusted-kid", "trusted-kid-wrong-key"],
)
def test_a_checkpoint_signed_by_an_untrusted_key_is_refused(
    shared_node: RunningNode, client: Client, proxy: LyingProxy, tmp_path: Path, kid: str | None, error: type[DidnodeError]  # noqa: F811
) -> None:
    """The proxy re-signs the checkpoint with its own key: under its own kid (UNTRUSTED_CHECKPOINT_SIGNER),
    or under the node's kid (its signature does not verify under the trusted key: BAD_CHECKPOINT_SIGNATURE)."""
    a, b = make(client), make(client)
    policy = trust_of(shared_node)
    proxy.set(STATE_PROOF, forge_checkpoint_with(SigningKey.generate(), kid or policy.keys[0].kid))

    async def run() -> None:
        async with device(me(a), shared_node.address, tmp_path, policy) as addr:
            with pytest.raises(error) as exc:
                await authenticate(addr, me(b), trust=policy, node=proxy.address, expect_peer=a.did)
            assert exc.value.reason == error.reason

    asyncio.run(run())


def test_a_replayed_stale_checkpoint_and_a_rollback_are_refused(
    shared_node: RunningNode, client: Client, proxy: LyingProxy, tmp_path: Path  # noqa: F811
) -> None:
    """The proxy records an honest answer and replays it later: once older than the policy's maximum
    staleness it is STALE_CHECKPOINT; to a device that verified a newer checkpoint since, LOG_ROLLBACK."""
    a, b = make(client), make(client)
    base = trust_of(shared_node)
    quick = dataclasses.replace(base, max_staleness_ms=1_000)
    recorder = Recorder()
    proxy.set(STATE_PROOF, recorder)

    async def lookup(log: TrustedLog) -> None:
        async with AsyncClient(proxy.address) as nc:
            await ClientKeyStates(nc, log).key_state(a.did)

    async def run() -> None:
        make(client)  # the log grows: the next answer comes under a checkpoint signed now
        await lookup(TrustedLog(quick))
        await asyncio.sleep(1.3)
        make(client)
        proxy.set(STATE_PROOF, recorder.replay(0))
        with pytest.raises(errors.StaleCheckpoint) as exc:
            await lookup(TrustedLog(quick))
        assert exc.value.reason == "STALE_CHECKPOINT"
        # A device that verified the newer checkpoint: the old answer is a rollback.
        newer = TrustedLog(base)
        proxy.set(STATE_PROOF, None)
        await lookup(newer)
        proxy.set(STATE_PROOF, recorder.replay(0))
        with pytest.raises(errors.LogRollback) as exc2:
            await lookup(newer)
        assert exc2.value.reason == "LOG_ROLLBACK"
        # And in a handshake, the initiator refuses the same replay.
        async with device(me(a), shared_node.address, tmp_path, base) as addr:
            async with AsyncClient(proxy.address) as nc:
                auth = Authenticator(me(b), "local", ClientKeyStates(nc, newer))
                with pytest.raises(errors.LogRollback):
                    await auth.authenticate(addr, expect_peer=a.did)
                await auth.close()

    asyncio.run(run())


def test_a_stapled_proof_is_checked_against_the_policy(shared_node: RunningNode, client: Client, tmp_path: Path) -> None:  # noqa: F811
    """A responder's stapled proof is accepted under the policy (no node asked for it), and refused when
    the initiator's policy does not trust the checkpoint's key."""
    a, b = make(client), make(client)
    policy = trust_of(shared_node)
    stranger = dataclasses.replace(policy, keys=(dataclasses.replace(policy.keys[0], public_key=bytes(SigningKey.generate().verify_key)),), latest=None)

    async def run() -> None:
        async with device(me(a), shared_node.address, tmp_path, policy, staple=True) as addr:
            est = await authenticate(addr, me(b), trust=policy, node=shared_node.address, max_staleness_ms=60_000)
            assert any("stapled state proof" in c for c in est.checks), est.checks
            with pytest.raises(errors.BadCheckpointSignature):
                await authenticate(addr, me(b), trust=stranger, node=shared_node.address, max_staleness_ms=60_000)

    asyncio.run(run())


def test_stapled_checkpoints_against_the_latest_verified_one() -> None:
    """Pure: a stapled checkpoint's signature is verified once; one of the latest verified size goes through
    the shared log (another root there is a fork); one of another size never moves the latest verified;
    a policy with a threshold above one refuses stapled proofs (they carry one signature)."""
    import hashlib
    import json

    from didnode.core import checkpoint as cp_codec
    from didnode.core.checkpoint import Checkpoint
    from didnode.core.merkle import sparse
    from didnode.core.proof_bundle import StateProof
    from didnode.core.trust import TrustedKey
    from tests.auth.world import NOW, World

    w = World()
    peer = w.identity()
    record = w.state(peer.did).to_record()
    smt = sparse.MemorySparseStore()
    sparse.update(smt, sparse.key_for_did(peer.did), hashlib.sha256(record).digest())
    KEY = SigningKey(bytes(range(32)))
    KID = "did:dnode:QmNodeNodeNode#key-1"
    signed = cp_codec.sign(Checkpoint("local", 7, bytes(range(32)), sparse.root(smt), NOW), KEY, KID)
    proof = StateProof(peer.did, True, record, sparse.prove(smt, sparse.key_for_did(peer.did)), signed)
    data = json.dumps(proof.to_json()).encode()
    now = NOW + 1_000
    policy = TrustPolicy.create("local", bytes(32), [TrustedKey(KID, bytes(KEY.verify_key))], max_staleness_ms=3_600_000)

    v = StapledStateVerifier(policy)
    assert v.verify(proof.did, data, now).did == proof.did and v.verify(proof.did, data, now).did == proof.did
    assert v.signatures_checked == 1 and v.log.policy.latest is None
    assert v.verify_until(proof.did, data, now)[1] == signed.checkpoint.time_ms + 3_600_000
    assert StapledStateVerifier(policy, 60_000).verify_until(proof.did, data, now)[1] == signed.checkpoint.time_ms + 60_000

    shared = TrustedLog(policy.with_latest(signed))
    for _ in range(3):
        StapledStateVerifier(shared).verify(proof.did, data, now)
    assert shared.signatures_checked == 1

    forked = cp_codec.sign(dataclasses.replace(signed.checkpoint, log_root=bytes(32)), KEY, KID)
    with pytest.raises(errors.LogFork):
        StapledStateVerifier(policy.with_latest(forked)).verify(proof.did, data, now)
    ahead = cp_codec.sign(dataclasses.replace(signed.checkpoint, tree_size=signed.tree_size + 5), KEY, KID)
    assert StapledStateVerifier(policy.with_latest(ahead)).verify(proof.did, data, now).did == proof.did  # an older stapled one

    two = TrustPolicy.create("local", bytes(32), [policy.keys[0], TrustedKey("did:dnode:QmOtherOther#key-1", bytes(SigningKey.generate().verify_key))], 2)
    with pytest.raises(errors.CheckpointBelowThreshold):
        StapledStateVerifier(two).verify(proof.did, data, now)


# --------------------------------------------------------------------------
# Credentials: the issuer's key state
# --------------------------------------------------------------------------


def test_a_credential_under_a_forged_issuer_key_state_is_refused(
    shared_node: RunningNode, client: Client, proxy: LyingProxy, tmp_path: Path  # noqa: F811
) -> None:
    """A requires a device attestation from a maker. The attacker signs one for B with its own key as the
    maker, and the proxy swaps the maker's key for it: A's responder refuses (ROOT_MISMATCH, the issuer's
    proven state); B's genuine attestation, read through the honest node, is accepted."""
    maker, a, b = make(client), make(client), make(client)
    now = wall_ms()
    claims = device_attestation_claims("M1", "SN-1", "hw", "fw", now - 86_400_000)
    genuine = Issuer(maker.did, "key-1", maker.key).issue(b.did, [DEVICE_ATTESTATION], claims, now - 5_000, now + 86_400_000)
    attacker = SigningKey.generate()
    forged = Issuer(maker.did, "key-1", attacker).issue(b.did, [DEVICE_ATTESTATION], claims, now - 5_000, now + 86_400_000)
    proxy.set(STATE_PROOF, forge_state_proof(maker.did, bytes(attacker.verify_key)))
    want = require_credentials([CredentialRequest(DEVICE_ATTESTATION, maker.did)])
    policy = trust_of(shared_node)

    async def run() -> None:
        async with device(me(a), proxy.address, tmp_path, policy, policy=want) as addr:
            with pytest.raises(errors.RootMismatch) as exc:
                await authenticate(addr, me(b), trust=policy, node=shared_node.address, present=[forged])
            assert exc.value.reason == "ROOT_MISMATCH" and exc.value.details["by"] == "responder"
        async with device(me(a), shared_node.address, tmp_path, policy, policy=want) as addr:
            est = await authenticate(addr, me(b), trust=policy, node=shared_node.address, present=[genuine])
            assert est.peer_did == a.did
        async with AsyncClient(proxy.address) as nc:
            with pytest.raises(errors.RootMismatch):
                await ClientCredentials(nc, policy).check(forged, wall_ms(), b.did, CredentialRequest(DEVICE_ATTESTATION, maker.did))

    asyncio.run(run())


# --------------------------------------------------------------------------
# The API: no trust policy, no verification only when asked loudly
# --------------------------------------------------------------------------


def test_the_trust_policy_is_required(shared_node: RunningNode, tmp_path: Path) -> None:
    async def run() -> None:
        async with AsyncClient(shared_node.address) as nc:
            with pytest.raises(TypeError, match="trust policy"):
                ClientKeyStates(nc, None)
            with pytest.raises(TypeError, match="trust policy"):
                ClientCredentials(nc, None)
            with pytest.raises(TypeError, match="not both"):
                ClientKeyStates(nc, trust_of(shared_node), insecure_no_verify=True)
            with pytest.raises(TypeError):
                await device_responder(me(make_offline()), nc, nonces=LmdbNonceStore(tmp_path / "n", wall_ms()), trust=None)
            with pytest.raises(errors.InvalidArgument):
                await device_responder(me(make_offline()), nc, nonces=LmdbNonceStore(tmp_path / "m", wall_ms()), trust=trust_of(shared_node), network="othernet")
        with pytest.raises(TypeError):
            await authenticate(shared_node.address, me(make_offline()), node=shared_node.address)  # type: ignore[call-arg]

    asyncio.run(run())


def make_offline() -> Identity:
    from tests.factory import new_create

    return new_create()[0]


def test_revocation_is_seen_through_verified_reads(shared_node: RunningNode, client: Client, tmp_path: Path) -> None:  # noqa: F811
    """Verified reads follow the ledger: a key revoked is refused at the next handshake (the checkpoint moved, its
    consistency with the one verified before is proven in the same answer)."""
    admin = make(client)
    a, b = make(client, (admin,)), make(client)
    log = trusted_log(trust_of(shared_node))

    async def run() -> None:
        async with device(me(a), shared_node.address, tmp_path, trust_of(shared_node)) as addr:
            assert (await authenticate(addr, me(b), trust=log, node=shared_node.address)).peer_did == a.did
            before = log.known_size
            st = client.state(a.did)
            client.submit(builder.sign(builder.revoke("local", a.did, st.seq + 1, st.last, "key-1", "compromised"), [(admin.kid, admin.key)]))
            with pytest.raises(errors.PeerKeyRevoked):
                await authenticate(addr, me(b), trust=log, node=shared_node.address)
            assert log.known_size > before

    asyncio.run(run())
