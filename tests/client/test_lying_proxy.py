"""Verified reads against a real node through a real lying proxy (issue #15): every forgery refused with its reason.

One ``didnode serve`` for the module (and a second node of the same network
for the fork and genesis cases); :class:`tests.lying_proxy.LyingProxy` sits
in front of it and rewrites replies, re-signing nothing. Where it helps, a test
shows the unverified client fooled by the same rewrite, so the proxy really lies.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Callable, Iterator

import pytest
from nacl.signing import SigningKey

from didnode import errors
from didnode.client import AsyncClient, Client
from didnode.client.trust import policy_from_node
from didnode.client.verified import AsyncVerifiedClient, VerifiedClient
from didnode.clock import wall_ms
from didnode.core import builder
from didnode.core.encoding import ED25519_PUB, multikey_encode
from didnode.core.trust import TrustedKey, TrustedLog, TrustPolicy
from didnode.errors import DidnodeError
from tests.conftest import RunningNode, start_node
from tests.factory import Identity, adopt_rotation, new_create, rotate_op
from tests.lying_proxy import (
    HISTORY,
    INCLUSION,
    RESOLVE,
    RESOLVE_WITH_PROOF,
    RESOURCE,
    STATE_PROOF,
    LyingProxy,
    Recorder,
    alter_entry,
    ask_about,
    ask_position,
    forge_checkpoint_with,
    forge_entry,
    forge_history,
    forge_key_state,
    forge_resolution_json,
    forge_resolve,
    forge_resolve_with_proof,
    forge_resource,
    forge_state_proof,
    hide_entry,
    invent_entry,
    swap_checkpoint,
)

EVIL = SigningKey.generate()
EVIL_RAW = bytes(EVIL.verify_key)
LIST_V1 = "status list v1"


@dataclasses.dataclass
class World:
    """The module's node (``shared_node``), its trust policy, and a device DID: create, rotation, publish of ``status-1``."""

    node: RunningNode
    policy: TrustPolicy
    dev: Identity
    node_did: str


def _submit_create(c: Client) -> Identity:
    ident, op = new_create()
    c.submit(op)
    return ident


@pytest.fixture(scope="module")
def world(shared_node: RunningNode) -> World:
    with Client(shared_node.address) as c:
        policy = policy_from_node(c)
        dev = _submit_create(c)
        unsigned, auth, nxt, key_id = rotate_op(dev, c.state(dev.did))
        c.submit(builder.sign(unsigned, [(builder.next_kid(dev.did), dev.next_key)]))
        adopt_rotation(dev, auth, nxt, key_id)
        st = c.state(dev.did)
        c.submit(builder.sign(builder.publish("local", dev.did, st.seq + 1, st.last, "status-1", "text/plain", LIST_V1), [(dev.kid, dev.key)]))
        _submit_create(c)
        return World(shared_node, policy, dev, c.node_info().node_did)


@pytest.fixture(scope="module")
def other_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A second, honest node of the same network: another ledger."""
    node = start_node(tmp_path_factory.mktemp("other") / "node")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def _proxy(world: World) -> Iterator[LyingProxy]:
    with LyingProxy(world.node.address) as p:
        yield p


@pytest.fixture
def proxy(_proxy: LyingProxy) -> Iterator[LyingProxy]:
    """The module's proxy, forwarding honestly until a test tells it to lie (and again after)."""
    _proxy.rewrites.clear()
    _proxy.request_rewrites.clear()
    yield _proxy
    _proxy.rewrites.clear()
    _proxy.request_rewrites.clear()


@pytest.fixture
def lied_to(proxy: LyingProxy, world: World) -> Iterator[tuple[Client, VerifiedClient]]:
    """An unverified client and a verified one (fresh TrustedLog from the module's policy), both of the proxy."""
    with Client(proxy.address) as c:
        yield c, VerifiedClient(c, world.policy)


def refused(reason: str, call: Callable[[], Any]) -> DidnodeError:
    """Run ``call``; it must fail with the error whose reason is ``reason``."""
    with pytest.raises(DidnodeError) as e:
        call()
    assert e.value.reason == reason, f"{type(e.value).__name__}: {e.value}"
    return e.value


def key_of(result: dict[str, Any]) -> str:
    return str(result["didDocument"]["verificationMethod"][0]["publicKeyMultibase"])


# -- the honest path -------------------------------------------------------------------------------


def test_every_verified_read_agrees_with_the_node(world: World) -> None:
    did = world.dev.did
    with Client(world.node.address) as c:
        log = TrustedLog(world.policy)
        v = VerifiedClient(c, log)
        assert v.state(did) == c.state(did)
        ks = v.key_state(did, at_position=0)
        assert ks == c.key_state(did, at_position=0) and ks.network == "local"
        assert v.resolve(did) == c.resolve(did)
        for version in (0, 1, 2):
            assert v.resolve(did, version_id=version) == c.resolve(did, version_id=version)
        vt = c.resolve(did, version_id=1)["didDocumentMetadata"]["versionTime"]
        assert v.resolve(did, version_time=vt) == c.resolve(did, version_time=vt)
        honest = c.history(did)
        got = v.history(did)
        assert [(e.seq, e.position, e.time_ms, e.op_hash, e.payload) for e in got] == [(e.seq, e.position, e.time_ms, e.op_hash, e.payload) for e in honest]
        assert all(e.inclusion for e in got)
        assert [x.state.seq for x in v.versions(did)] == [0, 1, 2]
        assert v.versions(did)[-1].state == c.state(did)
        assert v.resource(did, "status-1") == c.resource(did, "status-1")
        assert v.resource(did, "status-1").content == LIST_V1
        assert v.issuer_record(did) == c.issuer_record(did)
        assert v.state(world.node_did).did == world.node_did


def test_absence_is_proven(world: World) -> None:
    ghost, _ = new_create()  # never submitted
    with Client(world.node.address) as c:
        v = VerifiedClient(c, world.policy)
        for read in (v.state, v.resolve, v.history, v.key_state):
            with pytest.raises(errors.UnknownDid, match="verified"):
                read(ghost.did)
        with pytest.raises(errors.UnknownResource, match="verified"):
            v.resource(world.dev.did, "status-9")
        with pytest.raises(errors.UnknownVersion):
            v.resolve(world.dev.did, version_id=7)


def test_async_verified_client_reads(world: World) -> None:
    did = world.dev.did

    async def body() -> None:
        async with AsyncClient(world.node.address) as ac:
            log = TrustedLog(world.policy)
            v = AsyncVerifiedClient(ac, log)
            with Client(world.node.address) as c:
                assert await v.state(did) == c.state(did)
                assert await v.key_state(did, at_position=1) == c.key_state(did, at_position=1)
                assert await v.resolve(did) == c.resolve(did)
                assert await v.resolve(did, version_id=0) == c.resolve(did, version_id=0)
                assert [e.op_hash for e in await v.history(did)] == [e.op_hash for e in c.history(did)]
                assert len(await v.versions(did)) == 3
                assert await v.resource(did, "status-1") == c.resource(did, "status-1")
                assert await v.issuer_record(did) == c.issuer_record(did)
            results = await asyncio.gather(*(v.state(did) for _ in range(20)))
            assert len({r.seq for r in results}) == 1
            assert log.signatures_checked == 1  # one checkpoint, verified once for all reads

    asyncio.run(body())


def test_async_verified_client_refuses_a_forgery(world: World, proxy: LyingProxy) -> None:
    proxy.set(STATE_PROOF, forge_state_proof(world.dev.did, EVIL_RAW))

    async def body() -> None:
        async with AsyncClient(proxy.address) as ac:
            v = AsyncVerifiedClient(ac, world.policy)
            with pytest.raises(errors.RootMismatch):
                await v.key_state(world.dev.did)

    asyncio.run(body())


def test_checkpoints_are_verified_once_across_reads_and_clients(world: World) -> None:
    with Client(world.node.address) as c1, Client(world.node.address) as c2:
        log = TrustedLog(world.policy)
        for v in (VerifiedClient(c1, log), VerifiedClient(c2, log)):
            for _ in range(5):
                v.state(world.dev.did)
                v.resolve(world.dev.did)
        assert log.signatures_checked == 1


# -- forgeries -------------------------------------------------------------------------------------


def test_forged_key_state(world: World, proxy: LyingProxy, lied_to: tuple[Client, VerifiedClient]) -> None:
    c, v = lied_to
    did = world.dev.did
    proxy.set("/didnode.v1.LedgerService/GetKeyState", forge_key_state(did, EVIL_RAW))
    proxy.set(STATE_PROOF, forge_state_proof(did, EVIL_RAW))
    assert any(k.multibase == multikey_encode(EVIL_RAW, ED25519_PUB) for k in c.state(did).current_keys())  # the unverified read is fooled
    refused("ROOT_MISMATCH", lambda: v.key_state(did))
    refused("ROOT_MISMATCH", lambda: v.state(did))
    refused("ROOT_MISMATCH", lambda: v.history(did))
    refused("ROOT_MISMATCH", lambda: v.resource(did, "status-1"))
    assert v.state(world.node_did).did == world.node_did  # other DIDs are answered honestly


def test_forged_resolution(world: World, proxy: LyingProxy, lied_to: tuple[Client, VerifiedClient]) -> None:
    c, v = lied_to
    did = world.dev.did
    evil = multikey_encode(EVIL_RAW, ED25519_PUB)
    proxy.set(RESOLVE, forge_resolve(did, EVIL_RAW))
    assert key_of(c.resolve(did)) == evil  # the unverified read is fooled
    proxy.set(RESOLVE_WITH_PROOF, forge_resolve_with_proof(did, EVIL_RAW))
    refused("ROOT_MISMATCH", lambda: v.resolve(did))
    proxy.set(RESOLVE_WITH_PROOF, forge_resolution_json(did, EVIL_RAW))
    refused("PROOF_CLAIM_MISMATCH", lambda: v.resolve(did))


def test_a_node_claiming_an_existing_did_unknown_is_refused(world: World, proxy: LyingProxy, lied_to: tuple[Client, VerifiedClient]) -> None:
    c, v = lied_to
    ghost, _ = new_create()  # never submitted: the node's honest NOT_FOUND for it is passed off as the answer
    proxy.set_request(RESOLVE_WITH_PROOF, ask_about(ghost.did))
    with pytest.raises(errors.UnknownDid):
        c.resolve_with_proof(world.dev.did)  # the unverified read believes it
    refused("PROOF_CLAIM_MISMATCH", lambda: v.resolve(world.dev.did))
    proxy.set_request(STATE_PROOF, ask_about(ghost.did))
    refused("PROOF_CLAIM_MISMATCH", lambda: v.state(world.dev.did))  # a proof of absence of another DID
    proxy.set_request(RESOLVE_WITH_PROOF, None)
    proxy.set_request(STATE_PROOF, None)


@pytest.mark.parametrize(
    "forgery, reason",
    [
        ("hide the rotation", "HISTORY_MISMATCH"),
        ("hide the last operation", "HISTORY_MISMATCH"),
        ("invent an operation", "HISTORY_MISMATCH"),
        ("invent in place of the last", "ROOT_MISMATCH"),
        ("alter a payload", "ROOT_MISMATCH"),
    ],
)
def test_forged_history(world: World, proxy: LyingProxy, lied_to: tuple[Client, VerifiedClient], forgery: str, reason: str) -> None:
    c, v = lied_to
    did = world.dev.did
    st = c.state(did)
    invented = builder.sign(
        builder.rotate("local", did, st.seq + (0 if "in place" in forgery else 1), st.last, EVIL_RAW, [builder.NewKey("key-9", EVIL_RAW)], EVIL_RAW),
        [(builder.next_kid(did), EVIL)],
    )
    proofs = [(p.kid, p.signature) for p in invented.proofs]
    edit = {
        "hide the rotation": hide_entry(1),
        "hide the last operation": hide_entry(2),
        "invent an operation": invent_entry(invented.payload, proofs),
        "invent in place of the last": invent_entry(invented.payload, proofs, replace_last=True),
        "alter a payload": alter_entry(2, LIST_V1.encode(), b"status list v2"),
    }[forgery]
    proxy.set(HISTORY, forge_history(did, edit))
    with Client(world.node.address) as honest:
        truth = [e.op_hash for e in honest.history(did)]
    assert [e.op_hash for e in c.history(did)] != truth  # the unverified read takes the forged history
    refused(reason, lambda: v.history(did))
    refused(reason, lambda: v.versions(did))
    refused(reason, lambda: v.resolve(did, version_id=0))
    assert v.state(did) == st  # the current state is still proven
    assert v.issuer_record(did) == c.issuer_record(did)  # proven from the key positions' entries, not the history


def test_forged_status_list(world: World, proxy: LyingProxy, lied_to: tuple[Client, VerifiedClient]) -> None:
    c, v = lied_to
    did = world.dev.did
    proxy.set(RESOURCE, forge_resource("v1", "v2"))
    assert c.resource(did, "status-1").content == "status list v2"  # the unverified read is fooled
    proxy.set(INCLUSION, forge_entry(b"list v1", b"list v2"))
    refused("ROOT_MISMATCH", lambda: v.resource(did, "status-1"))
    proxy.set(INCLUSION, forge_entry(time_shift_ms=-86_400_000))  # the content intact, its time moved
    refused("ROOT_MISMATCH", lambda: v.resource(did, "status-1"))
    proxy.set(INCLUSION, None)
    publish_at = v.versions(did)[2].position
    proxy.set_request(INCLUSION, ask_position(publish_at - 1))  # another entry of the log, honestly proven
    refused("PROOF_CLAIM_MISMATCH", lambda: v.resource(did, "status-1"))


def test_forged_issuer_key_times(world: World, proxy: LyingProxy, lied_to: tuple[Client, VerifiedClient]) -> None:
    c, v = lied_to
    did = world.dev.did
    proxy.set(INCLUSION, forge_entry(time_shift_ms=-86_400_000))  # a key added a day earlier than it was
    refused("ROOT_MISMATCH", lambda: v.issuer_record(did))
    proxy.set(INCLUSION, None)
    proxy.set_request(INCLUSION, ask_position(0))  # another entry, honestly proven, for every key position
    refused("PROOF_CLAIM_MISMATCH", lambda: v.issuer_record(did))


def test_checkpoint_signed_by_an_untrusted_key(world: World, proxy: LyingProxy, lied_to: tuple[Client, VerifiedClient]) -> None:
    c, v = lied_to
    proxy.set(STATE_PROOF, forge_checkpoint_with(EVIL, f"{world.node_did}#evil"))
    err = refused("UNTRUSTED_CHECKPOINT_SIGNER", lambda: v.state(world.dev.did))
    assert err.details["kid"] == f"{world.node_did}#evil"
    proxy.set(STATE_PROOF, forge_checkpoint_with(EVIL, world.policy.keys[0].kid))
    refused("BAD_CHECKPOINT_SIGNATURE", lambda: v.state(world.dev.did))


def test_below_threshold(world: World) -> None:
    extra = TrustedKey(f"{world.node_did}#witness", bytes(SigningKey.generate().verify_key))
    policy = TrustPolicy.create("local", world.policy.genesis, [*world.policy.keys, extra], threshold=2)
    with Client(world.node.address) as c:
        err = refused("CHECKPOINT_BELOW_THRESHOLD", lambda: VerifiedClient(c, policy).state(world.dev.did))
    assert err.details == {"valid": "1", "threshold": "2"}


def test_replay_of_an_old_checkpoint_after_a_newer_one(world: World, proxy: LyingProxy, lied_to: tuple[Client, VerifiedClient]) -> None:
    c, v = lied_to
    did = world.dev.did
    rec = Recorder()
    proxy.set(STATE_PROOF, rec)
    old_size = v.proven(did).checkpoint.tree_size
    _submit_create(c)  # the ledger grows; the node signs a newer checkpoint
    assert v.proven(did).checkpoint.tree_size > old_size
    proxy.set(STATE_PROOF, rec.replay(0))
    err = refused("LOG_ROLLBACK", lambda: v.state(did))
    assert err.details == {"size": str(old_size), "verified_size": str(v.log.known_size)}


def test_stale_checkpoint(world: World, proxy: LyingProxy, lied_to: tuple[Client, VerifiedClient]) -> None:
    c, _ = lied_to
    did = world.dev.did
    rec = Recorder()
    proxy.set(STATE_PROOF, rec)
    VerifiedClient(c, world.policy).state(did)
    proxy.set(STATE_PROOF, rec.replay(0))
    # A replayed answer, read 5 s later by a client whose policy allows 1 s:
    strict = dataclasses.replace(world.policy, max_staleness_ms=1_000)
    later = wall_ms() + 5_000
    err = refused("STALE_CHECKPOINT", lambda: VerifiedClient(c, strict, clock_ms=lambda: later).state(did))
    assert int(err.details["age_ms"]) > 1_000
    # The default bound, and a clock 10 minutes ahead (or behind: a checkpoint from the future):
    refused("STALE_CHECKPOINT", lambda: VerifiedClient(c, world.policy, clock_ms=lambda: wall_ms() + 600_000).state(did))
    refused("STALE_CHECKPOINT", lambda: VerifiedClient(c, world.policy, clock_ms=lambda: wall_ms() - 600_000).state(did))


# -- another ledger --------------------------------------------------------------------------------


def _policy_of(node: RunningNode) -> TrustPolicy:
    with Client(node.address) as c:
        return policy_from_node(c)


def test_another_node_is_not_trusted_and_its_genesis_is_not_ours(world: World, other_node: RunningNode, proxy: LyingProxy) -> None:
    theirs = _policy_of(other_node)
    both = TrustPolicy.create("local", world.policy.genesis, [*world.policy.keys, *theirs.keys])
    with Client(other_node.address) as c:
        # The policy from node A, talking to node B: B's key is not A's.
        refused("UNTRUSTED_CHECKPOINT_SIGNER", lambda: VerifiedClient(c, world.policy).state(world.node_did))
        # A policy that trusts B's key too (a cluster's, say), first contact with B: its log is not A's.
        refused("GENESIS_MISMATCH", lambda: VerifiedClient(c, both).state(world.node_did))
    with Client(other_node.address) as c:
        checkpoint_b = c.checkpoint()
    # The same through the proxy: A's answer under a checkpoint of B (honestly signed by B).
    proxy.set(STATE_PROOF, swap_checkpoint(checkpoint_b))
    with Client(proxy.address) as c:
        refused("UNTRUSTED_CHECKPOINT_SIGNER", lambda: VerifiedClient(c, world.policy).state(world.dev.did))
        refused("GENESIS_MISMATCH", lambda: VerifiedClient(c, both).state(world.dev.did))


def test_fork_between_two_nodes_of_one_network(world: World, other_node: RunningNode) -> None:
    theirs = _policy_of(other_node)
    log = TrustedLog(TrustPolicy.create("local", world.policy.genesis, [*world.policy.keys, *theirs.keys]))
    with Client(world.node.address) as a, Client(other_node.address) as b:
        size = VerifiedClient(a, log).proven(world.dev.did).checkpoint.tree_size
        while b.checkpoint().tree_size < size:  # B grows to the size the client verified on A
            _submit_create(b)
        assert b.checkpoint().tree_size == size
        vb = VerifiedClient(b, log)
        err = refused("LOG_FORK", lambda: vb.state(world.node_did))
        assert err.details["size"] == str(size) and _fork_evidence(err, size, size)
        _submit_create(b)  # larger than A's: no consistency proof from A's checkpoint can exist
        err = refused("LOG_FORK", lambda: vb.state(world.node_did))
        assert (err.details["size"], err.details["verified_size"]) == (str(size + 1), str(size)) and _fork_evidence(err, size, size + 1)
        assert log.known_size == size  # nothing of B was taken


# -- answers overtaken by other reads --------------------------------------------------------------


class _Overtaken:
    """A Client whose GetStateProof answers arrive after another read of the same TrustedLog verified a
    newer checkpoint (the ledger grew in between): an honest race, not a rollback."""

    def __init__(self, c: Client, log: TrustedLog, node_did: str, races: int) -> None:
        self.c, self.log, self.node_did, self.races, self.calls = c, log, node_did, races, 0

    def proven_state(self, did: str, known: int) -> Any:
        self.calls += 1
        answer = self.c.proven_state(did, known)
        if self.calls <= self.races:
            _submit_create(self.c)
            VerifiedClient(self.c, self.log).state(self.node_did)  # another read moves the latest on
        return answer


def test_an_overtaken_answer_is_asked_again(world: World) -> None:
    with Client(world.node.address) as c:
        log = TrustedLog(world.policy)
        VerifiedClient(c, log).state(world.node_did)
        racing = _Overtaken(c, log, world.node_did, races=1)
        before = log.known_size
        v = VerifiedClient(racing, log)  # type: ignore[arg-type]
        assert v.state(world.dev.did).did == world.dev.did
        assert racing.calls == 2 and log.known_size == before + 1


def test_answers_overtaken_every_time_end_in_a_typed_error(world: World) -> None:
    with Client(world.node.address) as c:
        log = TrustedLog(world.policy)
        VerifiedClient(c, log).state(world.node_did)
        racing = _Overtaken(c, log, world.node_did, races=99)
        err = refused("NODE_UNAVAILABLE", lambda: VerifiedClient(racing, log).state(world.dev.did))  # type: ignore[arg-type]
        assert "ask again" in str(err) and racing.calls == 4


def _fork_evidence(err: errors.DidnodeError, held_size: int, offered_size: int) -> bool:
    """The LogFork names both signed checkpoints (the one verified, the one offered), as evidence."""
    import json

    held, offered = json.loads(err.details["held"]), json.loads(err.details["offered"])
    return (held["treeSize"], offered["treeSize"]) == (held_size, offered_size) and bool(held["signature"]) and bool(offered["signature"])
