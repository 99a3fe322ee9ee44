"""A run's chunks and their records in the journal.

Devices go through a run in chunks (:class:`Chunk`). The journal
(``provision.journal``, docs/provisioning.md) holds the run's header, then an
``alloc`` record per status-list allocation, a ``plan`` record per chunk
(appended and fsync'd before anything of the chunk is submitted; a later plan
of a chunk, re-signed, replaces the earlier) and a ``done`` record per
finished chunk. This module turns a chunk into its plan record and back
(:func:`plan_record`, :func:`chunk_from_plan`) and sorts a journal's records
when a run resumes (:func:`replay`). A plan's secrets (device seeds, next-key
seeds) are one secretbox under the run's journal key, derived from the
keystore's master key (:meth:`didnode.keystore.Keystore.purpose_key`).
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import nacl.exceptions
import nacl.utils
from nacl.bindings import crypto_secretbox, crypto_secretbox_open

from didnode.client import Allocation, Receipt
from didnode.core.credentials.allocation import AllocationRecord
from didnode.core.builder import SignedOperation
from didnode.core.encoding import b64url, b64url_decode
from didnode.core.operations import Proof
from didnode.errors import DidnodeError, JournalCorrupted
from didnode.provisioning.devices import AUTH_KEY_ID
from didnode.provisioning.worker import SECRET_BYTES

JOURNAL_FORMAT = "didctl-provision-journal"
JOURNAL_VERSION = 1
JOURNAL_CHECK = b"didctl provision journal v1"  # sealed under the journal key in the header's "check"


@dataclass
class Chunk:
    """One planned chunk (from a new plan or the journal)."""

    index: int
    first: int
    time_ms: int
    kid: str
    serials: list[str]
    dids: list[str]
    payloads: list[bytes]
    sigs: list[tuple[bytes, bytes]]  # (device key-1, manufacturer)
    status: list[tuple[int, int]]  # (list number, index)
    secrets: bytes | None  # SECRET_BYTES per device, decrypted; None for device-supplied keys
    tokens: list[str] = field(default_factory=list)  # credentials (derived, not journaled)
    keys: list[str] = field(default_factory=list)  # each bundle's "keys" member as JSON (sealed now, not journaled)
    outcomes: list[Receipt | DidnodeError] = field(default_factory=list)
    recovery: "Future[None] | None" = None  # the keystore write of the chunk's recovery keys

    def __len__(self) -> int:
        return len(self.dids)

    def ops(self, network: str) -> Iterator[SignedOperation]:
        for did, payload, (dsig, msig) in zip(self.dids, self.payloads, self.sigs):
            yield SignedOperation("create", network, did, payload, (Proof(f"{did}#{AUTH_KEY_ID}", dsig), Proof(self.kid, msig)))

    def device_secrets(self, j: int) -> tuple[bytes, bytes, bytes]:
        assert self.secrets is not None
        s = self.secrets[j * SECRET_BYTES : (j + 1) * SECRET_BYTES]
        return s[:32], s[32:64], s[64:]


def plan_record(chunk: Chunk, jkey: bytes) -> dict[str, Any]:
    """The journal's ``plan`` record of ``chunk``, its secrets sealed under the journal key ``jkey``."""
    box = None
    if chunk.secrets is not None:
        nonce = nacl.utils.random(24)
        box = b64url(nonce + crypto_secretbox(chunk.secrets, nonce, jkey))
    return {
        "t": "plan",
        "chunk": chunk.index,
        "first": chunk.first,
        "time": chunk.time_ms,
        "kid": chunk.kid,
        "serials": chunk.serials,
        "dids": chunk.dids,
        "payloads": [b64url(p) for p in chunk.payloads],
        "sigs": [[b64url(d), b64url(m)] for d, m in chunk.sigs],
        "status": [list(s) for s in chunk.status],
        "secrets": box,
    }


def chunk_from_plan(r: dict[str, Any], jkey: bytes, path: Path) -> Chunk:
    """The chunk a ``plan`` record of the journal at ``path`` holds, exactly as journaled;
    raises :class:`JournalCorrupted` if it does not decode (or its secrets do not open under ``jkey``)."""
    try:
        secrets = None
        if r["secrets"] is not None:
            box = b64url_decode(r["secrets"], "plan secrets")
            secrets = crypto_secretbox_open(box[24:], box[:24], jkey)
        return Chunk(
            int(r["chunk"]),
            int(r["first"]),
            int(r["time"]),
            str(r["kid"]),
            list(r["serials"]),
            list(r["dids"]),
            [b64url_decode(p, "payload") for p in r["payloads"]],
            [(b64url_decode(d, "signature"), b64url_decode(m, "signature")) for d, m in r["sigs"]],
            [(int(a), int(b)) for a, b in r["status"]],
            secrets,
        )
    except (KeyError, TypeError, ValueError, DidnodeError, nacl.exceptions.CryptoError) as exc:
        raise JournalCorrupted(f"plan of chunk {r.get('chunk')} in {path} does not decode: {exc}") from None


def alloc_record(a: Allocation) -> dict[str, Any]:
    """The journal record of a status list allocation: the list's permutation key, size and the
    positions handed out, from which :func:`alloc_statuses` recomputes the indices."""
    return {
        "t": "alloc",
        "list": a.number,
        "start": a.start,
        "count": a.count,
        "size": a.record.size,
        "perm": a.record.key.hex(),
        "position": a.receipt.position,
    }


def alloc_statuses(r: dict[str, Any], path: Path) -> list[tuple[int, int]]:
    """(list, index) of every index an ``alloc`` record handed out, in order; a record without
    ``perm`` is of a run before random allocation (indices ``first .. first+count-1``)."""
    try:
        number, count = int(r["list"]), int(r["count"])
        if "perm" not in r:
            return [(number, int(r["first"]) + i) for i in range(count)]
        start = int(r["start"])
        rec = AllocationRecord(bytes.fromhex(r["perm"]), int(r["size"]), start + count)
        return [(number, i) for i in rec.indices(start, count)]
    except (KeyError, TypeError, ValueError, DidnodeError) as exc:
        raise JournalCorrupted(f"alloc record in {path} does not decode: {exc}") from None


def replay(records: list[dict[str, Any]], path: Path) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """The records after the header of the journal at ``path``, sorted: (allocs in order, the
    last plan of each chunk, the done record of each chunk); :class:`JournalCorrupted` for an unknown type."""
    allocs: list[dict[str, Any]] = []
    plans: dict[int, dict[str, Any]] = {}
    dones: dict[int, dict[str, Any]] = {}
    for r in records:
        kind = r.get("t")
        if kind == "alloc":
            allocs.append(r)
        elif kind == "plan":
            plans[int(r["chunk"])] = r  # a later plan of a chunk (re-signed) replaces the earlier
        elif kind == "done":
            dones[int(r["chunk"])] = r
        else:
            raise JournalCorrupted(f"unknown journal record type {kind!r} in {path}")
    return allocs, plans, dones
