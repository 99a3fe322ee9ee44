"""Fuzz targets: C2SP signed notes and checkpoint bodies (docs/transparency.md "Checkpoints as signed notes").

A checkpoint note comes from a node or a witness and travels in proof bundles
and trust policies: ``core.note.parse`` must fail typed (``MALFORMED_NOTE``)
for any bytes, and a note it accepts must encode back to the same bytes;
``core.tlog_checkpoint.parse_body`` likewise, the body writing itself back
byte for byte; and a whole note checked against a 2-of-3 witness policy
(``core.trust.witnessed.verify_note``) must fail typed too.
"""

from __future__ import annotations

import functools

from didnode.core import cosignature, note
from didnode.core.checkpoint import Checkpoint
from didnode.core.tlog_checkpoint import add_signatures, default_origin, parse_body, sign_with_note, to_checkpoint
from didnode.core.trust import TrustedKey, TrustPolicy
from didnode.core.trust.policy import WitnessKey
from didnode.core.trust.witnessed import verify_note
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import T0, signing_key

NODE_KEY = signing_key("note node")
WITNESS_KEYS = [signing_key(f"note witness {i}") for i in range(3)]
WITNESSES = [WitnessKey(f"w{i}.example/witness", bytes(k.verify_key)) for i, k in enumerate(WITNESS_KEYS)]
KID = "did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG#key-1"
TOKENS = ("\u2014 ", "\n\n", "didnode-network ", "didnode-state-root ", "didnode-time-ms ", "didnode.local/local", "+", "=", " ")


@functools.lru_cache(maxsize=1)
def _notes() -> tuple[bytes, ...]:
    cp = Checkpoint("local", 7, b"\x01" * 32, b"\x02" * 32, T0)
    signed = sign_with_note(cp, NODE_KEY, KID, default_origin("local"))
    text = note.parse(signed.note).text
    cosigned = add_signatures(signed, *(cosignature.cosign(text, w.name, k, T0 // 1000) for w, k in zip(WITNESSES, WITNESS_KEYS)))
    return signed.note, cosigned.note


@functools.lru_cache(maxsize=1)
def _policy() -> TrustPolicy:
    return TrustPolicy.create("local", b"\x07" * 32, [TrustedKey(KID, bytes(NODE_KEY.verify_key))], 1, 60_000, None, None, WITNESSES, 2)


@target("signed_note", seeds=lambda: list(_notes()), tokens=TOKENS)
def fuzz_signed_note(data: bytes) -> None:
    """Any bytes as a signed note: typed failure, or a note that encodes back to exactly these bytes."""
    parsed = note.parse(data)
    assert parsed.encode() == data, "a parsed note must encode back byte for byte"


@target("checkpoint_note_body", seeds=lambda: [note.parse(n).text for n in _notes()], tokens=TOKENS)
def fuzz_checkpoint_note_body(data: bytes) -> None:
    """Any bytes as a checkpoint body: typed failure, or a body that writes itself back; its didnode reading typed too."""
    body = parse_body(data)
    assert body.body() == data, "a parsed checkpoint body must write itself back byte for byte"
    to_checkpoint(body)


@target("witnessed_note", seeds=lambda: list(_notes()), tokens=TOKENS)
def fuzz_witnessed_note(data: bytes) -> None:
    """Any bytes as a checkpoint note checked against a 2-of-3 witness policy: typed failure or a checkpoint."""
    verify_note(_policy(), data, T0 + 1_000)


def test_the_seeds_pass() -> None:
    plain, cosigned = _notes()
    for data in (plain, cosigned):
        fuzz_signed_note(data)
        fuzz_checkpoint_note_body(note.parse(data).text)
    assert verify_note(_policy(), cosigned, T0 + 1_000)[1] == 4


test_fuzz = harness.fuzz_tests(__name__)
