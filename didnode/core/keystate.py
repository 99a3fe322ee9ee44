"""Key state of a DID and the pure state transition ``apply(state, op) -> state``.

The state is a fold over the DID's operations in ledger order. ``apply`` is
deterministic: everything it depends on (the ledger position and ordering
time of the operation, the states of controller DIDs) is passed in, so every
node that applies the same log computes byte-identical states.

Signing rules (docs/did-method.md has the table):

=========== ==========================================================
create      every listed key (proof of possession) and every controller
rotate      the pre-committed next key (``did#next``), revealed in ``nextKey``
update      a current authentication key of the DID
revoke      a controller, or the next key (``did#next``)
recover     a controller
transfer    one current controller (the DID's own authentication key when
            it has none) and every controller that is new
deactivate  a controller, or the next key when the DID has no controller
publish     a current assertionMethod key of the DID
=========== ==========================================================

``publish`` attaches a resource (e.g. a Bitstring Status List credential)
to the DID: the state keeps, per resource id, the hash, media type and
position of its latest content; the content itself stays in the log.

A key's fate is ``current``, ``rotated`` (replaced by rotate/recover; what it
signed while current stays valid) or ``revoked`` (compromised; it never
signs again and, for off-ledger signatures, verifies nothing).

A state is stored, hashed into the state tree and carried in state proofs as
its *state record* (:meth:`DidState.to_record`), a compact, versioned and
canonical binary encoding laid out at the end of this module and in
docs/storage.md. :meth:`DidState.to_json` is the JSON view for clients.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from didnode.core import canonical
from didnode.core.encoding import ED25519_PUB, X25519_PUB, multikey_decode
from didnode.core.operations import NEXT_FRAGMENT, Operation, Proof, next_commitment
from didnode.errors import (
    ControllerSignatureMissing,
    DidAlreadyExists,
    DidnodeError,
    DidDeactivated,
    KeyRevoked,
    KeyRotated,
    MalformedOperation,
    MissingSignature,
    NextKeyRequired,
    PrevMismatch,
    SequenceMismatch,
    StoreCorrupted,
    UnknownDid,
    UnknownKey,
    UnknownResource,
    WrongSigner,
)

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

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "KeyRecord":
        return cls(
            d["id"],
            d["type"],
            d["publicKeyMultibase"],
            tuple(d["purposes"]),
            d["fate"],
            d["addedSeq"],
            d["addedPos"],
            d.get("endedSeq", -1),
            d.get("endedPos", -1),
            d.get("reason", ""),
        )


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

    def to_json_text(self) -> str:
        """The JSON view as canonical JSON text (what the gRPC ``state_json`` fields carry)."""
        return canonical.encode(self.to_json()).decode("utf-8")

    @classmethod
    def from_json(cls, d: Any) -> "DidState":
        """Inverse of :meth:`to_json`; raises :class:`StoreCorrupted` on a value it did not produce."""
        try:
            return cls(
                d["did"],
                d["seq"],
                d["last"],
                d["status"],
                d["next"],
                tuple(d["controllers"]),
                tuple(d["services"]),
                tuple(KeyRecord.from_json(k) for k in d["keys"]),
                d["created"]["pos"],
                d["created"]["time"],
                d["updated"]["pos"],
                d["updated"]["time"],
                tuple(d.get("resources", ())),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise StoreCorrupted(f"state JSON does not decode: {exc!r}") from None

    @classmethod
    def from_json_text(cls, text: str | bytes) -> "DidState":
        """:meth:`from_json` of JSON text (a gRPC ``state_json`` field); raises :class:`StoreCorrupted`."""
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise StoreCorrupted(f"state JSON does not parse: {exc}") from None
        return cls.from_json(d)

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


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """What ``apply`` needs from outside: ordering facts and other DIDs' states.

    ``resolve`` returns the current state of another DID or raises
    :class:`UnknownDid`; within a batch it must see earlier operations of the
    same batch. ``trusted`` replays an operation already accepted on the
    ledger (to rebuild a past version): signatures and controller states are
    not checked again, since they were checked when it was accepted and the
    controllers' keys may have changed since.
    """

    position: int
    time: int
    resolve: Callable[[str], DidState]
    trusted: bool = False


def apply(state: DidState | None, op: Operation, ctx: ApplyContext) -> DidState:
    """Validate ``op`` against ``state`` (None when the DID does not exist) and return the new state.

    Precondition: ``op`` came from :func:`didnode.core.operations.parse` for
    this network and is not already on the ledger (the store checks the
    operation hash). Raises a typed :mod:`didnode.errors` exception and
    changes nothing when the operation is not valid.
    """
    if op.type == "create":
        if state is not None:
            raise DidAlreadyExists(f"{op.did} already exists", did=op.did)
        return _create(op, ctx)
    if state is None:
        raise UnknownDid(f"{op.did} does not exist on this ledger", did=op.did)
    if state.status != ACTIVE:
        raise DidDeactivated(f"{op.did} is deactivated; no operation can follow", did=op.did)
    if op.seq != state.seq + 1:
        raise SequenceMismatch(
            f"{op.type} of {op.did} has seq {op.seq}; the next seq is {state.seq + 1}", did=op.did, expected=state.seq + 1
        )
    if op.prev != state.last:
        raise PrevMismatch(
            f"{op.type} of {op.did} names prev {op.prev[:16]}…, but the last operation is {state.last[:16]}… (a fork)",
            did=op.did,
            expected=state.last,
        )
    return _TRANSITIONS[op.type](state, op, ctx)


# --------------------------------------------------------------------------
# Signer resolution
# --------------------------------------------------------------------------


def _own_key(state: DidState, op: Operation, proof: Proof, key_id: str, ctx: ApplyContext) -> KeyRecord:
    """An own (non-next) key that signed; raises for unknown, rotated or revoked keys, or a bad signature."""
    key = _key_fate(state, proof, key_id)
    if not ctx.trusted:
        op.check_signature(proof, key.raw)
    return key


def _key_fate(state: DidState, proof: Proof, key_id: str) -> KeyRecord:
    try:
        key = state.key(key_id)
    except UnknownKey:
        raise WrongSigner(f"{proof.kid} is not a key of {state.did}", kid=proof.kid) from None
    if key.kind != ED25519:
        raise WrongSigner(f"{proof.kid} is a key-agreement key and cannot sign", kid=proof.kid)
    if key.fate == REVOKED:
        raise KeyRevoked(f"{proof.kid} was revoked at seq {key.ended_seq}; it can never sign again", kid=proof.kid)
    if key.fate == ROTATED:
        raise KeyRotated(f"{proof.kid} was rotated out at seq {key.ended_seq}; it cannot sign new operations", kid=proof.kid)
    return key


def _next_key(state: DidState, op: Operation, proof: Proof, ctx: ApplyContext) -> None:
    """The proof by the pre-committed next key: the revealed key must match the commitment."""
    if op.type not in ("rotate", "revoke", "deactivate"):
        raise WrongSigner(f"the pre-committed next key cannot sign a {op.type}", kid=proof.kid)
    if not op.next_key:
        raise MalformedOperation(f"{op.type} signed by {proof.kid} must reveal the key in nextKey")
    if next_commitment(op.next_key) != state.next:
        raise WrongSigner(f"nextKey of {op.type} does not match the commitment of {state.did}", kid=proof.kid)
    if not ctx.trusted:
        op.check_signature(proof, op.next_key)


def _controller_key(op: Operation, proof: Proof, controller: str, ctx: ApplyContext) -> None:
    """A proof by a controller DID's current authentication key."""
    if ctx.trusted:
        return
    key_id = proof.kid[len(controller) + 1 :]
    try:
        cstate = ctx.resolve(controller)
    except UnknownDid:
        raise UnknownDid(f"controller {controller} does not exist on this ledger", did=controller) from None
    if cstate.status != ACTIVE:
        raise DidDeactivated(f"controller {controller} is deactivated and cannot sign", did=controller)
    key = _own_key(cstate, op, proof, key_id, ctx)
    if "authentication" not in key.purposes:
        raise WrongSigner(f"{proof.kid} is not an authentication key of controller {controller}", kid=proof.kid)


def _signers(state: DidState, op: Operation, ctx: ApplyContext, controllers: Iterable[str]) -> tuple[set[str], bool, set[str]]:
    """Check every proof and classify it: (own current key ids, next key used, controller DIDs).

    Any proof by a DID that is neither the subject nor an allowed controller
    is rejected here, so that nothing unverified is ever written to the log.
    """
    allowed = set(controllers)
    own: set[str] = set()
    used_next = False
    ctrls: set[str] = set()
    for proof in op.proofs:
        did, _, frag = proof.kid.partition("#")
        if did == state.did:
            if frag == NEXT_FRAGMENT:
                _next_key(state, op, proof, ctx)
                used_next = True
            else:
                _own_key(state, op, proof, frag, ctx)
                own.add(frag)
        elif did in allowed:
            _controller_key(op, proof, did, ctx)
            ctrls.add(did)
        else:
            raise WrongSigner(f"{proof.kid} is neither a key of {state.did} nor of a controller allowed to sign this {op.type}", kid=proof.kid)
    return own, used_next, ctrls


# --------------------------------------------------------------------------
# Transitions
# --------------------------------------------------------------------------


def _new_keys(op: Operation, ctx: ApplyContext, seq: int) -> list[KeyRecord]:
    out = [KeyRecord(k.id, ED25519, k.multibase, k.purposes, CURRENT, seq, ctx.position) for k in op.keys]
    if op.key_agreement is not None:
        ka = op.key_agreement
        out.append(KeyRecord(ka.id, X25519, ka.multibase, ("keyAgreement",), CURRENT, seq, ctx.position))
    return out


def _create(op: Operation, ctx: ApplyContext) -> DidState:
    # Proof of possession: every listed key signs the create.
    by_kid = {p.kid: p for p in op.proofs}
    for k in op.keys:
        proof = by_kid.pop(f"{op.did}#{k.id}", None)
        if proof is None:
            raise MissingSignature(
                f"create of {op.did} lacks the proof-of-possession signature of key {k.id}", kid=f"{op.did}#{k.id}"
            )
        if not ctx.trusted:
            op.check_signature(proof, k.raw)
    # A DID cannot claim a controller that did not agree.
    for c in op.controllers:
        cproofs = [p for kid, p in by_kid.items() if kid.startswith(c + "#")]
        if not cproofs:
            raise ControllerSignatureMissing(f"controller {c} did not sign the create of {op.did}", did=c)
        for p in cproofs:
            _controller_key(op, p, c, ctx)
            del by_kid[p.kid]
    if by_kid:
        kid = next(iter(by_kid))
        raise WrongSigner(f"{kid} is neither a listed key nor a controller of the create", kid=kid)
    return DidState(
        did=op.did,
        seq=0,
        last=op.hash.hex(),
        status=ACTIVE,
        next=op.next,
        controllers=op.controllers,
        services=tuple(s.to_json() for s in op.services),
        keys=tuple(_new_keys(op, ctx, 0)),
        created_pos=ctx.position,
        created_time=ctx.time,
        updated_pos=ctx.position,
        updated_time=ctx.time,
    )


_ADVANCE_FIELDS = frozenset({"status", "next", "controllers", "services", "keys", "resources"})


def _advance(state: DidState, op: Operation, ctx: ApplyContext, **changes: Any) -> DidState:
    # Built positionally: dataclasses.replace() introspects the fields on every
    # call and costs several times more, on the path of every operation.
    if not changes.keys() <= _ADVANCE_FIELDS:
        raise TypeError(f"_advance cannot change {sorted(changes.keys() - _ADVANCE_FIELDS)}")
    get = changes.get
    return DidState(
        state.did,
        op.seq,
        op.hash.hex(),
        get("status", state.status),
        get("next", state.next),
        get("controllers", state.controllers),
        get("services", state.services),
        get("keys", state.keys),
        state.created_pos,
        state.created_time,
        ctx.position,
        ctx.time,
        get("resources", state.resources),
    )


def _ended(k: KeyRecord, fate: str, ended_seq: int, ended_pos: int, reason: str | None = None) -> KeyRecord:
    """``k`` with a new fate (positional construction: see ``_advance``)."""
    return KeyRecord(k.id, k.kind, k.multibase, k.purposes, fate, k.added_seq, k.added_pos, ended_seq, ended_pos, k.reason if reason is None else reason)


def _retire(keys: Iterable[KeyRecord], op: Operation, ctx: ApplyContext, kinds: tuple[str, ...]) -> list[KeyRecord]:
    """Mark current keys of ``kinds`` as rotated at this operation."""
    return [
        _ended(k, ROTATED, op.seq, ctx.position) if k.fate == CURRENT and k.kind in kinds else k
        for k in keys
    ]


def _install(state: DidState, op: Operation, ctx: ApplyContext, kinds: tuple[str, ...]) -> tuple[KeyRecord, ...]:
    used = {k.id for k in state.keys}
    new = _new_keys(op, ctx, op.seq)
    for k in new:
        if k.id in used:
            raise MalformedOperation(f"key id {k.id!r} was already used by {state.did}; key ids are never reused")
    old_raw = {k.multibase for k in state.keys}
    for k in new:
        if k.multibase in old_raw:
            raise MalformedOperation(f"key {k.id} reuses a public key {state.did} already had")
    keys = _retire(state.keys, op, ctx, kinds) + new
    if len(keys) > MAX_KEY_HISTORY:
        raise MalformedOperation(f"{state.did} would have more than {MAX_KEY_HISTORY} keys in its history")
    return tuple(keys)


def _rotate(state: DidState, op: Operation, ctx: ApplyContext) -> DidState:
    own, used_next, _ = _signers(state, op, ctx, ())
    if not used_next:
        raise NextKeyRequired(
            f"a rotate of {state.did} must be signed by its pre-committed next key ({state.did}#next), not by a current key",
            did=state.did,
        )
    if own:
        raise WrongSigner(f"a rotate of {state.did} is signed by the next key only")
    if op.next == state.next:
        raise MalformedOperation("a rotate must commit to a new next key")
    return _advance(state, op, ctx, keys=_install(state, op, ctx, (ED25519,)), next=op.next)


def _update(state: DidState, op: Operation, ctx: ApplyContext) -> DidState:
    own, used_next, _ = _signers(state, op, ctx, ())
    if used_next or not own:
        raise WrongSigner(f"an update of {state.did} must be signed by a current authentication key of the DID")
    for key_id in own:
        if "authentication" not in state.key(key_id).purposes:
            raise WrongSigner(f"{state.did}#{key_id} is not an authentication key")
    keys = state.keys
    ka_old = state.key_agreement()
    ka_new = op.key_agreement
    if ka_new is not None and (ka_old is None or ka_old.multibase != ka_new.multibase or ka_old.id != ka_new.id):
        keys = _install(state, op, ctx, (X25519,))
    elif ka_new is None and ka_old is not None:
        keys = tuple(_retire(state.keys, op, ctx, (X25519,)))
    return _advance(state, op, ctx, keys=keys, services=tuple(s.to_json() for s in op.services))


def _revoke(state: DidState, op: Operation, ctx: ApplyContext) -> DidState:
    own, used_next, ctrls = _signers(state, op, ctx, state.controllers)
    if own or not (used_next or ctrls):
        raise WrongSigner(f"a revoke of a key of {state.did} must be signed by a controller or by the committed next key")
    key_id = op.key_id
    target = state.key(key_id)
    if target.fate == REVOKED:
        raise KeyRevoked(f"{state.did}#{key_id} is already revoked", kid=f"{state.did}#{key_id}")
    ended_seq = target.ended_seq if target.fate == ROTATED else op.seq
    ended_pos = target.ended_pos if target.fate == ROTATED else ctx.position
    revoked = _ended(target, REVOKED, ended_seq, ended_pos, op.reason or "compromised")
    keys = tuple(revoked if k.id == key_id else k for k in state.keys)
    return _advance(state, op, ctx, keys=keys)


def _recover(state: DidState, op: Operation, ctx: ApplyContext) -> DidState:
    own, used_next, ctrls = _signers(state, op, ctx, state.controllers)
    if not state.controllers:
        raise WrongSigner(f"{state.did} has no controller, so it cannot be recovered; rotate with its next key instead")
    if own or used_next or not ctrls:
        raise ControllerSignatureMissing(f"a recover of {state.did} must be signed by one of its controllers")
    return _advance(state, op, ctx, keys=_install(state, op, ctx, (ED25519, X25519)), next=op.next)


def _transfer(state: DidState, op: Operation, ctx: ApplyContext) -> DidState:
    new = set(op.controllers)
    old = set(state.controllers)
    own, used_next, ctrls = _signers(state, op, ctx, old | new)
    if used_next:
        raise WrongSigner("a transfer is signed by controllers (or the DID's own key when it has none), not the next key")
    if old:
        if not ctrls & old:
            raise ControllerSignatureMissing(f"a transfer of {state.did} must be signed by a current controller")
        if own:
            raise WrongSigner(f"{state.did} has controllers; its own key cannot transfer it")
    elif not own:
        raise WrongSigner(f"a transfer of {state.did} (no controller yet) must be signed by its own authentication key")
    for c in sorted(new - old):
        if c not in ctrls:
            raise ControllerSignatureMissing(f"new controller {c} did not sign the transfer of {state.did}", did=c)
    if new == old:
        raise MalformedOperation("a transfer must change the controllers")
    return _advance(state, op, ctx, controllers=op.controllers)


def _deactivate(state: DidState, op: Operation, ctx: ApplyContext) -> DidState:
    own, used_next, ctrls = _signers(state, op, ctx, state.controllers)
    if state.controllers:
        if own or used_next or not ctrls:
            raise ControllerSignatureMissing(f"a deactivate of {state.did} must be signed by one of its controllers")
    elif own or not used_next:
        raise NextKeyRequired(f"{state.did} has no controller: its deactivate must be signed by its next key")
    keys = tuple(
        _ended(k, ROTATED, op.seq, ctx.position) if k.fate == CURRENT else k for k in state.keys
    )
    return _advance(state, op, ctx, keys=keys, status=DEACTIVATED, next="")


def _publish(state: DidState, op: Operation, ctx: ApplyContext) -> DidState:
    own, used_next, _ = _signers(state, op, ctx, ())
    if used_next or not own:
        raise WrongSigner(f"a publish by {state.did} must be signed by a current assertionMethod key of the DID")
    for key_id in own:
        if "assertionMethod" not in state.key(key_id).purposes:
            raise WrongSigner(f"{state.did}#{key_id} is not an assertionMethod key")
    res = op.resource
    if res is None:  # parse() sets it for every publish
        raise MalformedOperation("publish without a resource")
    entry = {
        "id": res["id"],
        "mediaType": res["mediaType"],
        "hash": op.hash.hex(),
        "pos": ctx.position,
        "seq": op.seq,
    }
    others = [r for r in state.resources if r["id"] != res["id"]]
    if len(others) >= MAX_RESOURCES:
        raise MalformedOperation(f"{state.did} already has {MAX_RESOURCES} resources")
    return _advance(state, op, ctx, resources=tuple(sorted([*others, entry], key=lambda r: r["id"])))


_TRANSITIONS: dict[str, Callable[[DidState, Operation, ApplyContext], DidState]] = {
    "rotate": _rotate,
    "update": _update,
    "revoke": _revoke,
    "recover": _recover,
    "transfer": _transfer,
    "deactivate": _deactivate,
    "publish": _publish,
}


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
