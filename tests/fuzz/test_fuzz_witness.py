"""Fuzz target: the witness's ``add-checkpoint`` request (c2sp.org/tlog-witness; docs/witness.md).

The body comes from anyone who can reach the witness. ``parse_add_checkpoint``
must fail typed (``WITNESS_REQUEST_MALFORMED``) or give a request that encodes
back to the same bytes; the note and checkpoint inside are then parsed, the
log's signature checked against a fixed key, and the consistency decision made
against a fixed held checkpoint, all of which must fail typed too.
"""

from __future__ import annotations

import functools

from didnode.core import note as note_codec
from didnode.core.merkle import reference
from didnode.core.note import ED25519, Note
from didnode.core.tlog_checkpoint import TlogCheckpoint, parse_body
from didnode.witness.core import Held, judge
from didnode.witness.request import encode_add_checkpoint, parse_add_checkpoint
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import signing_key

ORIGIN = "example.org/fuzz-log"
KEY = signing_key("witness log")
LEAVES = [b"leaf-%d" % i for i in range(12)]
HELD = Held(5, reference.mth(LEAVES[:5]))


def _note(size: int) -> bytes:
    text = TlogCheckpoint(ORIGIN, size, reference.mth(LEAVES[:size]), ()).body()
    return Note(text, (note_codec.sign_ed25519(text, ORIGIN, KEY),)).encode()


@functools.lru_cache(maxsize=1)
def _requests() -> tuple[bytes, ...]:
    return (
        encode_add_checkpoint(0, [], _note(5)),
        encode_add_checkpoint(5, reference.proof(5, LEAVES[:12]), _note(12)),
        encode_add_checkpoint(5, reference.proof(5, LEAVES[:7]), _note(7)),
        encode_add_checkpoint(5, [], _note(5)),
    )


@target("witness_add_checkpoint", seeds=lambda: list(_requests()), tokens=("old ", "\n\n", "\u2014 ", ORIGIN, "="), max_len=8192)
def fuzz_witness_add_checkpoint(data: bytes) -> None:
    """An ``add-checkpoint`` body: parsed (and encoded back unchanged), its note checked and judged against size 5."""
    request = parse_add_checkpoint(data)
    assert encode_add_checkpoint(request.old_size, request.proof, request.note) == data, "a parsed request must encode back to its bytes"
    note = note_codec.parse(request.note)
    checkpoint = parse_body(note.text)
    for sig in note.signatures:
        if note_codec.matches(sig, ORIGIN, ED25519, bytes(KEY.verify_key)):
            note_codec.verify_ed25519(note.text, sig, bytes(KEY.verify_key))
    verdict = judge(HELD, request.old_size, request.proof, checkpoint.tree_size, checkpoint.root_hash)
    assert verdict.accepted or verdict.error is not None


def test_the_seeds_are_cosignable() -> None:
    for data in _requests():
        request = parse_add_checkpoint(data)
        cp = parse_body(note_codec.parse(request.note).text)
        verdict = judge(HELD, request.old_size, request.proof, cp.tree_size, cp.root_hash)
        assert verdict.accepted == (request.old_size == 5), verdict


test_fuzz = harness.fuzz_tests(__name__)
