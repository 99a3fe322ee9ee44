"""A governed network for tests: genesis DIDs with their keys, and governance operations signed by them.

Pure helpers over :mod:`didnode.core.governance.build`; the ledger tests apply the
operations with the node's own ``apply_batch`` and the core tests with the rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from didnode.core import builder
from didnode.core.builder import SignedOperation, UnsignedOperation
from didnode.core.governance import build as gb
from didnode.core.governance.policy import CreateQuota, PublishQuota
from tests.factory import NET, Identity, new_create


@dataclass
class Gov:
    """The governors, the inception and the chain head of a test network's governance."""

    genesis: list[tuple[Identity, SignedOperation]]
    governors: list[Identity]
    inception: SignedOperation
    seq: int = 0
    last: str = ""
    network: str = NET
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def did(self) -> str:
        return self.inception.did

    def genesis_ops(self) -> list[SignedOperation]:
        return [op for _, op in self.genesis] + [self.inception]

    def change(self, changes: Sequence[Mapping[str, Any]], signers: Sequence[Identity] | None = None) -> SignedOperation:
        """The next change, signed by ``signers`` (default: every governor); does not advance the head."""
        unsigned = gb.change(self.network, self.did, self.seq + 1, self.last, changes)
        who = self.governors if signers is None else signers
        return builder.sign(unsigned, [(g.kid, g.key) for g in who])

    def accepted(self, op: SignedOperation) -> None:
        """Advance the head past ``op`` (the ledger accepted it)."""
        self.seq += 1
        self.last = hashlib.sha256(op.payload).hexdigest()


def governed(
    n_governors: int = 3,
    threshold: int = 2,
    create: str = "registrars",
    registrars: Mapping[str, CreateQuota] | None = None,
    publish: PublishQuota | None = None,
    extra_genesis: Sequence[tuple[Identity, SignedOperation]] = (),
    network: str = NET,
) -> Gov:
    """A genesis: ``extra_genesis`` creates first (e.g. a registrar), then the governors', then the inception."""
    governors = [new_create(network=network) for _ in range(n_governors)]
    genesis = list(extra_genesis) + governors
    inc = gb.inception(
        network, [i.did for i, _ in genesis], [i.did for i, _ in governors], threshold, create, registrars=registrars, publish=publish
    )
    signed = builder.sign(inc, [(i.kid, i.key) for i, _ in genesis])
    gov = Gov(genesis, [i for i, _ in governors], signed, network=network)
    gov.last = hashlib.sha256(signed.payload).hexdigest()
    return gov


def endorsed(op: SignedOperation, endorser: Identity) -> SignedOperation:
    """``op`` (a create) with one more signature: ``endorser``'s, vouching for it."""
    unsigned = UnsignedOperation(op.type, op.network, op.did, op.payload)
    extra = builder.sign(unsigned, [(endorser.kid, endorser.key)]).proofs
    return SignedOperation(op.type, op.network, op.did, op.payload, op.proofs + extra)
