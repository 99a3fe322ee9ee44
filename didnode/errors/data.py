"""Errors of device data anchoring: segment heads, streams, receipts (docs/data.md).

Part of the one error tree: import from :mod:`didnode.errors`. An anchor
operation is all or nothing: when one of its heads is refused, the operation
is refused with that head's error, whose details name it (``head``: its index)
and every refused head (``rejected``: ``index:REASON`` pairs, ``;``-separated),
so that a gateway can drop them and submit the rest.
"""

from __future__ import annotations

from didnode.errors.base import Conflict, InvalidInput, LocalError, NotFound


class MalformedHead(InvalidInput):
    """A segment head or reading record does not decode (version, lengths, stream name, counts, trailing bytes)."""

    reason = "MALFORMED_HEAD"


class SequenceGap(Conflict):
    """A segment head starts after the next sequence number of its stream: readings in between were never anchored."""

    reason = "SEQUENCE_GAP"


class HeadRepeated(Conflict):
    """This very segment head is anchored already (``position`` detail)."""

    reason = "HEAD_REPEATED"


class PrevHeadMismatch(Conflict):
    """A segment head's ``prev`` is not the hash of its stream's last anchored head."""

    reason = "PREV_HEAD_MISMATCH"


class Equivocation(Conflict):
    """The device signed two different heads covering the same sequence numbers of one stream; the other is anchored at ``position``. Both signed heads are the evidence."""

    reason = "EQUIVOCATION"


class UnknownAnchor(NotFound):
    """No anchored segment head covers this (DID, stream, sequence number)."""

    reason = "UNKNOWN_ANCHOR"


class ReceiptInvalid(InvalidInput):
    """A data receipt does not verify: its reading, Merkle proof, head signature, key validity, inclusion proof or checkpoint (the message says which)."""

    reason = "RECEIPT_INVALID"


class DataStoreInvalid(LocalError):
    """A device's segment store (didnode.data) does not parse, belongs to another DID or network, or cannot go on
    as asked (a closed segment waiting for a key the device no longer holds); the message names the file."""

    reason = "DATA_STORE_INVALID"


class HeadRefused(Conflict):
    """A gateway (or the device's own anchoring) could not anchor a segment head; ``refused`` holds the node's reason."""

    reason = "HEAD_REFUSED"
