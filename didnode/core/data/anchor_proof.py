"""The ledger's half of a data receipt: where a segment head is anchored, and the proofs of it.

What ``DataService.GetAnchor`` answers (proto/didnode/v1/data.proto), as a
value: the anchor entry and its place, the checkpoint that covers it, the
entry's inclusion proof and the genesis consistency proof at that
checkpoint's size, and the device DID's state record with its state proof
under the same checkpoint. Nothing here is verified:
:func:`didnode.core.data.receipt.verify` does, offline. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.merkle.encoding import SparseProof


@dataclass(frozen=True, slots=True)
class AnchorProof:
    """The anchor of the head covering a reading, under one checkpoint.

    ``position``: the anchor entry's log position; ``head_index``: the head's
    index in the anchor's ``heads``; ``first``/``count``: the segment's
    sequence range; ``entry``: the log entry bytes; ``inclusion``: RFC 9162
    PATH(position, D[checkpoint size]); ``genesis_consistency``: RFC 9162
    PROOF(1, D[checkpoint size]); ``state_record``/``state_proof``: the device
    DID's state under the checkpoint's state root.
    """

    did: str
    stream: str
    position: int
    head_index: int
    first: int
    count: int
    entry: bytes
    checkpoint: SignedCheckpoint
    inclusion: tuple[bytes, ...]
    genesis_consistency: tuple[bytes, ...]
    state_record: bytes
    state_proof: SparseProof
