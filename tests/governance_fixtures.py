"""A governed network for the node, client and CLI tests: a real node whose log starts with a genesis.

:func:`start_governed_node` starts ``didnode serve`` on a fresh data dir (the
node writes its own create at position 0), submits the governors' creates
(positions 1..n) and the governance inception signed by every genesis DID (the
node's key read from its ``node.key``, and the governors'), at position n + 1:
exactly a governed genesis, written through the wire. (Once ``didnode init``
lands it can write the same ledger offline.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from nacl.signing import SigningKey

from didnode.client import Client
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.governance import build as gb
from didnode.core.governance.policy import CreateQuota
from tests.conftest import RunningNode, start_node
from tests.factory import Identity, new_create


def node_key(data_dir: Path) -> SigningKey:
    """The key a node keeps in ``DATA/node.key`` (hex seed): its DID's key-1."""
    return SigningKey(bytes.fromhex((data_dir / "node.key").read_text().strip()))


@dataclass
class GovernedNode:
    """A node of a governed network, the genesis identities, and the head of the governance record."""

    node: RunningNode
    node_did: str
    key: SigningKey
    governors: list[Identity]
    governance: str
    inception_position: int
    seq: int = 0
    last: str = ""

    @property
    def address(self) -> str:
        return self.node.address

    def change(self, changes: Sequence[Mapping[str, Any]], signers: Sequence[Identity]) -> SignedOperation:
        """The next governance change signed by ``signers`` (the head is not advanced: :meth:`accepted`)."""
        unsigned = gb.change(self.node.network, self.governance, self.seq + 1, self.last, changes)
        return builder.sign(unsigned, [(g.kid, g.key) for g in signers])

    def accepted(self, op: SignedOperation) -> None:
        self.seq += 1
        self.last = hashlib.sha256(op.payload).hexdigest()

    def stop(self) -> None:
        self.node.stop()


def inception_for(
    network: str, node_did: str, key: SigningKey, governors: Sequence[Identity], threshold: int, create: str
) -> SignedOperation:
    """The inception of a genesis [node create, governors' creates], signed by all of them."""
    unsigned = gb.inception(network, [node_did, *(g.did for g in governors)], [g.did for g in governors], threshold, create)
    return builder.sign(unsigned, [(f"{node_did}#key-1", key), *((g.kid, g.key) for g in governors)])


def start_governed_node(
    data_dir: Path, n_governors: int = 3, threshold: int = 2, create: str = "registrars", network: str = "local"
) -> GovernedNode:
    """Start a node and write a governed genesis on it (module docstring); the caller stops it."""
    node = start_node(data_dir, network)
    try:
        key = node_key(data_dir)
        with Client(node.address) as c:
            info = c.node_info()
            assert info.log_size == 1, "a genesis needs the node's fresh ledger"
            governors = []
            for _ in range(n_governors):
                ident, op = new_create(network=network)
                c.submit(op)
                governors.append(ident)
            inception = inception_for(network, info.node_did, key, governors, threshold, create)
            receipt = c.submit(inception)
    except BaseException:
        node.stop()
        raise
    return GovernedNode(
        node, info.node_did, key, governors, inception.did, receipt.position, last=hashlib.sha256(inception.payload).hexdigest()
    )


def endorsed(op: SignedOperation, endorser: Identity) -> SignedOperation:
    """``op`` (a create) with one more signature: ``endorser``'s (a governor or registrar vouching for it)."""
    extra = builder.sign(builder.UnsignedOperation(op.type, op.network, op.did, op.payload), [(endorser.kid, endorser.key)]).proofs
    return SignedOperation(op.type, op.network, op.did, op.payload, op.proofs + extra)


def new_endorsed(endorser: Identity, network: str = "local") -> tuple[Identity, SignedOperation]:
    """A fresh identity and its create, endorsed by ``endorser``."""
    ident, op = new_create(network=network)
    return ident, endorsed(op, endorser)


def add_registrar(gov: GovernedNode, did: str, quota: CreateQuota | None = None) -> int:
    """Add ``did`` as a registrar (every governor signs); the position of the change."""
    op = gov.change([gb.add_registrar(did, quota)], gov.governors)
    with Client(gov.address) as c:
        position = c.submit(op).position
    gov.accepted(op)
    return position
