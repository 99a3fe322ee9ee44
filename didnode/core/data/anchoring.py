"""The anchoring rules: which segment heads of an ``anchor`` operation the ledger accepts at a position.

Pure and deterministic, like :func:`didnode.core.keystate.apply`: the DIDs'
states, the streams' states and the anchored heads come in as lookups, so
every node (and the audit) reaches the same verdict on every head.

A head is accepted at ledger position P when:

* its DID is on the ledger and active, and its key is a *current*
  authentication key of the DID (not rotated out, not revoked) at P;
* its signature verifies with that key (for this network);
* it continues its stream: it starts at the stream's next sequence number
  and its ``prev`` is the hash of the stream's last anchored head.

A head covering sequence numbers already anchored is the same head again
(``HEAD_REPEATED``) or a second, different head the device signed for them:
``EQUIVOCATION``, and both signed heads are kept as evidence. An anchor
operation is all or nothing: :meth:`AnchorVerdict.raise_if_rejected` raises
the first refused head's error, whose details list every refused head.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Callable, Sequence

from didnode.core.data.heads import ZERO_HASH, SignedHead, signing_bytes, verify_head
from didnode.core.keystate import ACTIVE, ED25519, REVOKED, ROTATED, DidState
from didnode.errors import (
    DidDeactivated,
    DidnodeError,
    Equivocation,
    HeadRepeated,
    KeyRevoked,
    KeyRotated,
    PrevHeadMismatch,
    SequenceGap,
    UnknownDid,
    UnknownKey,
    WrongSigner,
)

_STREAM = struct.Struct(">Q32sQq")
_ROW = struct.Struct(">QHI32s")


@dataclass(frozen=True, slots=True)
class StreamState:
    """A stream's anchoring state: the next sequence number, the last head's hash, heads anchored, last position."""

    next_seq: int = 0
    last_hash: bytes = ZERO_HASH
    heads: int = 0
    last_position: int = -1

    def encode(self) -> bytes:
        return _STREAM.pack(self.next_seq, self.last_hash, self.heads, self.last_position)

    @classmethod
    def decode(cls, data: bytes) -> "StreamState":
        return cls(*_STREAM.unpack(bytes(data)))


@dataclass(frozen=True, slots=True)
class AnchorRow:
    """Where an anchored head is: log ``position``, its ``index`` in the operation, its ``count`` and ``head_hash``."""

    position: int
    index: int
    count: int
    head_hash: bytes

    def encode(self) -> bytes:
        return _ROW.pack(self.position, self.index, self.count, self.head_hash)

    @classmethod
    def decode(cls, data: bytes) -> "AnchorRow":
        return cls(*_ROW.unpack(bytes(data)))


@dataclass(frozen=True, slots=True)
class Evidence:
    """A device's second head over anchored sequence numbers: the signed head refused, and where the first is."""

    did: str
    stream: str
    first: int
    signed_head: bytes
    anchored_position: int


@dataclass(slots=True)
class AnchorVerdict:
    """What an anchor operation does: per accepted head a stream update and an index row; per refused head its error."""

    streams: dict[tuple[str, str], StreamState] = field(default_factory=dict)
    rows: list[tuple[str, str, int, AnchorRow]] = field(default_factory=list)
    errors: list[tuple[int, DidnodeError]] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)

    def raise_if_rejected(self) -> None:
        """Raise the first refused head's error (details: ``head``, and ``rejected`` for all of them)."""
        if not self.errors:
            return
        index, first = self.errors[0]
        rejected = ";".join(f"{i}:{e.reason}" for i, e in self.errors)
        raise type(first)(f"head {index} of the anchor: {first}", **{**first.details, "head": index, "rejected": rejected})


StreamLookup = Callable[[str, str], StreamState | None]
CoverLookup = Callable[[str, str, int], AnchorRow | None]


def judge_anchor(
    heads: Sequence[SignedHead],
    network: str,
    position: int,
    resolve: Callable[[str], DidState],
    stream_of: StreamLookup,
    covering: CoverLookup,
    verified: set[tuple[bytes, bytes]] | frozenset[tuple[bytes, bytes]] = frozenset(),
) -> AnchorVerdict:
    """Judge each head of an anchor operation at ledger ``position``, in order.

    ``resolve`` gives a DID's current state (raises :class:`UnknownDid`);
    ``stream_of`` a stream's state (None: nothing anchored yet); ``covering``
    the anchored head covering a sequence number (None: none). ``verified``
    holds (public key, :func:`verified_tag`) pairs of heads already verified in bulk. Heads of one
    stream in one operation chain like heads of successive operations.
    """
    verdict = AnchorVerdict()
    batch_rows: dict[tuple[str, str], list[tuple[int, AnchorRow]]] = {}
    for i, signed in enumerate(heads):
        h = signed.head
        key = (h.did, h.stream)
        try:
            _check_key(signed, network, resolve, verified)
            st = verdict.streams.get(key) or stream_of(h.did, h.stream) or StreamState()
            if h.first < st.next_seq:
                mine = next((r for first, r in reversed(batch_rows.get(key, [])) if first <= h.first < first + r.count), None)
                if mine is not None:
                    # The other head is earlier in this very anchor, which is refused: it is anchored nowhere,
                    # so there is no position to name and no evidence row to keep (the gateway holds both).
                    if mine.head_hash == signed.hash:
                        raise HeadRepeated(f"this head of {h.did} stream {h.stream} from {h.first} is head {mine.index} of this anchor too", other=mine.index)
                    raise Equivocation(
                        f"{h.did} signed another head for stream {h.stream} sequence numbers {h.first}..{h.end - 1}, "
                        f"head {mine.index} of this anchor: the device equivocates", did=h.did, other=mine.index,
                    )
                row = covering(h.did, h.stream, h.first)
                if row is not None and row.head_hash == signed.hash:
                    raise HeadRepeated(f"this head of {h.did} stream {h.stream} from {h.first} is anchored at position {row.position}", position=row.position)
                at = row.position if row is not None else -1
                verdict.evidence.append(Evidence(h.did, h.stream, h.first, signed.raw, at))
                raise Equivocation(
                    f"{h.did} signed another head for stream {h.stream} sequence numbers {h.first}..{h.end - 1}, "
                    f"anchored at position {at}: the device equivocates", did=h.did, position=at,
                )
            if h.first > st.next_seq:
                raise SequenceGap(
                    f"the head of {h.did} stream {h.stream} starts at {h.first}; the stream's next sequence number is {st.next_seq}",
                    did=h.did, expected=st.next_seq,
                )
            if h.prev != st.last_hash:
                raise PrevHeadMismatch(f"the head of {h.did} stream {h.stream} from {h.first} does not name the stream's last head as prev", did=h.did)
        except DidnodeError as exc:
            verdict.errors.append((i, exc))
            continue
        verdict.streams[key] = StreamState(h.end, signed.hash, st.heads + 1, position)
        row = AnchorRow(position, i, h.count, signed.hash)
        batch_rows.setdefault(key, []).append((h.first, row))
        verdict.rows.append((h.did, h.stream, h.first, row))
    return verdict


def _check_key(signed: SignedHead, network: str, resolve: Callable[[str], DidState], verified: set[tuple[bytes, bytes]] | frozenset[tuple[bytes, bytes]]) -> None:
    h = signed.head
    state = resolve(h.did)  # UnknownDid
    if state.status != ACTIVE:
        raise DidDeactivated(f"{h.did} is deactivated; its heads are refused", did=h.did)
    try:
        key = state.key(h.key_id)
    except UnknownKey:
        raise WrongSigner(f"{h.kid} is not a key of {h.did}", kid=h.kid) from None
    if key.kind != ED25519 or "authentication" not in key.purposes:
        raise WrongSigner(f"{h.kid} is not an authentication key; a device signs its heads with one", kid=h.kid)
    if key.fate == REVOKED:
        raise KeyRevoked(f"{h.kid} was revoked at position {key.ended_pos}; nothing it signs is accepted", kid=h.kid)
    if key.fate == ROTATED:
        raise KeyRotated(f"{h.kid} was rotated out at position {key.ended_pos}; a head is signed by a current key", kid=h.kid)
    raw = key.raw
    if (raw, verified_tag(signed.signature, signing_bytes(network, signed.head_bytes))) not in verified:
        verify_head(signed, network, raw)


def verified_tag(signature: bytes, signed_bytes: bytes) -> bytes:
    """What the bulk verification records for a head's signature: the signature *and* the hash of the bytes it
    verified over. The signature alone is not enough: a gateway could put the genuine head and an altered copy
    carrying the same signature in one anchor, and the copy would pass as verified (tests/data/test_gateway.py)."""
    return signature + hashlib.sha256(signed_bytes).digest()


__all__ = ["AnchorRow", "AnchorVerdict", "Evidence", "StreamState", "UnknownDid", "judge_anchor", "verified_tag"]
