"""didctl refuses every forgery by default (issue #15): a real lying proxy in front of an honest node.

The proxy (tests/lying_proxy.py) rewrites chosen replies and re-signs nothing.
didctl talks to it with the honest node's trust policy (the entry is copied
to the proxy's address, as if the attacker sat on the node's address): every
forged answer fails with one line naming why, nothing is signed on top of a
forged state, and only --insecure-no-verify shows the forgery (with its warning).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Iterator

import pytest
from click.testing import Result

from cli.trust_store import TrustStore
from didnode.api.v1 import ledger_pb2 as pb
from didnode.core.encoding import ED25519_PUB, multikey_encode
from didnode.errors import InvalidProof, all_reasons
from tests.cli.conftest import Didctl
from tests.lying_proxy import (
    HISTORY,
    INCLUSION,
    KEY_STATE,
    RESOLVE,
    RESOLVE_WITH_PROOF,
    STATE_PROOF,
    LyingProxy,
    Recorder,
    Rewrite,
    attacker_key,
    forge_checkpoint_with,
    forge_key_state,
    forge_resolve,
    forge_resolve_with_proof,
    forge_state_proof,
)

# Every reason a refused answer may give: the proof failures (a forged answer proves nothing).
PROOF_REASONS = {r for r, cls in all_reasons().items() if issubclass(cls, InvalidProof)}
EVIL = bytes(attacker_key().verify_key)
EVIL_MULTIKEY = multikey_encode(EVIL, ED25519_PUB)
CLAIMS = '{"model":"X1","serialNumber":"SN1","hardwareVersion":"1","firmwareVersion":"1.0","manufactureTime":"2025-01-31T12:00:00Z"}'


@dataclass
class World:
    ctl: Didctl
    admin: str
    dev: str


@pytest.fixture(scope="module")
def world(ctl: Didctl) -> World:
    admin = ctl.create()
    dev = ctl.create("--controller", admin)
    ctl.invoke("did", "rotate", dev)
    return World(ctl, admin, dev)


@pytest.fixture
def proxy(world: World) -> Iterator[LyingProxy]:
    with LyingProxy(world.ctl.node.address) as p:
        # The attacker answers on an address the client trusts for the honest node.
        policy = TrustStore(world.ctl.trust_dir).get(world.ctl.node.address)
        assert policy is not None
        TrustStore(world.ctl.trust_dir).put(p.address, policy)
        yield p


def via(world: World, proxy: LyingProxy, *args: str, code: int = 0, input: str | None = None) -> Result:
    return world.ctl.invoke(*args, code=code, input=input, DIDNODE_ADDR=proxy.address)


def refused(world: World, proxy: LyingProxy, *args: str, code: int = 1) -> str:
    """Run through the proxy: exit ``code``, nothing on stdout, one line naming a proof failure; its reason."""
    result = via(world, proxy, *args, code=code)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("didctl: "), result.stderr
    reason = lines[0].rsplit("[", 1)[1].rstrip("]")
    assert reason in PROOF_REASONS, lines[0]
    assert EVIL_MULTIKEY not in result.stdout
    return reason


def history_of(did: str, change: Callable[[pb.HistoryResponse], None]) -> Rewrite:
    """History: ``change`` applied to the pages of ``did``'s history (other DIDs' untouched)."""

    def rewrite(request: bytes, reply: bytes) -> bytes:
        if pb.HistoryRequest.FromString(request).did != did:
            return reply
        m = pb.HistoryResponse.FromString(reply)
        change(m)
        return m.SerializeToString()

    return rewrite


def hide_last_operation(m: pb.HistoryResponse) -> None:
    """The DID's last operation left out (the last page ends one early)."""
    if not m.HasField("next_after_seq") and len(m.entries) > 1:
        del m.entries[-1]


def shift_first_time(m: pb.HistoryResponse) -> None:
    """The DID's create dated a day earlier (its past versions would move)."""
    if m.entries and m.entries[0].seq == 0:
        m.entries[0].time_ms -= 86_400_000


def test_honest_answers_pass_through_the_proxy(world: World, proxy: LyingProxy) -> None:
    assert json.loads(via(world, proxy, "--json", "did", "resolve", world.dev).stdout)["didDocument"]["id"] == world.dev
    assert proxy.calls.get(RESOLVE_WITH_PROOF) == 1 and RESOLVE not in proxy.calls


def test_forged_resolution(world: World, proxy: LyingProxy) -> None:
    proxy.set(RESOLVE_WITH_PROOF, forge_resolve_with_proof(world.dev, EVIL))
    proxy.set(RESOLVE, forge_resolve(world.dev, EVIL))
    refused(world, proxy, "did", "resolve", world.dev)
    shown = via(world, proxy, "--insecure-no-verify", "did", "resolve", world.dev)
    assert EVIL_MULTIKEY in shown.stdout
    assert "WARNING: --insecure-no-verify: answers from" in shown.stderr and proxy.address in shown.stderr


def test_forged_key_state(world: World, proxy: LyingProxy) -> None:
    proxy.set(STATE_PROOF, forge_state_proof(world.dev, EVIL))
    proxy.set(KEY_STATE, forge_key_state(world.dev, EVIL))
    refused(world, proxy, "did", "keys", world.dev)
    refused(world, proxy, "did", "keys", world.dev, "--at-position", "0")
    shown = via(world, proxy, "--insecure-no-verify", "--json", "did", "keys", world.dev)
    assert EVIL_MULTIKEY in shown.stdout and "WARNING" in shown.stderr


def test_forged_history(world: World, proxy: LyingProxy) -> None:
    proxy.set(HISTORY, history_of(world.dev, hide_last_operation))
    refused(world, proxy, "did", "history", world.dev)
    refused(world, proxy, "did", "resolve", world.dev, "--version-id", "0")
    hidden = json.loads(via(world, proxy, "--insecure-no-verify", "--json", "did", "history", world.dev).stdout)
    assert [e["type"] for e in hidden["entries"]] == ["create"]  # the rotate is gone: believed unverified
    proxy.set(HISTORY, history_of(world.dev, shift_first_time))
    refused(world, proxy, "did", "resolve", world.dev, "--version-id", "0")
    refused(world, proxy, "did", "resolve", world.dev, "--version-time", "2999-01-01T00:00:00Z")


def test_nothing_is_signed_on_a_forged_state(world: World, proxy: LyingProxy) -> None:
    seq = world.ctl.json("did", "keys", world.dev)["seq"]
    proxy.set(STATE_PROOF, forge_state_proof(world.dev, EVIL))
    refused(world, proxy, "did", "rotate", world.dev)
    refused(world, proxy, "did", "update", world.dev, "--rotate-key-agreement")
    refused(world, proxy, "did", "revoke-key", world.dev, "key-1", "--as", world.admin)
    refused(world, proxy, "did", "deactivate", world.dev, "--as", world.admin, "--yes")
    assert world.ctl.json("did", "keys", world.dev)["seq"] == seq  # nothing reached the ledger
    world.ctl.invoke("did", "rotate", world.dev)  # and the keystore is still in step with it


def test_checkpoint_signed_by_an_untrusted_key(world: World, proxy: LyingProxy) -> None:
    proxy.set(STATE_PROOF, forge_checkpoint_with(attacker_key(), "did:dnode:QmAttacker#key-1"))
    assert refused(world, proxy, "did", "keys", world.dev) == "UNTRUSTED_CHECKPOINT_SIGNER"


def test_replayed_old_answer_is_a_rollback(world: World, proxy: LyingProxy) -> None:
    recorder = Recorder()
    proxy.set(STATE_PROOF, recorder)
    via(world, proxy, "did", "keys", world.dev)
    world.ctl.create()  # the log grows
    via(world, proxy, "did", "keys", world.dev)  # the client has now verified the larger log
    proxy.set(STATE_PROOF, recorder.replay(0))
    assert refused(world, proxy, "did", "keys", world.dev) == "LOG_ROLLBACK"


def test_credential_verification_refuses_a_forged_issuer(world: World, proxy: LyingProxy) -> None:
    token = world.ctl.invoke("vc", "issue", "--issuer", world.admin, "--subject", world.dev, "--claims", CLAIMS).stdout.strip()
    assert "VALID" in via(world, proxy, "vc", "verify", "-", input=token).stdout
    proxy.set(STATE_PROOF, forge_state_proof(world.admin, EVIL))
    result = via(world, proxy, "vc", "verify", "-", input=token, code=1)
    assert result.stderr.count("\n") == 1 and result.stderr.rstrip().rsplit("[", 1)[1].rstrip("]") in PROOF_REASONS


def test_an_old_status_list_is_refused(world: World, proxy: LyingProxy) -> None:
    """The proxy answers the suspension list's fetch with the list as it was before the suspension."""
    issued = world.ctl.json("vc", "issue", "--issuer", world.admin, "--subject", world.dev, "--claims", CLAIMS, "--status")
    recorder = Recorder()
    proxy.set(INCLUSION, recorder)
    before = json.loads(via(world, proxy, "--json", "vc", "status", "-", input=issued["token"]).stdout)
    assert not any(e["set"] for e in before["entries"])
    old = {_published_resource(r): r for r in recorder.replies if _published_resource(r)}
    world.ctl.invoke("vc", "suspend", "-", input=issued["token"])
    # Every list entry the client asks for is answered with that list as it was before the suspension.
    proxy.set(INCLUSION, lambda request, reply: old.get(_published_resource(reply), reply))
    result = via(world, proxy, "vc", "status", "-", input=issued["token"], code=1)
    assert result.stderr.count("\n") == 1 and result.stderr.rstrip().rsplit("[", 1)[1].rstrip("]") in PROOF_REASONS
    assert "SET" not in result.stdout


def _published_resource(reply: bytes) -> str:
    """The resource id a GetInclusionProof reply's entry publishes ('' for any other entry)."""
    from didnode.api.v1 import transparency_pb2 as tpb
    from didnode.core import entry as entry_codec

    payload = json.loads(entry_codec.decode(tpb.InclusionProof.FromString(reply).entry).payload)
    return payload["resource"]["id"] if payload.get("type") == "publish" else ""
