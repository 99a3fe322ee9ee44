"""The network's governance: its policy, its quotas, the usage counted against them, their encodings.

A governed network's log holds a *governance record*: the governor DIDs and
the threshold M of N that changes need, the create policy (``open``,
``registrars``, ``governors``), the registrars with their create quotas, and
the publishers' resource quotas. The record is created by the ``govern``
inception in the network's genesis and changed by ``govern`` operations
signed by M current governors (:mod:`.rules`). It lives in the state table
under the governance identifier (``did:dnode:`` + the inception's multihash,
self-certifying like a DID), so the state tree commits to it and a state
proof proves it; it is not a DID and resolves to no DID document.

Everything here is pure: JSON shapes, limits, the record codec, the quota
arithmetic. Windows are fixed intervals of *ordering time* (the log entry's
time, assigned by the orderer), ``[k * window, (k + 1) * window)``, so every
node counts the same operations in the same window.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Mapping

from didnode.core import canonical
from didnode.core.did import validate_did
from didnode.errors import DidnodeError, MalformedOperation, StoreCorrupted, TooLarge

# The first byte of a governance record in the state table: a DID's state record
# starts with its version (1), so the two can never be mistaken for each other.
RECORD_TAG = b"G"

OPEN = "open"
REGISTRARS = "registrars"
GOVERNORS = "governors"
CREATE_MODES = (OPEN, REGISTRARS, GOVERNORS)

MAX_GOVERNORS = 16
MAX_GENESIS = 32
MAX_REGISTRARS = 1024
MAX_PUBLISHERS = 1024
MAX_CHANGES = 64
MAX_WINDOW_S = 366 * 24 * 3600
MAX_COUNT = 2**53 - 1

ACTIONS = (
    "addRegistrar",
    "setRegistrarQuota",
    "removeRegistrar",
    "setCreatePolicy",
    "setPublishQuota",
    "setPublisherQuota",
    "setGovernors",
)


@dataclass(frozen=True, slots=True)
class CreateQuota:
    """A registrar's quota: at most ``per_window`` creates per ``window_s`` seconds of ordering time, ``total`` in all.

    ``None`` means no limit of that kind.
    """

    window_s: int | None = None
    per_window: int | None = None
    total: int | None = None

    def to_json(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.per_window is not None and self.window_s is not None:
            out["perWindow"] = self.per_window
            out["window"] = self.window_s
        if self.total is not None:
            out["total"] = self.total
        return out


@dataclass(frozen=True, slots=True)
class PublishQuota:
    """A publisher's quota: at most ``count`` publishes and ``bytes`` of operation payload per ``window_s`` seconds."""

    window_s: int
    count: int | None = None
    bytes: int | None = None

    def to_json(self) -> dict[str, int]:
        out = {"window": self.window_s}
        if self.count is not None:
            out["count"] = self.count
        if self.bytes is not None:
            out["bytes"] = self.bytes
        return out


@dataclass(frozen=True, slots=True)
class Policy:
    """The governance record: who governs, who may create and publish, how much.

    ``did`` is the governance identifier; ``seq``/``last`` chain its
    operations like a DID's. ``registrars`` maps registrar DID -> quota;
    ``publish`` is the quota of every publisher that ``publishers`` does not name.
    """

    did: str
    seq: int
    last: str
    governors: tuple[str, ...]
    threshold: int
    create: str
    registrars: Mapping[str, CreateQuota] = field(default_factory=dict)
    publish: PublishQuota | None = None
    publishers: Mapping[str, PublishQuota] = field(default_factory=dict)
    genesis: tuple[str, ...] = ()
    created_pos: int = 0
    updated_pos: int = 0
    updated_time: int = 0

    def to_json(self) -> dict[str, Any]:
        """The record's JSON view (also what ``didctl gov show`` prints)."""
        out: dict[str, Any] = {
            "id": self.did,
            "seq": self.seq,
            "last": self.last,
            "genesis": list(self.genesis),
            "governors": list(self.governors),
            "threshold": self.threshold,
            "create": self.create,
            "registrars": [{"did": d, "quota": q.to_json()} for d, q in sorted(self.registrars.items())],
            "publishers": [{"did": d, "quota": q.to_json()} for d, q in sorted(self.publishers.items())],
            "createdPos": self.created_pos,
            "updatedPos": self.updated_pos,
            "updatedTime": self.updated_time,
        }
        if self.publish is not None:
            out["publish"] = self.publish.to_json()
        return out

    def to_record(self) -> bytes:
        """The state record: ``G`` then the canonical JSON view (hashed into the state tree)."""
        return RECORD_TAG + canonical.encode(self.to_json())

    @classmethod
    def from_record(cls, data: bytes) -> "Policy":
        """Inverse of :meth:`to_record`; raises :class:`StoreCorrupted` on bytes it did not write."""
        data = bytes(data)
        if data[:1] != RECORD_TAG:
            raise StoreCorrupted("governance record does not start with its tag")
        try:
            v = canonical.decode_canonical(data[1:])
            policy = cls(
                did=validate_did(v["id"]),
                seq=_count(v, "seq", 0),
                last=v["last"],
                genesis=tuple(validate_did(d) for d in v["genesis"]),
                governors=tuple(validate_did(d) for d in v["governors"]),
                threshold=_count(v, "threshold"),
                create=_mode(v["create"]),
                registrars={validate_did(r["did"]): create_quota(r["quota"]) for r in v["registrars"]},
                publish=publish_quota(v["publish"]) if "publish" in v else None,
                publishers={validate_did(r["did"]): _required_publish_quota(r["quota"]) for r in v["publishers"]},
                created_pos=_count(v, "createdPos", 0),
                updated_pos=_count(v, "updatedPos", 0),
                updated_time=_count(v, "updatedTime", 0),
            )
        except (DidnodeError, KeyError, TypeError, AttributeError) as exc:
            raise StoreCorrupted(f"governance record does not decode: {exc}") from None
        if policy.to_record() != data:
            raise StoreCorrupted("governance record is not in its canonical form")
        return policy

    def is_governor(self, did: str) -> bool:
        return did in self.governors

    def publish_quota(self, did: str) -> PublishQuota | None:
        """The quota that applies to publishes by ``did``."""
        return self.publishers.get(did, self.publish)


def is_governance_record(record: bytes) -> bool:
    """Is this state-table value a governance record (not a DID's state record)?"""
    return record[:1] == RECORD_TAG


# --------------------------------------------------------------------------
# Usage: what the log has counted against a quota
# --------------------------------------------------------------------------

CREATES = b"c"
PUBLISHES = b"p"
_USAGE = struct.Struct(">QQQQQ")


@dataclass(frozen=True, slots=True)
class Usage:
    """Counts of one DID's creates (as registrar) or publishes, in the current window and in all."""

    window: int = -1  # index of the window the window counts are for (-1: none yet)
    count: int = 0
    bytes: int = 0
    total_count: int = 0
    total_bytes: int = 0

    def encode(self) -> bytes:
        return _USAGE.pack(self.window + 1, self.count, self.bytes, self.total_count, self.total_bytes)

    @classmethod
    def decode(cls, data: bytes) -> "Usage":
        try:
            w, c, b, tc, tb = _USAGE.unpack(bytes(data))
        except struct.error as exc:
            raise StoreCorrupted(f"usage record does not decode: {exc}") from None
        return cls(w - 1, c, b, tc, tb)

    def in_window(self, index: int) -> "Usage":
        """These counts as seen from window ``index`` (a later window starts at zero)."""
        if index == self.window:
            return self
        return Usage(index, 0, 0, self.total_count, self.total_bytes)

    def plus(self, count: int, size: int) -> "Usage":
        return Usage(self.window, self.count + count, self.bytes + size, self.total_count + count, self.total_bytes + size)


def window_index(time_ms: int, window_s: int) -> int:
    """The index of the window holding ordering time ``time_ms``."""
    return time_ms // (window_s * 1000)


def window_end_ms(index: int, window_s: int) -> int:
    """When window ``index`` ends: its counts start again at this ordering time."""
    return (index + 1) * window_s * 1000


# --------------------------------------------------------------------------
# JSON shapes (operations and records share them)
# --------------------------------------------------------------------------


def _count(obj: Mapping[str, Any], name: str, low: int = 1) -> int:
    value = obj[name]
    if type(value) is not int or not low <= value <= MAX_COUNT:
        raise MalformedOperation(f"{name} must be an integer in [{low}, 2^53-1]")
    return value


def _window(obj: Mapping[str, Any]) -> int:
    value = obj["window"]
    if type(value) is not int or not 1 <= value <= MAX_WINDOW_S:
        raise MalformedOperation(f"window must be a number of seconds in [1, {MAX_WINDOW_S}]")
    return value


def _mode(value: Any) -> str:
    if value not in CREATE_MODES:
        raise MalformedOperation(f"create policy {str(value)[:20]!r} is not one of {', '.join(CREATE_MODES)}")
    return str(value)


def _members(obj: Any, allowed: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedOperation(f"{what} must be an object")
    extra = obj.keys() - allowed
    if extra:
        raise MalformedOperation(f"{what} has unknown member(s) {', '.join(sorted(extra))}")
    return obj


def create_quota(value: Any) -> CreateQuota:
    """Parse ``{"perWindow": n, "window": s, "total": n}`` (each part optional; window iff perWindow)."""
    q = _members(value, {"perWindow", "window", "total"}, "a registrar quota")
    if ("perWindow" in q) != ("window" in q):
        raise MalformedOperation("a registrar quota names perWindow and window together, or neither")
    return CreateQuota(
        _window(q) if "window" in q else None,
        _count(q, "perWindow") if "perWindow" in q else None,
        _count(q, "total") if "total" in q else None,
    )


def publish_quota(value: Any) -> PublishQuota | None:
    """Parse ``{"window": s, "count": n, "bytes": n}`` (window and at least one limit), or null for no quota."""
    if value is None:
        return None
    return _required_publish_quota(value)


def _required_publish_quota(value: Any) -> PublishQuota:
    q = _members(value, {"window", "count", "bytes"}, "a publish quota")
    if "window" not in q or not ({"count", "bytes"} & q.keys()):
        raise MalformedOperation("a publish quota names its window and a count, bytes or both")
    return PublishQuota(_window(q), _count(q, "count") if "count" in q else None, _count(q, "bytes") if "bytes" in q else None)


def did_list(value: Any, what: str, limit: int, *, sorted_: bool = True) -> tuple[str, ...]:
    """A list of distinct DIDs (sorted unless ``sorted_`` is False), at most ``limit`` of them."""
    if not isinstance(value, list) or not value:
        raise MalformedOperation(f"{what} must be a non-empty list of DIDs")
    if len(value) > limit:
        raise TooLarge(f"{what} names {len(value)} DIDs; the limit is {limit}", field=what)
    for d in value:
        validate_did(d)
    if len(set(value)) != len(value):
        raise MalformedOperation(f"{what} names a DID twice")
    if sorted_ and value != sorted(value):
        raise MalformedOperation(f"{what} must be sorted")
    return tuple(value)


def threshold(value: Any, governors: tuple[str, ...]) -> int:
    if type(value) is not int or not 1 <= value <= len(governors):
        raise MalformedOperation(f"threshold must be an integer in [1, {len(governors)}] (the number of governors)")
    return value


@dataclass(frozen=True, slots=True)
class Inception:
    """The body of a ``govern`` operation with seq 0: the network's first governance record."""

    genesis: tuple[str, ...]
    governors: tuple[str, ...]
    threshold: int
    create: str
    registrars: Mapping[str, CreateQuota]
    publish: PublishQuota | None
    publishers: Mapping[str, PublishQuota]


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a ``govern`` operation (``action`` is one of :data:`ACTIONS`)."""

    action: str
    did: str = ""
    create_quota: CreateQuota | None = None
    publish_quota: PublishQuota | None = None
    create: str = ""
    governors: tuple[str, ...] = ()
    threshold: int = 0


def _quota_list(value: Any, what: str, limit: int, parse_quota: Any) -> dict[str, Any]:
    if not isinstance(value, list):
        raise MalformedOperation(f"{what} must be a list")
    if len(value) > limit:
        raise TooLarge(f"{what} names {len(value)} DIDs; the limit is {limit}", field=what)
    out: dict[str, Any] = {}
    for item in value:
        r = _members(item, {"did", "quota"}, f"an entry of {what}")
        did = validate_did(r.get("did"))
        if did in out:
            raise MalformedOperation(f"{what} names {did} twice")
        out[did] = parse_quota(r.get("quota", {}))
    if list(out) != sorted(out):
        raise MalformedOperation(f"{what} must be sorted by did")
    return out


def parse_inception(body: Mapping[str, Any]) -> Inception:
    """Parse the members of a governance inception (after the common members were checked)."""
    genesis = did_list(body["genesis"], "genesis", MAX_GENESIS, sorted_=False)
    governors = did_list(body["governors"], "governors", MAX_GOVERNORS)
    if not set(governors) <= set(genesis):
        raise MalformedOperation("every governor must be one of the genesis DIDs")
    policy = _members(body["policy"], {"create", "registrars", "publish", "publishers"}, "policy")
    if "create" not in policy:
        raise MalformedOperation("policy lacks member create")
    return Inception(
        genesis,
        governors,
        threshold(body["threshold"], governors),
        _mode(policy["create"]),
        _quota_list(policy.get("registrars", []), "registrars", MAX_REGISTRARS, create_quota),
        publish_quota(policy.get("publish")),
        _quota_list(policy.get("publishers", []), "publishers", MAX_PUBLISHERS, _required_publish_quota),
    )


_CHANGE_MEMBERS = {
    "addRegistrar": ({"did"}, {"quota"}),
    "setRegistrarQuota": ({"did", "quota"}, set()),
    "removeRegistrar": ({"did"}, set()),
    "setCreatePolicy": ({"create"}, set()),
    "setPublishQuota": ({"quota"}, set()),
    "setPublisherQuota": ({"did", "quota"}, set()),
    "setGovernors": ({"governors", "threshold"}, set()),
}


def parse_changes(value: Any) -> tuple[Change, ...]:
    """Parse the ``changes`` list of a governance change operation."""
    if not isinstance(value, list) or not value:
        raise MalformedOperation("changes must be a non-empty list")
    if len(value) > MAX_CHANGES:
        raise TooLarge(f"a governance operation makes {len(value)} changes; the limit is {MAX_CHANGES}", field="changes")
    out = []
    for item in value:
        if not isinstance(item, dict) or item.get("action") not in _CHANGE_MEMBERS:
            raise MalformedOperation(f"each change is an object whose action is one of {', '.join(ACTIONS)}")
        action = item["action"]
        required, optional = _CHANGE_MEMBERS[action]
        c = _members(item, required | optional | {"action"}, f"change {action}")
        missing = required - c.keys()
        if missing:
            raise MalformedOperation(f"change {action} lacks member(s) {', '.join(sorted(missing))}")
        did = validate_did(c["did"]) if "did" in c else ""
        if action in ("addRegistrar", "setRegistrarQuota"):
            out.append(Change(action, did, create_quota=create_quota(c.get("quota", {}))))
        elif action == "removeRegistrar":
            out.append(Change(action, did))
        elif action == "setCreatePolicy":
            out.append(Change(action, create=_mode(c["create"])))
        elif action in ("setPublishQuota", "setPublisherQuota"):
            out.append(Change(action, did, publish_quota=publish_quota(c["quota"])))
        else:
            governors = did_list(c["governors"], "governors", MAX_GOVERNORS)
            out.append(Change(action, governors=governors, threshold=threshold(c["threshold"], governors)))
    return tuple(out)
