"""Devices, segments and anchors on a real node, for the receipt tests (core, client and CLI).

A device DID signs segment heads over real records (salts from a segment
secret, the segment's RFC 6962 tree); a gateway DID anchors them with its
key-1 through the node's ``Submit``. :func:`reading` builds a device's
:class:`ReadingProof` from the core functions alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from didnode.client import Client
from didnode.core import builder
from didnode.core.data.heads import ZERO_HASH, Head, SignedHead, reading_proof, segment_tree, sign_head
from didnode.core.data.reading import ReadingProof
from didnode.core.data.records import commitment, derive_salt, encode_record
from didnode.core.merkle import log_tree
from didnode.core.merkle.hasher import leaf_hash
from tests.factory import Identity, new_create

T0 = 1_750_000_000_000


@dataclass
class Segment:
    """A closed segment as the device keeps it: its records, payloads, secret and signed head."""

    records: list[bytes]
    payloads: list[bytes]
    secret: bytes
    signed: SignedHead

    def reading(self, seq: int, *, payload: bool = True) -> ReadingProof:
        """The device's half of the receipt of reading ``seq`` (its payload unless ``payload`` is False)."""
        h = self.signed.head
        i = seq - h.first
        tree = segment_tree([leaf_hash(r) for r in self.records])
        proof = tuple(reading_proof(tree, i, h.count))
        salt = derive_salt(self.secret, seq)
        return ReadingProof(self.records[i], salt, self.payloads[i] if payload else None, i, proof, self.signed.raw)


@dataclass
class Device:
    """A device DID with one stream."""

    ident: Identity
    network: str
    stream: str = "temp"
    next_seq: int = 0
    last: bytes = ZERO_HASH
    segments: list[Segment] = field(default_factory=list)

    @property
    def did(self) -> str:
        return self.ident.did

    def segment(self, count: int, *, key_id: str | None = None, key: SigningKey | None = None, secret: bytes | None = None) -> Segment:
        """Record ``count`` readings and close the segment, signed by the current key (or ``key_id``/``key``);
        ``secret``: the segment secret (default: random)."""
        secret = os.urandom(32) if secret is None else secret
        first = self.next_seq
        payloads = [f'{{"t":{first + i},"c":{20 + i % 7}}}'.encode() for i in range(count)]
        records = [
            encode_record(self.did, self.stream, first + i, T0 + first + i, commitment(derive_salt(secret, first + i), p))
            for i, p in enumerate(payloads)
        ]
        store = segment_tree([leaf_hash(r) for r in records])
        root = log_tree.root(store, count)
        kid = key_id or self.ident.current
        head = Head(self.did, kid, self.stream, first, count, root, self.last, T0 + first + count)
        signed = sign_head(head, self.network, key or self.ident.keys[kid])
        self.next_seq, self.last = head.end, signed.hash
        seg = Segment(records, payloads, secret, signed)
        self.segments.append(seg)
        return seg


def create(client: Client, network: str) -> Identity:
    """A new DID on the node (its own controller)."""
    ident, op = new_create(network=network)
    client.submit(op)
    return ident


def anchor(client: Client, gateway: Identity, heads: list[SignedHead], network: str) -> int:
    """Anchor ``heads`` signed by the gateway's key-1; returns the anchor's log position."""
    state = client.state(gateway.did)
    op = builder.sign(builder.anchor(network, gateway.did, state.seq + 1, state.last, [h.raw for h in heads]), [(gateway.kid, gateway.key)])
    return client.submit(op).position
