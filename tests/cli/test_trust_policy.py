"""``didnode trust-policy`` and the start-up line of ``didnode serve``: what a node's operator publishes
is what ``didctl trust add`` accepts (docs/trust.md, "The CLI")."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cli.didnode import main as didnode_main
from cli.trust_store import TrustStore
from didnode.core.trust.policy import loads
from tests.cli.conftest import Didctl
from tests.conftest import RunningNode, start_node


def test_didnode_trust_policy_is_what_clients_accept(ctl: Didctl, shared_node: RunningNode, tmp_path: Path) -> None:
    published = CliRunner().invoke(didnode_main, ["trust-policy", "--data", str(shared_node.data_dir)], catch_exceptions=False)
    assert published.exit_code == 0, published.stderr
    policy = loads(published.stdout)
    assert policy.latest is None and policy.threshold == 1
    assert policy.keys[0].fingerprint in published.stderr and policy.genesis.hex() in published.stderr
    ctl.trust()
    assert policy.same_anchors(TrustStore(ctl.trust_dir).get(ctl.node.address))  # type: ignore[arg-type]
    missing = CliRunner().invoke(didnode_main, ["trust-policy", "--data", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1 and "[STORE_CORRUPTED]" in missing.stderr


def test_serve_logs_the_trust_anchors_at_start(tmp_path: Path) -> None:
    node = start_node(tmp_path / "node", extra=["--log-level", "info"])
    node.stop()
    assert node.proc.stderr is not None
    logged = [line for line in node.proc.stderr.read().splitlines() if "trust anchors" in line]
    published = loads(CliRunner().invoke(didnode_main, ["trust-policy", "--data", str(node.data_dir)], catch_exceptions=False).stdout)
    assert len(logged) == 1 and published.keys[0].fingerprint in logged[0] and published.genesis.hex() in logged[0]
