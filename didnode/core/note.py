"""Signed notes (c2sp.org/signed-note): text signed by one or more keys.

Format (the specification, restated; docs/transparency.md "Signed notes")
-----------------------------------------------------------------------
A signed note is UTF-8 text without control characters other than newline::

    note      = text || "\\n" || signature-line+
    text      = one or more lines, each ending in "\\n" (may contain empty lines)
    signature-line = "\\u2014 " || key name || " " || base64(key ID[4] || signature) || "\\n"

The text is separated from the signatures by the *last* empty line. Key names
are non-empty and contain no Unicode spaces and no ``+``. The key ID is
``SHA-256(name || "\\n" || type byte || public key)[:4]`` (:func:`key_hash`);
the type byte is :data:`ED25519` (0x01) for plain note signatures over the
text and :data:`COSIGNATURE_V1` (0x04) for timestamped cosignatures
(:mod:`didnode.core.cosignature`).

A verifier key ("vkey") is ``name+hex(key ID)+base64(type || public key)``
(:func:`verifier_key`, :func:`parse_verifier_key`).

:func:`parse` is strict: every deviation raises :class:`MalformedNote` (a
:class:`~didnode.errors.MalformedProof`), including base64 that does not
round-trip, more than :data:`MAX_SIGNATURES` signature lines and notes larger
than :data:`MAX_NOTE_BYTES`. Parsing verifies nothing; signature checks are
:func:`verify_ed25519` and :func:`didnode.core.cosignature.verify_cosignature`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from didnode.errors import InvalidArgument, MalformedNote

ED25519: Final = 0x01
COSIGNATURE_V1: Final = 0x04

KEY_HASH_SIZE: Final = 4
ED25519_PUBLIC_KEY_SIZE: Final = 32
ED25519_SIGNATURE_SIZE: Final = 64
MAX_SIGNATURES: Final = 100
"""At most this many signature lines (the specification requires accepting at least 16)."""
MAX_NOTE_BYTES: Final = 1 << 16
"""At most this many bytes in a whole note (text and signatures)."""
MAX_SIGNATURE_BYTES: Final = 4 + 4096
"""At most this many bytes in one decoded signature (key ID included)."""

_EM_DASH: Final = "\u2014 "
# Unicode spaces (Go's unicode.IsSpace plus the Zs category) and "+".
_BAD_NAME_CHARS: Final = re.compile(r"[\s+\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f]")


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the signature bytes (after the ID)."""

    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> bytes:
        """The encoded signature line, newline included. Raises :class:`InvalidArgument` if malformed."""
        _check_name(self.name, InvalidArgument)
        if len(self.key_hash) != KEY_HASH_SIZE:
            raise InvalidArgument(f"note key ID is {len(self.key_hash)} bytes, want {KEY_HASH_SIZE}")
        if not self.signature or len(self.signature) + KEY_HASH_SIZE > MAX_SIGNATURE_BYTES:
            raise InvalidArgument(f"note signature is {len(self.signature)} bytes")
        b64 = base64.b64encode(self.key_hash + self.signature).decode("ascii")
        return f"{_EM_DASH}{self.name} {b64}\n".encode("utf-8")


@dataclass(frozen=True, slots=True)
class Note:
    """A note's text (ending in a newline) and its signatures, in order."""

    text: bytes
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        """``text || "\\n" || signature lines``. Raises :class:`InvalidArgument` on a malformed note."""
        try:
            _check_text(self.text)
        except MalformedNote as exc:
            raise InvalidArgument(exc.message) from None
        if not self.signatures:
            raise InvalidArgument("a signed note needs at least one signature")
        if len(self.signatures) > MAX_SIGNATURES:
            raise InvalidArgument(f"a note carries at most {MAX_SIGNATURES} signatures")
        out = self.text + b"\n" + b"".join(s.line() for s in self.signatures)
        if len(out) > MAX_NOTE_BYTES:
            raise InvalidArgument(f"note is {len(out)} bytes; at most {MAX_NOTE_BYTES}")
        return out

    def with_signatures(self, *more: NoteSignature) -> "Note":
        """This note with ``more`` signatures appended, skipping exact duplicates of ones it has."""
        sigs = list(self.signatures)
        for s in more:
            if s not in sigs:
                sigs.append(s)
        return Note(self.text, tuple(sigs))


def _check_name(name: str, error: type[InvalidArgument] | type[MalformedNote]) -> None:
    if not isinstance(name, str) or not name:
        raise error("note key name is empty")
    if _BAD_NAME_CHARS.search(name) or _CONTROL.search(name) or "\n" in name:
        raise error(f"note key name {name[:60]!r} contains a space, a plus or a control character")


def _check_text(text: bytes) -> None:
    if not isinstance(text, bytes) or not text.endswith(b"\n"):
        raise MalformedNote("note text must end in a newline")
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNote("note text is not UTF-8") from None
    if _CONTROL.search(s):
        raise MalformedNote("note text contains a control character")


def parse(data: bytes) -> Note:
    """Parse a signed note strictly (module docstring); raises :class:`MalformedNote`."""
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedNote("a note is bytes")
    data = bytes(data)
    if len(data) > MAX_NOTE_BYTES:
        raise MalformedNote(f"note is {len(data)} bytes; at most {MAX_NOTE_BYTES}")
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNote("note is not UTF-8") from None
    if _CONTROL.search(s):
        raise MalformedNote("note contains a control character other than newline")
    if not s.endswith("\n"):
        raise MalformedNote("note does not end in a newline (trailing bytes after the last signature line)")
    split = s.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line before its signatures")
    text = s[: split + 1]
    sig_block = s[split + 2 :]
    if not sig_block:
        raise MalformedNote("note has no signature lines after its last blank line")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note carries {len(lines)} signatures; at most {MAX_SIGNATURES}")
    return Note(text.encode("utf-8"), tuple(parse_signature_line(line) for line in lines))


def parse_signature_line(line: str) -> NoteSignature:
    """One signature line without its newline (``\u2014 name base64``); raises :class:`MalformedNote`."""
    if not line.startswith(_EM_DASH):
        raise MalformedNote(f"note signature line {line[:60]!r} does not start with an em dash and a space")
    rest = line[len(_EM_DASH) :]
    name, sep, b64 = rest.partition(" ")
    if not sep:
        raise MalformedNote("note signature line has no space between key name and signature")
    _check_name(name, MalformedNote)
    try:
        raw = base64.b64decode(b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedNote(f"note signature of {name[:60]!r} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != b64:
        raise MalformedNote(f"note signature of {name[:60]!r} is not canonical base64")
    if len(raw) <= KEY_HASH_SIZE or len(raw) > MAX_SIGNATURE_BYTES:
        raise MalformedNote(f"note signature of {name[:60]!r} is {len(raw)} bytes")
    return NoteSignature(name, raw[:KEY_HASH_SIZE], raw[KEY_HASH_SIZE:])


def key_hash(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte key ID: ``SHA-256(name || "\\n" || sig_type || public_key)[:4]``."""
    if not 0 <= sig_type <= 0xFF:
        raise InvalidArgument(f"note signature type {sig_type} is not a byte")
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes((sig_type,)) + bytes(public_key)).digest()[:KEY_HASH_SIZE]


def sign_ed25519(text: bytes, name: str, key: SigningKey) -> NoteSignature:
    """An Ed25519 (type 0x01) note signature of ``text`` by ``key`` under key name ``name``."""
    _check_name(name, InvalidArgument)
    try:
        _check_text(text)
    except MalformedNote as exc:
        raise InvalidArgument(exc.message) from None
    kh = key_hash(name, ED25519, bytes(key.verify_key))
    return NoteSignature(name, kh, bytes(key.sign(text).signature))


def matches(sig: NoteSignature, name: str, sig_type: int, public_key: bytes) -> bool:
    """Whether ``sig`` claims to be by this key: same name and same key ID (the specification's key identity)."""
    return sig.name == name and sig.key_hash == key_hash(name, sig_type, public_key)


def verify_ed25519(text: bytes, sig: NoteSignature, public_key: bytes) -> bool:
    """Whether ``sig`` is a valid Ed25519 (type 0x01) signature of ``text`` by ``public_key``.

    The caller checks :func:`matches` first (signatures of unknown keys are ignored, not failed).
    """
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE or len(sig.signature) != ED25519_SIGNATURE_SIZE:
        return False
    try:
        VerifyKey(bytes(public_key)).verify(text, sig.signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def verifier_key(name: str, public_key: bytes, sig_type: int = ED25519) -> str:
    """The vkey text form ``name+hex(key ID)+base64(type || key)``."""
    _check_name(name, InvalidArgument)
    kh = key_hash(name, sig_type, public_key)
    return f"{name}+{kh.hex()}+{base64.b64encode(bytes((sig_type,)) + bytes(public_key)).decode('ascii')}"


def parse_verifier_key(vkey: str) -> tuple[str, int, bytes]:
    """Parse a vkey into ``(name, sig_type, public_key)``; the key ID must match the key.

    Raises :class:`MalformedNote` on any deviation (Ed25519 types need 32-byte keys).
    """
    if not isinstance(vkey, str):
        raise MalformedNote("a verifier key is a string")
    parts = vkey.split("+", 2)  # the name has no "+", the base64 may
    if len(parts) != 3:
        raise MalformedNote(f"verifier key {vkey[:80]!r} is not name+hash+key")
    name, kh_hex, b64 = parts
    _check_name(name, MalformedNote)
    if not re.fullmatch(r"[0-9a-f]{8}", kh_hex):
        raise MalformedNote(f"verifier key {name[:60]!r} has a key ID that is not 8 lowercase hex digits")
    try:
        raw = base64.b64decode(b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedNote(f"verifier key {name[:60]!r} is not base64") from None
    if len(raw) < 2 or base64.b64encode(raw).decode("ascii") != b64:
        raise MalformedNote(f"verifier key {name[:60]!r} has no key material")
    sig_type, public_key = raw[0], raw[1:]
    if sig_type in (ED25519, COSIGNATURE_V1) and len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise MalformedNote(f"verifier key {name[:60]!r}: an Ed25519 key is {ED25519_PUBLIC_KEY_SIZE} bytes")
    if key_hash(name, sig_type, public_key).hex() != kh_hex:
        raise MalformedNote(f"verifier key {name[:60]!r}: key ID {kh_hex} does not match the key")
    return name, sig_type, public_key
