"""Random status list indices and the issuer's sealed allocation record (pure: randomness passed in).

Bitstring Status List v1.0 says an issuer SHOULD assign indices at random,
so that an index reveals nothing about when, or in which order, a credential
was issued (herd privacy). didnode hands out the indices of list ``N`` in
the order of a secret random permutation of ``0 .. size-1``: the k-th
credential of the list gets ``perm[k]``. So no index is handed out twice,
and the issuer's whole bookkeeping is three numbers:

* ``key``: 32 random bytes drawn when the list is created; the permutation
  is a Fisher-Yates shuffle driven by SHAKE-256(``key``) (64-bit draws, so
  the bias is below 2^-40);
* ``size``: the list's number of entries;
* ``allocated``: how many indices were handed out (positions ``0 ..
  allocated-1`` of the permutation).

The record lives on the ledger as resource ``allocation-N`` of the issuer's
DID, so that devices issuing for one DID allocate through the ledger's
compare-and-set (a publish's ``seq``/``prev``), as before. It is sealed
(XSalsa20-Poly1305, a random nonce) under a key derived with keyed BLAKE2b
from the seed of the issuer's assertionMethod key, the DID and the resource
id, so readers of the ledger learn neither the count nor the order; the
published status lists carry no count either. What the ledger still shows
is *when* allocations happened (each is one publish of ``allocation-N``).

Content of ``allocation-N`` (media type ``application/json``)::

    {"box": BASE64URL(nonce(24) || secretbox(key(32) || size(4) || allocated(4))),
     "key": "<key id of the sealing key>", "type": "didnode-status-allocation-v1"}
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from array import array
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from didnode.core.credentials.status_list import MAX_BYTES, MIN_ENTRIES
from didnode.core.did import KEY_ID_RE
from didnode.core.encoding import b64url, b64url_decode
from didnode.errors import DidnodeError, InvalidArgument

RECORD_TYPE = "didnode-status-allocation-v1"
MEDIA_TYPE = "application/json"
RESOURCE_PREFIX = "allocation-"
KEY_BYTES = 32
NONCE_BYTES = SecretBox.NONCE_SIZE
_PLAIN = struct.Struct(">32sII")
_PERSON = b"didnode-alloc-v1"  # BLAKE2b personalization: 16 bytes
MAX_RECORD_CHARS = 512

RandomBytes = Callable[[int], bytes]


def allocation_resource(number: int) -> str:
    """The resource id of list ``number``'s allocation record: ``allocation-3``."""
    return f"{RESOURCE_PREFIX}{number}"


@functools.lru_cache(maxsize=8)
def _table(key: bytes, size: int) -> array[int]:
    # Fisher-Yates over 0..size-1 with 64-bit draws from SHAKE-256(key): about 80 ms for 131,072 entries.
    stream = hashlib.shake_256(b"didnode status index permutation\x00" + key).digest(8 * size)
    perm = array("I", range(size))
    for i in range(size - 1, 0, -1):
        j = int.from_bytes(stream[8 * i : 8 * i + 8], "big") % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


@functools.lru_cache(maxsize=8)
def _inverse(key: bytes, size: int) -> array[int]:
    perm = _table(key, size)
    inv = array("I", bytes(4 * size))
    for position, index in enumerate(perm):
        inv[index] = position
    return inv


@dataclass(frozen=True, slots=True)
class AllocationRecord:
    """The issuer's bookkeeping of one list: its permutation key, size and how many indices are out."""

    key: bytes
    size: int
    allocated: int

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES or self.size < MIN_ENTRIES or self.size % 8 or self.size > MAX_BYTES * 8:
            raise InvalidArgument(f"an allocation record has a {KEY_BYTES}-byte key and a list size of at least {MIN_ENTRIES} (a multiple of 8)")
        if not 0 <= self.allocated <= self.size:
            raise InvalidArgument(f"allocated ({self.allocated}) must be within 0..{self.size}")

    @property
    def free(self) -> int:
        return self.size - self.allocated

    def index(self, position: int) -> int:
        """The index handed out at ``position`` (0-based) of the list's permutation."""
        if not 0 <= position < self.size:
            raise InvalidArgument(f"position {position} is outside 0..{self.size - 1}")
        return _table(self.key, self.size)[position]

    def indices(self, start: int, count: int) -> tuple[int, ...]:
        """The indices at positions ``start .. start+count-1``."""
        if count < 0 or start < 0 or start + count > self.size:
            raise InvalidArgument(f"positions {start}..{start + count - 1} are outside 0..{self.size - 1}")
        return tuple(_table(self.key, self.size)[start : start + count])

    def is_allocated(self, index: int) -> bool:
        """Whether ``index`` was handed out (its position is below ``allocated``)."""
        return 0 <= index < self.size and _inverse(self.key, self.size)[index] < self.allocated

    def taking(self, count: int) -> "AllocationRecord":
        """This record after ``count`` more indices are handed out; :class:`InvalidArgument` if they do not fit."""
        if count < 1 or count > self.free:
            raise InvalidArgument(f"cannot hand out {count} indices: {self.free} are free in this list")
        return AllocationRecord(self.key, self.size, self.allocated + count)


def new_record(random_bytes: RandomBytes, size: int = MIN_ENTRIES) -> AllocationRecord:
    """The record of a fresh list: a new random permutation, nothing handed out yet."""
    return AllocationRecord(random_bytes(KEY_BYTES), size, 0)


def _box_key(seed: bytes, did: str, resource: str) -> bytes:
    return hashlib.blake2b(f"{did}\x00{resource}".encode("utf-8"), key=seed, digest_size=32, person=_PERSON).digest()


def seal_record(record: AllocationRecord, did: str, resource: str, key_id: str, seed: bytes, nonce: bytes) -> str:
    """The ledger content of ``record`` sealed with assertionMethod key ``key_id`` (its 32-byte ``seed``).

    Precondition: ``nonce`` is :data:`NONCE_BYTES` fresh random bytes.
    """
    if len(nonce) != NONCE_BYTES:
        raise InvalidArgument(f"the nonce must be {NONCE_BYTES} random bytes")
    box = SecretBox(_box_key(seed, did, resource)).encrypt(_PLAIN.pack(record.key, record.size, record.allocated), nonce)
    return json.dumps({"box": b64url(bytes(box)), "key": key_id, "type": RECORD_TYPE}, separators=(",", ":"), sort_keys=True)


def sealing_key_id(content: str) -> str | None:
    """The key id a sealed record names, or None if ``content`` is not a sealed record."""
    try:
        doc: Any = json.loads(content) if len(content) <= MAX_RECORD_CHARS else None
    except ValueError:
        return None
    if type(doc) is not dict or set(doc) != {"box", "key", "type"} or doc["type"] != RECORD_TYPE:
        return None
    key_id = doc["key"]
    return key_id if isinstance(key_id, str) and KEY_ID_RE.fullmatch(key_id) and isinstance(doc["box"], str) else None


def open_record(content: str, did: str, resource: str, seeds: Mapping[str, bytes]) -> AllocationRecord | None:
    """The record in ``content`` if one of ``seeds`` (key id -> seed) sealed it, else None.

    None also for content that is not a sealed record of this resource
    (another format, altered, moved from another resource): the caller then
    treats the list as one it cannot allocate in.
    """
    key_id = sealing_key_id(content)
    seed = seeds.get(key_id) if key_id is not None else None
    if seed is None:
        return None
    try:
        raw = b64url_decode(json.loads(content)["box"], "allocation record", InvalidArgument)
        plain = SecretBox(_box_key(seed, did, resource)).decrypt(raw)
        if len(plain) != _PLAIN.size:
            return None
        key, size, allocated = _PLAIN.unpack(plain)
        return AllocationRecord(key, size, allocated)
    except (CryptoError, DidnodeError, ValueError):
        return None


__all__ = [
    "AllocationRecord",
    "MEDIA_TYPE",
    "allocation_resource",
    "new_record",
    "open_record",
    "seal_record",
    "sealing_key_id",
]
