"""Verified governance reads against a real governed node, and through a lying proxy that alters the record or its history."""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from didnode.api.v1 import transparency_pb2 as tpb
from didnode.client import AsyncClient, Client
from didnode.client.trust import policy_from_node
from didnode.client.verified import AsyncVerifiedClient, VerifiedClient
from didnode.core.governance.policy import CreateQuota, Policy
from didnode.core.trust import TrustPolicy
from didnode.errors import HistoryMismatch, InvalidArgument, InvalidProof, NoGovernance
from tests.conftest import RunningNode
from tests.governance_fixtures import GovernedNode, add_registrar, new_endorsed, start_governed_node
from tests.lying_proxy import HISTORY, STATE_PROOF, LyingProxy, alter_entry, forge_history


class World:
    def __init__(self, gov: GovernedNode, trust: TrustPolicy, registrar: str, change_position: int) -> None:
        self.gov = gov
        self.trust = trust
        self.registrar = registrar
        self.change_position = change_position


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    gov = start_governed_node(tmp_path_factory.mktemp("governed") / "node")
    try:
        with Client(gov.address) as c:
            trust = policy_from_node(c)
            registrar, op = new_endorsed(gov.governors[0])
            c.submit(op)
        position = add_registrar(gov, registrar.did, CreateQuota(60, 10, None))
        yield World(gov, trust, registrar.did, position)
    finally:
        gov.stop()


def test_current_and_past(world: World) -> None:
    with Client(world.gov.address) as c:
        v = VerifiedClient(c, world.trust)
        now = v.governance()
        assert now == c.governance().policy
        assert world.registrar in now.registrars and now.updated_pos == world.change_position
        before = v.governance(at_position=world.change_position - 1)
        assert before.registrars == {} and before.seq == 0
        assert before == c.governance(at_position=world.change_position - 1).policy
        assert v.governance(at_position=world.change_position) == now
        with pytest.raises(NoGovernance):
            v.governance(at_position=0)
        with pytest.raises(InvalidArgument, match="beyond the verified log"):
            v.governance(at_position=10_000)


def test_async(world: World) -> None:
    async def run() -> tuple[Policy, Policy]:
        async with AsyncClient(world.gov.address) as c:
            v = AsyncVerifiedClient(c, world.trust)
            return await v.governance(), await v.governance(at_position=world.change_position - 1)

    now, before = asyncio.run(run())
    assert world.registrar in now.registrars and before.registrars == {}


def test_ungoverned_node(shared_node: RunningNode) -> None:
    with Client(shared_node.address) as c:
        with pytest.raises(NoGovernance):
            VerifiedClient(c, policy_from_node(c)).governance()


def _lower_threshold(governance: str) -> object:
    """GetStateProof: the governance record with threshold 1 (still canonical; the proof left as it was)."""

    def rewrite(request: bytes, reply: bytes) -> bytes:
        m = tpb.StateProof.FromString(reply)
        if m.did != governance or not m.present:
            return reply
        m.state_record = m.state_record.replace(b'"threshold":2', b'"threshold":1')
        return m.SerializeToString()

    return rewrite


def test_altered_record_is_refused(world: World) -> None:
    with LyingProxy(world.gov.address, {STATE_PROOF: _lower_threshold(world.gov.governance)}) as proxy:  # type: ignore[dict-item]
        with Client(proxy.address) as c:
            with pytest.raises(InvalidProof):
                VerifiedClient(c, world.trust).governance()
            # The unverified answer is the forgery: the proxy really lied.
            assert b'"threshold":1' in c.proven_state(world.gov.governance).proof.state_record


def test_altered_history_is_refused(world: World) -> None:
    # The change's registrar swapped for another DID: the replay no longer reaches the proven record.
    edit = alter_entry(1, world.registrar.encode(), world.gov.node_did.encode())
    with LyingProxy(world.gov.address, {HISTORY: forge_history(world.gov.governance, edit)}) as proxy:
        with Client(proxy.address) as c:
            with pytest.raises(InvalidProof) as info:
                VerifiedClient(c, world.trust).governance(at_position=world.change_position - 1)
            assert isinstance(info.value, (HistoryMismatch, InvalidProof))
            assert proxy.calls.get(HISTORY)
