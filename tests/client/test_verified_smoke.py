"""Verified reads against a real node: the honest path."""

from __future__ import annotations

from pathlib import Path

from didnode.client import Client
from didnode.client.trust import policy_from_node
from didnode.client.verified import VerifiedClient
from didnode.core.trust import TrustedLog
from tests.conftest import start_node
from tests.factory import Identity  # noqa: F401


def test_honest_node_verifies(tmp_path: Path) -> None:
    n = start_node(tmp_path / "n")
    try:
        with Client(n.address) as c:
            policy = policy_from_node(c)
            log = TrustedLog(policy)
            v = VerifiedClient(c, log)
            node_did = c.node_info().node_did
            st = v.state(node_did)
            assert st.did == node_did
            r = v.resolve(node_did)
            assert r == c.resolve(node_did)
            assert v.resolve(node_did, version_id=0) == c.resolve(node_did, version_id=0)
            h = v.history(node_did)
            assert [e.seq for e in h] == [e.seq for e in c.history(node_did)]
            assert v.issuer_record(node_did) == c.issuer_record(node_did)
            assert log.signatures_checked >= 1
            checked = log.signatures_checked
            v.state(node_did)
            assert log.signatures_checked == checked
    finally:
        n.stop()


def test_lying_proxy_forgeries_are_refused(tmp_path: Path) -> None:
    import pytest

    from didnode import errors
    from tests.lying_proxy import STATE_PROOF, RESOLVE_WITH_PROOF, LyingProxy, attacker_key, forge_resolve_with_proof, forge_state_proof

    n = start_node(tmp_path / "n")
    try:
        with Client(n.address) as honest:
            policy = policy_from_node(honest)
            node_did = honest.node_info().node_did
        evil = bytes(attacker_key().verify_key)
        with LyingProxy(n.address, {STATE_PROOF: forge_state_proof(node_did, evil), RESOLVE_WITH_PROOF: forge_resolve_with_proof(node_did, evil)}) as proxy:
            with Client(proxy.address) as c:
                v = VerifiedClient(c, policy)
                with pytest.raises(errors.InvalidProof) as e1:
                    v.state(node_did)
                with pytest.raises(errors.InvalidProof) as e2:
                    v.resolve(node_did)
                assert e1.value.reason == e2.value.reason == "ROOT_MISMATCH"
                assert proxy.calls[STATE_PROOF] == 1
    finally:
        n.stop()
