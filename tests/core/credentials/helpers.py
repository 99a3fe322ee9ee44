"""A pure in-memory ledger that also keeps ordering times, for credential tests (no LMDB, no network)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nacl.signing import SigningKey

from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.credentials import Issuer, IssuerRecord, Verifier, VerifyPolicy, record_from_versions
from didnode.core.keystate import DidState
from didnode.errors import UnknownResource
from tests.factory import Identity, MemLedger, adopt_rotation, new_create, rotate_op

T0 = 1_750_000_000_000  # ledger time of the first operation (ms)


@dataclass
class TimedLedger(MemLedger):
    """:class:`MemLedger` plus the time of every position and the content of published resources."""

    times: dict[int, int] = field(default_factory=dict)
    resources: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.time = T0

    def submit(self, op: SignedOperation) -> DidState:
        pos = self.position
        self.times[pos] = self.time
        state = super().submit(op)
        parsed = self.parse(op)
        if parsed.type == "publish":
            res = parsed.resource
            assert res is not None
            self.resources[(parsed.did, res["id"])] = res["content"]
        return state

    def at(self, ms: int) -> None:
        """Order the next operation at ``ms``."""
        self.time = ms

    def record(self, did: str) -> IssuerRecord:
        return record_from_versions(self.resolve(did), self.times)

    def fetch(self, did: str, resource_id: str) -> str:
        try:
            return self.resources[(did, resource_id)]
        except KeyError:
            raise UnknownResource(f"{did} has no resource {resource_id}") from None

    # -- conveniences --------------------------------------------------------

    def new_issuer(self) -> tuple[Identity, Issuer]:
        ident, op = new_create()
        self.submit(op)
        return ident, Issuer(ident.did, ident.current, ident.key)

    def rotate(self, ident: Identity) -> Issuer:
        u, auth, nxt, key_id = rotate_op(ident, self.resolve(ident.did))
        self.submit(builder.sign(u, [(builder.next_kid(ident.did), ident.next_key)]))
        adopt_rotation(ident, auth, nxt, key_id)
        return Issuer(ident.did, key_id, auth)

    def revoke(self, ident: Identity, key_id: str) -> None:
        state = self.resolve(ident.did)
        u = builder.revoke(self.network, ident.did, state.seq + 1, state.last, key_id, "compromised", bytes(ident.next_key.verify_key))
        self.submit(builder.sign(u, [(builder.next_kid(ident.did), ident.next_key)]))

    def deactivate(self, ident: Identity) -> None:
        state = self.resolve(ident.did)
        u = builder.deactivate(self.network, ident.did, state.seq + 1, state.last, "retired", bytes(ident.next_key.verify_key))
        self.submit(builder.sign(u, [(builder.next_kid(ident.did), ident.next_key)]))

    def publish(self, ident: Identity, resource_id: str, token: str) -> None:
        state = self.resolve(ident.did)
        u = builder.publish(self.network, ident.did, state.seq + 1, state.last, resource_id, "application/vc+jwt", token)
        self.submit(builder.sign(u, [(ident.kid, ident.key)]))

    def verifier(self, policy: VerifyPolicy = VerifyPolicy(), ttl: int = 0) -> Verifier:
        return Verifier(self.record, self.fetch, policy, ttl)


def device(ledger: TimedLedger) -> Identity:
    ident, op = new_create()
    ledger.submit(op)
    return ident


def signing_key() -> SigningKey:
    return SigningKey.generate()
