"""Policies (parsing, evaluation) and the async drivers over an in-memory stream, with real credentials.

Credentials are issued with the core issuer and verified by the core
verifier against the in-memory ledger, including a Bitstring Status List
with the credential's bit set (a revoked credential).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from didnode import errors
from didnode.core.credentials import DEVICE_ATTESTATION, NODE_SESSION, Bitstring, Issuer, Verifier, device_attestation_claims
from didnode.core.handshake import ACCEPT_ANYONE, Established, MemoryNonceStore, Message, load_policy, parse_policy, require_credentials
from didnode.core.handshake.messages import CredentialRequest
from didnode.core.handshake.policy import Findings, evaluate
from didnode.core.keystate import DidState
from didnode.auth.driver import HandshakeInitiator, HandshakeResponder, Party, ResponderSetup, VerifierCredentials, Wallet
from tests.auth.world import NOW, World, det_random
from tests.factory import Identity

# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

DID_X = "did:dnode:QmYi3Tuz3mgd1m4o6heqCLHpaMg2ZvQc2bHiT9SAayDrtn"


def test_policy_parses_from_json_and_toml(tmp_path: Path) -> None:
    rules = {
        "accept": [
            {"name": "admins", "dids": [DID_X]},
            {"controllers": [DID_X], "credentials": [{"type": DEVICE_ATTESTATION, "issuer": DID_X}]},
            {"anyone": True},
        ]
    }
    (tmp_path / "p.json").write_text(json.dumps(rules))
    (tmp_path / "p.toml").write_text(
        f"""
[[accept]]
name = "admins"
dids = ["{DID_X}"]

[[accept]]
controllers = ["{DID_X}"]
credentials = [{{ type = "{DEVICE_ATTESTATION}", issuer = "{DID_X}" }}]

[[accept]]
anyone = true
"""
    )
    assert load_policy(tmp_path / "p.json") == load_policy(tmp_path / "p.toml") == parse_policy(rules)
    assert parse_policy(rules).requests() == (CredentialRequest(DEVICE_ATTESTATION, DID_X),)


@pytest.mark.parametrize(
    "bad, says",
    [
        ({}, "accept"),
        ({"accept": []}, "non-empty"),
        ({"accept": [{}]}, "names no condition"),
        ({"accept": [{"dids": ["did:web:example.com"]}]}, "did:dnode"),
        ({"accept": [{"dids": [DID_X], "role": "x"}]}, "unknown member"),
        ({"accept": [{"credentials": [{"type": "X"}]}]}, "type and issuer"),
        ({"accept": [{"anyone": "yes"}]}, "true or false"),
        ({"version": 2, "accept": [{"anyone": True}]}, "version"),
    ],
)
def test_bad_policies_are_refused_with_the_reason(bad: dict[str, Any], says: str) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        parse_policy(bad)
    assert says in str(exc.value)


def test_unreadable_or_unparsable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument):
        load_policy(tmp_path / "missing.json")
    (tmp_path / "bad.toml").write_text("accept = [")
    with pytest.raises(errors.InvalidArgument):
        load_policy(tmp_path / "bad.toml")


# --------------------------------------------------------------------------
# Evaluation (pure)
# --------------------------------------------------------------------------


def test_evaluation_by_did_controller_and_rejection() -> None:
    w = World()
    admin, other = w.identity(), w.identity()
    dev = w.identity(controllers=[admin])
    by_did = parse_policy({"accept": [{"dids": [other.did]}]})
    by_ctrl = parse_policy({"accept": [{"controllers": [admin.did]}]})
    assert evaluate(by_did, w.state(other.did), Findings()).rule.startswith("rule 1")
    assert "controller" in evaluate(by_ctrl, w.state(dev.did), Findings()).checks[0]
    with pytest.raises(errors.PolicyRejected) as exc:
        evaluate(by_ctrl, w.state(other.did), Findings())
    assert exc.value.reason == "POLICY_REJECTED"
    with pytest.raises(errors.CredentialRequired) as exc2:
        evaluate(require_credentials([CredentialRequest(DEVICE_ATTESTATION, admin.did)]), w.state(dev.did), Findings())
    assert exc2.value.reason == "CREDENTIAL_REQUIRED"


# --------------------------------------------------------------------------
# Drivers over an in-memory stream
# --------------------------------------------------------------------------


class Pipe:
    """Two queues standing in for a gRPC stream; a responder failure reaches the initiator as the rebuilt error."""

    def __init__(self) -> None:
        self.to_r: asyncio.Queue[Message] = asyncio.Queue()
        self.to_i: asyncio.Queue[Message | errors.DidnodeError] = asyncio.Queue()

    async def i_send(self, m: Message) -> None:
        self.to_r.put_nowait(m)

    async def i_recv(self) -> Message:
        m = await self.to_i.get()
        if isinstance(m, errors.DidnodeError):
            rebuilt = errors.error_for_reason(m.reason, m.message, {**m.details, "by": "responder"})
            raise rebuilt
        return m

    async def r_send(self, m: Message) -> None:
        self.to_i.put_nowait(m)

    async def r_recv(self) -> Message:
        return await self.to_r.get()


async def exchange(
    initiator: HandshakeInitiator, responder: HandshakeResponder, **kw: Any
) -> tuple[Established | errors.DidnodeError, Established | errors.DidnodeError]:
    pipe = Pipe()

    async def respond() -> Established | errors.DidnodeError:
        try:
            return await responder.respond(pipe.r_recv, pipe.r_send, "ipv4:10.1.1.1")
        except errors.DidnodeError as err:
            pipe.to_i.put_nowait(err)
            return err

    task = asyncio.create_task(respond())
    try:
        ini: Established | errors.DidnodeError = await initiator.initiate(pipe.i_recv, pipe.i_send, **kw)
    except errors.DidnodeError as err:
        ini = err
    return ini, await task


class Src:
    """Key states straight from the world's ledger (a real source over the in-memory ledger)."""

    def __init__(self, w: World) -> None:
        self.w = w

    async def key_state(self, did: str) -> DidState:
        return self.w.led.resolve(did)


class Setup:
    """A maker that attests devices, an admin, and two devices, with a revocation list for the maker."""

    def __init__(self) -> None:
        self.w = World()
        self.maker = self.w.identity()
        self.admin = self.w.identity()
        self.a = self.w.identity(controllers=[self.admin])
        self.b = self.w.identity(controllers=[self.admin])
        self.issuer = Issuer(self.maker.did, "key-1", self.maker.key)
        self.bits = Bitstring()
        self.lists: dict[tuple[str, str], str] = {}
        self.publish()

    def publish(self) -> None:
        self.lists[(self.maker.did, "revocation-0")] = self.issuer.status_list("revocation", 0, self.bits, NOW - 5000)

    def attest(self, device: Identity, index: int) -> str:
        claims = device_attestation_claims("M1", f"SN-{index}", "hw1", "fw1", NOW - 86_400_000)
        entry = self.issuer.status_entries(0, index)[0]
        return self.issuer.issue(device.did, [DEVICE_ATTESTATION], claims, NOW - 10_000, NOW + 86_400_000, status=[entry])

    def verifier(self) -> VerifierCredentials:
        return VerifierCredentials(Verifier(self.w.issuer_record, lambda did, rid: self.lists[(did, rid)]))

    def party(self, who: Identity, **kw: Any) -> Party:
        return Party(
            self.w.local(who),
            "local",
            MemoryNonceStore(),
            Src(self.w),
            clock_ms=lambda: NOW,
            random_bytes=det_random(f"{who.did}/{id(kw)}"),
            **kw,
        )

    def need_attestation(self) -> Any:
        return require_credentials([CredentialRequest(DEVICE_ATTESTATION, self.maker.did)])


def test_responder_policy_accepts_a_device_with_a_valid_attestation() -> None:
    s = Setup()
    responder = HandshakeResponder(ResponderSetup(s.party(s.b, policy=s.need_attestation(), credentials=s.verifier())))
    initiator = HandshakeInitiator(s.party(s.a, wallet=Wallet.of([s.attest(s.a, 3)])))
    ini, rsp = asyncio.run(exchange(initiator, responder))
    assert isinstance(ini, Established) and isinstance(rsp, Established), (ini, rsp)
    assert any(DEVICE_ATTESTATION in c and "verified" in c for c in rsp.checks)


def test_responder_policy_refuses_a_device_without_the_credential() -> None:
    s = Setup()
    responder = HandshakeResponder(ResponderSetup(s.party(s.b, policy=s.need_attestation(), credentials=s.verifier())))
    initiator = HandshakeInitiator(s.party(s.a))
    ini, rsp = asyncio.run(exchange(initiator, responder))
    assert isinstance(rsp, errors.CredentialRequired) and rsp.reason == "CREDENTIAL_REQUIRED"
    assert isinstance(ini, errors.DidnodeError) and ini.reason == "CREDENTIAL_REQUIRED" and ini.details["by"] == "responder"


def test_responder_policy_refuses_a_revoked_credential() -> None:
    s = Setup()
    token = s.attest(s.a, 7)
    s.bits.set(7, True)
    s.publish()
    responder = HandshakeResponder(ResponderSetup(s.party(s.b, policy=s.need_attestation(), credentials=s.verifier())))
    initiator = HandshakeInitiator(s.party(s.a, wallet=Wallet.of([token])))
    ini, rsp = asyncio.run(exchange(initiator, responder))
    assert isinstance(rsp, errors.CredentialRevoked) and rsp.reason == "REVOKED"
    assert isinstance(ini, errors.DidnodeError) and ini.reason == "REVOKED"


def test_a_credential_about_another_subject_does_not_count() -> None:
    s = Setup()
    stolen = s.attest(s.b, 4)  # B's attestation, presented by A
    responder = HandshakeResponder(ResponderSetup(s.party(s.b, policy=s.need_attestation(), credentials=s.verifier())))
    initiator = HandshakeInitiator(s.party(s.a, wallet=Wallet.of([stolen])))
    _, rsp = asyncio.run(exchange(initiator, responder))
    assert isinstance(rsp, errors.DidnodeError) and rsp.reason == "SUBJECT_MISMATCH"


def test_initiator_requires_a_credential_of_the_responder() -> None:
    s = Setup()
    responder_ok = HandshakeResponder(ResponderSetup(s.party(s.b, wallet=Wallet.of([s.attest(s.b, 1)]))))
    responder_bare = HandshakeResponder(ResponderSetup(s.party(s.b)))
    policy = s.need_attestation()
    ok, _ = asyncio.run(exchange(HandshakeInitiator(s.party(s.a, credentials=s.verifier())), responder_ok, policy=policy))
    assert isinstance(ok, Established) and any(DEVICE_ATTESTATION in c for c in ok.checks)
    bad, rsp = asyncio.run(exchange(HandshakeInitiator(s.party(s.a, credentials=s.verifier())), responder_bare, policy=policy))
    assert isinstance(bad, errors.CredentialRequired)
    assert isinstance(rsp, errors.DidnodeError) and rsp.details.get("by") == "peer", "the responder is told why by an alert"


def test_policy_by_controller_over_the_drivers() -> None:
    s = Setup()
    stranger = s.w.identity()
    policy = parse_policy({"accept": [{"controllers": [s.admin.did]}]})
    responder = HandshakeResponder(ResponderSetup(s.party(s.b, policy=policy)))
    ok, _ = asyncio.run(exchange(HandshakeInitiator(s.party(s.a)), responder))
    assert isinstance(ok, Established)
    _, refused = asyncio.run(exchange(HandshakeInitiator(s.party(stranger)), responder))
    assert isinstance(refused, errors.PolicyRejected)


def test_session_credential_from_a_node_responder_is_delivered_and_verifies() -> None:
    s = Setup()
    node = s.w.identity()
    issuer = Issuer(node.did, "key-1", node.key)

    class Sessions:
        async def refresh(self) -> None:
            return None

        def issue(self, subject: str, session_id: bytes, now_ms: int) -> tuple[str, int]:
            until = now_ms + 900_000
            return issuer.issue(subject, [NODE_SESSION], {"sessionId": session_id.hex()}, now_ms, until), until

    responder = HandshakeResponder(ResponderSetup(s.party(node), sessions=Sessions()))
    ini, rsp = asyncio.run(exchange(HandshakeInitiator(s.party(s.a)), responder, session_credential=True))
    assert isinstance(ini, Established) and ini.credential and ini.expires_ms == NOW + 900_000
    cred = Verifier(s.w.issuer_record).verify(ini.credential, NOW, s.a.did, node.did, NODE_SESSION).raise_if_invalid()
    assert cred.claims["credentialSubject"]["sessionId"] == ini.session_id.hex()
    assert ACCEPT_ANYONE.rules[0].anyone


def test_initiator_timeout_against_a_silent_responder_alerts_and_raises() -> None:
    s = Setup()
    sent: list[Message] = []

    async def run() -> None:
        async def send(m: Message) -> None:
            sent.append(m)

        async def recv() -> Message:
            await asyncio.sleep(10)
            raise AssertionError("unreachable")

        await HandshakeInitiator(s.party(s.a)).initiate(recv, send, timeout_ms=100)

    with pytest.raises(errors.HandshakeTimeout) as exc:
        asyncio.run(run())
    assert exc.value.reason == "HANDSHAKE_TIMEOUT"
    assert type(sent[-1]).__name__ == "Alert" and sent[-1].reason == "HANDSHAKE_TIMEOUT"  # type: ignore[union-attr]
