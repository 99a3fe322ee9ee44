"""What a verifier needs to know about an issuer, and how it caches it.

A resolver is any callable ``resolve(did) -> IssuerRecord`` that raises
:class:`didnode.errors.UnknownDid` for a DID the ledger never saw. The node
builds records from LMDB reads, the client from one RPC; tests from a pure
in-memory ledger.

Why times and not only fates: a JWT carries no trusted signing time, only
the time its issuer *claims* (``iat``, else ``validFrom``). The rotated-key
rule compares that claim with the ledger's ordering time of the operation
that rotated the key out, which every node agrees on (docs/credentials.md).
:class:`~didnode.core.keystate.DidState` keeps positions only, so the record
adds, per key, the ledger times of the operations at ``added_pos`` and
``ended_pos``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from didnode.core.credentials.jose import JWK_SUFFIX
from didnode.core.keystate import ED25519, DidState
from didnode.errors import StoreCorrupted


@dataclass(frozen=True, slots=True)
class IssuerRecord:
    """An issuer's key state plus the ledger times of its keys.

    ``key_times[key_id] = (added_time_ms, ended_time_ms)``; ended is -1 while current.
    Precondition: every Ed25519 key of ``state`` has an entry.
    """

    state: DidState
    key_times: Mapping[str, tuple[int, int]]


Resolver = Callable[[str], IssuerRecord]


def record_from_versions(state: DidState, times_by_position: Mapping[int, int]) -> IssuerRecord:
    """Build a record from a state and the (position -> time) of the DID's own operations.

    Every position a key starts or ends at is an operation of the DID itself
    (create, rotate, recover, revoke, deactivate), so the DID's history holds
    all of them; a missing one means a corrupted store.
    """
    times: dict[str, tuple[int, int]] = {}
    for k in state.keys:
        if k.kind != ED25519:
            continue
        try:
            added = times_by_position[k.added_pos]
            ended = times_by_position[k.ended_pos] if k.ended_pos >= 0 else -1
        except KeyError as exc:
            raise StoreCorrupted(f"{state.did}: no history entry at position {exc.args[0]} for key {k.id}") from None
        times[k.id] = (added, ended)
    return IssuerRecord(state, times)


@dataclass(frozen=True, slots=True)
class KeyView:
    """One signing key of an issuer, decoded once for fast verification."""

    id: str
    raw: bytes
    fate: str
    assertion: bool
    added_time: int
    ended_time: int
    ended_seq: int
    reason: str


@dataclass(slots=True)
class IssuerKeys:
    """The decoded keys of one issuer (by fragment, both ``key-1`` and ``key-1-jwk``)."""

    did: str
    active: bool
    keys: dict[str, KeyView]
    deactivated_time: int
    fetched_at: int = 0
    record: IssuerRecord | None = field(default=None, repr=False)


def decode_record(record: IssuerRecord, now_ms: int) -> IssuerKeys:
    """Decode every Ed25519 key of ``record`` into a :class:`KeyView`."""
    state = record.state
    keys: dict[str, KeyView] = {}
    for k in state.keys:
        if k.kind != ED25519:
            continue
        added, ended = record.key_times.get(k.id, (0, -1))
        view = KeyView(k.id, k.raw, k.fate, "assertionMethod" in k.purposes, added, ended, k.ended_seq, k.reason)
        keys[k.id] = view
        keys[k.id + JWK_SUFFIX] = view
    return IssuerKeys(state.did, state.active, keys, state.updated_time if not state.active else -1, now_ms, record)


class IssuerCache:
    """Decoded issuers with a time-to-live (``now`` passed in; no clock here).

    ``ttl_ms == 0`` disables caching (the node: every verification reads the
    ledger, so a revocation applies at once). A client verifying offline
    trades up to ``ttl_ms`` of staleness for speed. Bounded: the oldest
    entry is evicted first.
    """

    __slots__ = ("resolve", "ttl_ms", "limit", "_items")

    def __init__(self, resolve: Resolver, ttl_ms: int = 60_000, limit: int = 4096) -> None:
        self.resolve = resolve
        self.ttl_ms = ttl_ms
        self.limit = limit
        self._items: dict[str, IssuerKeys] = {}

    def get(self, did: str, now_ms: int) -> IssuerKeys:
        """The issuer's keys; raises what the resolver raises (e.g. :class:`UnknownDid`)."""
        entry = self._items.get(did)
        if entry is not None and now_ms - entry.fetched_at < self.ttl_ms and now_ms >= entry.fetched_at:
            return entry
        entry = decode_record(self.resolve(did), now_ms)
        if self.ttl_ms > 0:
            self._items.pop(did, None)
            if len(self._items) >= self.limit:
                del self._items[next(iter(self._items))]
            self._items[did] = entry
        return entry
