"""The key state of a DID: :class:`KeyRecord`, :class:`DidState` and the state record.

Holds the records a state is made of, the queries on them (which keys are
current, which could sign at a ledger position, the published resources),
their JSON view for clients (:meth:`DidState.to_json`) and the *state
record* (:meth:`DidState.to_record`): the compact, versioned and canonical
binary encoding that is stored, hashed into the state tree and carried in
state proofs, laid out at the end of this module and in docs/storage.md.

A key's fate is ``current``, ``rotated`` (replaced by rotate/recover; what it
signed while current stays valid) or ``revoked`` (compromised; it never
signs again and, for off-ledger signatures, verifies nothing).

The state transition that produces these states is in
:mod:`didnode.core.keystate.transitions`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from didnode.core import canonical
from didnode.core.encoding import ED25519_PUB, X25519_PUB, multikey_decode
from didnode.errors import DidnodeError, StoreCorrupted, UnknownKey, UnknownResource


ACTIVE = "active"
DEACTIVATED = "deactivated"
CURRENT = "current"
ROTATED = "rotated"
REVOKED = "revoked"
ED25519 = "Ed25519"
X25519 = "X25519"
MAX_KEY_HISTORY = 256
MAX_RESOURCES = 64


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key of the DID, current or past, with its fate.

    Positions are ledger positions: the key was valid for signing new
    operations in ``[added_pos, ended_pos)`` (``ended_pos`` is -1 while current).
    """

    id: str
    kind: str
    multibase: str
    purposes: tuple[str, ...]
    fate: str
    added_seq: int
    added_pos: int
    ended_seq: int = -1
    ended_pos: int = -1
    reason: str = ""

    @property
    def raw(self) -> bytes:
        return multikey_decode(self.multibase, ED25519_PUB if self.kind == ED25519 else X25519_PUB)

    def valid_at(self, position: int) -> bool:
        """Was this key authorized to sign at ledger position ``position``?"""
        return self.added_pos <= position and (self.ended_pos < 0 or position < self.ended_pos)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.kind,
            "publicKeyMultibase": self.multibase,
            "purposes": list(self.purposes),
            "fate": self.fate,
            "addedSeq": self.added_seq,
            "addedPos": self.added_pos,
        }
        if self.ended_pos >= 0:
            out["endedSeq"] = self.ended_seq
            out["endedPos"] = self.ended_pos
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class DidState:
    """The current state of one DID (what the ledger stores per DID)."""

    did: str
    seq: int
    last: str
    status: str
    next: str
    controllers: tuple[str, ...]
    services: tuple[dict[str, str], ...]
    keys: tuple[KeyRecord, ...]
    created_pos: int
    created_time: int
    updated_pos: int
    updated_time: int
    resources: tuple[dict[str, Any], ...] = ()

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def key(self, key_id: str) -> KeyRecord:
        """The key (any fate) with id ``key_id``; raises :class:`UnknownKey`."""
        for k in self.keys:
            if k.id == key_id:
                return k
        raise UnknownKey(f"{self.did} has no key {key_id!r}", did=self.did, key=key_id)

    def current_keys(self, purpose: str | None = None) -> list[KeyRecord]:
        """Current Ed25519 keys, optionally only those with ``purpose``."""
        return [
            k
            for k in self.keys
            if k.fate == CURRENT and k.kind == ED25519 and (purpose is None or purpose in k.purposes)
        ]

    def key_agreement(self) -> KeyRecord | None:
        for k in self.keys:
            if k.fate == CURRENT and k.kind == X25519:
                return k
        return None

    def keys_valid_at(self, position: int) -> list[KeyRecord]:
        """Ed25519 keys that could sign at ledger ``position`` (the "old signatures" question)."""
        return [k for k in self.keys if k.kind == ED25519 and k.valid_at(position)]

    def resource(self, resource_id: str) -> dict[str, Any]:
        """The latest version of a published resource: id, mediaType, hash, position, seq."""
        for r in self.resources:
            if r["id"] == resource_id:
                return r
        raise UnknownResource(f"{self.did} has published no resource {resource_id!r}", did=self.did, resource=resource_id)

    def to_json(self) -> dict[str, Any]:
        out = {
            "did": self.did,
            "seq": self.seq,
            "last": self.last,
            "status": self.status,
            "next": self.next,
            "controllers": list(self.controllers),
            "services": [dict(s) for s in self.services],
            "keys": [k.to_json() for k in self.keys],
            "created": {"pos": self.created_pos, "time": self.created_time},
            "updated": {"pos": self.updated_pos, "time": self.updated_time},
        }
        if self.resources:
            out["resources"] = [dict(r) for r in self.resources]
        return out

    def to_record(self) -> bytes:
        """The binary state record (see "State record" below): what the store keeps,
        what the state tree hashes and what state proofs carry.

        Raises ``ValueError`` for a state that has no record (a field out of
        the encoding's range); states produced by :func:`apply` always have one.
        """
        return _encode_record(self)

    @classmethod
    def from_record(cls, data: bytes) -> "DidState":
        """Inverse of :meth:`to_record`; raises :class:`StoreCorrupted` on bytes it did not write
        (unknown version, truncation, trailing bytes, out-of-range enum or purpose set, bad UTF-8,
        non-canonical or ill-shaped services/resources JSON)."""
        return _decode_record(data)


# --------------------------------------------------------------------------
# The state record: binary encoding of a DidState (docs/storage.md)
# --------------------------------------------------------------------------
#
# All integers big-endian; strings UTF-8 after their byte length.
#
#   u8   version (1)
#   u8   len(did)               u32  seq                32   last (raw SHA-256 of the last operation)
#   u8   status (0 active, 1 deactivated)               u8   len(next): 32, or 0 once deactivated
#   u64  created pos            u64  created time (ms)  u64  updated pos   u64  updated time (ms)
#   u8   number of controllers  u16  len(services JSON) u16  number of keys u16  len(resources JSON)
#   did, next (raw commitment), controllers (each u8 length + DID)
#   services: RFC 8785 JSON of the list, absent (length 0) when empty
#   keys, in state order, each:
#       u8 len(id)  u8 len(publicKeyMultibase)  u16 len(reason)
#       u8 type (0 Ed25519, 1 X25519)  u8 purposes (bit 0 assertionMethod, bit 1 authentication,
#       bit 2 keyAgreement; Ed25519: 1, 2 or 3; X25519: 4)  u8 fate (0 current, 1 rotated, 2 revoked)
#       u32 addedSeq  u64 addedPos  i32 endedSeq  i64 endedPos (both -1 while current)
#       id, publicKeyMultibase, reason
#   resources: RFC 8785 JSON of the list, absent (length 0) when empty
#
# The record is canonical: every length is explicit, every value has one
# encoding, and the decoder accepts exactly what the encoder writes (decode
# then encode returns the same bytes), so SHA-256(record) commits to exactly
# one state.

RECORD_VERSION = 1
_HEAD = struct.Struct(">BBI32sBBQQQQBHHH")
_KEY = struct.Struct(">BBHBBBIQiq")
_HEAD_SIZE = _HEAD.size
# Offsets into the fixed head, for readers that need one field without decoding the record (the
# controller index, didnode.ledger.controlled); derived from _HEAD so they cannot drift from it.
RECORD_DID_LEN_AT = struct.calcsize(">B")
RECORD_STATUS_AT = struct.calcsize(">BBI32s")
RECORD_NEXT_LEN_AT = struct.calcsize(">BBI32sB")
RECORD_CONTROLLERS_AT = struct.calcsize(">BBI32sBBQQQQ")
RECORD_HEAD_SIZE = _HEAD_SIZE
_KEY_SIZE = _KEY.size
_HASH_BYTES = 32

_STATUS_CODES = {ACTIVE: 0, DEACTIVATED: 1}
_STATUS_NAMES = (ACTIVE, DEACTIVATED)
_FATE_CODES = {CURRENT: 0, ROTATED: 1, REVOKED: 2}
_FATE_NAMES = (CURRENT, ROTATED, REVOKED)
# (type, purposes) <-> (type code, purpose bits): exactly the combinations the schema admits.
_KEY_KINDS = {
    (ED25519, ("assertionMethod",)): (0, 1),
    (ED25519, ("authentication",)): (0, 2),
    (ED25519, ("assertionMethod", "authentication")): (0, 3),
    (X25519, ("keyAgreement",)): (1, 4),
}
_KEY_KINDS_BY_CODE = {codes: kind for kind, codes in _KEY_KINDS.items()}
_SERVICE_MEMBERS = {"id": str, "type": str, "serviceEndpoint": str}
_RESOURCE_MEMBERS = {"id": str, "mediaType": str, "hash": str, "pos": int, "seq": int}


def _encode_record(s: DidState) -> bytes:
    last = bytes.fromhex(s.last)
    nxt = bytes.fromhex(s.next) if s.next else b""
    if len(last) != _HASH_BYTES or last.hex() != s.last or nxt.hex() != s.next or (nxt and len(nxt) != _HASH_BYTES):
        raise ValueError(f"state of {s.did}: last and next must be lowercase hex SHA-256 (next may be empty)")
    did = s.did.encode()
    services = canonical.encode(s.services) if s.services else b""
    resources = canonical.encode(s.resources) if s.resources else b""
    keys = s.keys
    try:
        parts = [
            _HEAD.pack(
                RECORD_VERSION, len(did), s.seq, last, _STATUS_CODES[s.status], len(nxt),
                s.created_pos, s.created_time, s.updated_pos, s.updated_time,
                len(s.controllers), len(services), len(keys), len(resources),
            ),
            did,
            nxt,
        ]
        for c in s.controllers:
            cb = c.encode()
            parts.append(bytes((len(cb),)))
            parts.append(cb)
        parts.append(services)
        for k in keys:
            kind, bits = _KEY_KINDS[k.kind, k.purposes]
            if k.ended_seq < -1 or k.ended_pos < -1:
                raise ValueError("endedSeq/endedPos below -1")
            kid = k.id.encode()
            mb = k.multibase.encode()
            reason = k.reason.encode()
            parts.append(
                _KEY.pack(
                    len(kid), len(mb), len(reason), kind, bits, _FATE_CODES[k.fate],
                    k.added_seq, k.added_pos, k.ended_seq, k.ended_pos,
                )
            )
            parts.append(kid)
            parts.append(mb)
            parts.append(reason)
        parts.append(resources)
    except (struct.error, KeyError, ValueError) as exc:
        raise ValueError(f"state of {s.did} has no state record: {exc!r}") from None
    return b"".join(parts)


def _json_list(raw: bytes, members: dict[str, type], what: str) -> tuple[dict[str, Any], ...]:
    """A non-empty canonical JSON list of objects with exactly ``members`` (name -> type)."""
    try:
        value = canonical.decode_canonical(raw)
    except DidnodeError as exc:
        raise StoreCorrupted(f"state record: {what} are not canonical JSON: {exc}") from None
    if not isinstance(value, list) or not value:
        raise StoreCorrupted(f"state record: {what} must be a non-empty JSON list")
    for item in value:
        if not isinstance(item, dict) or item.keys() != members.keys() or any(type(item[m]) is not t for m, t in members.items()):
            raise StoreCorrupted(f"state record: an entry of {what} has the wrong members")
    return tuple(value)


def _decode_record(data: bytes) -> DidState:
    if type(data) is not bytes:
        data = bytes(data)
    try:
        (
            version, dlen, seq, last, status, nlen, cpos, ctime, upos, utime, nctrl, slen, nkeys, rlen,
        ) = _HEAD.unpack_from(data)
        if version != RECORD_VERSION:
            raise StoreCorrupted(f"state record has unknown version {version}")
        if status > 1:
            raise StoreCorrupted(f"state record has unknown status {status}")
        o = _HEAD_SIZE + dlen
        did = data[_HEAD_SIZE:o].decode()
        if nlen == _HASH_BYTES:
            nxt = data[o : o + _HASH_BYTES].hex()
            o += _HASH_BYTES
        elif nlen == 0:
            nxt = ""
        else:
            raise StoreCorrupted(f"state record: next has {nlen} bytes, not 0 or 32")
        controllers = []
        for _ in range(nctrl):
            n = data[o]
            o += 1
            controllers.append(data[o : o + n].decode())
            o += n
        services = _json_list(data[o : o + slen], _SERVICE_MEMBERS, "services") if slen else ()
        o += slen
        keys = []
        for _ in range(nkeys):
            il, ml, rl, kind, bits, fate, aseq, apos, eseq, epos = _KEY.unpack_from(data, o)
            ktype, purposes = _KEY_KINDS_BY_CODE[kind, bits]
            if fate > 2 or eseq < -1 or epos < -1:
                raise StoreCorrupted(f"state record: a key has fate {fate}, endedSeq {eseq}, endedPos {epos}")
            a = o + _KEY_SIZE
            b = a + il
            c = b + ml
            o = c + rl
            keys.append(
                KeyRecord(
                    data[a:b].decode(), ktype, data[b:c].decode(), purposes, _FATE_NAMES[fate],
                    aseq, apos, eseq, epos, data[c:o].decode() if rl else "",
                )
            )
        resources = _json_list(data[o : o + rlen], _RESOURCE_MEMBERS, "resources") if rlen else ()
        o += rlen
        if o != len(data):
            raise StoreCorrupted(
                f"state record is {len(data)} bytes; its fields need {o}" + (" (truncated)" if o > len(data) else "")
            )
        return DidState(
            did, seq, last.hex(), _STATUS_NAMES[status], nxt, tuple(controllers), services, tuple(keys),
            cpos, ctime, upos, utime, resources,
        )
    except KeyError:
        raise StoreCorrupted("state record: a key has an unknown type or purpose set") from None
    except IndexError:  # a controller's length byte beyond the end
        raise StoreCorrupted(f"state record of {len(data)} bytes is truncated") from None
    except (struct.error, UnicodeDecodeError) as exc:
        raise StoreCorrupted(f"state record does not decode: {exc}") from None
