"""The witness's cosigning key file (``DATA/witness.key`` unless ``--key FILE``; docs/witness.md).

Text, mode 0600, written once (atomically, fsync'd) on first start::

    didnode-witness-key/1
    name <key name>
    seed <base64 of the 32-byte Ed25519 seed>

The key name is the witness's name in its cosignature lines and verifier key
(e.g. ``witness.example.org/w1``); it is fixed by the first start.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from nacl.signing import SigningKey

from didnode.core.note import COSIGNATURE_V1, verifier_key
from didnode.errors import DidnodeError, WitnessStateCorrupted
from didnode.fileio import write_atomic

HEADER = "didnode-witness-key/1"


def load_or_create(path: str | os.PathLike[str], name: str | None) -> tuple[str, SigningKey, bool]:
    """(name, key, created): read the key file, or create it with ``name`` (required then) and a new key.

    Raises :class:`~didnode.errors.WitnessStateCorrupted` for an unreadable
    file, or a ``name`` other than the one the file holds;
    :class:`~didnode.errors.InvalidArgument` for an invalid key name.
    """
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        if not name:
            raise WitnessStateCorrupted(f"no witness key at {p}, and no name to create one with", path=str(p)) from None
        key = SigningKey.generate()
        verifier_key(name, bytes(key.verify_key), COSIGNATURE_V1)  # InvalidArgument for a bad name, before writing
        seed = base64.b64encode(bytes(key)).decode()
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(p, f"{HEADER}\nname {name}\nseed {seed}\n".encode(), mode=0o600)
        return name, key, True
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessStateCorrupted(f"cannot read the witness key {p}: {exc}", path=str(p)) from None
    lines = text.split("\n")
    if len(lines) != 4 or lines[0] != HEADER or not lines[1].startswith("name ") or not lines[2].startswith("seed ") or lines[3]:
        raise WitnessStateCorrupted(f"{p} is not a {HEADER} file", path=str(p))
    stored = lines[1][5:]
    try:
        seed = base64.b64decode(lines[2][5:], validate=True)
        key = SigningKey(seed)
        verifier_key(stored, bytes(key.verify_key), COSIGNATURE_V1)
    except (binascii.Error, ValueError, DidnodeError) as exc:
        raise WitnessStateCorrupted(f"{p} holds no valid key: {exc}", path=str(p)) from None
    if name and name != stored:
        raise WitnessStateCorrupted(f"{p} is the key of witness {stored!r}, not {name!r} (a witness's name is fixed at its first start)", path=str(p))
    return stored, key, False


__all__ = ["HEADER", "load_or_create"]
