"""The trust ``didctl`` holds: one trust policy per node address, like ssh's known_hosts.

A directory (default ``~/.didctl/trust/``, ``$DIDCTL_TRUST_DIR``) holds one
``<address, percent-escaped>.json`` per node address, each exactly a trust
policy file (:mod:`didnode.core.trust.policy`; docs/trust.md), mode 0600,
replaced atomically. :func:`open_reads` gives a command the reads it may
base a decision on:

* ``--insecure-no-verify``: the plain :class:`~didnode.client.Client` (nothing
  is checked; the CLI says so on stderr every run);
* ``--trust FILE``: a :class:`~didnode.client.verified.VerifiedClient` under
  that policy; the latest verified checkpoint is kept in memory only, the
  file is never written;
* else the store entry of the address; a checkpoint newer than the stored
  one is written back (:meth:`TrustStore.advance`). With no entry it is
  first contact (:func:`first_contact`): in a terminal the node's facts are
  shown and the user asked, as ssh does; without one :class:`UnknownNode`
  names the commands that accept the node.

A node that presents another network, genesis or checkpoint key than the
policy holds is :class:`TrustChanged`, never a question (:class:`CliVerifiedClient`).

No click commands here (they are in :mod:`cli.didctl_trust`): this module
is what :class:`cli.didctl_common.Ctl` needs, and imports no other CLI module.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote

import click

from didnode.client import Client
from didnode.client.trust import check_same_anchors, policy_from_node
from didnode.client.verified import Proven, ProvenGovernance, VerifiedClient
from didnode.core.credentials.resolver import IssuerRecord
from didnode.core.keystate import DidState
from didnode.core.results import HistoryEntry, KeyState, Resource
from didnode.core.trust import TrustedLog, TrustPolicy
from didnode.core.trust.policy import loads
from didnode.errors import DidnodeError, InvalidProof, LocalError, TrustChanged, TrustPolicyInvalid, UnknownNode
from didnode.fileio import write_atomic

SUFFIX = ".json"
MAX_NAME = 255  # an entry's file name (the escaped address) must stay a file name


class Reads(Protocol):
    """The reads a decision may rest on: a :class:`VerifiedClient`, or the plain :class:`Client` with ``--insecure-no-verify``."""

    def state(self, did: str) -> DidState: ...
    def key_state(self, did: str, at_position: int | None = None) -> KeyState: ...
    def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]: ...
    def history(self, did: str) -> list[HistoryEntry]: ...
    def resource(self, did: str, resource_id: str) -> Resource: ...
    def issuer_record(self, did: str) -> IssuerRecord: ...


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


def escape(address: str) -> str:
    """The file name of ``address``'s entry: percent-escaped (``127.0.0.1%3A50051.json``)."""
    name = quote(address, safe="") + SUFFIX
    if not address or len(name) > MAX_NAME:
        raise LocalError(f"node address {address[:80]!r} is empty or too long to name a trust entry")
    return name


class TrustStore:
    """The directory of trust entries, one policy file per node address (module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, address: str) -> Path:
        return self.directory / escape(address)

    def get(self, address: str) -> TrustPolicy | None:
        """``address``'s policy, or None when it has no entry; :class:`TrustPolicyInvalid` names a bad file."""
        return read_policy(self.path_for(address), missing_ok=True)

    def put(self, address: str, policy: TrustPolicy) -> Path:
        """Write ``address``'s entry (0600, atomic; the directory made 0700). Returns its path."""
        path = self.path_for(address)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(path, policy.dumps().encode("utf-8"), mode=0o600)
        except OSError as exc:
            raise LocalError(f"cannot write the trust entry {path}: {exc.strerror or exc}", file=str(path)) from None
        return path

    def remove(self, address: str) -> bool:
        """Delete ``address``'s entry; False when there was none."""
        path = self.path_for(address)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise LocalError(f"cannot remove the trust entry {path}: {exc.strerror or exc}", file=str(path)) from None
        return True

    def addresses(self) -> list[str]:
        """The addresses with an entry, sorted."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LocalError(f"cannot read the trust store {self.directory}: {exc.strerror or exc}") from None
        return sorted(unquote(n[: -len(SUFFIX)]) for n in names if n.endswith(SUFFIX) and not n.startswith("."))

    def advance(self, address: str, policy: TrustPolicy) -> None:
        """Remember ``policy``'s latest checkpoint in ``address``'s entry if it is newer than the stored one
        (the entry is read again first: another didctl may have moved it on, or it was replaced)."""
        latest = policy.latest
        if latest is None:
            return
        try:
            stored = self.get(address)
        except TrustPolicyInvalid:
            return
        if stored is None or not stored.same_anchors(policy):
            return
        if stored.latest is not None and (stored.latest.tree_size, stored.latest.checkpoint.time_ms) >= (latest.tree_size, latest.checkpoint.time_ms):
            return
        try:
            self.put(address, stored.with_latest(latest))
        except LocalError as err:
            note(f"warning: {err}: the next run verifies from the older checkpoint")


def read_policy(path: Path, missing_ok: bool = False) -> TrustPolicy | None:
    """The policy in ``path``; :class:`TrustPolicyInvalid` (one line naming the file) if it cannot be read or parsed."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise TrustPolicyInvalid(f"trust policy {path}: no such file", file=str(path)) from None
    except OSError as exc:
        raise TrustPolicyInvalid(f"trust policy {path}: cannot read it ({exc.strerror or exc})", file=str(path)) from None
    try:
        return loads(text)
    except TrustPolicyInvalid as err:
        raise TrustPolicyInvalid(f"{path}: {err}", file=str(path)) from None


# --------------------------------------------------------------------------
# Showing a policy
# --------------------------------------------------------------------------


def note(message: str) -> None:
    """A line for humans on stderr (as :func:`cli.didctl_common.note`)."""
    click.echo(f"didctl: {printable(message)}", err=True)


def printable(text: str) -> str:
    """``text`` with anything but printable ASCII escaped (what a node presents at first contact is shown raw nowhere)."""
    return text if text.isascii() and text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _iso(ms: int) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def facts(policy: TrustPolicy, address: str | None = None) -> dict[str, str]:
    """What a person compares with what the node's operator published (``didnode trust-policy``)."""
    out: dict[str, str] = {}
    if address is not None:
        out["node"] = address
    out["network"] = printable(policy.network)
    out["node DID"] = printable(", ".join(sorted({k.kid.partition("#")[0] for k in policy.keys})))
    for i, k in enumerate(policy.keys):
        out["checkpoint key" if len(policy.keys) == 1 else f"checkpoint key {i + 1}"] = f"{k.fingerprint}  ({printable(k.kid)})"
    out["genesis"] = policy.genesis.hex()
    out["origin"] = printable(policy.log_origin)
    out["threshold"] = f"{policy.threshold} of {len(policy.keys)}"
    out["max staleness"] = f"{policy.max_staleness_ms / 1000:g} s"
    latest = policy.latest
    out["latest verified"] = "-" if latest is None else f"size {latest.tree_size}, {_iso(latest.checkpoint.time_ms)}"
    return out


def facts_json(policy: TrustPolicy, address: str | None = None) -> dict[str, Any]:
    """:func:`facts` for ``--json``: the policy plus the fingerprints."""
    return {"address": address, "fingerprints": [k.fingerprint for k in policy.keys], "policy": policy.to_json()}


# --------------------------------------------------------------------------
# First contact and the reads
# --------------------------------------------------------------------------


def interactive() -> bool:
    """Whether a person can answer: stdin and stderr are terminals (as ssh asks)."""
    return sys.stdin is not None and sys.stdin.isatty() and sys.stderr is not None and sys.stderr.isatty()


def unknown_node(address: str) -> UnknownNode:
    return UnknownNode(
        f"didctl holds no trust entry for the node at {address}: compare its key fingerprint and genesis with what its operator "
        f"published (didnode trust-policy), then accept it with `didctl trust add --node {address} --yes`, or give --trust FILE",
        address=address,
    )


def ask(policy: TrustPolicy, address: str) -> bool:
    """Show the node's facts on stderr and ask ``Trust this node? [y/N]``."""
    note(f"the node at {address} is not known yet. It presents:")
    pairs = facts(policy)
    width = max(len(k) for k in pairs)
    click.echo("\n".join(f"  {k.ljust(width)}  {v}" for k, v in pairs.items()), err=True)
    click.echo("Compare the fingerprint and genesis with what the node's operator published (didnode trust-policy).", err=True)
    try:
        return bool(click.confirm("Trust this node?", default=False, err=True))
    except click.Abort:
        return False


def first_contact(client: Client, address: str, store: TrustStore) -> TrustPolicy:
    """The policy to use for a node with no entry: asked in a terminal, else :class:`UnknownNode`."""
    if not interactive():
        raise unknown_node(address)
    presented = policy_from_node(client)
    if not ask(presented, address):
        raise UnknownNode(f"the node at {address} was not accepted; nothing was read from it", address=address)
    path = store.put(address, presented)
    note(f"added {address} to the trust store ({path})")
    return presented


@dataclass(frozen=True)
class TrustSource:
    """Where a command's policy comes from: ``--trust FILE``, else the store entry of ``address``."""

    address: str
    file: Path | None
    store: TrustStore

    def known(self) -> TrustPolicy | None:
        """The policy if one is held (no node contacted, nobody asked), else None."""
        if self.file is not None:
            return read_policy(self.file)
        return self.store.get(self.address)

    def changed(self, known: TrustPolicy, client: Client) -> TrustChanged | None:
        """:class:`TrustChanged` when the node now presents other anchors than ``known``, else None
        (also when that cannot be told: the node's own claims do not even hold together)."""
        remedy = None if self.file is None else f" (trust policy file {self.file})"
        try:
            check_same_anchors(known, policy_from_node(client), self.address, remedy)
        except TrustChanged as err:
            return err
        except DidnodeError:
            return None
        return None


# A node with another key, genesis or network than the policy's fails the checks with one of
# these (signer, signature, threshold, genesis, network): then the node is asked what it is now.
_ANCHOR_ERRORS = (InvalidProof,)


class CliVerifiedClient(VerifiedClient):
    """:class:`VerifiedClient` whose refusals of another signer, genesis or network say whether the node
    itself changed (:class:`TrustChanged`, naming what and how to accept it) rather than an answer being forged."""

    def __init__(self, client: Client, log: TrustedLog, source: TrustSource) -> None:
        super().__init__(client, log)
        self.source = source

    def _explained(self, err: DidnodeError) -> DidnodeError:
        return self.source.changed(self.log.policy, self.client) or err

    def proven(self, did: str) -> Proven:
        try:
            return super().proven(did)
        except _ANCHOR_ERRORS as err:
            raise self._explained(err) from None

    def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        try:
            return super().resolve(did, version_id, version_time)
        except _ANCHOR_ERRORS as err:
            raise self._explained(err) from None

    def proven_governance(self, governance: str | None = None) -> ProvenGovernance:
        try:
            return super().proven_governance(governance)
        except _ANCHOR_ERRORS as err:
            raise self._explained(err) from None


def open_reads(client: Client, source: TrustSource, insecure: bool) -> Reads:
    """The reads of one didctl run (module docstring); may ask the user (first contact)."""
    if insecure:
        return client
    if source.file is not None:
        policy = read_policy(source.file)
        assert policy is not None
        return CliVerifiedClient(client, TrustedLog(policy), source)
    store = source.store
    known = store.get(source.address)
    policy = known if known is not None else first_contact(client, source.address, store)
    address = source.address
    return CliVerifiedClient(client, TrustedLog(policy, on_advance=lambda p: store.advance(address, p)), source)


__all__ = [
    "CliVerifiedClient",
    "Reads",
    "TrustSource",
    "TrustStore",
    "facts",
    "facts_json",
    "first_contact",
    "open_reads",
    "read_policy",
    "unknown_node",
]
