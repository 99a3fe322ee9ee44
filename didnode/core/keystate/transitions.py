"""The pure state transition ``apply(state, op) -> state`` and its signing rules.

The state is a fold over the DID's operations in ledger order. ``apply`` is
deterministic: everything it depends on (the ledger position and ordering
time of the operation, the states of controller DIDs) is passed in, as an
:class:`ApplyContext`, so every node that applies the same log computes
byte-identical states.

Signing rules (docs/did-method.md has the table):

=========== ==========================================================
create      every listed key (proof of possession) and every controller;
            any other signer endorses it (a current authentication key of
            an active DID: a registrar vouching for the create)
rotate      the pre-committed next key (``did#next``), revealed in ``nextKey``
update      a current authentication key of the DID
revoke      a controller, or the next key (``did#next``)
recover     a controller
transfer    one current controller (the DID's own authentication key when
            it has none) and every controller that is new
deactivate  a controller, or the next key when the DID has no controller
publish     a current assertionMethod key of the DID
anchor      a current assertionMethod key of the DID (the submitter: a
            gateway, or the device itself); the heads it carries are
            judged by :mod:`didnode.core.data.anchoring`
=========== ==========================================================

``publish`` attaches a resource (e.g. a Bitstring Status List credential)
to the DID: the state keeps, per resource id, the hash, media type and
position of its latest content; the content itself stays in the log.

The states themselves (:class:`~didnode.core.keystate.state.DidState`) are
in :mod:`didnode.core.keystate.state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from didnode.core.keystate.state import (
    ACTIVE,
    CURRENT,
    DEACTIVATED,
    ED25519,
    MAX_KEY_HISTORY,
    MAX_RESOURCES,
    REVOKED,
    ROTATED,
    X25519,
    DidState,
    KeyRecord,
)
from didnode.core.operations import NEXT_FRAGMENT, Operation, Proof, next_commitment
from didnode.errors import (
    ControllerSignatureMissing,
    DidAlreadyExists,
    DidDeactivated,
    KeyRevoked,
    KeyRotated,
    MalformedOperation,
    MissingSignature,
    NextKeyRequired,
    PrevMismatch,
    SequenceMismatch,
    UnknownDid,
    UnknownKey,
    WrongSigner,
)


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


def _controller_key(op: Operation, proof: Proof, controller: str, ctx: ApplyContext, role: str = "controller") -> None:
    """A proof by the current authentication key of another DID acting as ``role`` (controller, endorser, governor)."""
    if ctx.trusted:
        return
    key_id = proof.kid[len(controller) + 1 :]
    try:
        cstate = ctx.resolve(controller)
    except UnknownDid:
        raise UnknownDid(f"{role} {controller} does not exist on this ledger", did=controller) from None
    if cstate.status != ACTIVE:
        raise DidDeactivated(f"{role} {controller} is deactivated and cannot sign", did=controller)
    key = _own_key(cstate, op, proof, key_id, ctx)
    if "authentication" not in key.purposes:
        raise WrongSigner(f"{proof.kid} is not an authentication key of {role} {controller}", kid=proof.kid)


def check_signer(op: Operation, proof: Proof, signer: str, ctx: ApplyContext, role: str) -> None:
    """Check a proof by ``signer``'s current authentication key (governance uses it for governors)."""
    _controller_key(op, proof, signer, ctx, role)


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
    # Any other signature is an endorsement (a registrar vouching for the create, docs/governance.md):
    # by a current authentication key of an active DID on the ledger, like a controller's.
    for kid, p in by_kid.items():
        endorser = kid.partition("#")[0]
        if endorser == op.did:
            raise WrongSigner(f"{kid} is not a key listed in the create", kid=kid)
        try:
            _controller_key(op, p, endorser, ctx, "endorser")
        except UnknownDid:
            raise WrongSigner(f"{kid} is neither a listed key, a controller, nor a DID on this ledger endorsing the create", kid=kid) from None
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


def _anchor(state: DidState, op: Operation, ctx: ApplyContext) -> DidState:
    own, used_next, _ = _signers(state, op, ctx, ())
    if used_next or not own:
        raise WrongSigner(f"an anchor by {state.did} must be signed by a current assertionMethod key of the DID")
    for key_id in own:
        if "assertionMethod" not in state.key(key_id).purposes:
            raise WrongSigner(f"{state.did}#{key_id} is not an assertionMethod key")
    return _advance(state, op, ctx)


_TRANSITIONS: dict[str, Callable[[DidState, Operation, ApplyContext], DidState]] = {
    "rotate": _rotate,
    "update": _update,
    "revoke": _revoke,
    "recover": _recover,
    "transfer": _transfer,
    "deactivate": _deactivate,
    "publish": _publish,
    "anchor": _anchor,
}
