"""What a device keeps of a reading to prove it later: the device's half of a receipt.

The node's half (the anchor entry, its inclusion proof, the checkpoint, the
device's key state) comes from the ledger; :mod:`didnode.core.data.receipt`
puts both together and verifies them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReadingProof:
    """A reading as its device recorded it, and its place in a closed, signed segment.

    ``record`` is the record bytes (:mod:`.records`); ``payload`` is None when
    the payload is withheld (the commitment alone is proven); ``index`` is the
    reading's position in the segment and ``proof`` its RFC 6962 inclusion
    proof to the segment root; ``signed_head`` the segment's signed head bytes.
    """

    record: bytes
    salt: bytes
    payload: bytes | None
    index: int
    proof: tuple[bytes, ...]
    signed_head: bytes
