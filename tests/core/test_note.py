"""Signed notes (c2sp.org/signed-note): spec and Go vectors, an independent verifier, and every malformation.

The verifier in this file (``independent_open``) is written from the text of
signed-note.md only (hashlib + cryptography), not from didnode.core.note.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.signing import SigningKey

from didnode.core import note
from didnode.core.note import Note, NoteSignature
from didnode.errors import InvalidArgument, MalformedNote, MalformedProof

# golang.org/x/mod/sumdb/note (note.go doc and note_test.go).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_TEXT = b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_NOTE = PETER_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n".encode()
# c2sp.org/signed-note, "Verifier keys / Example".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()


def independent_open(msg: bytes, vkey: str) -> bytes:
    """Verify ``msg`` against the Ed25519 vkey from the specification's words; return the text or raise ValueError."""
    name, id_hex, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x01 and len(raw) == 33
    if hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() != id_hex:
        raise ValueError("vkey ID")
    s = msg.decode("utf-8")
    if any(ord(c) < 0x20 and c != "\n" for c in s) or not s.endswith("\n"):
        raise ValueError("format")
    i = s.rindex("\n\n")
    text, sigs = s[: i + 1], s[i + 2 :]
    verified = False
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            raise ValueError("signature line")
        key_name, b64 = line[2:].split(" ")
        blob = base64.b64decode(b64, validate=True)
        if key_name != name or blob[:4].hex() != id_hex:
            continue  # unknown key: ignored
        try:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], text.encode())
        except InvalidSignature:
            raise ValueError("bad signature from the known key") from None
        verified = True
    if not verified:
        raise ValueError("no known signature")
    return text.encode()


def _peter_key() -> SigningKey:
    return SigningKey(base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:])


def test_go_vector_sign_reproduces_byte_for_byte() -> None:
    sig = note.sign_ed25519(PETER_TEXT, "PeterNeumann", _peter_key())
    assert Note(PETER_TEXT, (sig,)).encode() == PETER_NOTE
    assert note.verifier_key("PeterNeumann", bytes(_peter_key().verify_key)) == PETER_VKEY


def test_vkey_whose_base64_contains_a_plus() -> None:
    vkey = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"  # transparency-dev/formats note tests
    name, sig_type, pk = note.parse_verifier_key(vkey)
    assert (name, sig_type) == ("TEST", note.ED25519) and note.verifier_key(name, pk) == vkey


@pytest.mark.parametrize("vkey,msg", [(PETER_VKEY, PETER_NOTE), (SPEC_VKEY, SPEC_NOTE)])
def test_vectors_parse_and_verify(vkey: str, msg: bytes) -> None:
    name, sig_type, pk = note.parse_verifier_key(vkey)
    assert sig_type == note.ED25519 and note.verifier_key(name, pk) == vkey
    n = note.parse(msg)
    assert n.encode() == msg
    (sig,) = n.signatures
    assert note.matches(sig, name, sig_type, pk) and note.verify_ed25519(n.text, sig, pk)
    assert not note.verify_ed25519(n.text.replace(b"i", b"I", 1), sig, pk)


def test_independent_verifier_accepts_ours() -> None:
    key = SigningKey(b"\x07" * 32)
    text = b"didnode.local/mainnet\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    other = SigningKey(b"\x08" * 32)
    n = Note(text, (note.sign_ed25519(text, "other.example/x", other), note.sign_ed25519(text, "didnode.local/mainnet", key)))
    vkey = note.verifier_key("didnode.local/mainnet", bytes(key.verify_key))
    assert independent_open(n.encode(), vkey) == text
    assert independent_open(PETER_NOTE, PETER_VKEY) == PETER_TEXT  # the verifier itself is right
    with pytest.raises(ValueError):
        independent_open(n.encode().replace(b"mainnet\n3", b"mainnet\n4"), vkey)


def test_text_may_hold_blank_lines_last_one_separates() -> None:
    key = SigningKey(b"\x01" * 32)
    text = b"a\n\nb\n"
    msg = Note(text, (note.sign_ed25519(text, "k", key),)).encode()
    assert note.parse(msg).text == text


def test_key_hash_is_spec_formula() -> None:
    pk = bytes(range(32))
    assert note.key_hash("n", 0x04, pk) == hashlib.sha256(b"n\n\x04" + pk).digest()[:4]


def _sig_line(name: str = "k", blob: bytes = b"\x00" * 68) -> bytes:
    return f"\u2014 {name} {base64.b64encode(blob).decode()}\n".encode()


MALFORMED = {
    "trailing garbage": SPEC_NOTE + b"garbage",
    "trailing newline line": SPEC_NOTE + b"\n",
    "no blank line": b"text\n" + _sig_line(),
    "no signatures": b"text\n\n",
    "hyphen not em dash": b"text\n\n- k " + base64.b64encode(b"\0" * 68) + b"\n",
    "no space after dash": b"text\n\n\xe2\x80\x94k AAAA\n",
    "no signature": b"text\n\n\xe2\x80\x94 k\n",
    "empty key name": b"text\n\n\xe2\x80\x94  " + base64.b64encode(b"\0" * 68) + b"\n",
    "plus in name": b"text\n\n" + _sig_line("a+b"),
    "unicode space in name": b"text\n\n" + _sig_line("a\u00a0b"),
    "two spaces": b"text\n\n" + _sig_line("k").replace(b" k ", b" k  "),
    "bad base64": b"text\n\n\xe2\x80\x94 k !!!!\n",
    "non-canonical base64": b"text\n\n\xe2\x80\x94 k AAAAAB==\n",
    "signature too short": b"text\n\n" + _sig_line(blob=b"\0\0\0\0"),
    "not utf-8": b"t\xffxt\n\n" + _sig_line(),
    "control char": b"te\x01xt\n\n" + _sig_line(),
    "carriage return": b"text\r\n\n" + _sig_line(),
    "too many signatures": b"text\n\n" + _sig_line() * (note.MAX_SIGNATURES + 1),
    "too large": b"x" * note.MAX_NOTE_BYTES + b"\n\n" + _sig_line(),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_notes_are_typed_errors(case: str) -> None:
    with pytest.raises(MalformedNote) as exc:
        note.parse(MALFORMED[case])
    assert isinstance(exc.value, MalformedProof)


def test_signature_looking_lines_before_the_last_blank_line_are_text() -> None:
    msg = b"text\n\n" + _sig_line() + b"\n" + _sig_line()
    n = note.parse(msg)
    assert n.text == b"text\n\n" + _sig_line() and len(n.signatures) == 1


def test_many_signatures_up_to_the_limit_parse() -> None:
    msg = b"text\n\n" + _sig_line() * 16
    assert len(note.parse(msg).signatures) == 16


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong ID
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # bad base64
        "PeterNeumann+c74f20a3",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AQ==",
    ],
)
def test_bad_vkeys(vkey: str) -> None:
    with pytest.raises(MalformedNote):
        note.parse_verifier_key(vkey)


def test_encode_refuses_malformed() -> None:
    sig = NoteSignature("k", b"\0" * 4, b"\0" * 64)
    with pytest.raises(InvalidArgument):
        Note(b"no newline", (sig,)).encode()
    with pytest.raises(InvalidArgument):
        Note(b"text\n", ()).encode()
    with pytest.raises(InvalidArgument):
        Note(b"text\n", (NoteSignature("a b", b"\0" * 4, b"\0" * 64),)).encode()
    with pytest.raises(InvalidArgument):
        Note(b"text\n", (NoteSignature("k", b"\0" * 3, b"\0" * 64),)).encode()


def test_with_signatures_appends_new_only() -> None:
    a = NoteSignature("a", b"\0" * 4, b"\1" * 64)
    b = NoteSignature("b", b"\0" * 4, b"\2" * 64)
    n = Note(b"t\n", (a,)).with_signatures(a, b)
    assert n.signatures == (a, b)
