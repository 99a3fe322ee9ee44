"""W3C Bitstring Status List v1.0: bitstrings, their encoding, status list credentials.

* The bitstring has at least 131,072 entries (16 KiB, the spec's herd-privacy
  minimum); index 0 is the left-most (most significant) bit of the first byte.
* ``encodedList`` is the multibase base64url form (prefix ``u``, no padding)
  of the GZIP-compressed bitstring. We compress with ``mtime=0`` so that the
  same bits always give the same text.
* One list per purpose: ``revocation`` (a set bit is final) and
  ``suspension`` (reversible). A credential carries one entry per purpose,
  with the same index in both lists.
* Decoding is bounded (a few MiB at most) so that a gzip bomb published as a
  status list cannot exhaust a verifier's memory.

A status list credential is itself a ``vc+jwt``: the issuer signs each new
version and publishes it with the ledger's ``publish`` operation as resource
``revocation-N`` / ``suspension-N`` of its DID (docs/credentials.md).

A list's ``id`` is the URL it was first published under (:mod:`.status_url`);
a verifier compares the ledger resource it names, not the string.

Lists published before random allocation carry a didnode extension in the
revocation list's subject, ``allocated`` (how many indices were handed out,
sequentially); it is still read, and kept when such a list is republished,
but new lists never carry it: the issuer's allocation bookkeeping is sealed
in a separate resource (:mod:`.allocation`), so a list reveals nothing about
how many credentials point into it.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import Any

from didnode.core.credentials.model import (
    PURPOSES,
    STATUS_LIST_CREDENTIAL,
    VC_CONTEXT_V2,
    VERIFIABLE_CREDENTIAL,
    Credential,
    format_time,
)
from didnode.core.credentials.status_url import parse_status_list_url, status_list_url
from didnode.core.encoding import b64url, b64url_decode
from didnode.errors import ClaimsInvalid, StatusListInvalid

MIN_ENTRIES = 131_072
MAX_BYTES = 1 << 21  # 16 Mi entries: far beyond one issuer's needs, bounded for decoding
STATUS_LIST_TYPE = "BitstringStatusList"
RESOURCE_PREFIX = {"revocation": "revocation-", "suspension": "suspension-"}


class Bitstring:
    """A mutable bitstring of ``len(self)`` entries (a multiple of 8, at least :data:`MIN_ENTRIES`)."""

    __slots__ = ("_bits",)

    def __init__(self, data: bytes | bytearray | None = None, size: int = MIN_ENTRIES) -> None:
        if data is None:
            if size < MIN_ENTRIES or size % 8:
                raise StatusListInvalid(f"a status list has a multiple of 8 entries, at least {MIN_ENTRIES}")
            data = bytes(size // 8)
        if len(data) * 8 < MIN_ENTRIES:
            raise StatusListInvalid(f"a status list has at least {MIN_ENTRIES} entries, this one {len(data) * 8}")
        self._bits = bytearray(data)

    def __len__(self) -> int:
        return len(self._bits) * 8

    def get(self, index: int) -> bool:
        """Bit ``index`` (0 = left-most bit of the first byte)."""
        if not 0 <= index < len(self._bits) * 8:
            raise StatusListInvalid(f"status index {index} is outside the list (size {len(self)})", index=index)
        return bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    def set(self, index: int, value: bool) -> None:
        if not 0 <= index < len(self._bits) * 8:
            raise StatusListInvalid(f"status index {index} is outside the list (size {len(self)})", index=index)
        if value:
            self._bits[index >> 3] |= 0x80 >> (index & 7)
        else:
            self._bits[index >> 3] &= ~(0x80 >> (index & 7)) & 0xFF

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    def encode(self) -> str:
        """``encodedList``: 'u' + base64url(gzip(bits))."""
        return "u" + b64url(gzip.compress(bytes(self._bits), compresslevel=9, mtime=0))

    @classmethod
    def decode(cls, encoded: object) -> "Bitstring":
        """Inverse of :meth:`encode`; raises :class:`StatusListInvalid` (bounded, strict)."""
        if not isinstance(encoded, str) or not encoded.startswith("u"):
            raise StatusListInvalid("encodedList must be multibase base64url (prefix 'u')")
        compressed = b64url_decode(encoded[1:], "encodedList", StatusListInvalid)
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing only
        try:
            data = d.decompress(compressed, MAX_BYTES + 1)
        except zlib.error as exc:
            raise StatusListInvalid(f"encodedList is not GZIP data: {exc}") from None
        if len(data) > MAX_BYTES or d.unconsumed_tail:
            raise StatusListInvalid(f"encodedList expands beyond {MAX_BYTES} bytes")
        if not d.eof or d.unused_data:
            raise StatusListInvalid("encodedList is truncated or has trailing bytes")
        return cls(data)


def resource_id(purpose: str, number: int) -> str:
    """The ledger resource id of list ``number`` (1, 2, ...) of ``purpose``: ``revocation-1``."""
    if purpose not in RESOURCE_PREFIX:
        raise ClaimsInvalid(f"statusPurpose {purpose!r} is not one of {', '.join(PURPOSES)}")
    return f"{RESOURCE_PREFIX[purpose]}{number}"


def list_number(resource: str, purpose: str) -> int:
    """The list number of a resource id of ``purpose`` (``revocation-3`` -> 3), or 0 if it is not one."""
    prefix = RESOURCE_PREFIX[purpose]
    tail = resource[len(prefix) :]
    return int(tail) if resource.startswith(prefix) and tail.isdigit() and not tail.startswith("0") else 0


def build_list_claims(
    issuer: str,
    resource: str,
    purpose: str,
    bits: Bitstring,
    now_ms: int,
    allocated: int | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """The payload of a status list credential (BitstringStatusListCredential) issued at ``now_ms``.

    ``url`` is the list's ``id`` (default: the DID URL form); ``allocated``
    only for a list that had it before (see the module docstring).
    """
    url = url if url is not None else status_list_url(issuer, resource)
    secs = now_ms // 1000
    subject: dict[str, Any] = {
        "id": f"{url}#list",
        "type": STATUS_LIST_TYPE,
        "statusPurpose": purpose,
        "encodedList": bits.encode(),
    }
    if allocated is not None:
        subject["allocated"] = allocated
    claims: dict[str, Any] = {
        "@context": [VC_CONTEXT_V2],
        "id": url,
        "type": [VERIFIABLE_CREDENTIAL, STATUS_LIST_CREDENTIAL],
        "issuer": issuer,
        "validFrom": format_time(now_ms),
        "credentialSubject": subject,
        "iss": issuer,
        "sub": subject["id"],
        "jti": url,
        "iat": secs,
    }
    return claims


@dataclass(frozen=True, slots=True)
class StatusList:
    """A decoded status list credential (its signature checked by the caller).

    ``did`` and ``resource_id`` are the ledger resource its ``url`` names;
    ``allocated`` is the legacy extension (None when absent).
    """

    credential: Credential
    url: str
    purpose: str
    bits: Bitstring
    allocated: int | None
    did: str
    resource_id: str


def read_list(cred: Credential) -> StatusList:
    """Check a parsed credential is a well-formed status list credential and decode its bits.

    Raises :class:`StatusListInvalid`.
    """
    if STATUS_LIST_CREDENTIAL not in cred.types:
        raise StatusListInvalid(f"the status list credential is not of type {STATUS_LIST_CREDENTIAL}")
    subject = cred.claims["credentialSubject"]
    if subject.get("type") != STATUS_LIST_TYPE:
        raise StatusListInvalid(f"the status list's credentialSubject type is not {STATUS_LIST_TYPE}")
    purpose = subject.get("statusPurpose")
    if purpose not in PURPOSES:
        raise StatusListInvalid(f"status list purpose {str(purpose)[:40]!r} is not one of {', '.join(PURPOSES)}")
    allocated = subject.get("allocated")
    if allocated is not None and (type(allocated) is not int or allocated < 0):
        raise StatusListInvalid("allocated must be a non-negative integer")
    if not isinstance(cred.id, str):
        raise StatusListInvalid("the status list credential has no id")
    try:
        did, rid = parse_status_list_url(cred.id)
    except ClaimsInvalid as exc:
        raise StatusListInvalid(f"the status list credential's id is not a status list URL: {exc.message}") from None
    bits = Bitstring.decode(subject.get("encodedList"))
    return StatusList(cred, cred.id, purpose, bits, allocated, did, rid)  # type: ignore[arg-type]
