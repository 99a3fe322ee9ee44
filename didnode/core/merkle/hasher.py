"""RFC 6962 / RFC 9162 SHA-256 tree hashing: the only hash code of the package.

* ``leaf_hash(d)   = SHA-256(0x00 || d)``
* ``node_hash(l, r) = SHA-256(0x01 || l || r)``
* ``EMPTY_ROOT     = SHA-256("")`` (the MTH of the empty list)

The distinct one-byte prefixes are the domain separation of RFC 6962 section
2.1: a leaf can never be passed off as an interior node (second-preimage
attack on the tree) because the two hash inputs differ in their first byte.

The sparse state tree (``sparse.py``) reuses the same two functions, so a
verifier needs nothing but this module and ``hashlib``.

Hot loops elsewhere in the package inline ``_sha256(NODE_PREFIX + l + r)``
instead of calling :func:`node_hash`, to save a Python call per hash; any
such inlined expression must stay byte-identical to :func:`node_hash`.
"""

from __future__ import annotations

import hashlib
from typing import Final

HASH_SIZE: Final = 32
"""Size in bytes of every hash this package produces or accepts."""

LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""MTH({}) of RFC 6962: SHA-256 of the empty string (e3b0c442...b855)."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Return ``SHA-256(0x00 || data)``, the RFC 6962 hash of one leaf.

    Precondition: none; ``data`` may be any bytes, including empty.
    """
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``SHA-256(0x01 || left || right)``, an RFC 6962 interior node.

    Precondition: ``left`` and ``right`` are 32-byte hashes. Not checked here
    (this is on every hot path); verifiers check sizes before hashing.
    """
    return _sha256(NODE_PREFIX + left + right).digest()
