"""``didctl provision`` against a real node (subprocess, loopback, temporary LMDB): runs, a SIGKILL and
resume, device-supplied keys, fleet transfer; every device checked against the ledger."""

from __future__ import annotations

import base64
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from cli.didctl import main
from cli.didctl_provision import ProgressBar, provision_group
from cli.trust_store import TrustStore
from didnode.client import Client
from didnode.core.checkpoint import from_json as checkpoint_from_json
from didnode.core.credentials import DEVICE_ATTESTATION
from didnode.core.encoding import X25519_PUB, multikey_encode
from didnode.core.operations import next_commitment
from didnode.core.transparency_verify import verify_checkpoint
from didnode.errors import BundleInvalid
from didnode.keystore import Keystore
from didnode.provisioning import BundleOpener, bundle_trust, create_signing_bytes, device_create, read_bundle
from tests.cli.conftest import PASSPHRASE, Didctl
from tests.conftest import ROOT

# The provision group is registered on the main group by the didctl owner; until then the tests add it here.
if "provision" not in main.commands:
    main.add_command(provision_group)

BUNDLE_PASS = "line-3 bundle passphrase"


@pytest.fixture(scope="module")
def mfr(ctl: Didctl) -> str:
    return ctl.create()


def provision(ctl: Didctl, mfr: str, out: Path, *extra: str, code: int = 0) -> dict[str, Any]:
    return ctl.json(
        "provision", "--manufacturer", mfr, "--model", "X1", "--out", str(out), "--hardware-version", "rev-b",
        "--firmware-version", "1.4.2", *extra, code=code, BPASS=BUNDLE_PASS,
    )  # fmt: skip


def manifest(out: Path) -> list[dict[str, Any]]:
    """The JSON-lines manifest, checked against the CSV one (same rows, same order)."""
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    with open(out / "manifest.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["serial"], r["did"], str(r["position"]), r["opHash"]) for r in rows] == [
        (r["serial"], r["did"], r["position"], r["opHash"]) for r in csv_rows
    ]
    return rows


def check_run(ctl: Didctl, mfr: str, out: Path, n: int, opener: BundleOpener | None, controller: str | None = None) -> list[dict[str, Any]]:
    """Every device: exactly once in the manifest, resolves, its ledger create is at the manifest's position,
    its bundle matches, its credential verifies, and its keys (if any) are the ledger's."""
    rows = manifest(out)
    assert len(rows) == n
    assert len({r["did"] for r in rows}) == n and len({r["serial"] for r in rows}) == n
    assert len({r["statusListIndex"] for r in rows}) == n
    client = Client(ctl.node.address)
    verifier = client.offline_verifier(cache_ttl_ms=600_000)
    node_kid, node_key = client.node_signer_key()
    trusted = TrustStore(ctl.trust_dir).get(ctl.node.address)
    assert trusted is not None
    ks = Keystore.open(ctl.keystore, PASSPHRASE)
    try:
        for i, row in enumerate(rows):
            did = row["did"]
            state = client.state(did)
            assert state.created_pos == row["position"] and state.seq == 0
            assert state.controllers == ((controller or mfr),)
            result = client.resolve(did)
            assert result["didDocument"]["id"] == did and result["didDocument"]["controller"] == [mfr]
            bundle = read_bundle((out / row["bundle"]).read_bytes())
            assert (bundle["did"], bundle["serial"], bundle["position"], bundle["opHash"]) == (did, row["serial"], row["position"], row["opHash"])
            assert bundle["node"] == ctl.node.address and bundle["manufacturer"] == mfr
            policy = bundle_trust(bundle)  # the trust policy the run verified the ledger with
            assert policy is not None and policy.same_anchors(trusted) and policy.latest is not None
            report = verifier.verify(bundle["credential"], expected_subject=did, expected_issuer=mfr, expected_type=DEVICE_ATTESTATION)
            assert report.valid, report.to_json()
            cred = report.credential
            assert cred is not None and cred.claims["credentialSubject"]["serialNumber"] == row["serial"]
            assert cred.claims["credentialSubject"]["model"] == "X1" and cred.claims["credentialSubject"]["hardwareVersion"] == "rev-b"
            cp = verify_checkpoint(checkpoint_from_json(bundle["checkpoint"]), node_key)
            assert cp.tree_size > row["position"]
            key1 = state.key("key-1")
            if opener is None:
                assert bundle["keys"] is None
                continue
            secrets = opener.open(bundle)
            assert secrets is not None and secrets.did == did and secrets.next_key_seed is None
            assert bytes(SigningKey(secrets.signing_keys["key-1"]).verify_key) == key1.raw
            if i % 97 == 0:
                # Recovery material: the committed next key is in the manufacturer's keystore, not in the bundle.
                held = ks.get(did)
                assert held.labels["role"] == "device-recovery" and held.labels["serial"] == row["serial"]
                assert next_commitment(bytes(SigningKey(held.next_key_seed).verify_key)) == state.next  # type: ignore[arg-type]
        # The node's own verifier agrees (a sample: it is one RPC each).
        for row in rows[:: max(1, n // 10)]:
            token = read_bundle((out / row["bundle"]).read_bytes())["credential"]
            assert client.verify_credential(token, expected_subject=row["did"]).valid
    finally:
        ks.close()
        client.close()
    return rows


def did_count(ctl: Didctl) -> int:
    with Client(ctl.node.address) as c:
        return c.node_info().did_count


# --------------------------------------------------------------------------
# A run of 2,000 devices (tool-generated keys, passphrase-sealed bundles)
# --------------------------------------------------------------------------


def test_run_of_2000_devices(ctl: Didctl, mfr: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    before = did_count(ctl)
    result = provision(ctl, mfr, out, "--count", "2000", "--bundle-passphrase-env", "BPASS")
    assert (result["devices"], result["created"], result["alreadyOnLedger"], result["resumed"]) == (2000, 2000, 0, False)
    assert result["protection"] == "passphrase" and result["keys"] == "generated"
    assert did_count(ctl) == before + 2000
    rows = check_run(ctl, mfr, out, 2000, BundleOpener(passphrase=BUNDLE_PASS))
    assert rows[0]["serial"] == "SN-000001" and rows[-1]["serial"] == "SN-002000"
    assert [r["position"] for r in rows] == sorted(r["position"] for r in rows)
    assert oct((out / "provision.journal").stat().st_mode)[-3:] == "600"
    assert oct((out / rows[0]["bundle"]).stat().st_mode)[-3:] == "600"
    # No secret in the journal in clear: the device seeds are sealed under the keystore's purpose key.
    seed = BundleOpener(passphrase=BUNDLE_PASS).open(read_bundle((out / rows[5]["bundle"]).read_bytes())).signing_keys["key-1"]  # type: ignore[union-attr]
    journal = (out / "provision.journal").read_bytes()
    assert seed not in journal and base64.urlsafe_b64encode(seed).rstrip(b"=") not in journal

    # Idempotent: the same command again does nothing and reports the same run.
    again = provision(ctl, mfr, out, "--count", "2000", "--bundle-passphrase-env", "BPASS")
    assert (again["devices"], again["created"], again["alreadyOnLedger"], again["run"]) == (2000, 0, 0, result["run"])
    assert did_count(ctl) == before + 2000
    # Other arguments on the same directory are refused, not mixed in.
    bad = ctl.fail(
        "provision", "--manufacturer", mfr, "--model", "X2", "--count", "2000", "--out", str(out), "--bundle-passphrase-env", "BPASS",
        code=1, reason="RUN_MISMATCH", BPASS=BUNDLE_PASS,
    )  # fmt: skip
    assert "model" in bad.stderr
    # ... and so is another bundle passphrase: all bundles of a run open with one passphrase.
    ctl.fail(
        "provision", "--manufacturer", mfr, "--model", "X1", "--count", "2000", "--out", str(out), "--bundle-passphrase-env", "BPASS",
        "--hardware-version", "rev-b", "--firmware-version", "1.4.2", code=1, reason="RUN_MISMATCH", BPASS="another passphrase",
    )  # fmt: skip


def test_usage_errors(ctl: Didctl, mfr: str, tmp_path: Path) -> None:
    out = str(tmp_path / "x")
    r = ctl.invoke("provision", "--manufacturer", mfr, "--model", "X1", "--count", "3", "--out", out, code=2)
    assert "exactly one of --bundle-passphrase-env" in r.stderr
    r = ctl.invoke("provision", "--manufacturer", mfr, "--model", "X1", "--out", out, "--plain-keys", code=2)
    assert "--count" in r.stderr
    r = ctl.invoke("provision", "--count", "3", "transfer", "--manifest", __file__, "--to", mfr, code=2)
    assert "--count belongs to a provisioning run" in r.stderr
    r = ctl.invoke("provision", "--manufacturer", mfr, "--model", "X1", "--count", "3", "--out", out, "--bundle-passphrase-env", "NOPE_UNSET", code=2)
    assert "NOPE_UNSET" in r.stderr


def test_progress_bar_shows_rate_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    bar = ProgressBar("provisioning X1", enabled=True)
    bar(0, 2000)
    time.sleep(0.15)
    bar(1024, 2000)
    bar.close()
    err = capsys.readouterr().err
    assert "1,024/2,000" in err and " 51%" in err and "/s" in err and "ETA    0:0" in err and err.endswith("\n")
    silent = ProgressBar("x", enabled=False)
    silent(5, 10)
    silent.close()
    assert capsys.readouterr().err == ""


def test_plain_keys_are_loud(ctl: Didctl, mfr: str, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    result = ctl.invoke("provision", "--manufacturer", mfr, "--model", "X1", "--count", "5", "--out", str(out), "--plain-keys", "--hardware-version", "rev-b")
    assert "UNENCRYPTED" in result.stderr and "UNENCRYPTED" in result.stdout
    bundle = read_bundle((out / "bundles" / "SN-000001.json").read_bytes())
    assert bundle["keys"]["protection"] == "none"
    assert BundleOpener().open(bundle) is not None
    # A bundle from before the trust member still reads (no policy); a broken one is refused.
    old = {k: v for k, v in bundle.items() if k != "trust"}
    assert bundle_trust(old) is None and BundleOpener().open(old) is not None
    with pytest.raises(BundleInvalid, match="trust policy"):
        read_bundle(json.dumps({**bundle, "trust": {**bundle["trust"], "threshold": 2}}).encode())


# --------------------------------------------------------------------------
# SIGKILL halfway, then the same command again
# --------------------------------------------------------------------------


def test_sigkill_halfway_then_resume(ctl: Didctl, mfr: str, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = [
        sys.executable, "-m", "cli.didctl", "--json", "provision", "--manufacturer", mfr, "--model", "X1",
        "--count", "2000", "--out", str(out), "--hardware-version", "rev-b", "--firmware-version", "1.4.2",
        "--bundle-passphrase-env", "BPASS", "--chunk-size", "128", "--helper",
    ]  # fmt: skip
    before = did_count(ctl)
    journal = out / "provision.journal"
    run_and_kill(ctl, args, journal, 4)  # 4 of 16 chunks finished, more planned and in flight
    # Devices of the chunks the journal records as done. (The manifests may already hold the
    # rows of one more chunk, appended just before its "done" record: a resume cuts them back.)
    half = sum(len(r["positions"]) for r in _journal_records(journal) if r["t"] == "done")
    assert 0 < half < 2000
    assert len((out / "manifest.jsonl").read_text().splitlines()) in (half, half + 128)

    env = {**os.environ, **{k: v for k, v in ctl.env(BPASS=BUNDLE_PASS).items() if v is not None}}
    resumed = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["resumed"] is True and result["devices"] == 2000
    assert result["created"] + result["alreadyOnLedger"] == 2000 - half
    assert "resuming run" in resumed.stderr
    # Exactly N new DIDs on the ledger: nothing created twice, nothing lost.
    assert did_count(ctl) == before + 2000
    check_run(ctl, mfr, out, 2000, BundleOpener(passphrase=BUNDLE_PASS))
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(r["chunk"] for r in records if r["t"] == "done") == list(range(16))


def _journal_records(journal: Path) -> list[dict]:  # type: ignore[type-arg]
    """The journal's complete records (a SIGKILL may have torn the last line, which a resume ignores too)."""
    out = []
    for line in journal.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def run_and_kill(ctl: Didctl, args: list[str], journal: Path, after_done: int) -> None:
    """Start ``args`` (a didctl process) and SIGKILL it once the journal holds ``after_done`` done records."""
    env = {**os.environ, **{k: v for k, v in ctl.env(BPASS=BUNDLE_PASS).items() if v is not None}}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    done = 0
    children: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        done = journal.read_bytes().count(b'"t":"done"') if journal.exists() else 0
        if done >= after_done:
            children = _children(proc.pid)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-run (rc {proc.returncode}, {done} chunks done): {proc.stderr.read()!r}"  # type: ignore[union-attr]
    # The helper process dies with the run (it must not outlive it).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() and "Z" not in _state(c) for c in children):
        time.sleep(0.02)
    assert not [c for c in children if Path(f"/proc/{c}").exists() and "Z" not in _state(c)], "a helper outlived the killed run"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            listed = (task / "children").read_text()
        except FileNotFoundError:
            continue  # the thread ended between listing and reading: it has no children to report
        out += [int(x) for x in listed.split()]
    return out


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_manufacturer_rotates_its_key_between_crash_and_resume(ctl: Didctl, tmp_path: Path) -> None:
    maker = ctl.create()
    out = tmp_path / "rotated"
    args = [
        sys.executable, "-m", "cli.didctl", "--json", "provision", "--manufacturer", maker, "--model", "X1",
        "--count", "600", "--out", str(out), "--hardware-version", "rev-b", "--plain-keys", "--chunk-size", "50", "--helper",
    ]  # fmt: skip
    run_and_kill(ctl, args, out / "provision.journal", 2)
    assert ctl.json("did", "rotate", maker)["keyId"] == "key-2"
    resumed = ctl.invoke(*args[3:])
    assert "re-signing with the manufacturer's current key" in resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["devices"] == 600 and result["resumed"] is True
    rows = check_run(ctl, maker, out, 600, BundleOpener())
    with Client(ctl.node.address) as client:
        signers = {s.split("#")[1] for r in rows for s in client.history(r["did"])[0].signers if s.startswith(maker)}
    assert signers == {"key-1", "key-2"}  # early chunks by the old key, the rest re-signed by the new one


# --------------------------------------------------------------------------
# Device-generated keys
# --------------------------------------------------------------------------


def make_device(network: str, mfr: str, serial: str, i: int) -> tuple[dict[str, str], str, SigningKey]:
    """A device with keys born in its secure element: it sends public keys and signs its own create."""
    auth, nxt = SigningKey.generate(), SigningKey.generate()
    ka_pub = bytes(PrivateKey.generate().public_key) if i % 2 == 0 else None
    commitment = next_commitment(bytes(nxt.verify_key))
    sig = auth.sign(create_signing_bytes(network, mfr, bytes(auth.verify_key), commitment, ka_pub)).signature
    row = {"serial": serial, "authenticationKey": multikey_encode(bytes(auth.verify_key)), "createSignature": base64.urlsafe_b64encode(sig).rstrip(b"=").decode()}
    if ka_pub is not None:
        row["keyAgreementKey"] = multikey_encode(ka_pub, X25519_PUB)
    if i % 3 == 0:
        row["nextKey"] = multikey_encode(bytes(nxt.verify_key))
    else:
        row["nextKeyCommitment"] = commitment
    return row, device_create(network, mfr, bytes(auth.verify_key), commitment, ka_pub).did, auth


def test_device_supplied_public_keys(ctl: Didctl, mfr: str, tmp_path: Path) -> None:
    network = ctl.json("node", "info")["network"]
    devices = [make_device(network, mfr, f"SE-{i:04d}", i) for i in range(60)]
    keys_file = tmp_path / "devices.jsonl"
    keys_file.write_text("".join(json.dumps(row) + "\n" for row, _, _ in devices))
    out = tmp_path / "se"
    r = ctl.invoke("provision", "--manufacturer", mfr, "--model", "X1", "--count", "61", "--out", str(out), "--from-public-keys", str(keys_file), code=2)
    assert "lists 60 devices" in r.stderr
    r = ctl.invoke("provision", "--manufacturer", mfr, "--model", "X1", "--out", str(out), "--from-public-keys", str(keys_file), "--plain-keys", code=2)
    assert "devices hold their own private keys" in r.stderr

    result = provision(ctl, mfr, out, "--from-public-keys", str(keys_file))
    assert (result["devices"], result["keys"], result["protection"]) == (60, "device", "device")
    rows = check_run(ctl, mfr, out, 60, None)
    assert [r["serial"] for r in rows] == [f"SE-{i:04d}" for i in range(60)]
    assert [r["did"] for r in rows] == [did for _, did, _ in devices]
    with Client(ctl.node.address) as client:
        for (row, did, auth), i in zip(devices, range(60)):
            doc = client.resolve(did)["didDocument"]
            vm = {m["id"].split("#")[1]: m for m in doc["verificationMethod"]}
            assert vm["key-1"]["publicKeyMultibase"] == row["authenticationKey"]
            assert ("ka-1" in vm) == (i % 2 == 0)

    # A line whose signature was made for another manufacturer is refused before anything is submitted.
    other, _, _ = make_device(network, ctl.create(), "SE-X", 1)
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text(json.dumps(devices[0][0]) + "\n" + json.dumps(other) + "\n")
    before = did_count(ctl)
    failed = ctl.fail("provision", "--manufacturer", mfr, "--model", "X1", "--out", str(tmp_path / "bad"), "--from-public-keys", str(bad_file), code=1, reason="DEVICE_KEY_FILE_INVALID")
    assert "bad.jsonl:2:" in failed.stderr
    assert did_count(ctl) == before


# --------------------------------------------------------------------------
# Fleet transfer
# --------------------------------------------------------------------------


def test_fleet_transfer(ctl: Didctl, mfr: str, tmp_path: Path) -> None:
    station = PrivateKey.generate()
    out = tmp_path / "fleet"
    provision(ctl, mfr, out, "--count", "300", "--bundle-recipient", multikey_encode(bytes(station.public_key), X25519_PUB), "--chunk-size", "100")
    rows = check_run(ctl, mfr, out, 300, BundleOpener(private_key=bytes(station)))
    owner = ctl.create()

    moved = ctl.json("provision", "transfer", "--manifest", str(out / "manifest.jsonl"), "--to", owner)
    assert (moved["devices"], moved["transferred"], moved["alreadyTransferred"], moved["from"], moved["to"]) == (300, 300, 0, mfr, owner)
    with Client(ctl.node.address) as client:
        for row in rows:
            state = client.state(row["did"])
            assert state.controllers == (owner,) and state.seq == 1
    # Resumable and idempotent: the journal says everything is done.
    again = ctl.json("provision", "transfer", "--manifest", str(out / "manifest.jsonl"), "--to", owner)
    assert (again["transferred"], again["alreadyTransferred"]) == (0, 0)
    # Without the journal, the ledger says so too (each transfer comes back as a duplicate).
    fresh = ctl.json("provision", "transfer", "--manifest", str(out / "manifest.jsonl"), "--to", owner, "--journal", str(tmp_path / "j2"))
    assert (fresh["transferred"], fresh["alreadyTransferred"]) == (0, 300)

    # The owner controls the devices now; the manufacturer no longer does.
    dev_a, dev_b = rows[0]["did"], rows[1]["did"]
    revoked = ctl.json("did", "revoke-key", dev_a, "key-1", "--as", owner)
    assert revoked["type"] == "revoke" and revoked["signer"].startswith(owner)
    ctl.fail("did", "revoke-key", dev_b, "key-1", "--as", mfr, code=1, reason="WRONG_SIGNER")
    with Client(ctl.node.address) as client:
        assert client.state(dev_a).key("key-1").fate == "revoked"
        assert client.state(dev_b).key("key-1").fate == "current"


def test_two_party_transfer_with_an_offer(ctl: Didctl, mfr: str, tmp_path: Path) -> None:
    out = tmp_path / "sold"
    provision(ctl, mfr, out, "--count", "120", "--plain-keys", "--chunk-size", "50")
    # The buyer has its own keystore: the manufacturer never holds the buyer's key, nor the reverse.
    buyer_ctl = Didctl(ctl.node, tmp_path / "buyer-keystore")
    buyer_ctl.invoke("keystore", "init")
    buyer = buyer_ctl.create()
    offer = tmp_path / "offer.jsonl"
    # Without --export the manufacturer cannot transfer alone (the buyer's key is not in its keystore).
    ctl.fail("provision", "transfer", "--manifest", str(out / "manifest.jsonl"), "--to", buyer, code=4, reason="KEY_NOT_IN_KEYSTORE")
    exported = ctl.json("provision", "transfer", "--manifest", str(out / "manifest.jsonl"), "--to", buyer, "--export", str(offer))
    assert exported == {"offer": str(offer), "devices": 120, "from": mfr, "to": buyer, "network": exported["network"]}
    with Client(ctl.node.address) as client:
        assert client.state(manifest(out)[0]["did"]).controllers == (mfr,)  # nothing submitted yet

    # A tampered offer is refused before anything is submitted.
    lines = offer.read_text().splitlines()
    bad = tmp_path / "bad-offer.jsonl"
    bad.write_text("\n".join([lines[0].replace(buyer, mfr)] + lines[1:]) + "\n")
    buyer_ctl.fail("provision", "accept", "--offer", str(bad), code=1, reason="MANIFEST_INVALID")

    accepted = buyer_ctl.json("provision", "accept", "--offer", str(offer))
    assert (accepted["devices"], accepted["transferred"], accepted["from"], accepted["to"]) == (120, 120, mfr, buyer)
    again = buyer_ctl.json("provision", "accept", "--offer", str(offer))
    assert (again["transferred"], again["alreadyTransferred"]) == (0, 0)
    rows = manifest(out)
    with Client(ctl.node.address) as client:
        assert all(client.state(r["did"]).controllers == (buyer,) for r in rows)
    buyer_ctl.json("did", "revoke-key", rows[3]["did"], "key-1", "--as", buyer)
    ctl.fail("did", "revoke-key", rows[4]["did"], "key-1", "--as", mfr, code=1, reason="WRONG_SIGNER")
