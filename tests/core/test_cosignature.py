"""Cosignatures (c2sp.org/tlog-cosignature) and checkpoint bodies (c2sp.org/tlog-checkpoint).

``independent_verify_cosignature`` is written from tlog-cosignature.md's text
(hashlib + cryptography), not from didnode.core.cosignature. A real cosigned
checkpoint of the transparency-dev witness network is the external vector.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.signing import SigningKey

from didnode.core import cosignature, note, tlog_checkpoint
from didnode.core.checkpoint import Checkpoint
from didnode.core.note import NoteSignature
from didnode.core.tlog_checkpoint import TlogCheckpoint
from didnode.errors import BadCosignature, CosignatureTimeSkew, InvalidArgument, MalformedNote

# A checkpoint of the arche2025h1 staging CT log cosigned by the remora.n621.de witness (type 0x04).
REAL_CHECKPOINT = (
    "arche2025h1.staging.ct.transparency.dev\n1432088532\nU7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n\n"
    "\u2014 arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=\n"
    "\u2014 remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==\n"
).encode()
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"


def independent_verify_cosignature(msg: bytes, vkey: str) -> int:
    """Find and verify the cosignature/v1 of ``vkey`` in the signed checkpoint ``msg``; return its time."""
    name, id_hex, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x04 and len(raw) == 33
    assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == id_hex
    s = msg.decode()
    i = s.rindex("\n\n")
    body = s[: i + 1].encode()
    for line in s[i + 2 :].splitlines():
        key_name, b64 = line.removeprefix("\u2014 ").split(" ")
        blob = base64.b64decode(b64)
        if key_name == name and blob[:4].hex() == id_hex:
            (t,) = struct.unpack(">Q", blob[4:12])
            signed = b"cosignature/v1\n" + f"time {t}\n".encode() + body
            try:
                Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[12:], signed)
            except InvalidSignature:
                raise ValueError("bad cosignature") from None
            return t
    raise ValueError("no cosignature of this key")


BODY = TlogCheckpoint("didnode.local/testnet", 5, b"\x11" * 32, ("didnode-network testnet",)).body()
KEY = SigningKey(b"\x05" * 32)
PK = bytes(KEY.verify_key)


def test_real_witness_cosignature_verifies() -> None:
    n = note.parse(REAL_CHECKPOINT)
    body = tlog_checkpoint.parse_body(n.text)
    assert (body.origin, body.tree_size, body.extensions) == ("arche2025h1.staging.ct.transparency.dev", 1432088532, ())
    name, sig_type, pk = note.parse_verifier_key(REMORA_VKEY)
    assert sig_type == note.COSIGNATURE_V1
    t = cosignature.verify_cosignature(n.text, n.signatures[1], pk, name)
    assert t == independent_verify_cosignature(REAL_CHECKPOINT, REMORA_VKEY)
    with pytest.raises(BadCosignature):
        cosignature.verify_cosignature(n.text.replace(b"1432088532", b"1432088533"), n.signatures[1], pk, name)


def test_ours_verify_independently() -> None:
    sig = cosignature.cosign(BODY, "witness.example/w1", KEY, 1_700_000_000)
    assert len(sig.signature) == 72 and sig.signature[:8] == struct.pack(">Q", 1_700_000_000)
    msg = note.Note(BODY, (sig,)).encode()
    vkey = note.verifier_key("witness.example/w1", PK, note.COSIGNATURE_V1)
    assert independent_verify_cosignature(msg, vkey) == 1_700_000_000
    assert cosignature.verify_cosignature(BODY, note.parse(msg).signatures[0], PK, "witness.example/w1") == 1_700_000_000


def test_bad_cosignatures() -> None:
    sig = cosignature.cosign(BODY, "w", KEY, 10)
    other = BODY.replace(b"\n5\n", b"\n6\n")
    cases = [
        (other, sig, "w"),  # another checkpoint
        (BODY, sig, "v"),  # another name
        (BODY, NoteSignature("w", sig.key_hash, sig.signature[:-1]), "w"),  # short
        (BODY, NoteSignature("w", sig.key_hash, struct.pack(">Q", 11) + sig.signature[8:]), "w"),  # time altered
        (BODY, NoteSignature("w", sig.key_hash, struct.pack(">Q", 1 << 63) + sig.signature[8:]), "w"),  # time too large
        (BODY, note.sign_ed25519(BODY, "w", KEY), "w"),  # a plain note signature: another key ID
    ]
    for body, s, name in cases:
        with pytest.raises(BadCosignature):
            cosignature.verify_cosignature(body, s, PK, name)
    with pytest.raises(InvalidArgument):
        cosignature.cosign(BODY, "w", KEY, -1)


def test_skew_bound() -> None:
    cosignature.check_time(1000 + 60, now_s=1000, max_skew_s=60)
    cosignature.check_time(5, now_s=1000, max_skew_s=60)  # old is fine here (staleness is the checkpoint's)
    with pytest.raises(CosignatureTimeSkew):
        cosignature.check_time(1000 + 61, now_s=1000, max_skew_s=60)


def test_checkpoint_body_roundtrip_and_didnode_reading() -> None:
    cp = Checkpoint("testnet", 7, b"\x01" * 32, b"\x02" * 32, 1_700_000_000_123)
    tc = tlog_checkpoint.from_checkpoint(cp, "didnode.local/testnet")
    body = tc.body()
    assert body.decode().splitlines()[:2] == ["didnode.local/testnet", "7"]
    assert tlog_checkpoint.parse_body(body) == tc
    assert tlog_checkpoint.to_checkpoint(tlog_checkpoint.parse_body(body)) == cp
    assert tlog_checkpoint.default_origin("testnet") == "didnode.local/testnet"


ROOT = base64.b64encode(b"\x00" * 32).decode()
BAD_BODIES = {
    "two lines": f"o\n1\n".encode(),
    "no final newline": f"o\n1\n{ROOT}".encode(),
    "leading zero": f"o\n01\n{ROOT}\n".encode(),
    "negative": f"o\n-1\n{ROOT}\n".encode(),
    "too big": f"o\n{1 << 64}\n{ROOT}\n".encode(),
    "short root": f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n".encode(),
    "empty extension": f"o\n1\n{ROOT}\n\n".encode(),
    "space in origin": f"o o\n1\n{ROOT}\n".encode(),
    "empty origin": f"\n1\n{ROOT}\n".encode(),
    "not utf-8": b"o\xff\n1\n" + ROOT.encode() + b"\n",
    "control": f"o\n1\n{ROOT}\nx\x01\n".encode(),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_malformed_bodies(case: str) -> None:
    with pytest.raises(MalformedNote):
        tlog_checkpoint.parse_body(BAD_BODIES[case])


@pytest.mark.parametrize(
    "exts",
    [(), ("didnode-network testnet",), ("didnode-network Bad!", "didnode-state-root " + ROOT, "didnode-time-ms 1"),
     ("didnode-state-root " + ROOT, "didnode-network testnet", "didnode-time-ms 1"),
     ("didnode-network testnet", "didnode-state-root " + ROOT, "didnode-time-ms 01")],
)
def test_didnode_reading_requires_its_extensions(exts: tuple[str, ...]) -> None:
    with pytest.raises(MalformedNote):
        tlog_checkpoint.to_checkpoint(TlogCheckpoint("o", 1, bytes(32), exts))
