"""Devices and gateways for device data tests: segment heads signed by a device's keys, anchors signed by a gateway.

Pure helpers over :mod:`didnode.core.data` and :func:`didnode.core.builder.anchor`; the
ledger tests apply the anchors with the node's own apply path (:class:`GovLedger`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.data.heads import ZERO_HASH, Head, SignedHead, sign_head
from didnode.core.data.records import commitment, derive_salt, encode_record
from tests.factory import NET, Identity
from tests.ledger.governed_ledger import GovLedger

CLOSE = 1_700_000_000_000


def fake_root(did: str, stream: str, first: int, count: int, salt: bytes = b"") -> bytes:
    """A segment root: the ledger never sees the records, only the signed root, so any 32 bytes do."""
    return hashlib.sha256(f"{did}/{stream}/{first}/{count}".encode() + salt).digest()


@dataclass
class Stream:
    """A device's stream as the device keeps it: next sequence number and last signed head's hash."""

    device: Identity
    name: str = "temp"
    next_seq: int = 0
    last: bytes = ZERO_HASH
    heads: list[SignedHead] = field(default_factory=list)

    def head(self, count: int = 10, *, first: int | None = None, prev: bytes | None = None, key_id: str | None = None,
             key: object = None, network: str = NET, salt: bytes = b"", advance: bool = True) -> SignedHead:
        """Sign the next segment head (or one with the fields overridden); ``advance`` moves the stream past it."""
        d = self.device
        start = self.next_seq if first is None else first
        h = Head(d.did, key_id or d.current, self.name, start, count, fake_root(d.did, self.name, start, count, salt),
                 self.last if prev is None else prev, CLOSE + start)
        signed = sign_head(h, network, key or d.key)  # type: ignore[arg-type]
        if advance:
            self.next_seq, self.last = h.end, signed.hash
            self.heads.append(signed)
        return signed


def real_segment(did: str, stream: str, first: int, count: int, secret: bytes, payloads: Sequence[bytes]) -> list[bytes]:
    """The record bytes of a real segment (salts derived from ``secret``), for the tests that check roots."""
    return [encode_record(did, stream, first + i, CLOSE + i, commitment(derive_salt(secret, first + i), p)) for i, p in enumerate(payloads)]


def anchor(ledger: GovLedger, gateway: Identity, heads: Sequence[SignedHead | bytes], seq: int | None = None, prev: str | None = None) -> SignedOperation:
    """An anchor of ``heads`` by ``gateway`` at its current chain head on ``ledger`` (or the given ``seq``/``prev``)."""
    if seq is None or prev is None:
        with ledger.store.read() as txn:
            state = ledger.tables.get_state(txn, gateway.did)
        seq, prev = state.seq + 1, state.last
    raw = [h.raw if isinstance(h, SignedHead) else h for h in heads]
    return builder.sign(builder.anchor(ledger.network, gateway.did, seq, prev, raw), [(gateway.kid, gateway.key)])
