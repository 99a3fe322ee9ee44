"""didctl against a real node (subprocess, loopback port, temporary LMDB): commands, JSON shapes, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from didnode.client import Client
from didnode.core.did import did_from_create_payload
from didnode.keystore import DidSecrets, Keystore
from tests.cli.conftest import PASSPHRASE, Didctl
from tests.conftest import BIN

RECEIPT_KEYS = {"did", "type", "seq", "position", "time", "opHash"}


def vm_ids(result: dict) -> set[str]:
    """Fragments of the Multikey verification methods of a resolution result."""
    doc = result["didDocument"]
    return {m["id"].split("#")[1] for m in doc.get("verificationMethod", []) if m["type"] == "Multikey"}


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------
# The full lifecycle
# --------------------------------------------------------------------------


def test_lifecycle(ctl: Didctl) -> None:
    admin = ctl.create()
    created = ctl.json("did", "create", "--controller", admin, "--service", "hub=DIDCommMessaging=https://hub.example/d")
    assert set(created) >= RECEIPT_KEYS | {"controllers"}
    assert created["controllers"] == [admin] and created["seq"] == 0 and len(created["opHash"]) == 64
    dev = created["did"]
    create_pos = created["position"]

    first = ctl.json("did", "resolve", dev)
    assert set(first) == {"didDocument", "didDocumentMetadata", "didResolutionMetadata"}
    assert vm_ids(first) == {"key-1", "ka-1"}
    assert first["didDocument"]["controller"] == [admin]
    assert [s["id"].split("#")[1] for s in first["didDocument"]["service"]] == ["hub"]

    # Text mode prints the DID only / pretty JSON.
    assert ctl.invoke("did", "resolve", dev).stdout.startswith("{\n")

    rotated = ctl.json("did", "rotate", dev)
    assert rotated["keyId"] == "key-2" and rotated["type"] == "rotate" and rotated["seq"] == 1
    assert vm_ids(ctl.json("did", "resolve", dev)) == {"key-2", "ka-1"}
    old = ctl.json("did", "resolve", dev, "--version-id", "0")
    assert vm_ids(old) == {"key-1", "ka-1"}
    assert old["didDocumentMetadata"]["nextVersionId"] == "1"

    at_create = ctl.json("did", "keys", dev, "--at-position", str(create_pos))
    assert at_create["validAt"] == ["key-1"] and at_create["atPosition"] == create_pos
    at_rotate = ctl.json("did", "keys", dev, "--at-position", str(rotated["position"]))
    assert at_rotate["validAt"] == ["key-2"]
    text = ctl.invoke("did", "keys", dev, "--at-position", str(create_pos)).stdout
    assert f"keys that could sign at position {create_pos}: key-1" in text

    updated = ctl.json("did", "update", dev, "--service", "s2=LinkedDomains=https://dev.example", "--remove-service", "hub")
    assert updated["services"] == [{"id": "s2", "type": "LinkedDomains", "serviceEndpoint": "https://dev.example"}]
    assert updated["keyAgreement"] == "ka-1"
    ka = ctl.json("did", "update", dev, "--rotate-key-agreement")
    assert ka["keyAgreement"] == "ka-3"
    assert vm_ids(ctl.json("did", "resolve", dev)) == {"key-2", "ka-3"}

    revoked = ctl.json("did", "revoke-key", dev, "key-2", "--as", admin)
    assert revoked["keyId"] == "key-2" and revoked["reason"] == "compromised"
    assert vm_ids(ctl.json("did", "resolve", dev)) == {"ka-3"}
    fates = {k["id"]: k for k in ctl.json("did", "keys", dev)["keys"]}
    assert fates["key-2"]["fate"] == "revoked" and fates["key-2"]["reason"] == "compromised"
    assert fates["key-1"]["fate"] == "rotated" and fates["key-1"]["endedPos"] == rotated["position"]

    recovered = ctl.json("did", "recover", dev, "--as", admin)
    assert recovered["keyId"] == "key-4" and recovered["keyAgreement"] == "ka-4"
    assert vm_ids(ctl.json("did", "resolve", dev)) == {"key-4", "ka-4"}
    # The recovered keys are in the keystore: the DID can update and rotate itself again.
    ctl.json("did", "update", dev, "--service", "s3=LinkedDomains=https://three.example")
    assert ctl.json("did", "rotate", dev)["keyId"] == "key-5"

    new_admin = ctl.create()
    moved = ctl.json("did", "transfer", dev, "--to", new_admin, "--as", admin)
    assert moved["controllers"] == [new_admin] and moved["previousControllers"] == [admin]
    # The old controller lost its power: the node rejects its signature.
    ctl.fail("did", "revoke-key", dev, "key-5", "--as", admin, code=1, reason="WRONG_SIGNER")

    gone = ctl.json("did", "deactivate", dev, "--as", new_admin, "--yes", "--reason", "end of life")
    assert gone["type"] == "deactivate" and gone["reason"] == "end of life"
    meta = ctl.json("did", "resolve", dev)["didDocumentMetadata"]
    assert meta["deactivated"] is True
    ctl.fail("did", "rotate", dev, code=1, reason="DEACTIVATED")

    hist = ctl.json("did", "history", dev)
    types = [e["type"] for e in hist["entries"]]
    assert types == ["create", "rotate", "update", "update", "revoke", "recover", "update", "rotate", "transfer", "deactivate"]
    assert all(len(e["opHash"]) == 64 and e["time"].endswith("Z") for e in hist["entries"])
    assert hist["entries"][1]["signers"] == [f"{dev}#next"]
    assert hist["entries"][0]["signers"] == [f"{dev}#key-1", f"{admin}#key-1"]
    table = ctl.invoke("did", "history", dev).stdout.splitlines()
    assert table[0].split() == ["POS", "TIME", "TYPE", "SEQ", "SIGNERS", "HASH"]
    assert hist["entries"][0]["opHash"][:12] in table[1] and hist["entries"][0]["opHash"] not in table[1]


def test_revoke_and_deactivate_by_own_next_key(ctl: Didctl) -> None:
    did = ctl.create()
    ctl.json("did", "rotate", did)
    revoked = ctl.json("did", "revoke-key", did, "key-1", "--as", did, "--reason", "lost")
    assert revoked["signer"] == f"{did}#next"
    ctl.json("did", "deactivate", did, "--as", did, "--yes")
    assert ctl.json("did", "resolve", did)["didDocumentMetadata"]["deactivated"] is True


def test_transfer_without_controller_signed_by_own_key(ctl: Didctl) -> None:
    did, owner = ctl.create(), ctl.create()
    moved = ctl.json("did", "transfer", did, "--to", owner, "--as", did)
    assert moved["controllers"] == [owner] and moved["previousControllers"] == []


def test_create_options(ctl: Didctl) -> None:
    did = ctl.invoke("did", "create", "--no-key-agreement", "--purpose", "authentication").stdout.strip()
    doc = ctl.json("did", "resolve", did)["didDocument"]
    assert vm_ids({"didDocument": doc}) == {"key-1"}
    assert doc["assertionMethod"] == [] and len(doc["authentication"]) == 2
    assert did in ctl.json("keystore", "list")["dids"]


# --------------------------------------------------------------------------
# JSON placement, node info, keystore commands
# --------------------------------------------------------------------------


def test_json_after_subcommand_and_node_info(ctl: Didctl) -> None:
    before = json.loads(ctl.invoke("node", "info", "--json").stdout)
    assert set(before) >= {"network", "nodeDid", "logSize", "didCount", "version", "mode"}
    assert before["network"] == "local" and before["mode"] == "embedded"
    assert before == ctl.json("node", "info") | {"logSize": before["logSize"], "lastTime": before["lastTime"], "didCount": before["didCount"]}
    text = ctl.invoke("node", "info").stdout
    assert "node DID" in text and before["nodeDid"] in text


def test_keystore_init_refuses_existing_and_prompts_twice(ctl: Didctl, tmp_path: Path) -> None:
    ctl.fail("keystore", "init", code=4, reason="KEYSTORE_ERROR")
    fresh = tmp_path / "ks"
    result = ctl.invoke("keystore", "init", "--json", input="pw-one\npw-one\n", DIDCTL_PASSPHRASE=None, DIDCTL_KEYSTORE=str(fresh))
    assert json.loads(result.stdout) == {"keystore": str(fresh), "created": True}
    assert result.stderr.count("Passphrase for keystore") == 1 and "Repeat" in result.stderr
    listed = ctl.json("keystore", "list", DIDCTL_PASSPHRASE="pw-one", DIDCTL_KEYSTORE=str(fresh))
    assert listed == {"keystore": str(fresh), "dids": []}


def test_create_makes_the_keystore_when_missing(ctl: Didctl, tmp_path: Path) -> None:
    ks = tmp_path / "new-ks"
    did = ctl.json("did", "create", DIDCTL_KEYSTORE=str(ks))["did"]
    assert ctl.json("keystore", "list", DIDCTL_KEYSTORE=str(ks))["dids"] == [did]


# --------------------------------------------------------------------------
# Error paths: one line on stderr, exit code by category, JSON error object
# --------------------------------------------------------------------------


def test_wrong_passphrase(ctl: Didctl) -> None:
    result = ctl.fail("--json", "keystore", "list", code=4, reason="WRONG_PASSPHRASE", DIDCTL_PASSPHRASE="nope")
    err = json.loads(result.stdout)["error"]
    assert err["reason"] == "WRONG_PASSPHRASE" and "wrong passphrase" in err["message"] and isinstance(err["details"], dict)


def test_empty_passphrase(ctl: Didctl) -> None:
    ctl.fail("keystore", "list", code=4, reason="KEYSTORE_ERROR", DIDCTL_PASSPHRASE="")


def test_missing_keystore(ctl: Didctl, tmp_path: Path) -> None:
    result = ctl.fail("keystore", "list", code=4, reason="KEYSTORE_ERROR", DIDCTL_KEYSTORE=str(tmp_path / "none"))
    assert "didctl keystore init" in result.stderr


def test_unreachable_node(ctl: Didctl) -> None:
    addr = f"127.0.0.1:{unused_port()}"
    ctl.fail("--node", addr, "--timeout", "5", "node", "info", code=3, reason="NODE_UNAVAILABLE")
    # Creating a DID on an unreachable node fails before any key is generated or the keystore touched.
    before = ctl.json("keystore", "list")["dids"]
    ctl.fail("did", "create", code=3, reason="NODE_UNAVAILABLE", DIDNODE_ADDR=addr)
    assert ctl.json("keystore", "list")["dids"] == before


def test_unknown_did(ctl: Didctl) -> None:
    unknown = did_from_create_payload(b'{"never":"created"}')
    result = ctl.fail("--json", "did", "resolve", unknown, code=1, reason="UNKNOWN_DID")
    assert json.loads(result.stdout)["error"]["reason"] == "UNKNOWN_DID"
    ctl.fail("did", "history", unknown, code=1, reason="UNKNOWN_DID")
    # --json after the subcommand works for errors too.
    after = ctl.fail("did", "keys", unknown, "--json", code=1, reason="UNKNOWN_DID")
    assert json.loads(after.stdout)["error"]["reason"] == "UNKNOWN_DID"


@pytest.mark.parametrize("bad", ["did:dnode:abc", "did:key:z6Mkabc", "DID:dnode:QmRtcJn4DbrgYcB6W35gNQk5m8VaSCMZocTnpLYDBBTwdb", "not-a-did"])
def test_malformed_did(ctl: Didctl, bad: str) -> None:
    ctl.fail("did", "resolve", bad, code=1, reason="INVALID_DID")


def test_malformed_controller_did(ctl: Didctl) -> None:
    ctl.fail("did", "create", "--controller", "did:dnode:Qm0OIl", code=1, reason="INVALID_DID")


def test_unknown_version(ctl: Didctl) -> None:
    did = ctl.create()
    ctl.fail("did", "resolve", did, "--version-id", "7", code=1, reason="UNKNOWN_VERSION")
    assert vm_ids(ctl.json("did", "resolve", did, "--version-time", "2999-01-01T00:00:00Z")) == {"key-1", "ka-1"}


def test_resolve_options_are_exclusive(ctl: Didctl) -> None:
    did = ctl.create()
    result = ctl.invoke("did", "resolve", did, "--version-id", "0", "--version-time", "2024-01-01T00:00:00Z", code=2)
    assert "mutually exclusive" in result.stderr
    result = ctl.invoke("did", "resolve", did, "--version-time", "yesterday", code=2)
    assert "ISO 8601" in result.stderr


def test_usage_errors(ctl: Didctl) -> None:
    did = ctl.create()
    assert "ID=TYPE=URL" in ctl.invoke("did", "create", "--service", "nourl", code=2).stderr
    assert "nothing to update" in ctl.invoke("did", "update", did, code=2).stderr
    ctl.invoke("did", "update", did, "--rotate-key-agreement", "--remove-key-agreement", code=2)
    assert "no service 'zz'" in ctl.invoke("did", "update", did, "--remove-service", "zz", code=2).stderr
    # Irreversible: without a terminal (CliRunner) or with --json, --yes is required.
    assert "--yes" in ctl.invoke("did", "deactivate", did, "--as", did, code=2).stderr
    assert ctl.json("did", "resolve", did)["didDocumentMetadata"].get("deactivated") is None


def test_rotate_without_next_key_in_keystore(ctl: Didctl, tmp_path: Path) -> None:
    did = ctl.create()
    # Another keystore: no secrets at all for the DID.
    other = tmp_path / "other"
    ctl.invoke("keystore", "init", DIDCTL_KEYSTORE=str(other))
    result = ctl.fail("did", "rotate", did, code=4, reason="KEY_NOT_IN_KEYSTORE", DIDCTL_KEYSTORE=str(other))
    assert did in result.stderr
    # The DID's entry without its next key (e.g. the next key is kept offline).
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        full = ks.get(did)
        ks.put(DidSecrets(did=did, signing_keys=full.signing_keys))
    ctl.fail("did", "rotate", did, code=4, reason="KEY_NOT_IN_KEYSTORE")
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        ks.put(full)
    assert ctl.json("did", "rotate", did)["keyId"] == "key-2"


def test_controller_not_in_keystore(ctl: Didctl, tmp_path: Path) -> None:
    admin = ctl.create()
    other = tmp_path / "other"
    # No keystore there: it is not created just to find it lacks the controller.
    ctl.fail("did", "create", "--controller", admin, code=4, reason="KEYSTORE_ERROR", DIDCTL_KEYSTORE=str(other))
    assert not other.exists()
    ctl.invoke("keystore", "init", DIDCTL_KEYSTORE=str(other))
    result = ctl.fail("did", "create", "--controller", admin, code=4, reason="KEY_NOT_IN_KEYSTORE", DIDCTL_KEYSTORE=str(other))
    assert "controller" in result.stderr and admin in result.stderr
    assert ctl.json("keystore", "list", DIDCTL_KEYSTORE=str(other))["dids"] == []


def test_update_without_current_authentication_key(ctl: Didctl) -> None:
    admin = ctl.create()
    did = ctl.create("--controller", admin)
    ctl.json("did", "revoke-key", did, "key-1", "--as", admin)
    result = ctl.fail("did", "update", did, "--service", "a=T=https://a.example", code=1, reason="UNKNOWN_KEY")
    assert "did recover" in result.stderr


def test_revoke_by_non_controller_is_rejected(ctl: Didctl) -> None:
    did, stranger = ctl.create(), ctl.create()
    ctl.fail("did", "revoke-key", did, "key-1", "--as", stranger, code=1, reason="WRONG_SIGNER")
    assert vm_ids(ctl.json("did", "resolve", did)) == {"key-1", "ka-1"}


def test_revoke_key_takes_the_forms_users_copy(ctl: Didctl) -> None:
    admin = ctl.create()
    did = ctl.create("--controller", admin)
    ctl.json("did", "rotate", did)
    ctl.json("did", "rotate", did)
    # The full DID URL, as copied from the resolved document.
    doc = ctl.json("did", "resolve", did)["didDocument"]
    assert f"{did}#key-3" in doc["authentication"] and f"{did}#key-3-jwk" in doc["authentication"]
    revoked = ctl.json("did", "revoke-key", did, f"{did}#key-1", "--as", admin)
    assert revoked["keyId"] == "key-1"
    # The JsonWebKey method's id names the same key; so does '#key-2'.
    assert ctl.json("did", "revoke-key", did, f"{did}#key-2-jwk", "--as", admin)["keyId"] == "key-2"
    assert ctl.json("did", "revoke-key", did, "#key-3", "--as", admin)["keyId"] == "key-3"
    fates = {k["id"]: k["fate"] for k in ctl.json("did", "keys", did)["keys"]}
    assert fates["key-1"] == fates["key-2"] == fates["key-3"] == "revoked"


def test_revoke_key_refuses_another_dids_key(ctl: Didctl) -> None:
    admin = ctl.create()
    did = ctl.create("--controller", admin)
    result = ctl.fail("did", "revoke-key", did, f"{admin}#key-1", "--as", admin, code=1, reason="INVALID_ARGUMENT")
    assert did in result.stderr and admin in result.stderr
    assert json.loads(ctl.invoke("--json", "did", "revoke-key", did, f"{admin}#key-1", "--as", admin, code=1).stdout)["error"]["details"] == {
        "did": did,
        "other": admin,
    }
    ctl.fail("did", "revoke-key", did, "#key 1", "--as", admin, code=1, reason="INVALID_DID")
    ctl.fail("did", "revoke-key", did, f"{did}?versionId=0#key-1", "--as", admin, code=1, reason="INVALID_DID")
    # Nothing was revoked.
    assert {k["fate"] for k in ctl.json("did", "keys", did)["keys"]} == {"current"}


def _services(n: int) -> list[str]:
    """``--service`` options for n valid entries (each passes didctl's check; 17 are one too many for the node)."""
    return [a for i in range(n) for a in ("--service", f"s{i}=T=https://s{i}.example")]


def test_rejected_create_leaves_no_keys(ctl: Didctl) -> None:
    before = ctl.json("keystore", "list")["dids"]
    # An over-long type is refused by didctl itself, before any key is made...
    ctl.fail("did", "create", "--service", f"s={'T' * 65}=https://x.example", code=1, reason="TOO_LARGE")
    # ... 17 services only by the node, after the new keys were staged.
    ctl.fail("did", "create", *_services(17), code=1, reason="TOO_LARGE")
    assert ctl.json("keystore", "list")["dids"] == before


def test_rejected_key_change_restores_the_keystore(ctl: Didctl) -> None:
    did = ctl.create(*_services(16))
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        before = ks.get(did)
    # The new key-agreement key is staged in the keystore, then the node rejects the update (a 17th service).
    ctl.fail("did", "update", did, "--rotate-key-agreement", "--service", "s16=T=https://s16.example", code=1, reason="TOO_LARGE")
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        assert ks.get(did) == before


def test_deactivated_did_cannot_change(ctl: Didctl) -> None:
    did = ctl.create()
    ctl.json("did", "deactivate", did, "--as", did, "--yes")
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        before = ks.get(did)
    ctl.fail("did", "rotate", did, code=1, reason="DEACTIVATED")
    ctl.fail("did", "create", "--controller", did, code=1, reason="DEACTIVATED")
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        assert ks.get(did) == before


# --------------------------------------------------------------------------
# Crash safety: an entry staged before a crash is settled by the next command
# --------------------------------------------------------------------------


def _stage_rotation(ctl: Didctl, did: str) -> None:
    """Do what `did rotate` does up to the crash point: keystore staged, nothing submitted."""
    from cli.didctl_secrets import FreshKeys, next_index, secrets_with, stage
    from cli.signing import next_signer
    from didnode.core import builder

    with Client(ctl.node.address) as client, Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        before = ks.get(did)
        state = client.state(did)
        nk = next_signer(state, before)
        fresh = FreshKeys.generate(next_index(state), key_agreement=False)
        unsigned = builder.rotate(client.node_info().network, did, state.seq + 1, state.last, bytes(nk.verify_key), fresh.new_keys(), fresh.next_public)
        op = builder.sign(unsigned, [(builder.next_kid(did), nk)])
        after = secrets_with(before, signing_keys={fresh.auth_id: bytes(fresh.auth)}, next_seed=bytes(fresh.next))
        ks.put(stage(before, after, op))


def test_interrupted_rotation_is_completed(ctl: Didctl) -> None:
    did = ctl.create()
    _stage_rotation(ctl, did)
    assert vm_ids(ctl.json("did", "resolve", did)) == {"key-1", "ka-1"}  # not submitted yet
    result = ctl.invoke("--json", "did", "update", did, "--service", "a=T=https://a.example")
    assert "completed the interrupted rotate" in result.stderr
    assert vm_ids(ctl.json("did", "resolve", did)) == {"key-2", "ka-1"}
    assert [e["type"] for e in ctl.json("did", "history", did)["entries"]] == ["create", "rotate", "update"]
    assert ctl.json("did", "rotate", did)["keyId"] == "key-3"  # the new next key was kept


def test_interrupted_rotation_that_lost_the_race_is_rolled_back(ctl: Didctl) -> None:
    did = ctl.create()
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        original = ks.get(did)
    _stage_rotation(ctl, did)
    # Meanwhile another operation took seq 1: the staged rotate can never apply.
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        staged = ks.get(did)
        ks.put(original)
    ctl.json("did", "update", did, "--service", "a=T=https://a.example")
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        ks.put(staged)
    result = ctl.invoke("did", "rotate", did)
    assert "was never applied" in result.stderr and "key-2" in result.stdout
    with Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        assert not any(k.startswith("didctl.") for k in ks.get(did).labels)


def _stage_create(ctl: Didctl, controller: str | None = None) -> str:
    """Do what `did create` does up to the crash point; returns the DID that is not on the ledger yet."""
    from cli.didctl_secrets import FreshKeys, stage
    from cli.signing import auth_signer
    from didnode.core import builder

    with Client(ctl.node.address) as client, Keystore.open(ctl.keystore, PASSPHRASE) as ks:
        fresh = FreshKeys.generate(1, key_agreement=True)
        ctrls = [controller] if controller else []
        unsigned = builder.create(client.node_info().network, fresh.new_keys(), fresh.next_public, ctrls, [], fresh.agreement())
        signers = [(f"{unsigned.did}#key-1", fresh.auth)]
        if controller:
            signers.append(auth_signer(client.state(controller), ks.get(controller)))
        ks.put(stage(None, fresh.secrets(unsigned.did, {}), builder.sign(unsigned, signers)))
        return unsigned.did


def test_interrupted_create_is_completed(ctl: Didctl) -> None:
    did = _stage_create(ctl)
    ctl.fail("did", "resolve", did, code=1, reason="UNKNOWN_DID")
    result = ctl.invoke("did", "rotate", did)
    assert "completed the interrupted create" in result.stderr
    assert [e["type"] for e in ctl.json("did", "history", did)["entries"]] == ["create", "rotate"]


def test_interrupted_create_that_can_no_longer_apply_is_dropped(ctl: Didctl) -> None:
    admin = ctl.create()
    did = _stage_create(ctl, controller=admin)
    ctl.json("did", "rotate", admin)  # the controller's signature on the staged create is now by a rotated key
    result = ctl.fail("did", "rotate", did, code=4, reason="KEY_NOT_IN_KEYSTORE")
    assert "can no longer be applied" in result.stderr
    assert did not in ctl.json("keystore", "list")["dids"]


# --------------------------------------------------------------------------
# The real console script
# --------------------------------------------------------------------------


def _didctl(ctl: Didctl, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DIDNODE_ADDR=ctl.node.address, DIDCTL_KEYSTORE=str(ctl.keystore), DIDCTL_PASSPHRASE=PASSPHRASE, DIDCTL_TRUST_DIR=str(ctl.trust_dir))
    return subprocess.run([str(BIN / "didctl"), *args], env=env, capture_output=True, text=True, timeout=60)


def test_console_script(ctl: Didctl) -> None:
    ctl.trust()
    ok = _didctl(ctl, "did", "create", "--json")
    assert ok.returncode == 0, ok.stderr
    did = json.loads(ok.stdout)["did"]
    assert _didctl(ctl, "did", "resolve", did).returncode == 0

    bad = _didctl(ctl, "did", "resolve", "did:dnode:QmNotAValidDid")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("didctl: ") and bad.stderr.rstrip().endswith("[INVALID_DID]")

    wrong = subprocess.run(
        [str(BIN / "didctl"), "keystore", "list"],
        env=dict(os.environ, DIDCTL_KEYSTORE=str(ctl.keystore), DIDCTL_PASSPHRASE="wrong"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 4 and wrong.stderr.count("\n") == 1 and "Traceback" not in wrong.stderr

    helped = _didctl(ctl, "--help")
    assert "_DIDCTL_COMPLETE=bash_source didctl" in helped.stdout and "Exit codes" in helped.stdout


def test_signing_commands_take_the_network_from_the_key_state(ctl: Didctl, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rotate, update or revoke reads the DID's key state, whose reply names the network: no GetInfo call."""
    from didnode.client.sync import Client as SyncClient

    did = ctl.create()
    ctl.trust()  # first contact reads the node's info: not part of what is counted
    calls: list[str] = []
    real = SyncClient.node_info

    def counting(self: SyncClient) -> object:
        calls.append("GetInfo")
        return real(self)

    monkeypatch.setattr(SyncClient, "node_info", counting)
    ctl.invoke("did", "rotate", did)
    ctl.invoke("did", "revoke-key", did, "key-2", "--as", did, "--reason", "lost")
    assert calls == []
