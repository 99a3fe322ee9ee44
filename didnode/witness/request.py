"""The ``add-checkpoint`` request body of c2sp.org/tlog-witness, parsed strictly (pure, no I/O).

::

    old <size>\\n                  decimal, no leading zeroes ("0" for zero)
    <base64 hash>\\n               0 to 63 consistency proof lines, 32 bytes each
    \\n                            an empty line
    <checkpoint note>              origin, size, root, extensions, blank line, signatures

The note itself is returned as bytes; :func:`didnode.core.note.parse` and
:func:`didnode.core.tlog_checkpoint.parse_body` judge it. Everything wrong
here raises :class:`~didnode.errors.WitnessRequestMalformed` (HTTP 400).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from didnode.core.note import NoteSignature, parse_signature_line
from didnode.errors import MalformedNote, WitnessRequestMalformed

MAX_PROOF_LINES = 63  # the specification's bound on consistency proof lines
MAX_BODY_BYTES = 64 * 1024  # a checkpoint note with a few signatures is well under 2 KiB
HASH_SIZE = 32
_SIZE = re.compile(rb"(0|[1-9][0-9]{0,19})")
_B64_HASH = re.compile(rb"[A-Za-z0-9+/]{43}=")


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed ``add-checkpoint`` request: the old size, the consistency proof, the note's bytes."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes


def parse_size(token: bytes, what: str) -> int:
    """A tree size in ASCII decimal without leading zeroes, below 2**64."""
    if not _SIZE.fullmatch(token):
        raise WitnessRequestMalformed(f"{what} is not a decimal tree size without leading zeroes: {token[:24]!r}", field=what)
    value = int(token)
    if value >= 1 << 64:
        raise WitnessRequestMalformed(f"{what} {value} does not fit in 64 bits", field=what)
    return value


def _hash(line: bytes, index: int) -> bytes:
    if not _B64_HASH.fullmatch(line):
        raise WitnessRequestMalformed(f"consistency proof line {index} is not a base64 32-byte hash: {line[:48]!r}", line=index)
    try:
        value = base64.b64decode(line, validate=True)
    except binascii.Error:  # pragma: no cover - the pattern admits only valid base64
        raise WitnessRequestMalformed(f"consistency proof line {index} is not base64", line=index) from None
    if base64.b64encode(value) != line:  # non-canonical padding bits
        raise WitnessRequestMalformed(f"consistency proof line {index} is not canonical base64", line=index)
    return value


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Split an ``add-checkpoint`` body into its old size, its proof hashes and the note's bytes.

    Raises :class:`~didnode.errors.WitnessRequestMalformed` for a body over
    :data:`MAX_BODY_BYTES`, a missing or malformed ``old`` line, a proof line
    that is not a canonical base64 32-byte hash, more than
    :data:`MAX_PROOF_LINES` of them, no empty line, or an empty note.
    """
    if len(body) > MAX_BODY_BYTES:
        raise WitnessRequestMalformed(f"the request body is {len(body)} bytes, more than {MAX_BODY_BYTES}", length=len(body))
    head, sep, rest = body.partition(b"\n")
    if not sep or not head.startswith(b"old "):
        raise WitnessRequestMalformed("the request body does not start with an 'old <size>' line", field="old")
    old = parse_size(head[4:], "old size")
    proof: list[bytes] = []
    while True:
        line, sep, after = rest.partition(b"\n")
        if not sep:
            raise WitnessRequestMalformed("the request body has no empty line before the checkpoint", field="proof")
        rest = after
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise WitnessRequestMalformed(f"more than {MAX_PROOF_LINES} consistency proof lines", field="proof")
        proof.append(_hash(line, len(proof)))
    if not rest:
        raise WitnessRequestMalformed("the request body has no checkpoint after the empty line", field="checkpoint")
    return AddCheckpoint(old, tuple(proof), rest)


def encode_add_checkpoint(old_size: int, proof: tuple[bytes, ...] | list[bytes], note: bytes) -> bytes:
    """The request body for ``old_size``, ``proof`` and a signed note (what a log sends)."""
    lines = [f"old {old_size}\n".encode()] + [base64.b64encode(h) + b"\n" for h in proof] + [b"\n", note]
    return b"".join(lines)


SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_RESPONSE_BYTES = 16 * 1024  # a few cosignature lines


def parse_size_conflict(content_type: str, body: bytes) -> int:
    """The tree size a witness holds, from its 409 answer (``text/x.tlog.size``, ``<size>\\n``).

    Raises :class:`~didnode.errors.WitnessRequestMalformed` when the answer is not that."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != SIZE_CONTENT_TYPE:
        raise WitnessRequestMalformed(f"a 409 answer of type {media[:40]!r}, not {SIZE_CONTENT_TYPE}", field="content-type")
    if not body.endswith(b"\n"):
        raise WitnessRequestMalformed("a 409 answer's size does not end in a newline", field="size")
    return parse_size(body[:-1], "held size")


def parse_cosignatures(body: bytes) -> tuple[NoteSignature, ...]:
    """The signature lines of a witness's 200 answer (one or more ``\u2014 name base64\\n``).

    Raises :class:`~didnode.errors.WitnessRequestMalformed` for an empty, oversized or malformed answer."""
    if not body or len(body) > MAX_RESPONSE_BYTES or not body.endswith(b"\n"):
        raise WitnessRequestMalformed(f"a witness answer of {len(body)} bytes is not signature lines", field="cosignature")
    try:
        lines = body.decode("utf-8")[:-1].split("\n")
        return tuple(parse_signature_line(line) for line in lines)
    except (UnicodeDecodeError, MalformedNote) as exc:
        raise WitnessRequestMalformed(f"a witness answer is not signature lines: {exc}", field="cosignature") from None


__all__ = [
    "AddCheckpoint", "HASH_SIZE", "MAX_BODY_BYTES", "MAX_PROOF_LINES", "SIZE_CONTENT_TYPE",
    "encode_add_checkpoint", "parse_add_checkpoint", "parse_cosignatures", "parse_size", "parse_size_conflict",
]
