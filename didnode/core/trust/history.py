"""A DID's history checked against its verified current state: nothing hidden, nothing invented.

Given the DID's state record proven under a verified checkpoint, and its
operations from the create on, each with an RFC 9162 inclusion proof at that
checkpoint's size, :func:`verify_history` checks that

* the entries are exactly seq 0..state.seq, each the log entry at its
  position under the checkpoint (so none is invented or altered);
* replayed in order (each names its predecessor's hash in ``prev``), they
  rebuild exactly the proven state record (so none is hidden: the state
  commits to the last operation's hash and to its seq);

and returns the DID's state after each operation, from which past versions
and the keys valid at a position are computed by the client itself
(:func:`pick_version`), never taken from a node.

Pure. Raises :class:`~didnode.errors.HistoryMismatch` for a history that does
not lead to the state, the :class:`~didnode.errors.InvalidProof` subclasses
of :mod:`didnode.core.transparency_verify` for a bad inclusion proof.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from didnode.core import entry as entry_codec
from didnode.core import operations
from didnode.core.checkpoint import Checkpoint
from didnode.core.document import parse_iso8601
from didnode.core.keystate import DidState
from didnode.core.keystate.transitions import ApplyContext, apply
from didnode.core.operations import Proof
from didnode.core.transparency_verify import verify_inclusion_at
from didnode.errors import DidnodeError, HistoryMismatch, InvalidArgument, InvalidProof, UnknownDid, UnknownVersion


@dataclass(frozen=True, slots=True)
class ProvenOperation:
    """One operation of a DID as a node sent it, with its inclusion proof at the checkpoint's size."""

    position: int
    time_ms: int
    seq: int
    payload: bytes
    proofs: tuple[Proof, ...]
    inclusion: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Version:
    """The DID's state right after its operation ``seq`` (at ``position``, ordered at ``time_ms``)."""

    seq: int
    position: int
    time_ms: int
    state: DidState


def _no_resolve(did: str) -> DidState:
    raise UnknownDid(f"{did}: controllers are not consulted when replaying accepted operations")


def replay(did: str, ops: Sequence[ProvenOperation], network: str) -> list[Version]:
    """The states after each of ``ops``, replayed as accepted operations (their signatures were checked
    when the ledger accepted them; ``inclusion`` is not looked at). Raises the operation's typed error."""
    state: DidState | None = None
    out = []
    for o in ops:
        op = operations.parse(o.payload, o.proofs, network)
        if op.did != did:
            raise HistoryMismatch(f"the history of {did} holds an operation of {op.did[:80]}", did=did)
        state = apply(state, op, ApplyContext(o.position, o.time_ms, _no_resolve, trusted=True))
        out.append(Version(op.seq, o.position, o.time_ms, state))
    return out


def verify_history(state_record: bytes, network: str, ops: Sequence[ProvenOperation], checkpoint: Checkpoint) -> list[Version]:
    """Check ``ops`` (module docstring) against ``state_record``, proven under the verified ``checkpoint``;
    return the version after each operation.

    Preconditions: ``checkpoint`` is verified against the trust policy and
    ``state_record`` is proven under it (a state proof).
    """
    state = DidState.from_record(state_record)
    did = state.did
    check_proven_chain(did, state.seq, ops, checkpoint, "state")
    try:
        versions = replay(did, ops, network)
    except HistoryMismatch:
        raise
    except DidnodeError as exc:
        raise HistoryMismatch(f"the history of {did} does not replay: {exc}", did=did) from None
    if versions[-1].state.to_record() != state_record:
        raise HistoryMismatch(f"the history of {did} replays to another state than its verified one", did=did)
    return versions


def check_proven_chain(did: str, seq: int, ops: Sequence[ProvenOperation], checkpoint: Checkpoint, what: str) -> None:
    """``ops`` are seq 0..``seq`` of ``did`` (or of a governance record), each proven in the log under ``checkpoint``.

    ``what`` names the verified record the chain ends in (in messages). Raises
    :class:`HistoryMismatch` or :class:`InvalidProof`.
    """
    seqs = [o.seq for o in ops]
    if seqs != list(range(seq + 1)):
        raise HistoryMismatch(
            f"the history of {did} holds operations {_span(seqs)}; its verified {what} is at seq {seq}, so 0..{seq} are due",
            did=did,
        )
    for o in ops:
        if o.position >= checkpoint.tree_size:
            raise HistoryMismatch(f"operation {o.seq} of {did} is at position {o.position}, beyond the checkpoint ({checkpoint.tree_size})", did=did)
        if len(o.proofs) > 255 or any(len(p.signature) != entry_codec.SIG_BYTES for p in o.proofs):
            raise HistoryMismatch(f"operation {o.seq} of {did} carries an impossible proof list", did=did)
        leaf = entry_codec.encode(o.position, o.time_ms, o.payload, o.proofs)
        try:
            verify_inclusion_at(checkpoint, leaf, o.position, o.inclusion)
        except InvalidProof as exc:
            raise type(exc)(f"operation {o.seq} of {did} at position {o.position} is not proven in the log: {exc}", did=did) from None


def _span(seqs: Sequence[int]) -> str:
    if not seqs:
        return "none"
    return f"{seqs[0]}..{seqs[-1]} ({len(seqs)})" if len(seqs) > 3 else ", ".join(map(str, seqs))


def pick_version(did: str, times_ms: Sequence[int], version_id: int | None, version_time: str | None) -> int:
    """The index of the version ``version_id``, or of the version in force at ``version_time`` (ISO 8601),
    among versions ordered at ``times_ms``. Raises :class:`UnknownVersion`, :class:`InvalidArgument`."""
    if version_id is not None:
        if not 0 <= version_id < len(times_ms):
            raise UnknownVersion(f"{did} has versions 0..{len(times_ms) - 1}; there is no version {version_id}", did=did)
        return version_id
    if version_time is None:
        return len(times_ms) - 1
    try:
        at = parse_iso8601(version_time)
    except ValueError:
        raise InvalidArgument(f"versionTime {version_time!r} is not an ISO 8601 datetime") from None
    if "." not in version_time:
        # Metadata times have second precision (DID Core); a time without fraction names the whole
        # second, so the displayed versionTime of a version resolves to that version.
        at += 999
    chosen = -1
    for i, t in enumerate(times_ms):
        if t <= at:
            chosen = i
    if chosen < 0:
        raise UnknownVersion(f"{did} did not exist yet at {version_time}", did=did)
    return chosen
