"""GetGovernance and the governance fields of GetInfo against real nodes (gRPC on 127.0.0.1, LMDB)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from didnode.client import Client
from didnode.core.governance import build as gb
from didnode.core.governance.policy import CreateQuota, Policy
from didnode.errors import GovernanceThreshold, InvalidArgument, NoGovernance, TooLarge
from tests.conftest import RunningNode
from tests.factory import new_create
from tests.governance_fixtures import GovernedNode, add_registrar, endorsed, new_endorsed, start_governed_node


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovernedNode]:
    g = start_governed_node(tmp_path_factory.mktemp("governed") / "node")
    yield g
    g.stop()


def test_info_names_the_governance(gov: GovernedNode) -> None:
    with Client(gov.address) as c:
        info = c.info()
    assert info.governance == gov.governance
    assert info.create_policy == "registrars"


def test_ungoverned_network(shared_node: RunningNode) -> None:
    with Client(shared_node.address) as c:
        info = c.node_info()
        assert (info.governance, info.create_policy) == ("", "open")
        with pytest.raises(NoGovernance, match="no governance record"):
            c.governance()


def test_current_past_and_usage(gov: GovernedNode) -> None:
    with Client(gov.address) as c:
        first = c.governance()
        assert isinstance(first.policy, Policy)
        assert first.policy.did == gov.governance
        assert first.record_position == gov.inception_position
        assert first.policy.threshold == 2 and len(first.policy.governors) == 3
        registrar, op = new_endorsed(gov.governors[0])
        c.submit(op)
        position = add_registrar(gov, registrar.did, CreateQuota(3600, 2, 5))
        now = c.governance(usage_of=[registrar.did])
        assert now.record_position == position and registrar.did in now.policy.registrars
        assert now.log_size == position + 1 and now.last_time_ms > 0
        assert now.usage[("creates", registrar.did)].total_count == 0
        # One create the registrar endorses counts against its quota.
        dev, dev_op = new_create()
        c.submit(endorsed(dev_op, registrar))
        after = c.governance(usage_of=[registrar.did])
        used = after.usage[("creates", registrar.did)]
        assert (used.count, used.total_count) == (1, 1)
        assert after.usage[("publishes", registrar.did)].total_count == 0
        # The past: before the change, the inception's record; at the change, the new one.
        assert c.governance(at_position=position - 1).policy == first.policy
        assert c.governance(at_position=position).policy == now.policy
        assert c.governance(at_position=gov.inception_position).record_position == gov.inception_position


def test_bad_requests(gov: GovernedNode) -> None:
    with Client(gov.address) as c:
        size = c.node_info().log_size
        with pytest.raises(InvalidArgument, match="beyond the log"):
            c.governance(at_position=size + 10)
        with pytest.raises(NoGovernance, match="no governance record yet at position 0"):
            c.governance(at_position=0)
        with pytest.raises(TooLarge):
            c.governance(usage_of=[gov.node_did] * 65)


def test_a_change_below_threshold_changes_nothing(gov: GovernedNode) -> None:
    with Client(gov.address) as c:
        before = c.governance()
        op = gov.change([gb.set_create_policy("open")], gov.governors[:1])
        with pytest.raises(GovernanceThreshold, match="2 of the 3"):
            c.submit(op)
        assert c.governance() == before


def test_async_client(gov: GovernedNode) -> None:
    import asyncio

    from didnode.client import AsyncClient

    async def run() -> tuple[str, str]:
        async with AsyncClient(gov.address) as c:
            info = await c.info()
            g = await c.governance()
            return info.governance, g.policy.did

    assert asyncio.run(run()) == (gov.governance, gov.governance)
