"""verify_history, replay and pick_version over real operations in a real log: nothing hidden, nothing invented."""

from __future__ import annotations

from dataclasses import replace

import pytest

from didnode.core import builder
from didnode.core.checkpoint import Checkpoint
from didnode.core.keystate import DidState
from didnode.core.trust.history import ProvenOperation, pick_version, replay, verify_history
from didnode.errors import HistoryMismatch, InvalidArgument, InvalidProof, MalformedProof, RootMismatch, SequenceMismatch, UnknownVersion
from tests.core.trust.memlog import T0, MemLog
from tests.factory import Identity


class World:
    """A log with a DID that rotated twice and published a resource, between other DIDs' creates."""

    def __init__(self) -> None:
        self.log = MemLog()
        self.log.grow(2)
        self.ident = self.log.create()
        self.other = self.log.create()
        self.log.grow(3)
        self.states = [self.log.fold.states[self.ident.did]]
        self.states.append(self.log.rotate(self.ident))
        self.log.grow(1)
        self.states.append(self.log.publish(self.ident, "status-1", "list v1"))
        self.states.append(self.log.rotate(self.ident))
        self.log.rotate(self.other)
        self.log.grow(2)

    @property
    def did(self) -> str:
        return self.ident.did

    def checkpoint(self, size: int | None = None) -> Checkpoint:
        return self.log.checkpoint(size).checkpoint

    def verify(self, ops: list[ProvenOperation], size: int | None = None) -> list:  # type: ignore[type-arg]
        size = self.log.size if size is None else size
        return verify_history(self.log.record_at(self.did, size), "local", ops, self.checkpoint(size))


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def test_an_honest_history_verifies_and_replays_to_each_version(world: World) -> None:
    ops = world.log.history(world.did)
    versions = world.verify(ops)
    assert [v.seq for v in versions] == [0, 1, 2, 3]
    assert [v.state for v in versions] == world.states
    assert [v.position for v in versions] == world.log.positions[world.did]
    assert versions[-1].state.to_record() == world.log.record_at(world.did, world.log.size)
    assert replay(world.did, ops, "local") == versions


def test_a_history_at_an_earlier_size_verifies_against_that_checkpoint(world: World) -> None:
    size = world.log.positions[world.did][2] + 1  # right after the publish
    versions = world.verify(world.log.history(world.did, size), size)
    assert [v.state for v in versions] == world.states[:3]


def _hidden(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    return ops[:1] + ops[2:]


def _hidden_last(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    return ops[:-1]


def _renumbered_after_hiding(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    """Hide the first rotation and renumber the rest, so the seqs look complete."""
    kept = ops[:1] + ops[2:]
    return [replace(o, seq=i) for i, o in enumerate(kept)] + [replace(ops[-1], seq=len(kept))]


def _invented(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    """An extra rotation, validly signed by the DID's next key, that the log never held, proven with another entry's path."""
    ident = Identity(w.ident.did, dict(w.ident.keys), w.ident.current, w.ident.next_key, None, w.ident.counter)
    st = w.states[-1]
    unsigned = builder.rotate("local", ident.did, st.seq + 1, st.last, bytes(ident.next_key.verify_key), [builder.NewKey("key-9", b"\x01" * 32)], b"\x02" * 32)
    signed = builder.sign(unsigned, [(builder.next_kid(ident.did), ident.next_key)])
    last = ops[-1]
    return ops + [ProvenOperation(w.log.size - 1, last.time_ms + 1, st.seq + 1, signed.payload, signed.proofs, w.log.inclusion(w.log.size - 1))]


def _invented_in_place(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    """The last operation swapped for another of the same seq and prev (validly signed), with the real one's proof."""
    before = w.states[2]
    unsigned = builder.publish("local", w.did, before.seq + 1, before.last, "status-1", "text/plain", "forged list")
    signed = builder.sign(unsigned, [(w.ident.kid, w.ident.key)])
    return ops[:-1] + [replace(ops[-1], payload=signed.payload, proofs=signed.proofs)]


def _altered_payload(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    o = ops[2]
    return ops[:2] + [replace(o, payload=o.payload.replace(b"list v1", b"list v2"))] + ops[3:]


def _altered_time(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    return ops[:1] + [replace(ops[1], time_ms=ops[1].time_ms - 1)] + ops[2:]


def _altered_proofs(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    o = ops[1]
    p = o.proofs[0]
    return ops[:1] + [replace(o, proofs=(replace(p, signature=bytes(64)),))] + ops[2:]


def _wrong_order(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    return [ops[0], ops[2], ops[1], ops[3]]


def _swapped_positions(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    a, b = ops[1], ops[2]
    return [ops[0], replace(a, position=b.position, inclusion=b.inclusion), replace(b, position=a.position, inclusion=a.inclusion), ops[3]]


def _beyond_the_checkpoint(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    return ops[:-1] + [replace(ops[-1], position=w.log.size)]


def _bad_inclusion(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    o = ops[1]
    return ops[:1] + [replace(o, inclusion=(bytes(32),) + o.inclusion[1:])] + ops[2:]


def _short_inclusion(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    return ops[:1] + [replace(ops[1], inclusion=ops[1].inclusion[:-1])] + ops[2:]


def _another_dids_operation(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    """The other DID's rotation (in the log, proven) in place of this DID's last operation."""
    theirs = w.log.history(w.other.did)[1]
    return ops[:-1] + [replace(theirs, seq=3)]


def _an_impossible_proof_list(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    o = ops[1]
    return ops[:1] + [replace(o, proofs=(replace(o.proofs[0], signature=b"\x00" * 10),))] + ops[2:]


def _nothing(w: World, ops: list[ProvenOperation]) -> list[ProvenOperation]:
    return []


FORGERIES = {
    "hidden operation": (_hidden, HistoryMismatch),
    "hidden last operation": (_hidden_last, HistoryMismatch),
    "hidden, the rest renumbered": (_renumbered_after_hiding, InvalidProof),
    "invented operation (appended)": (_invented, InvalidProof),
    "invented operation (in place)": (_invented_in_place, RootMismatch),
    "altered payload": (_altered_payload, RootMismatch),
    "altered time": (_altered_time, RootMismatch),
    "altered signature": (_altered_proofs, RootMismatch),
    "wrong order": (_wrong_order, HistoryMismatch),
    "positions swapped": (_swapped_positions, RootMismatch),
    "entry beyond the checkpoint": (_beyond_the_checkpoint, HistoryMismatch),
    "bad inclusion proof": (_bad_inclusion, RootMismatch),
    "inclusion proof too short": (_short_inclusion, MalformedProof),
    "another DID's operation": (_another_dids_operation, HistoryMismatch),
    "impossible proof list": (_an_impossible_proof_list, HistoryMismatch),
    "no history at all": (_nothing, HistoryMismatch),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_history_is_refused(world: World, name: str) -> None:
    forge, error = FORGERIES[name]
    with pytest.raises(error) as e:
        world.verify(forge(world, world.log.history(world.did)))
    assert isinstance(e.value, InvalidProof)
    assert world.did in str(e.value) or e.value.details.get("did") == world.did


def test_a_history_that_replays_to_another_state_is_refused(world: World) -> None:
    """A history proven in the log but not the one the proven state commits to (state from a later size)."""
    size = world.log.positions[world.did][2] + 1
    ops = world.log.history(world.did, size)
    later_record = world.log.record_at(world.did, world.log.size)
    with pytest.raises(HistoryMismatch):
        verify_history(later_record, "local", ops, world.checkpoint(size))
    # ... and the reverse: the whole history against the state of the earlier size.
    earlier_state = DidState.from_record(world.log.record_at(world.did, size))
    assert earlier_state.seq == 2
    with pytest.raises(HistoryMismatch, match="0..2 are due"):
        verify_history(world.log.record_at(world.did, size), "local", world.log.history(world.did), world.checkpoint())


def test_replay_of_an_invalid_sequence_is_typed(world: World) -> None:
    ops = world.log.history(world.did)
    with pytest.raises(SequenceMismatch):
        replay(world.did, [ops[0], ops[2]], "local")  # the fold's own error (verify_history makes it HistoryMismatch)
    with pytest.raises(HistoryMismatch):
        replay(world.other.did, ops, "local")
    with pytest.raises(HistoryMismatch, match="does not replay"):
        world.verify([ops[0], replace(ops[2], seq=1), replace(ops[1], seq=2), ops[3]])  # each proven; out of order


# -- pick_version ----------------------------------------------------------------------------------


def test_pick_version_by_id_and_time() -> None:
    times = [T0, T0 + 5_000, T0 + 9_500]
    assert pick_version("did:x", times, None, None) == 2
    assert pick_version("did:x", times, 0, None) == 0
    assert pick_version("did:x", times, 2, None) == 2
    with pytest.raises(UnknownVersion):
        pick_version("did:x", times, 3, None)
    with pytest.raises(UnknownVersion):
        pick_version("did:x", times, -1, None)
    iso = "2023-11-14T22:13:20Z"  # T0 is 2023-11-14T22:13:20Z
    assert pick_version("did:x", times, None, iso) == 0
    assert pick_version("did:x", times, None, "2023-11-14T22:13:25Z") == 1  # second precision: the whole second
    assert pick_version("did:x", times, None, "2023-11-14T22:13:29.400Z") == 1
    assert pick_version("did:x", times, None, "2023-11-14T22:13:29.600Z") == 2
    with pytest.raises(UnknownVersion):
        pick_version("did:x", times, None, "2023-11-14T22:13:19Z")
    with pytest.raises(InvalidArgument):
        pick_version("did:x", times, None, "yesterday")
