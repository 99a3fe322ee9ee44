"""``didctl gov ...``: the network's governance: show the policy, propose a change, sign it, submit it.

A change travels as a proposal file (:mod:`didnode.core.governance.proposal`):
``gov propose`` reads the current record (verified against the trust policy,
like every read a decision rests on) and writes the unsigned ``govern``
operation; each governor runs ``gov sign FILE --as DID`` (the file is rewritten
atomically with one more signature); anyone runs ``gov submit FILE``. A
genesis proposal (the network's creates, then the inception) is signed the
same way by every genesis DID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

from cli.didctl_common import Ctl, checked_did, command, iso_ms, kv_lines, note, receipt_json, table
from cli.signing import Signer, auth_signer, auth_signer_of, current_state, network_of, secrets_of
from didnode.core import operations
from didnode.core.builder import SignedOperation
from didnode.core.governance import build as gb
from didnode.core.governance import proposal as proposals
from didnode.core.governance.policy import (
    CREATE_MODES,
    CreateQuota,
    Policy,
    PublishQuota,
    Usage,
    parse_changes,
    window_end_ms,
    window_index,
)
from didnode.core.keystate import ApplyContext, DidState, apply
from didnode.core.did import did_for_create_hash
from didnode.errors import DidAlreadyExists, DidnodeError, DuplicateOperation, InvalidArgument, MalformedOperation, QuotaExceeded, UnknownDid
from didnode.fileio import write_atomic

MAX_USAGE_SHOWN = 64  # registrars whose usage `gov show` asks for (the node answers at most 64 at once)


@click.group("gov")
def gov_group() -> None:
    """Network governance: the policy (governors, registrars, quotas) and changes to it.

    \b
    A change signed by M of N governors:
      didctl gov propose --add-registrar DID --per-window 100 --window 86400 --out change.json
      didctl gov sign change.json --as GOVERNOR_DID      # each governor, in turn
      didctl gov submit change.json
    """


# --------------------------------------------------------------------------
# Reading the policy
# --------------------------------------------------------------------------


def read_policy(ctl: Ctl, at_position: int | None = None) -> Policy:
    """The governance record (current, or in effect once the log holds ``at_position``), verified against
    the node's trust policy; with ``--insecure-no-verify`` as the node says."""
    if ctl.insecure_no_verify:
        return ctl.client().governance(at_position).policy
    reads: Any = ctl.verified()
    return reads.governance(at_position)  # type: ignore[no-any-return]


def _create_quota_text(q: CreateQuota) -> str:
    parts = []
    if q.per_window is not None:
        parts.append(f"{q.per_window} per {q.window_s} s")
    if q.total is not None:
        parts.append(f"{q.total} in all")
    return ", ".join(parts) or "unlimited"


def _publish_quota_text(q: PublishQuota | None) -> str:
    if q is None:
        return "unlimited"
    parts = [f"{q.count} publishes" if q.count is not None else "", f"{q.bytes} bytes" if q.bytes is not None else ""]
    return f"{' and '.join(p for p in parts if p)} per {q.window_s} s"


def _usage_json(u: Usage, quota: CreateQuota, last_time_ms: int) -> dict[str, Any]:
    """A registrar's counts as seen at the log's last ordering time (a window past is counted from zero)."""
    out: dict[str, Any] = {"total": u.total_count}
    if quota.window_s is not None:
        index = window_index(last_time_ms, quota.window_s)
        out["window"] = u.in_window(index).count
        out["windowEnds"] = iso_ms(window_end_ms(index, quota.window_s))
    return out


@command(gov_group, "show")
@click.option("--at", "at_position", type=click.IntRange(min=0), metavar="POSITION", help="The policy in effect once the log held POSITION (replayed from its verified operations).")
def show(ctl: Ctl, at_position: int | None) -> None:
    """The governors, threshold, create policy, registrars with their quotas (and usage), publish quotas.

    Verified against the node's trust policy; the registrars' usage counts
    (current policy only) are the node's advice: no proof covers them.
    """
    policy = read_policy(ctl, at_position)
    usage: dict[str, dict[str, Any]] = {}
    if at_position is None and policy.registrars:
        dids = sorted(policy.registrars)[:MAX_USAGE_SHOWN]
        info = ctl.client().governance(usage_of=dids)
        for did in dids:
            u = info.usage.get(("creates", did))
            if u is not None:
                usage[did] = _usage_json(u, policy.registrars[did], info.last_time_ms)
    data = policy.to_json()
    data["effectivePosition"] = policy.updated_pos
    if at_position is not None:
        data["at"] = at_position
    if usage:
        data["usage"] = usage

    def text() -> str:
        pairs = {
            "governance": policy.did,
            "seq": policy.seq,
            "in effect since": f"position {policy.updated_pos} ({iso_ms(policy.updated_time)})",
            "governors": f"{policy.threshold} of {len(policy.governors)} sign a change",
            "create policy": policy.create,
            "publish quota": _publish_quota_text(policy.publish),
        }
        if at_position is not None:
            pairs["as of position"] = at_position
        lines = [kv_lines(pairs), "", table(["governor"], [[g] for g in policy.governors])]
        if policy.registrars:
            rows = []
            for did, q in sorted(policy.registrars.items()):
                u = usage.get(did)
                used = "-" if u is None else (f"{u['window']} this window, " if "window" in u else "") + f"{u['total']} in all"
                rows.append([did, _create_quota_text(q), used])
            lines += ["", table(["registrar", "quota", "creates"], rows)]
        else:
            lines += ["", "registrars: none"]
        if policy.publishers:
            lines += ["", table(["publisher", "quota"], [[d, _publish_quota_text(q)] for d, q in sorted(policy.publishers.items())])]
        return "\n".join(lines)

    ctl.emit(data, text)


# --------------------------------------------------------------------------
# propose
# --------------------------------------------------------------------------


def _create_quota(per_window: int | None, window: int | None, total: int | None) -> CreateQuota | None:
    if (per_window is None) != (window is None):
        raise click.UsageError("--per-window and --window go together")
    if per_window is None and total is None:
        return None
    return CreateQuota(window, per_window, total)


def parse_publish_quota(value: str, option: str) -> PublishQuota | None:
    """``window=S,count=N,bytes=N`` (window and at least one limit), or ``none``; else a usage error."""
    if value.strip().lower() == "none":
        return None
    parts: dict[str, int] = {}
    for item in value.split(","):
        name, eq, number = item.strip().partition("=")
        if not eq or name not in ("window", "count", "bytes") or name in parts or not number.strip().isdigit():
            raise click.BadParameter(f"{value!r} is not window=SECONDS,count=N,bytes=N (count or bytes or both) or none", param_hint=option)
        parts[name] = int(number)
    if "window" not in parts or not ({"count", "bytes"} & parts.keys()):
        raise click.BadParameter(f"{value!r} names the window and a count, bytes or both", param_hint=option)
    return PublishQuota(parts["window"], parts.get("count"), parts.get("bytes"))


def build_changes(
    add: Sequence[str],
    remove: Sequence[str],
    set_quota: Sequence[str],
    quota: CreateQuota | None,
    create: str | None,
    publish: str | None,
    publishers: Sequence[str],
    governors: str | None,
    threshold: int | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``changes`` of the options, and one line per change saying what it does."""
    changes: list[dict[str, Any]] = []
    said: list[str] = []
    for did in add:
        changes.append(gb.add_registrar(checked_did(did), quota))
        said.append(f"add registrar {did} (quota: {_create_quota_text(quota or CreateQuota())})")
    for did in set_quota:
        if quota is None:
            raise click.UsageError("--set-registrar-quota needs the quota: --per-window N --window SECONDS and/or --total N")
        changes.append(gb.set_registrar_quota(checked_did(did), quota))
        said.append(f"set the quota of registrar {did}: {_create_quota_text(quota)}")
    for did in remove:
        changes.append(gb.remove_registrar(checked_did(did)))
        said.append(f"remove registrar {did}")
    if create is not None:
        changes.append(gb.set_create_policy(create))
        said.append(f"set the create policy to {create}")
    if publish is not None:
        q = parse_publish_quota(publish, "--publish-quota")
        changes.append(gb.set_publish_quota(q))
        said.append(f"set the publish quota to {_publish_quota_text(q)}")
    for spec in publishers:
        did, eq, value = spec.partition("=")
        if not eq:
            raise click.BadParameter(f"{spec!r} is not DID=window=S,count=N,bytes=N or DID=none", param_hint="--publisher-quota")
        q = parse_publish_quota(value, "--publisher-quota")
        changes.append(gb.set_publisher_quota(checked_did(did), q))
        said.append(f"{'remove the own quota of' if q is None else 'set the quota of'} publisher {did}" + ("" if q is None else f": {_publish_quota_text(q)}"))
    if (governors is None) != (threshold is None):
        raise click.UsageError("--governors and --threshold go together")
    if governors is not None and threshold is not None:
        dids = sorted({checked_did(d) for d in governors.split(",") if d.strip()})
        changes.append(gb.set_governors(dids, threshold))
        said.append(f"set the governors to {', '.join(dids)} ({threshold} of {len(dids)} sign a change)")
    if not changes:
        raise click.UsageError("nothing to propose: give an action (--add-registrar, --remove-registrar, --set-registrar-quota, --create-policy, --publish-quota, --publisher-quota, --governors)")
    parse_changes(changes)  # the checks the ledger makes of their shape: one line, exit 1
    return changes, said


@command(gov_group, "propose")
@click.option("--add-registrar", "add", multiple=True, metavar="DID", help="Add a registrar (repeatable); its quota from --per-window/--window/--total.")
@click.option("--remove-registrar", "remove", multiple=True, metavar="DID", help="Remove a registrar (repeatable).")
@click.option("--set-registrar-quota", "set_quota", multiple=True, metavar="DID", help="Set a registrar's quota (repeatable) to --per-window/--window/--total.")
@click.option("--per-window", type=click.IntRange(min=1), metavar="N", help="Registrar quota: at most N creates per --window.")
@click.option("--window", type=click.IntRange(min=1), metavar="SECONDS", help="Registrar quota: the window of --per-window.")
@click.option("--total", type=click.IntRange(min=1), metavar="N", help="Registrar quota: at most N creates in all.")
@click.option("--create-policy", "create", type=click.Choice(CREATE_MODES), help="Who may create DIDs.")
@click.option("--publish-quota", "publish", metavar="window=S,count=N,bytes=N|none", help="The quota of every publisher without its own.")
@click.option("--publisher-quota", "publishers", multiple=True, metavar="DID=window=S,...|DID=none", help="A publisher's own quota (repeatable).")
@click.option("--governors", metavar="DID,DID,...", help="The new set of governors (with --threshold); the added ones sign too.")
@click.option("--threshold", type=click.IntRange(min=1), metavar="M", help="With --governors: how many governors sign a change.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="The proposal file to write.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def propose(
    ctl: Ctl, add: tuple[str, ...], remove: tuple[str, ...], set_quota: tuple[str, ...], per_window: int | None, window: int | None,
    total: int | None, create: str | None, publish: str | None, publishers: tuple[str, ...], governors: str | None,
    threshold: int | None, out_path: Path, force: bool,
) -> None:
    """Write a proposal file: one governance change (unsigned) made of the given actions.

    The change continues the current governance record (read verified); the
    governors sign it with `didctl gov sign FILE`, then `didctl gov submit FILE`.
    """
    changes, said = build_changes(add, remove, set_quota, _create_quota(per_window, window, total), create, publish, publishers, governors, threshold)
    if out_path.exists() and not force:
        raise click.UsageError(f"{out_path} exists; give another --out or --force")
    policy = read_policy(ctl)
    network = network_of(ctl)
    unsigned = gb.change(network, policy.did, policy.seq + 1, policy.last, changes)
    doc = proposals.from_operations(network, [SignedOperation(unsigned.type, network, unsigned.did, unsigned.payload, ())])
    _write(out_path, doc)
    needs = f"needs {policy.threshold} of the {len(policy.governors)} governors' signatures"
    ctl.emit(
        {"file": str(out_path), "governance": policy.did, "seq": policy.seq + 1, "changes": changes, "threshold": policy.threshold},
        "\n".join([f"wrote {out_path}: governance change {policy.seq + 1} of {policy.did} ({needs})", *(f"  - {s}" for s in said)]),
    )


def _write(path: Path, doc: proposals.Proposal) -> None:
    try:
        write_atomic(path, doc.dumps().encode(), mode=0o644)
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path}: {exc.strerror}", path=str(path)) from None


def _read(path: Path) -> proposals.Proposal:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the proposal file {path}: {exc.strerror}", path=str(path)) from None
    return proposals.loads(data)


# --------------------------------------------------------------------------
# sign
# --------------------------------------------------------------------------


def _genesis_state(doc: proposals.Proposal, did: str) -> DidState | None:
    """``did``'s state after its create among the proposal's operations (a genesis), or None if it is not there."""
    for i, op in enumerate(doc.operations[:-1]):
        if op.type == "create" and op.did == did:
            parsed = operations.parse(op.payload, op.proofs, doc.network)
            return apply(None, parsed, ApplyContext(i, 0, _no_resolve, trusted=True))
    return None


def _no_resolve(did: str) -> DidState:
    raise UnknownDid(f"{did} is not consulted when reading a genesis create", did=did)


def _signers_wanted(ctl: Ctl, doc: proposals.Proposal) -> tuple[list[str], bool]:
    """(the DIDs that sign the governance operation, whether it is an inception)."""
    op = operations.parse(doc.govern.payload, doc.govern.proofs or _placeholder(), doc.network)
    if op.seq == 0:
        return list(op.governance.genesis), True  # type: ignore[union-attr]
    policy = read_policy(ctl)
    incoming = [g for c in op.governance or () if c.action == "setGovernors" for g in c.governors]  # type: ignore[union-attr]
    return list(dict.fromkeys([*policy.governors, *incoming])), False


def _placeholder() -> list[operations.Proof]:
    """parse() wants a proof: an unsigned governance operation gets one that names no real key."""
    return [operations.Proof(did_for_create_hash(bytes(32)) + "#unsigned", bytes(64))]


def _signer(ctl: Ctl, doc: proposals.Proposal, did: str, inception: bool) -> Signer:
    if inception:
        state = _genesis_state(doc, did)
        if state is not None:
            return auth_signer(state, secrets_of(ctl, did, "genesis DID"))
        return auth_signer(current_state(ctl, did), secrets_of(ctl, did, "genesis DID"))
    return auth_signer_of(ctl, did, "governor")


@command(gov_group, "sign")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "--key", "signer_did", metavar="DID", help="The governor (or genesis DID) that signs, from the keystore; default: the only one it holds that has not signed yet.")
def sign(ctl: Ctl, file: Path, signer_did: str | None) -> None:
    """Add a signature to the governance operation of FILE (rewritten in place, atomically).

    For a change: a current governor's authentication key (or an added
    governor's). For a genesis: every genesis DID signs the inception.
    """
    doc = _read(file)
    wanted, inception = _signers_wanted(ctl, doc)
    signed = {p.kid.partition("#")[0] for p in doc.govern.proofs}
    if signer_did is None:
        held = [d for d in wanted if d not in signed and ctl.keystore().has(d)]
        if len(held) != 1:
            which = "none" if not held else ", ".join(held)
            raise click.UsageError(f"name the signer with --as DID (the keystore holds these signers that have not signed: {which})")
        signer_did = held[0]
    did = checked_did(signer_did)
    role = "genesis DID" if inception else "governor"
    if did not in wanted:
        raise InvalidArgument(f"{did} is not a {role} of this proposal; the signers are {', '.join(wanted)}", did=did)
    kid, key = _signer(ctl, doc, did, inception)
    doc = doc.signed(kid, key.sign(doc.message()).signature)
    _write(file, doc)
    count = len({p.kid.partition("#")[0] for p in doc.govern.proofs} & set(wanted))
    ctl.emit({"file": str(file), "signer": kid, "signatures": count}, f"signed {file} as {kid} ({count} of the {role}s have signed)")


# --------------------------------------------------------------------------
# submit
# --------------------------------------------------------------------------


@command(gov_group, "submit")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def submit(ctl: Ctl, file: Path) -> None:
    """Submit the operations of FILE in order (a change: its one governance operation)."""
    doc = _read(file)
    if not doc.govern.proofs:
        raise MalformedOperation(f"the governance operation of {file} carries no signature yet: the governors sign it first (didctl gov sign {file})")
    client = ctl.client()
    receipts = []
    for op in doc.operations:
        try:
            receipts.append(receipt_json(client.submit(op)))
        except (DuplicateOperation, DidAlreadyExists):
            if op is doc.govern:
                raise
            note(f"the {op.type} of {op.did} is on the ledger already")
    last = receipts[-1]
    ctl.emit(
        {"file": str(file), "receipts": receipts},
        f"accepted: governance {last['did']} seq {last['seq']} at position {last['position']} ({last['time']})",
    )


# --------------------------------------------------------------------------
# Hints on the one error line of any command (cli.didctl.report)
# --------------------------------------------------------------------------

_HINTS = {
    "NOT_A_REGISTRAR": "`didctl gov show` lists the registrars: one must sign the create (as controller or endorser)",
    "GOVERNANCE_THRESHOLD": "more governors sign it first: `didctl gov sign FILE --as GOVERNOR_DID`",
}


def error_hint(err: DidnodeError) -> str:
    """A short remedy for a governance refusal, or ""; a window quota says when it resets (UTC) unless its message does."""
    if isinstance(err, QuotaExceeded):
        reset = err.reset_time_ms
        if reset is None:
            return "the governors can raise it: `didctl gov propose --set-registrar-quota DID ...`"
        when = iso_ms(reset)
        return "" if when[:19] in err.message else f"the quota resets at {when}"
    return _HINTS.get(err.reason, "")


__all__ = ["error_hint", "gov_group"]
