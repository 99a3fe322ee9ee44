"""Checkpoint bodies in the C2SP format (c2sp.org/tlog-checkpoint), with didnode's extension lines.

The note text of a checkpoint (docs/transparency.md "Checkpoints as signed notes")::

    <origin>\\n                          e.g. didnode.local/mainnet (schema-less URL, no spaces, no "+")
    <tree size>\\n                       ASCII decimal, no leading zeroes
    <base64 RFC 6962 log root>\\n
    didnode-network <network>\\n         extension lines, in this order, all three required
    didnode-state-root <base64 32 bytes>\\n      by :func:`to_checkpoint`; others are refused there
    didnode-time-ms <decimal ms since the Unix epoch>\\n

:func:`parse_body` accepts any well-formed checkpoint body (other logs' too,
e.g. for a witness); :func:`to_checkpoint` is the didnode reading of it, which
requires exactly the three didnode extension lines. Everything here is pure.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from nacl.signing import SigningKey

from didnode.core import note as note_codec
from didnode.core.checkpoint import Checkpoint, SignedCheckpoint, sign
from didnode.core.merkle.hasher import HASH_SIZE
from didnode.core.operations import NETWORK_RE
from didnode.errors import InvalidArgument, MalformedNote

NETWORK_EXT: Final = "didnode-network"
STATE_ROOT_EXT: Final = "didnode-state-root"
TIME_EXT: Final = "didnode-time-ms"
DEFAULT_ORIGIN_PREFIX: Final = "didnode.local/"
MAX_ORIGIN_BYTES: Final = 255
MAX_BODY_BYTES: Final = 8192

_DECIMAL: Final = re.compile(r"0|[1-9][0-9]{0,19}")
_ORIGIN_BAD: Final = re.compile(r"[\s+\x00-\x1f\x7f]")


def default_origin(network: str) -> str:
    """The origin a node uses when none is configured: ``didnode.local/<network>``."""
    return DEFAULT_ORIGIN_PREFIX + network


def check_origin(origin: str) -> str:
    """Return ``origin`` if it is a valid origin (non-empty, ≤255 bytes, no spaces, ``+`` or controls), else :class:`InvalidArgument`."""
    if not isinstance(origin, str) or not origin or len(origin.encode("utf-8")) > MAX_ORIGIN_BYTES or _ORIGIN_BAD.search(origin):
        raise InvalidArgument(f"checkpoint origin {str(origin)[:60]!r} must be 1..{MAX_ORIGIN_BYTES} bytes without spaces, '+' or controls")
    return origin


@dataclass(frozen=True, slots=True)
class TlogCheckpoint:
    """The text of a C2SP checkpoint: origin, tree size, root hash and opaque extension lines."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> bytes:
        """The note text (each line newline-terminated). Raises :class:`InvalidArgument` on impossible fields."""
        check_origin(self.origin)
        if not 0 <= self.tree_size < 1 << 64:
            raise InvalidArgument(f"checkpoint tree size {self.tree_size} is out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise InvalidArgument("checkpoint root hash must be 32 bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext or re.search(r"[\x00-\x1f]", ext):
                raise InvalidArgument("checkpoint extension lines must be non-empty single lines")
        lines = [self.origin, str(self.tree_size), base64.b64encode(self.root_hash).decode("ascii"), *self.extensions]
        return ("\n".join(lines) + "\n").encode("utf-8")


def _b64_32(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedNote(f"checkpoint {what} is not base64") from None
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode("ascii") != value:
        raise MalformedNote(f"checkpoint {what} must be canonical base64 of {HASH_SIZE} bytes")
    return raw


def _decimal(value: str, what: str) -> int:
    if not _DECIMAL.fullmatch(value) or int(value) >= 1 << 64:
        raise MalformedNote(f"checkpoint {what} {value[:30]!r} is not a decimal below 2^64 without leading zeroes")
    return int(value)


def parse_body(text: bytes) -> TlogCheckpoint:
    """Parse a checkpoint note text strictly; raises :class:`MalformedNote`."""
    if not isinstance(text, (bytes, bytearray)) or len(text) > MAX_BODY_BYTES:
        raise MalformedNote("checkpoint body must be bytes of at most 8192")
    try:
        s = bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNote("checkpoint body is not UTF-8") from None
    if not s.endswith("\n"):
        raise MalformedNote("checkpoint body does not end in a newline")
    lines = s[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNote("checkpoint body has fewer than three lines")
    if any(not line for line in lines):
        raise MalformedNote("checkpoint body has an empty line")
    if re.search(r"[\x00-\x09\x0b-\x1f]", s):
        raise MalformedNote("checkpoint body contains a control character")
    origin = lines[0]
    try:
        check_origin(origin)
    except InvalidArgument as exc:
        raise MalformedNote(exc.message) from None
    return TlogCheckpoint(origin, _decimal(lines[1], "tree size"), _b64_32(lines[2], "root hash"), tuple(lines[3:]))


def from_checkpoint(cp: Checkpoint, origin: str) -> TlogCheckpoint:
    """The C2SP checkpoint of a didnode checkpoint under ``origin`` (the three didnode extension lines)."""
    return TlogCheckpoint(
        check_origin(origin),
        cp.tree_size,
        cp.log_root,
        (
            f"{NETWORK_EXT} {cp.network}",
            f"{STATE_ROOT_EXT} {base64.b64encode(cp.state_root).decode('ascii')}",
            f"{TIME_EXT} {cp.time_ms}",
        ),
    )


def to_checkpoint(tc: TlogCheckpoint) -> Checkpoint:
    """The didnode reading of a C2SP checkpoint; :class:`MalformedNote` unless its extensions are exactly didnode's three."""
    if len(tc.extensions) != 3:
        raise MalformedNote(f"a didnode checkpoint has exactly 3 extension lines, got {len(tc.extensions)}")
    values: list[str] = []
    for line, key in zip(tc.extensions, (NETWORK_EXT, STATE_ROOT_EXT, TIME_EXT)):
        name, sep, value = line.partition(" ")
        if name != key or not sep:
            raise MalformedNote(f"checkpoint extension line {line[:60]!r} is not '{key} <value>'")
        values.append(value)
    network, state_b64, time_s = values
    if not NETWORK_RE.fullmatch(network):
        raise MalformedNote(f"checkpoint network {network[:40]!r} is not a network id")
    return Checkpoint(network, tc.tree_size, tc.root_hash, _b64_32(state_b64, "state root"), _decimal(time_s, "time"))


def sign_with_note(checkpoint: Checkpoint, key: SigningKey, kid: str, origin: str) -> SignedCheckpoint:
    """Sign ``checkpoint`` both ways: the old signature (over ``didnode/checkpoint/v1``) and a C2SP
    checkpoint note under ``origin`` whose one signature is the node's Ed25519 note signature, key name ``origin``."""
    text = from_checkpoint(checkpoint, origin).body()
    note = note_codec.Note(text, (note_codec.sign_ed25519(text, origin, key),))
    old = sign(checkpoint, key, kid)
    return SignedCheckpoint(checkpoint, kid, old.signature, note.encode())


def add_signatures(signed: SignedCheckpoint, *signatures: note_codec.NoteSignature) -> SignedCheckpoint:
    """``signed`` with ``signatures`` (e.g. witness cosignatures) appended to its note, duplicates skipped.

    Raises :class:`MalformedNote` when ``signed`` has no note or a malformed one."""
    if not signed.note:
        raise MalformedNote("the checkpoint has no note to add signatures to")
    note = note_codec.parse(signed.note).with_signatures(*signatures)
    return SignedCheckpoint(signed.checkpoint, signed.kid, signed.signature, note.encode())


def note_origin(signed: SignedCheckpoint) -> str | None:
    """The origin of ``signed``'s note (what a trust policy's ``origin`` must say), ``None`` without a note.

    Nothing is verified; raises :class:`MalformedNote` when the note does not parse."""
    if not signed.note:
        return None
    return parse_body(note_codec.parse(signed.note).text).origin
