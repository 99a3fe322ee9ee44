"""``didctl trust ...``: the nodes didctl trusts, one trust policy per node address (like ssh's known_hosts).

\b
    didctl trust add [--yes] [--max-staleness-ms N]   accept the node at --node
    didctl trust show [ADDRESS] [--json]              its policy (--json: the policy file itself)
    didctl trust list                                 every address with an entry
    didctl trust remove ADDRESS                       forget a node
    didctl trust export [ADDRESS] > trust.json        a policy file for --trust FILE or a device

The store and first contact are :mod:`cli.trust_store`; docs/trust.md ("The
CLI") describes the whole. Registered on the main group in ``cli/didctl.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.didctl_common import Ctl, command, kv_lines, table
from cli.trust_store import ask, facts, facts_json, interactive, read_policy, unknown_node
from didnode.client.trust import check_same_anchors, policy_from_node
from didnode.core.trust import DEFAULT_MAX_STALENESS_MS, TrustPolicy
from didnode.errors import TrustPolicyInvalid, UnknownNode

__all__ = ["trust_group"]


@click.group("trust")
def trust_group() -> None:
    """The nodes didctl trusts: one trust policy per node address, like ssh's known_hosts.

    Every read a decision rests on (did resolve, keys, history, the state
    before a rotate or revoke, credential verification, status lists) is
    checked against the policy of the node's address: the network, the
    genesis (hash of log entry 0), the keys that sign checkpoints, and the
    latest checkpoint already verified. At the first contact with a node the
    policy is taken from the node itself: compare its key fingerprint and
    genesis with what its operator published (`didnode trust-policy`).

    \b
      didctl trust add                 # shows the node's facts and asks
      didctl --node n1:50051 trust add --yes
      didctl trust export > trust.json; didctl --trust trust.json did resolve $DID
    """


def _set_node(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None and not ctx.resilient_parsing:
        ctl = ctx.find_object(Ctl)
        if ctl is not None:
            ctl.node = value


NODE = click.option(
    "--node", "node_flag", expose_value=False, callback=_set_node, metavar="HOST:PORT", help="The node (as the global --node; given here, it wins)."
)


def _no_file(ctl: Ctl, what: str) -> None:
    if ctl.trust_file is not None or ctl.insecure_no_verify:
        raise click.UsageError(f"trust {what} works on the trust store; it does not apply with --trust or --insecure-no-verify")


def _entry(ctl: Ctl, address: str | None) -> tuple[str, TrustPolicy, str]:
    """(address, policy, where it is kept) for ADDRESS, or for --trust FILE / --node when none is given."""
    if address is None and ctl.trust_file is not None:
        policy = read_policy(ctl.trust_file)
        assert policy is not None
        return ctl.node, policy, str(ctl.trust_file)
    address = address or ctl.node
    store = ctl.trust_source().store
    policy = store.get(address)
    if policy is None:
        raise unknown_node(address)
    return address, policy, str(store.path_for(address))


@command(trust_group, "add")
@NODE
@click.option("--yes", "-y", is_flag=True, help="Accept without asking (after comparing the facts with what the operator published).")
@click.option(
    "--max-staleness-ms",
    type=click.IntRange(1_000, 366 * 86_400_000),
    metavar="N",
    help=f"How old a checkpoint may be, in ms (default {DEFAULT_MAX_STALENESS_MS}).",
)
def add(ctl: Ctl, yes: bool, max_staleness_ms: int | None) -> None:
    """Accept the node at --node: keep the policy it presents (network, genesis, checkpoint key).

    Without --yes the facts are shown and you are asked (a terminal is
    needed). A node already known with the same anchors stays as it is (its
    staleness bound changes with --max-staleness-ms); one that presents
    another network, genesis or key is an error (TRUST_CHANGED), never a question.
    """
    _no_file(ctl, "add")
    address = ctl.node
    store = ctl.trust_source().store
    presented = policy_from_node(ctl.client(), max_staleness_ms or DEFAULT_MAX_STALENESS_MS)
    known = store.get(address)
    if known is not None:
        check_same_anchors(known, presented, address)
        if max_staleness_ms is None or max_staleness_ms == known.max_staleness_ms:
            _emit_added(ctl, address, known, store.path_for(address), "already trusted: nothing changed", False)
            return
        presented = TrustPolicy.create(
            known.network, known.genesis, known.keys, known.threshold, max_staleness_ms, known.latest, known.origin, known.witnesses, known.witness_threshold
        )
        _emit_added(ctl, address, presented, store.put(address, presented), f"max staleness now {max_staleness_ms} ms", True)
        return
    asked = False
    if not yes:
        if ctl.json_output or not interactive():
            raise click.UsageError("accepting a node needs a terminal to ask in, or --yes (compare its facts with `didnode trust-policy` first)")
        if not ask(presented, address):
            raise UnknownNode(f"the node at {address} was not accepted", address=address)
        asked = True
    path = store.put(address, presented)
    _emit_added(ctl, address, presented, path, "added", True, brief=asked)


def _emit_added(ctl: Ctl, address: str, policy: TrustPolicy, path: Path, outcome: str, changed: bool, brief: bool = False) -> None:
    data = {**facts_json(policy, address), "file": str(path), "changed": changed}
    last = f"{outcome}: {path}"
    ctl.emit(data, last if brief else lambda: kv_lines(facts(policy, address)) + "\n" + last)


@command(trust_group, "show")
@click.argument("address", required=False)
def show(ctl: Ctl, address: str | None) -> None:
    """The trust policy of ADDRESS (default: --trust FILE, else --node); --json prints the policy itself."""
    address, policy, where = _entry(ctl, address)
    ctl.emit(policy.to_json(), lambda: kv_lines({**facts(policy, address), "kept in": where}))


@command(trust_group, "list")
def list_entries(ctl: Ctl) -> None:
    """Every node address with a trust entry (an unreadable entry is listed with its error)."""
    _no_file(ctl, "list")
    store = ctl.trust_source().store
    rows: list[dict[str, Any]] = []
    for address in store.addresses():
        try:
            policy = store.get(address)
        except TrustPolicyInvalid as err:
            rows.append({"address": address, "error": str(err)})
            continue
        if policy is not None:
            latest = policy.latest.tree_size if policy.latest is not None else None
            fps = [k.fingerprint for k in policy.keys]
            rows.append({"address": address, "network": policy.network, "fingerprints": fps, "genesis": policy.genesis.hex(), "latestSize": latest})
    data = {"directory": str(store.directory), "entries": rows}

    def text() -> str:
        if not rows:
            return f"no trusted node in {store.directory}"
        cells = [
            (r["address"], "INVALID", r["error"], "", "")
            if "error" in r
            else (r["address"], r["network"], ", ".join(r["fingerprints"]), r["genesis"][:16] + "…", "-" if r["latestSize"] is None else r["latestSize"])
            for r in rows
        ]
        return table(("ADDRESS", "NETWORK", "CHECKPOINT KEY", "GENESIS", "LATEST"), cells)

    ctl.emit(data, text)


@command(trust_group, "remove")
@click.argument("address")
def remove(ctl: Ctl, address: str) -> None:
    """Forget the node at ADDRESS (the next contact is a first contact again)."""
    _no_file(ctl, "remove")
    store = ctl.trust_source().store
    path = store.path_for(address)
    if not store.remove(address):
        raise UnknownNode(f"no trust entry for {address} in {store.directory}", address=address)
    ctl.emit({"address": address, "file": str(path), "removed": True}, f"removed {address} ({path})")


@command(trust_group, "export")
@click.argument("address", required=False)
@click.option("--no-latest", is_flag=True, help="Leave out the latest verified checkpoint (the policy's anchors only).")
def export(ctl: Ctl, address: str | None, no_latest: bool) -> None:
    """Print the trust policy file of ADDRESS (default: --node), for --trust FILE or a device."""
    _, policy, _ = _entry(ctl, address)
    if no_latest:
        policy = TrustPolicy.create(
            policy.network, policy.genesis, policy.keys, policy.threshold, policy.max_staleness_ms, None, policy.origin, policy.witnesses, policy.witness_threshold
        )
    click.echo(policy.dumps(), nl=False)
