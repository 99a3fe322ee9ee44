"""Test helpers: identities with their secret keys, and a pure in-memory fold of operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from didnode.core import builder
from didnode.core.builder import SignedOperation, UnsignedOperation
from didnode.core.keystate import ApplyContext, DidState, apply
from didnode.core.operations import Operation, parse
from didnode.errors import UnknownDid

NET = "local"


@dataclass
class Identity:
    """A DID with its secret keys, as a device or admin would hold them."""

    did: str
    keys: dict[str, SigningKey]
    current: str
    next_key: SigningKey
    ka: PrivateKey | None = None
    counter: int = 1

    @property
    def key(self) -> SigningKey:
        return self.keys[self.current]

    @property
    def kid(self) -> str:
        return f"{self.did}#{self.current}"


def new_create(
    controllers: Sequence["Identity"] = (), network: str = NET, services: Sequence[dict[str, str]] = (), with_ka: bool = True
) -> tuple[Identity, SignedOperation]:
    auth = SigningKey.generate()
    nxt = SigningKey.generate()
    ka = PrivateKey.generate() if with_ka else None
    unsigned = builder.create(
        network,
        [builder.NewKey("key-1", bytes(auth.verify_key))],
        bytes(nxt.verify_key),
        controllers=[c.did for c in controllers],
        services=services,
        key_agreement=builder.NewAgreementKey("ka-1", bytes(ka.public_key)) if ka else None,
    )
    signers = [(f"{unsigned.did}#key-1", auth)] + [(c.kid, c.key) for c in controllers]
    return Identity(unsigned.did, {"key-1": auth}, "key-1", nxt, ka), builder.sign(unsigned, signers)


def rotate_op(ident: Identity, state: DidState, network: str = NET) -> tuple[UnsignedOperation, SigningKey, SigningKey, str]:
    """An unsigned rotate and the new (auth, next) keys and key id; sign it with ident.next_key."""
    new_auth = SigningKey.generate()
    new_next = SigningKey.generate()
    key_id = f"key-{ident.counter + 1}"
    u = builder.rotate(
        network, ident.did, state.seq + 1, state.last, bytes(ident.next_key.verify_key), [builder.NewKey(key_id, bytes(new_auth.verify_key))], bytes(new_next.verify_key)
    )
    return u, new_auth, new_next, key_id


def adopt_rotation(ident: Identity, new_auth: SigningKey, new_next: SigningKey, key_id: str) -> None:
    ident.keys[key_id] = new_auth
    ident.current = key_id
    ident.next_key = new_next
    ident.counter += 1


@dataclass
class MemLedger:
    """A pure fold of operations over dict state (no LMDB), for core tests."""

    network: str = NET
    states: dict[str, DidState] = field(default_factory=dict)
    position: int = 0
    time: int = 1_700_000_000_000
    seen: set[bytes] = field(default_factory=set)

    def resolve(self, did: str) -> DidState:
        try:
            return self.states[did]
        except KeyError:
            raise UnknownDid(f"{did} unknown") from None

    def parse(self, op: SignedOperation) -> Operation:
        return parse(op.payload, op.proofs, self.network)

    def submit(self, op: SignedOperation) -> DidState:
        parsed = self.parse(op)
        new = apply(self.states.get(parsed.did), parsed, ApplyContext(self.position, self.time, self.resolve))
        self.states[parsed.did] = new
        self.position += 1
        self.time += 1000
        return new
