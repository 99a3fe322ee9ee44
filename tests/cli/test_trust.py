"""``didctl trust`` and first contact (docs/trust.md, "The CLI"): the known-nodes store, --trust FILE,
--insecure-no-verify, a changed node (``didnode trust-policy``: tests/cli/test_trust_policy.py).

Each test has its own trust store (``auto_trust=False``: nothing is accepted behind its back).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import cli.didctl_trust
import cli.trust_store
from cli.trust_store import escape
from didnode.core.encoding import ED25519_PUB, multikey_encode
from didnode.core.trust.policy import loads
from tests.cli.conftest import Didctl

EXIT_TRUST = 6


@pytest.fixture
def fresh(ctl: Didctl, tmp_path: Path) -> Didctl:
    """didctl with the module's keystore but an empty trust store of its own."""
    keystore = tmp_path / "keystore"
    keystore.symlink_to(ctl.keystore)
    return Didctl(ctl.node, keystore, auto_trust=False)


def node_did(c: Didctl) -> str:
    return str(c.json("--insecure-no-verify", "node", "info")["nodeDid"])


def entry(c: Didctl) -> Path:
    return c.trust_dir / escape(c.node.address)


def test_first_contact_without_a_terminal_names_the_commands(fresh: Didctl) -> None:
    did = node_did(fresh)
    result = fresh.fail("did", "resolve", did, code=EXIT_TRUST, reason="UNKNOWN_NODE")
    assert f"didctl trust add --node {fresh.node.address} --yes" in result.stderr and "--trust FILE" in result.stderr
    assert result.stdout == ""
    fresh.fail("did", "keys", did, code=EXIT_TRUST, reason="UNKNOWN_NODE")
    assert not entry(fresh).exists()
    # `trust add` without --yes needs a terminal to ask in.
    refused = fresh.invoke("trust", "add", code=2)
    assert "--yes" in refused.stderr
    assert not entry(fresh).exists()


def test_add_show_list_remove(fresh: Didctl) -> None:
    did = node_did(fresh)
    added = fresh.json("trust", "add", "--yes")
    assert added["address"] == fresh.node.address and added["changed"] is True
    assert added["fingerprints"][0].startswith("SHA256:") and added["file"] == str(entry(fresh))
    assert stat.S_IMODE(entry(fresh).stat().st_mode) == 0o600 and stat.S_IMODE(fresh.trust_dir.stat().st_mode) == 0o700
    text = fresh.invoke("trust", "show").stdout
    assert added["fingerprints"][0] in text and added["policy"]["genesis"] in text and "local" in text

    # The policy file is what `trust show --json` prints; a verified read moves its latest checkpoint on.
    fresh.create()
    assert fresh.json("did", "resolve", did)["didDocument"]["id"] == did
    shown = fresh.json("trust", "show")
    assert shown == json.loads(entry(fresh).read_text())
    assert shown["latestCheckpoint"]["treeSize"] > added["policy"]["latestCheckpoint"]["treeSize"]
    again = fresh.json("trust", "add", "--yes")
    assert again["changed"] is False

    listed = fresh.json("trust", "list")
    assert [e["address"] for e in listed["entries"]] == [fresh.node.address]
    assert listed["entries"][0]["fingerprints"] == added["fingerprints"]
    assert fresh.node.address in fresh.invoke("trust", "list").stdout

    exported = fresh.invoke("trust", "export", "--no-latest").stdout
    assert loads(exported).latest is None and loads(exported).same_anchors(loads(entry(fresh).read_bytes()))

    removed = fresh.json("trust", "remove", fresh.node.address)
    assert removed["removed"] is True and not entry(fresh).exists()
    fresh.fail("trust", "remove", fresh.node.address, code=EXIT_TRUST, reason="UNKNOWN_NODE")
    fresh.fail("did", "resolve", did, code=EXIT_TRUST, reason="UNKNOWN_NODE")
    assert "no trusted node" in fresh.invoke("trust", "list").stdout


def test_the_prompt_in_a_terminal(fresh: Didctl, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ssh: the node's facts and `Trust this node? [y/N]`; no answer is no."""
    monkeypatch.setattr(cli.trust_store, "interactive", lambda: True)
    monkeypatch.setattr(cli.didctl_trust, "interactive", lambda: True)
    did = node_did(fresh)
    declined = fresh.invoke("did", "resolve", did, input="\n", code=EXIT_TRUST)
    assert "Trust this node? [y/N]" in declined.stderr and "SHA256:" in declined.stderr and "genesis" in declined.stderr
    assert declined.stderr.rstrip().endswith("[UNKNOWN_NODE]") and not entry(fresh).exists()
    accepted = fresh.invoke("did", "resolve", did, input="y\n")
    assert json.loads(accepted.stdout)["didDocument"]["id"] == did and entry(fresh).exists()
    assert "added" in accepted.stderr
    # Known now: no question.
    assert "Trust this node" not in fresh.invoke("did", "resolve", did).stderr
    # `trust add` asks the same way.
    fresh.invoke("trust", "remove", fresh.node.address)
    assert "added" in fresh.invoke("trust", "add", input="y\n").stdout


def _edit(path: Path, **members: object) -> None:
    data = json.loads(path.read_text())
    data.update(members)
    path.write_text(json.dumps(data))


def test_a_changed_node_is_an_error_never_a_question(fresh: Didctl, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli.trust_store, "interactive", lambda: True)  # even in a terminal: no question
    did = node_did(fresh)
    fresh.invoke("trust", "add", "--yes")
    original = entry(fresh).read_text()
    other = multikey_encode(bytes(32 * [7]), ED25519_PUB)
    kid = json.loads(original)["checkpointKeys"][0]["kid"]
    _edit(entry(fresh), checkpointKeys=[{"kid": kid, "publicKeyMultibase": other}], latestCheckpoint=None)
    for args in (("did", "resolve", did), ("did", "keys", did), ("trust", "add", "--yes")):
        result = fresh.fail(*args, code=EXIT_TRUST, reason="TRUST_CHANGED")
        assert "checkpoint key" in result.stderr and f"didctl trust remove {fresh.node.address}" in result.stderr
        assert "Trust this node" not in result.stderr
    entry(fresh).write_text(original)
    _edit(entry(fresh), genesis="ab" * 32, latestCheckpoint=None)
    result = fresh.fail("did", "history", did, code=EXIT_TRUST, reason="TRUST_CHANGED")
    assert "genesis abababab" in result.stderr
    # Removing the entry and accepting again is the way out.
    fresh.invoke("trust", "remove", fresh.node.address)
    fresh.invoke("trust", "add", "--yes")
    fresh.invoke("did", "history", did)
    # The same through a --trust file: the message names the file, not the store's way out.
    changed = tmp_path / "changed.json"
    changed.write_text(entry(fresh).read_text())
    _edit(changed, genesis="ab" * 32, latestCheckpoint=None)
    result = fresh.fail("--trust", str(changed), "did", "resolve", did, code=EXIT_TRUST, reason="TRUST_CHANGED")
    assert f"(trust policy file {changed})" in result.stderr and "didctl trust remove" not in result.stderr


def test_trust_file_is_used_and_never_written(fresh: Didctl, tmp_path: Path) -> None:
    did = node_did(fresh)
    fresh.invoke("trust", "add", "--yes")
    policy_file = tmp_path / "trust.json"
    policy_file.write_text(fresh.invoke("trust", "export", "--no-latest").stdout)
    before = policy_file.read_bytes()
    fresh.invoke("trust", "remove", fresh.node.address)
    assert fresh.json("--trust", str(policy_file), "did", "resolve", did)["didDocument"]["id"] == did
    assert fresh.json("did", "keys", did, DIDCTL_TRUST=str(policy_file))["did"] == did
    assert policy_file.read_bytes() == before and not entry(fresh).exists()
    assert fresh.json("--trust", str(policy_file), "trust", "show")["genesis"] == json.loads(before)["genesis"]
    fresh.invoke("--trust", str(policy_file), "trust", "add", "--yes", code=2)
    fresh.invoke("--trust", str(policy_file), "--insecure-no-verify", "did", "keys", did, code=2)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{not json", "JSON"),
        ('{"type": "didnode/trust/v1"}', "trust policy"),
        ("[]", "trust policy"),
        (None, "no such file"),
    ],
)
def test_policy_file_errors_are_one_line(fresh: Didctl, tmp_path: Path, text: str | None, expected: str) -> None:
    path = tmp_path / "bad.json"
    if text is not None:
        path.write_text(text)
    result = fresh.fail("--trust", str(path), "did", "resolve", node_did(fresh), code=EXIT_TRUST, reason="TRUST_POLICY_INVALID")
    assert expected in result.stderr and str(path) in result.stderr


def test_a_broken_store_entry_is_one_line(fresh: Didctl) -> None:
    fresh.trust_dir.mkdir(mode=0o700, parents=True)
    entry(fresh).write_text('{"type": "didnode/trust/v1", "network": 7}')
    fresh.fail("did", "resolve", node_did(fresh), code=EXIT_TRUST, reason="TRUST_POLICY_INVALID")
    assert "INVALID" in fresh.invoke("trust", "list").stdout


def test_insecure_no_verify_warns_every_run(fresh: Didctl) -> None:
    did = node_did(fresh)
    result = fresh.invoke("--insecure-no-verify", "did", "resolve", did)
    assert f"didctl: WARNING: --insecure-no-verify: answers from {fresh.node.address} are not verified" in result.stderr
    assert json.loads(result.stdout)["didDocument"]["id"] == did and not entry(fresh).exists()


def test_log_commands_check_against_the_policy_key(fresh: Didctl, tmp_path: Path) -> None:
    did = node_did(fresh)
    bundle = tmp_path / "state.json"
    fresh.invoke("--insecure-no-verify", "log", "prove", "state", did, "--out", str(bundle))
    unknown = fresh.invoke("log", "verify-proof", str(bundle))
    assert "trusting the DID document the node" in unknown.stderr
    fresh.invoke("trust", "add", "--yes")
    known = fresh.invoke("log", "verify-proof", str(bundle))
    assert known.stdout.startswith("ok:") and "trusting" not in known.stderr
    assert fresh.invoke("log", "checkpoint").stdout
    # A policy naming another key: the node's own bundle no longer verifies.
    forged = tmp_path / "other.json"
    data = json.loads(entry(fresh).read_text())
    data["checkpointKeys"][0]["publicKeyMultibase"] = multikey_encode(bytes(32 * [9]), ED25519_PUB)
    data["latestCheckpoint"] = None
    forged.write_text(json.dumps(data))
    fresh.fail("--trust", str(forged), "log", "verify-proof", str(bundle), code=1, reason="BAD_CHECKPOINT_SIGNATURE")
