"""A small pure world for handshake tests: a MemLedger, identities, deterministic randomness, one-call handshakes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

from nacl.signing import SigningKey

from didnode.core import builder
from didnode.core.credentials import IssuerRecord, record_from_versions
from didnode.core.handshake import (
    Challenge,
    Established,
    Fresh,
    Hello,
    Initiator,
    LocalIdentity,
    MemoryNonceStore,
    Responder,
    Response,
    Session,
)
from didnode.core.handshake.messages import CredentialRequest
from didnode.core.keystate import DidState
from didnode.errors import PeerUnknown, UnknownDid
from tests.factory import Identity, MemLedger, new_create

NOW = 1_700_000_100_000
NET = "local"


def det_random(label: str) -> Callable[[int], bytes]:
    """Deterministic "randomness" (distinct per label): runs repeat byte for byte."""
    counter = [0]

    def draw(n: int) -> bytes:
        counter[0] += 1
        return hashlib.shake_256(f"{label}/{counter[0]}".encode()).digest(n)

    return draw


@dataclass
class World:
    """A ledger plus the identities created on it."""

    led: MemLedger = field(default_factory=MemLedger)

    def identity(self, controllers: Sequence[Identity] = (), with_ka: bool = True) -> Identity:
        ident, op = new_create(controllers=controllers, with_ka=with_ka)
        self.led.submit(op)
        return ident

    def local(self, ident: Identity, key_id: str | None = None) -> LocalIdentity:
        kid = key_id or ident.current
        return LocalIdentity.from_signing_key(ident.did, kid, ident.keys[kid])

    def state(self, did: str) -> DidState:
        try:
            return self.led.resolve(did)
        except UnknownDid:
            raise PeerUnknown(f"the peer {did} does not exist on this ledger", did=did) from None

    def submit(self, op: builder.SignedOperation) -> DidState:
        return self.led.submit(op)

    def revoke(self, ident: Identity, key_id: str, by: Identity) -> DidState:
        st = self.led.resolve(ident.did)
        op = builder.sign(builder.revoke(NET, ident.did, st.seq + 1, st.last, key_id, "compromised"), [(by.kid, by.key)])
        return self.submit(op)

    def deactivate(self, ident: Identity, by: Identity) -> DidState:
        st = self.led.resolve(ident.did)
        return self.submit(builder.sign(builder.deactivate(NET, ident.did, st.seq + 1, st.last, "retired"), [(by.kid, by.key)]))

    def issuer_record(self, did: str) -> IssuerRecord:
        """What a credential verifier resolves: the state plus the ledger time of each position (MemLedger: 1 s apart)."""
        state = self.led.resolve(did)
        times = {p: MemLedger().time + 1000 * p for p in range(self.led.position + 1)}
        return record_from_versions(state, times)


@dataclass
class Run:
    """The four messages of one completed handshake and both sides' results."""

    hello: Hello
    challenge: Challenge
    response: Response
    session: Session
    initiator: Established
    responder: Established


def pair(
    w: World,
    ini: Identity,
    rsp: Identity,
    *,
    ni: MemoryNonceStore | None = None,
    nr: MemoryNonceStore | None = None,
    seed: str = "run",
    want: Sequence[CredentialRequest] = (),
    network_i: str = NET,
    network_r: str = NET,
) -> tuple[Initiator, Responder]:
    """An initiator and a responder with deterministic randomness (same ``seed`` -> same messages)."""
    i = Initiator(w.local(ini), network_i, Fresh.draw(det_random(seed + "/i")), ni if ni is not None else MemoryNonceStore(), want=want)
    r = Responder(w.local(rsp), network_r, Fresh.draw(det_random(seed + "/r")), nr if nr is not None else MemoryNonceStore(), peer="ipv4:10.0.0.1")
    return i, r


def complete(w: World, i: Initiator, r: Responder, now: int = NOW) -> Run:
    """Run a whole handshake between ``i`` and ``r`` in memory."""
    h = i.hello(now)
    r.check_hello(h, now)
    c = r.challenge(w.state(h.initiator_did), now)
    i.check_challenge(c, now)
    i.verify_challenge(w.state(c.responder_did))
    resp = i.response()
    r.check_response(resp, now)
    r.recheck(w.state(h.initiator_did))
    s, est_r = r.session()
    i.finish(s)
    est_i = i.recheck(w.state(c.responder_did))
    return Run(h, c, resp, s, est_i, est_r)


def unknown_state(did: str) -> DidState:
    raise UnknownDid(f"{did} unknown")


__all__ = ["NOW", "NET", "World", "Run", "pair", "complete", "det_random", "SigningKey"]
