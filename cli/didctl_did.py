"""``didctl did ...``: create, resolve, rotate, update, revoke-key, recover, transfer, deactivate, history, keys.

Each command reads what it needs from the node, verified against the
node's trust policy (:meth:`cli.didctl_common.Ctl.verified`), builds the operation with
:mod:`didnode.core.builder`, signs it with keys from the keystore and
submits it. Commands that install new keys go through
:func:`cli.didctl_secrets.submit_staged` so that no crash can lose a key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import click
from nacl.public import PrivateKey

from cli.didctl_common import (
    SERVICE,
    Ctl,
    ServiceSpec,
    checked_did,
    checked_key_id,
    command,
    iso_ms,
    note,
    receipt_json,
    short_kid,
    stdin_is_tty,
    table,
)
from cli.didctl_secrets import FreshKeys, next_index, secrets_with, submit_staged
from cli.signing import (
    Signer,
    active_state,
    auth_signer,
    auth_signer_of,
    held_secrets,
    network_of,
    next_signer,
    secrets_of,
)
from didnode.core import builder, opfile
from didnode.core.document import parse_iso8601
from didnode.core.keystate import ED25519, DidState, KeyRecord
from didnode.core.operations import MAX_REASON, PURPOSES
from didnode.fileio import write_atomic
from didnode.wire.limits import HISTORY_PAGE


@click.group("did")
def did_group() -> None:
    """Create, resolve and manage did:dnode identifiers.

    Signing roles: the DID's own current authentication key (update; transfer
    while it has no controller), its pre-committed next key (rotate; revoke and
    deactivate with --as the DID itself), or a controller's current
    authentication key (--as CONTROLLER_DID).
    """


# --------------------------------------------------------------------------
# Helpers (secrets, signers and state come from cli.signing)
# --------------------------------------------------------------------------


def current_purposes(state: DidState) -> tuple[str, ...]:
    """Purposes of the DID's current Ed25519 keys (what a replacement key keeps); both by default."""
    purposes = {p for k in state.current_keys() for p in k.purposes}
    return tuple(sorted(purposes)) or PURPOSES


def check_reason(reason: str, option: str) -> str:
    """``reason`` within the method's limit, else a usage error."""
    if len(reason) > MAX_REASON:
        raise click.BadParameter(f"is {len(reason)} characters; the limit is {MAX_REASON}", param_hint=option)
    return reason


# --------------------------------------------------------------------------
# create
# --------------------------------------------------------------------------


@command(did_group, "create")
@click.option("--controller", "controllers", multiple=True, metavar="DID", help="A controller DID (repeatable); it must sign, so its keys must be in this keystore.")
@click.option("--service", "services", type=SERVICE, multiple=True, help="A service entry ID=TYPE=URL (repeatable).")
@click.option("--no-key-agreement", is_flag=True, help="Do not create an X25519 key-agreement key.")
@click.option("--purpose", "purposes", type=click.Choice(PURPOSES), multiple=True, help="Purposes of key-1 (repeatable; default: both).")
@click.option("--offline", is_flag=True, help="Do not submit: write the signed create to --out (for a network's genesis: didnode init --governor-op FILE); the keys go to the keystore.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="With --offline: the operation file to write (didnode/operation/v1).")
@click.option("--network", "offline_network", default="", metavar="NET", help="With --offline: the network the DID is created on (no node is asked).")
def create(
    ctl: Ctl, controllers: tuple[str, ...], services: tuple[ServiceSpec, ...], no_key_agreement: bool, purposes: tuple[str, ...],
    offline: bool, out_path: Path | None, offline_network: str,
) -> None:
    """Create a new DID with fresh keys kept in the keystore.

    Generates key-1 (Ed25519, authentication and assertion), ka-1 (X25519
    key agreement) and a pre-rotation next key; prints the new DID.
    The keystore is created if it does not exist yet (unless controllers
    must sign: their keys must already be in it). With --offline --network
    NET --out FILE no node is asked: the signed create is written to FILE
    (for the genesis of a governed network, see didnode init) and the keys
    are kept in the keystore.
    """
    if offline or out_path is not None or offline_network:
        _create_offline(ctl, controllers, services, no_key_agreement, purposes, offline, out_path, offline_network)
        return
    ctrl_dids = sorted({checked_did(c) for c in controllers})
    _unique_services(services, "--service")
    client = ctl.client()
    # A new keystore cannot hold a controller's keys: only create one for a DID without controllers.
    ks = ctl.keystore(create=not ctrl_dids)
    signers = [auth_signer_of(ctl, c, "controller") for c in ctrl_dids]
    network = network_of(ctl)  # after the controllers' states: their replies named the network
    fresh = FreshKeys.generate(1, key_agreement=not no_key_agreement, purposes=purposes or PURPOSES)
    unsigned = builder.create(network, fresh.new_keys(), fresh.next_public, ctrl_dids, [s.to_json() for s in services], fresh.agreement())
    op = builder.sign(unsigned, [(f"{unsigned.did}#{fresh.auth_id}", fresh.auth), *signers])
    receipt = submit_staged(ks, client, op, None, fresh.secrets(unsigned.did, {}), note)
    ctl.emit(receipt_json(receipt, controllers=ctrl_dids), unsigned.did)


def _create_offline(
    ctl: Ctl, controllers: tuple[str, ...], services: tuple[ServiceSpec, ...], no_key_agreement: bool, purposes: tuple[str, ...],
    offline: bool, out_path: Path | None, network: str,
) -> None:
    """``create --offline``: sign the create with fresh keys, keep them, write the operation file.

    Precondition: none of the node's answers is needed, so controllers (whose
    current keys only a node can tell) are refused. The keys are stored
    before the file is written: a file whose keys were lost would be useless.
    """
    if not (offline and out_path is not None and network):
        raise click.UsageError("--offline, --out and --network go together")
    if controllers:
        raise click.UsageError("--controller needs a node (its current keys are read from the ledger); create offline without controllers")
    if out_path.exists():
        raise click.UsageError(f"--out: {out_path} exists; choose another file (a signed create is never overwritten)")
    _unique_services(services, "--service")
    ks = ctl.keystore(create=True)
    fresh = FreshKeys.generate(1, key_agreement=not no_key_agreement, purposes=purposes or PURPOSES)
    unsigned = builder.create(network, fresh.new_keys(), fresh.next_public, [], [s.to_json() for s in services], fresh.agreement())
    op = builder.sign(unsigned, [(f"{unsigned.did}#{fresh.auth_id}", fresh.auth)])
    opfile.loads(opfile.dumps(op).encode(), "--network")  # the network id and the operation parse as a node will parse them
    ks.put(fresh.secrets(unsigned.did, {}))
    write_atomic(out_path, opfile.dumps(op).encode(), mode=0o644)
    note(f"wrote the signed create of {unsigned.did} to {out_path} (not submitted; its keys are in {ctl.keystore_path})")
    ctl.emit({"did": unsigned.did, "out": str(out_path), "network": network}, unsigned.did)


def _unique_services(services: Iterable[ServiceSpec], option: str) -> None:
    seen: set[str] = set()
    for s in services:
        if s.id in seen:
            raise click.BadParameter(f"service id {s.id!r} is given twice", param_hint=option)
        seen.add(s.id)


# --------------------------------------------------------------------------
# resolve
# --------------------------------------------------------------------------


@command(did_group, "resolve")
@click.argument("did")
@click.option("--version-id", type=click.IntRange(min=0), metavar="N", help="Resolve version N (the DID's seq after N operations).")
@click.option("--version-time", metavar="ISO8601", help="Resolve the version current at this time (e.g. 2025-01-31T12:00:00Z).")
def resolve(ctl: Ctl, did: str, version_id: int | None, version_time: str | None) -> None:
    """Print DID's W3C DID Resolution result (or a past version's)."""
    if version_id is not None and version_time is not None:
        raise click.UsageError("--version-id and --version-time are mutually exclusive")
    if version_time is not None:
        try:
            parse_iso8601(version_time)
        except ValueError:
            raise click.BadParameter(f"{version_time!r} is not an ISO 8601 date-time", param_hint="--version-time") from None
    result = ctl.verified().resolve(checked_did(did), version_id, version_time)
    ctl.emit(result, lambda: json.dumps(result, indent=2))


# --------------------------------------------------------------------------
# rotate
# --------------------------------------------------------------------------


@command(did_group, "rotate")
@click.argument("did")
def rotate(ctl: Ctl, did: str) -> None:
    """Rotate DID to a fresh key (its pre-committed next key signs).

    The new key takes the next free id (key-<n+1>); a new next key is
    committed. The rotated key keeps verifying what it signed before.
    """
    did = checked_did(did)
    ks = ctl.keystore()
    client = ctl.client()
    before = secrets_of(ctl, did, "the DID")
    state = active_state(ctl, did)
    next_key = next_signer(state, before)
    fresh = FreshKeys.generate(next_index(state), key_agreement=False, purposes=current_purposes(state))
    unsigned = builder.rotate(network_of(ctl), did, state.seq + 1, state.last, bytes(next_key.verify_key), fresh.new_keys(), fresh.next_public)
    op = builder.sign(unsigned, [(builder.next_kid(did), next_key)])
    after = secrets_with(before, signing_keys={fresh.auth_id: bytes(fresh.auth)}, next_seed=bytes(fresh.next))
    receipt = submit_staged(ks, client, op, before, after, note)
    ctl.emit(
        receipt_json(receipt, keyId=fresh.auth_id),
        f"rotated {did}: current key {fresh.auth_id} (seq {receipt.seq}, position {receipt.position})",
    )


# --------------------------------------------------------------------------
# update
# --------------------------------------------------------------------------


@command(did_group, "update")
@click.argument("did")
@click.option("--service", "services", type=SERVICE, multiple=True, help="Add or replace a service ID=TYPE=URL (repeatable).")
@click.option("--remove-service", "removed", multiple=True, metavar="ID", help="Remove the service with this id (repeatable).")
@click.option("--rotate-key-agreement", is_flag=True, help="Replace the X25519 key-agreement key with a fresh one.")
@click.option("--remove-key-agreement", is_flag=True, help="Remove the key-agreement key.")
def update(
    ctl: Ctl,
    did: str,
    services: tuple[ServiceSpec, ...],
    removed: tuple[str, ...],
    rotate_key_agreement: bool,
    remove_key_agreement: bool,
) -> None:
    """Change DID's services or key-agreement key.

    Starts from the services and key-agreement key the DID has now; signed by
    its current authentication key from the keystore.
    """
    if rotate_key_agreement and remove_key_agreement:
        raise click.UsageError("--rotate-key-agreement and --remove-key-agreement are mutually exclusive")
    if not (services or removed or rotate_key_agreement or remove_key_agreement):
        raise click.UsageError("nothing to update: give --service, --remove-service, --rotate-key-agreement or --remove-key-agreement")
    _unique_services(services, "--service")
    did = checked_did(did)
    ks = ctl.keystore()
    client = ctl.client()
    secrets = secrets_of(ctl, did, "the DID")
    state = active_state(ctl, did)
    signer = auth_signer(state, secrets)
    new_services = _edit_services(state, services, removed)
    fresh_ka, agreement = _edit_agreement(state, rotate_key_agreement, remove_key_agreement)
    unsigned = builder.update(network_of(ctl), did, state.seq + 1, state.last, new_services, agreement)
    op = builder.sign(unsigned, [signer])
    if fresh_ka is not None and agreement is not None:
        after = secrets_with(secrets, ka=(agreement.id, bytes(fresh_ka)))
        receipt = submit_staged(ks, client, op, secrets, after, note)
    else:
        receipt = client.submit(op)
    ka_id = agreement.id if agreement is not None else None
    ctl.emit(
        receipt_json(receipt, services=new_services, keyAgreement=ka_id),
        f"updated {did}: {len(new_services)} service(s), key agreement {ka_id or 'none'} (seq {receipt.seq}, position {receipt.position})",
    )


def _edit_services(state: DidState, add: Iterable[ServiceSpec], remove: Iterable[str]) -> list[dict[str, str]]:
    """The DID's service list with ``remove`` taken out and ``add`` put in (replacing same ids)."""
    current = {s["id"]: dict(s) for s in state.services}
    for sid in remove:
        if sid not in current:
            have = ", ".join(current) or "none"
            raise click.BadParameter(f"{state.did} has no service {sid!r} (services: {have})", param_hint="--remove-service")
        del current[sid]
    for spec in add:
        current[spec.id] = spec.to_json()
    return list(current.values())


def _edit_agreement(state: DidState, rotate_ka: bool, remove_ka: bool) -> tuple[PrivateKey | None, builder.NewAgreementKey | None]:
    """(fresh private key if one was made, the key-agreement key the update installs or keeps)."""
    current = state.key_agreement()
    if remove_ka:
        if current is None:
            raise click.BadParameter(f"{state.did} has no key-agreement key", param_hint="--remove-key-agreement")
        return None, None
    if rotate_ka:
        fresh = PrivateKey.generate()
        return fresh, builder.NewAgreementKey(f"ka-{next_index(state)}", bytes(fresh.public_key))
    if current is None:
        return None, None
    return None, builder.NewAgreementKey(current.id, current.raw)


# --------------------------------------------------------------------------
# revoke-key, recover, transfer, deactivate
# --------------------------------------------------------------------------


def _own_next_or_controller(ctl: Ctl, did: str, signer_did: str) -> tuple[DidState, Signer, bytes | None]:
    """The DID's state and the signer for a revoke/deactivate ``--as signer_did``.

    ``--as`` the DID itself means its committed next key (whose public key the
    operation must reveal: returned third); any other DID signs with its
    current authentication key (the node checks that it is a controller).
    """
    if signer_did == did:
        secrets = secrets_of(ctl, did, "the DID")
        state = active_state(ctl, did)
        next_key = next_signer(state, secrets)
        return state, (builder.next_kid(did), next_key), bytes(next_key.verify_key)
    signer = auth_signer_of(ctl, signer_did, "signer")
    return active_state(ctl, did), signer, None


@command(did_group, "revoke-key")
@click.argument("did")
@click.argument("key_id")
@click.option("--as", "signer_did", required=True, metavar="SIGNER_DID", help="A controller of DID, or DID itself (its next key signs).")
@click.option("--reason", default="compromised", show_default=True, help="Why the key is revoked.")
def revoke_key(ctl: Ctl, did: str, key_id: str, signer_did: str, reason: str) -> None:
    """Revoke KEY_ID of DID as compromised: it never verifies again.

    KEY_ID as it is copied: key-1, #key-1, or DID#key-1 from the resolved
    document (the JsonWebKey method's id, key-1-jwk, names the same key).
    """
    did = checked_did(did)
    signer_did = checked_did(signer_did)
    key_id = checked_key_id(did, key_id)
    check_reason(reason, "--reason")
    state, signer, next_public = _own_next_or_controller(ctl, did, signer_did)
    unsigned = builder.revoke(network_of(ctl), did, state.seq + 1, state.last, key_id, reason, next_key_public=next_public)
    receipt = ctl.client().submit(builder.sign(unsigned, [signer]))
    ctl.emit(
        receipt_json(receipt, keyId=key_id, reason=reason, signer=signer[0]),
        f"revoked {did}#{key_id} ({reason}) (seq {receipt.seq}, position {receipt.position})",
    )


@command(did_group, "recover")
@click.argument("did")
@click.option("--as", "controller", required=True, metavar="CONTROLLER_DID", help="The controller that signs the recovery.")
@click.option("--no-key-agreement", is_flag=True, help="Do not install a new key-agreement key.")
def recover(ctl: Ctl, did: str, controller: str, no_key_agreement: bool) -> None:
    """Replace DID's keys with fresh ones (a controller signs).

    For a device that lost its next key: fresh key-<n>, ka-<n> and next key
    are generated and stored in this keystore.
    """
    did = checked_did(did)
    controller = checked_did(controller)
    ks = ctl.keystore()
    client = ctl.client()
    signer = auth_signer_of(ctl, controller, "controller")
    before = held_secrets(ctl, did)
    state = active_state(ctl, did)
    fresh = FreshKeys.generate(next_index(state), key_agreement=not no_key_agreement, purposes=current_purposes(state))
    unsigned = builder.recover(network_of(ctl), did, state.seq + 1, state.last, fresh.new_keys(), fresh.next_public, fresh.agreement())
    op = builder.sign(unsigned, [signer])
    after = fresh.secrets(did, before.labels if before is not None else {})
    receipt = submit_staged(ks, client, op, before, after, note)
    ctl.emit(
        receipt_json(receipt, keyId=fresh.auth_id, keyAgreement=fresh.ka_id, signer=signer[0]),
        f"recovered {did}: current key {fresh.auth_id} (seq {receipt.seq}, position {receipt.position})",
    )


@command(did_group, "transfer")
@click.argument("did")
@click.option("--to", "new_controllers", multiple=True, required=True, metavar="DID", help="A controller of the new set (repeatable; the full new set).")
@click.option("--as", "signer_did", required=True, metavar="SIGNER_DID", help="A current controller, or DID itself when it has none.")
def transfer(ctl: Ctl, did: str, new_controllers: tuple[str, ...], signer_did: str) -> None:
    """Hand DID to a new set of controllers.

    Signed by SIGNER_DID and by every new controller that is not already one
    (their keys must all be in this keystore).
    """
    did = checked_did(did)
    signer_did = checked_did(signer_did)
    new = sorted({checked_did(c) for c in new_controllers})
    if did in new:
        raise click.BadParameter("a DID cannot be its own controller", param_hint="--to")
    client = ctl.client()
    signers = [auth_signer_of(ctl, signer_did, "the DID" if signer_did == did else "controller")]
    state = active_state(ctl, did)
    for c in new:
        if c not in state.controllers and c != signer_did:
            signers.append(auth_signer_of(ctl, c, "new controller"))
    unsigned = builder.transfer(network_of(ctl), did, state.seq + 1, state.last, new)
    receipt = client.submit(builder.sign(unsigned, signers))
    ctl.emit(
        receipt_json(receipt, controllers=new, previousControllers=list(state.controllers)),
        f"transferred {did} to {', '.join(new)} (seq {receipt.seq}, position {receipt.position})",
    )


@command(did_group, "deactivate")
@click.argument("did")
@click.option("--as", "signer_did", required=True, metavar="SIGNER_DID", help="A controller, or DID itself (its next key signs) when it has none.")
@click.option("--reason", default="", help="Why the DID is deactivated.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required with --json or without a terminal).")
def deactivate(ctl: Ctl, did: str, signer_did: str, reason: str, yes: bool) -> None:
    """Deactivate DID for good: no operation can follow."""
    did = checked_did(did)
    signer_did = checked_did(signer_did)
    check_reason(reason, "--reason")
    if not yes:
        if ctl.json_output or not stdin_is_tty():
            raise click.UsageError("deactivation is irreversible: pass --yes (required with --json or without a terminal)")
        click.confirm(f"Deactivate {did}? This cannot be undone", abort=True, err=True)
    state, signer, next_public = _own_next_or_controller(ctl, did, signer_did)
    unsigned = builder.deactivate(network_of(ctl), did, state.seq + 1, state.last, reason, next_key_public=next_public)
    receipt = ctl.client().submit(builder.sign(unsigned, [signer]))
    ctl.emit(
        receipt_json(receipt, reason=reason, signer=signer[0]),
        f"deactivated {did} (seq {receipt.seq}, position {receipt.position})",
    )


# --------------------------------------------------------------------------
# history, keys
# --------------------------------------------------------------------------


@command(did_group, "history")
@click.argument("did")
@click.option("--after", "after_seq", type=click.IntRange(min=0), metavar="SEQ", help="Only the operations after seq SEQ.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N operations; nextAfter (JSON) or the last line says where to go on.")
def history(ctl: Ctl, did: str, after_seq: int | None, limit: int | None) -> None:
    """List DID's operations: position, time, type, signers, hash.

    Times are ISO 8601 UTC with milliseconds (usable as --version-time).
    The whole history is read and verified (every operation proven in the log
    and chained to the DID's verified state), then --after and --limit pick
    from it; with --insecure-no-verify only the pages needed are read.
    """
    did = checked_did(did)
    if ctl.insecure_no_verify:
        entries, after = _history_pages(ctl, did, after_seq, limit)
    else:
        every = [e for e in ctl.verified().history(did) if after_seq is None or e.seq > after_seq]
        entries = every[:limit] if limit is not None else every
        after = entries[-1].seq if len(entries) < len(every) else None
    data = {
        "did": did,
        "nextAfter": after,
        "entries": [
            {
                "position": e.position,
                "time": iso_ms(e.time_ms),
                "type": e.type,
                "seq": e.seq,
                "signers": list(e.signers),
                "opHash": e.op_hash.hex(),
            }
            for e in entries
        ],
    }
    rows = [
        (e.position, iso_ms(e.time_ms), e.type, e.seq, ", ".join(short_kid(k, did) for k in e.signers), e.op_hash.hex()[:12])
        for e in entries
    ]
    more = "" if after is None else f"\nmore: didctl did history {did} --after {after}"
    ctl.emit(data, lambda: table(("POS", "TIME", "TYPE", "SEQ", "SIGNERS", "HASH"), rows) + more)


def _history_pages(ctl: Ctl, did: str, after_seq: int | None, limit: int | None) -> tuple[list[Any], int | None]:
    """The node's history pages after ``after_seq``, at most ``limit`` operations, unverified; and where to go on."""
    client = ctl.client()
    entries: list[Any] = []
    after = after_seq
    while True:
        page = client.history_page(did, after, HISTORY_PAGE if limit is None else min(HISTORY_PAGE, limit - len(entries)))
        entries.extend(page.entries)
        after = page.next_after_seq
        if after is None or (limit is not None and len(entries) >= limit):
            return entries, after


def _key_json(k: KeyRecord) -> dict[str, Any]:
    ended = k.ended_pos >= 0
    return {
        "id": k.id,
        "type": k.kind,
        "publicKeyMultibase": k.multibase,
        "purposes": list(k.purposes),
        "fate": k.fate,
        "addedSeq": k.added_seq,
        "addedPos": k.added_pos,
        "endedSeq": k.ended_seq if ended else None,
        "endedPos": k.ended_pos if ended else None,
        "reason": k.reason or None,
    }


@command(did_group, "keys")
@click.argument("did")
@click.option("--at-position", type=click.IntRange(min=0), metavar="N", help="Also say which keys could sign at ledger position N.")
def keys(ctl: Ctl, did: str, at_position: int | None) -> None:
    """List every key DID ever had, with its fate.

    Fates: current, rotated (still verifies what it signed before), revoked
    (verifies nothing from its revocation on). Positions are ledger positions.
    """
    did = checked_did(did)
    key_state = ctl.verified().key_state(did, at_position)
    state = key_state.state
    valid = list(key_state.valid_at) if key_state.valid_at is not None else None
    data = {
        "did": did,
        "status": state.status,
        "seq": state.seq,
        "controllers": list(state.controllers),
        "keys": [_key_json(k) for k in state.keys],
        "atPosition": at_position,
        "validAt": valid,
    }
    ctl.emit(data, lambda: _keys_text(state, at_position, valid))


def _keys_text(state: DidState, at_position: int | None, valid: list[str] | None) -> str:
    headers = ["ID", "TYPE", "PURPOSES", "FATE", "ADDED", "ENDED", "REASON"]
    if valid is not None:
        headers.append(f"VALID@{at_position}")
    rows = []
    for k in state.keys:
        row: list[object] = [
            k.id,
            k.kind,
            ",".join(k.purposes),
            k.fate,
            k.added_pos,
            k.ended_pos if k.ended_pos >= 0 else "-",
            k.reason or "-",
        ]
        if valid is not None:
            row.append("yes" if k.id in valid else ("no" if k.kind == ED25519 else "-"))
        rows.append(row)
    head = f"{state.did}  {state.status}, seq {state.seq}"
    if state.controllers:
        head += f", controllers {', '.join(state.controllers)}"
    lines = [head, table(headers, rows)]
    if valid is not None:
        lines.append(f"keys that could sign at position {at_position}: {', '.join(valid) or 'none'}")
    return "\n".join(lines)
