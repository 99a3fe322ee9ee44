"""End to end: a node and two ``didctl device serve`` processes on loopback, driven by ``didctl auth``.

The devices are real subprocesses (address read from their first stdout
line, stopped with SIGTERM); ``didctl`` runs in-process through click's
runner against the same node and keystore. After an admin revokes a
device's key with ``didctl did revoke-key``, the very next handshake with
that device fails with PEER_KEY_REVOKED.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from cli.didctl import main
from cli.didctl_auth import auth_command, device_group
from tests.cli.conftest import Didctl
from tests.conftest import ROOT, RunningNode
from tests.lying_proxy import KEY_STATE, STATE_PROOF, LyingProxy, forge_key_state, forge_state_proof

# What cli/didctl.py will carry once the lead registers the commands (idempotent).
main.add_command(auth_command)
main.add_command(device_group)


@dataclass
class Device:
    did: str
    address: str
    proc: subprocess.Popen[str]

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        assert self.proc.stderr is not None
        return self.proc.returncode, self.proc.stderr.read()


def serve_device(ctl: Didctl, did: str, *extra: str, node: str | None = None) -> Device:
    """``didctl device serve --as DID --listen 127.0.0.1:0`` as a subprocess (its node: ``node``, else the
    fleet's); bounded wait for its address."""
    env = {**os.environ, **{k: v for k, v in ctl.env().items() if v is not None}}
    if node is not None:
        env["DIDNODE_ADDR"] = node
    cmd = [sys.executable, "-m", "cli.didctl", "device", "serve", "--as", did, "--listen", "127.0.0.1:0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline and not line:
        line = proc.stdout.readline().strip()
        if proc.poll() is not None:
            break
    if not line:
        proc.kill()
        raise RuntimeError(f"device did not start: {proc.stderr.read() if proc.stderr else ''}")
    return Device(did, line, proc)


@dataclass
class Fleet:
    ctl: Didctl
    admin: str
    a: Device
    b: Device
    node_did: str


@pytest.fixture(scope="module")
def fleet(shared_node: RunningNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    ctl = Didctl(shared_node, tmp / "keystore")
    ctl.invoke("keystore", "init")
    admin = ctl.create()
    a = ctl.create("--controller", admin)
    b = ctl.create("--controller", admin)
    node_did = ctl.json("node", "info")["nodeDid"]
    policy = tmp / "policy.json"
    policy.write_text(json.dumps({"accept": [{"name": "node sessions", "credentials": [{"type": "NodeSessionCredential", "issuer": node_did}]}]}))
    dev_a = serve_device(ctl, a)
    dev_b = serve_device(ctl, b, "--policy", str(policy))
    fleet = Fleet(ctl, admin, dev_a, dev_b, node_did)
    try:
        yield fleet
    finally:
        dev_a.stop()
        dev_b.stop()


def test_a_device_authenticates_another_and_prints_the_checks(fleet: Fleet) -> None:
    out = fleet.ctl.invoke("auth", "--as", fleet.b.did, fleet.a.address).stdout
    assert f"peer     {fleet.a.did}" in out
    assert "is a current authentication key on the ledger" in out and "key confirmation MAC verified" in out
    data = fleet.ctl.json("auth", "--as", fleet.b.did, fleet.a.address, "--expect", fleet.a.did)
    assert data["peer"] == fleet.a.did and len(data["sessionId"]) == 32 and data["credential"] is None
    assert len(data["checks"]) >= 4


def test_policy_requires_a_node_session_credential(fleet: Fleet, tmp_path: Path) -> None:
    fleet.ctl.fail("auth", "--as", fleet.a.did, fleet.b.address, code=1, reason="CREDENTIAL_REQUIRED")
    saved = tmp_path / "session.jwt"
    data = fleet.ctl.json("auth", "--as", fleet.a.did, fleet.ctl.node.address, "--save-credential", str(saved))
    assert data["peer"] == fleet.node_did and data["credential"] and saved.stat().st_mode & 0o777 == 0o600
    out = fleet.ctl.invoke("auth", "--as", fleet.a.did, fleet.b.address, "--present", str(saved)).stdout
    assert f"peer     {fleet.b.did}" in out  # B's policy (checked on B's side) accepted the credential


def test_initiator_requires_a_credential_the_device_lacks(fleet: Fleet) -> None:
    fleet.ctl.fail(
        "auth", "--as", fleet.b.did, fleet.a.address, "--require-credential", "DeviceAttestationCredential", "--from", fleet.admin, code=1, reason="CREDENTIAL_REQUIRED"
    )
    result = fleet.ctl.invoke("auth", "--as", fleet.b.did, fleet.a.address, "--require-credential", "X", code=2)
    assert "--from" in result.stderr


def test_unexpected_peer_is_a_misbinding(fleet: Fleet) -> None:
    fleet.ctl.fail("auth", "--as", fleet.b.did, fleet.a.address, "--expect", fleet.admin, code=1, reason="MISBINDING")


def test_unreachable_peer_exits_3(fleet: Fleet) -> None:
    fleet.ctl.fail("auth", "--as", fleet.b.did, "127.0.0.1:9", "--handshake-timeout", "2", code=3, reason="NODE_UNAVAILABLE")


def test_forged_key_states_through_a_lying_proxy_are_refused_in_both_roles(fleet: Fleet, tmp_path: Path) -> None:
    """Issue #15: a proxy between a device and the node swaps a peer's key. ``didctl auth`` (the initiator)
    and ``didctl device serve`` (the responder) verify the node's answers against the trust store's policy
    and refuse the forged state with its reason; with --insecure-no-verify the forgery goes unnoticed."""
    with LyingProxy(fleet.ctl.node.address) as proxy:
        fleet.ctl.trust("--node", proxy.address)
        proxy.set(STATE_PROOF, forge_state_proof(fleet.a.did, bytes(32)))
        fleet.ctl.fail("--node", proxy.address, "auth", "--as", fleet.b.did, fleet.a.address, code=1, reason="ROOT_MISMATCH")
        # Unverified, the initiator takes the forged key (A's real signature then fails under it).
        proxy.set(KEY_STATE, forge_key_state(fleet.a.did, bytes(32)))
        insecure = fleet.ctl.invoke("--node", proxy.address, "--insecure-no-verify", "auth", "--as", fleet.b.did, fleet.a.address, code=1)
        assert "[ROOT_MISMATCH]" not in insecure.stderr
        # The responder: a device whose node is the proxy, which swaps the initiator's key.
        proxy.set(STATE_PROOF, forge_state_proof(fleet.b.did, bytes(32)))
        dev = serve_device(fleet.ctl, fleet.a.did, "--state-dir", str(tmp_path / "a-behind-proxy"), node=proxy.address)
        try:
            fleet.ctl.fail("auth", "--as", fleet.b.did, dev.address, code=1, reason="ROOT_MISMATCH")
        finally:
            code, log = dev.stop()
        assert code == 0 and "[ROOT_MISMATCH]" in log, log


def test_after_revoke_key_the_next_handshake_with_that_device_fails_revoked(fleet: Fleet) -> None:
    fleet.ctl.invoke("auth", "--as", fleet.b.did, fleet.a.address)
    fleet.ctl.invoke("did", "revoke-key", fleet.a.did, "key-1", "--as", fleet.admin)
    # The device still signs with its revoked key: the initiator's ledger check refuses it ...
    fleet.ctl.fail("auth", "--as", fleet.b.did, fleet.a.address, code=1, reason="PEER_KEY_REVOKED")
    # ... and the device itself has no current authentication key left to authenticate with.
    fleet.ctl.fail("auth", "--as", fleet.a.did, fleet.b.address, code=1, reason="UNKNOWN_KEY")
    # SIGTERM stops the device gracefully, and its log names both outcomes.
    code, log = fleet.a.stop()
    assert code == 0, log
    assert "authenticated " in log and "[PEER_KEY_REVOKED]" in log
