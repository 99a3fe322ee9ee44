"""A governed network's genesis: building it (``didnode init``), writing it, checking it, describing it.

A governed network's log begins with its genesis: entries ``0 .. n-1`` are
the creates of the n DIDs the ``govern`` inception names in ``genesis`` (in
that order), entry ``n`` is the inception, signed by every one of them
(:mod:`didnode.core.governance.rules`). A ledger without an inception is
ungoverned, open to all; an inception anywhere else is rejected, so a running
open network can never be captured, and a genesis is only ever written on an
empty ledger.

Creating a network takes two steps because every genesis DID signs the
inception. :func:`initialise` (``didnode init --governor-op FILE ...``)
creates the node key, binds the data directory to the network and writes the
proposal file (:mod:`didnode.core.governance.proposal`) holding the genesis
creates (the node's own first: the node recognises position 0 as its own
DID) and the inception signed by the node. Each other genesis DID signs it
(``didctl gov sign``). Then :func:`write` (``didnode init --genesis FILE``
or ``didnode serve --genesis FILE`` embedded) writes every operation in one
LMDB transaction, all accepted or nothing; in cluster mode
:mod:`didnode.ledger.cluster.genesis` publishes them as the stream's first
messages instead.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import lmdb
from nacl.signing import SigningKey

from didnode.core import builder, canonical
from didnode.core import entry as entry_codec
from didnode.core.builder import SignedOperation
from didnode.core.governance import build as gov_build
from didnode.core.governance import proposal as proposals
from didnode.core.governance.policy import REGISTRARS, CreateQuota, Policy, PublishQuota
from didnode.core.governance.proposal import Proposal
from didnode.errors import (
    DidnodeError,
    GenesisConflict,
    InvalidArgument,
    MalformedOperation,
    NodeKeyMismatch,
    StoreCorrupted,
)
from didnode.fileio import write_atomic
from didnode.ledger.batch import BatchHook, apply_batch
from didnode.ledger.prepare import prepare_many
from didnode.store import layout
from didnode.store.env import Store, storage_error
from didnode.store.ledger_tables import LedgerTables


@dataclass(frozen=True, slots=True)
class Genesis:
    """A genesis file's operations, checked for shape: creates, then the ``govern`` inception naming them."""

    proposal: Proposal
    dids: tuple[str, ...]  # the genesis DIDs, in ledger order

    @property
    def network(self) -> str:
        return self.proposal.network

    @property
    def operations(self) -> tuple[SignedOperation, ...]:
        return self.proposal.operations

    @property
    def governance(self) -> str:
        """The governance identifier (the inception's DID)."""
        return self.proposal.govern.did

    def hashes(self) -> list[bytes]:
        return [hashlib.sha256(op.payload).digest() for op in self.operations]


def from_proposal(proposal: Proposal, what: str = "the genesis file") -> Genesis:
    """Check that ``proposal`` is a genesis: n creates, then an inception whose ``genesis`` lists their DIDs in order.

    Raises :class:`MalformedOperation`. Whether the signatures suffice is the
    ledger's decision when the genesis is written.
    """
    creates, last = proposal.operations[:-1], proposal.govern
    if not creates or any(op.type != "create" for op in creates):
        raise MalformedOperation(f"{what} is not a genesis: it holds creates, then the governance inception")
    body = canonical.decode_canonical(last.payload)
    if not isinstance(body, dict) or body.get("seq") != 0 or "genesis" not in body:
        raise MalformedOperation(f"{what} is not a genesis: its last operation is a governance change, not an inception")
    dids = tuple(op.did for op in creates)
    if list(dids) != body["genesis"]:
        raise MalformedOperation(f"{what}: the inception's genesis list is not the DIDs of the creates before it, in order")
    return Genesis(proposal, dids)


def load(path: str | Path) -> Genesis:
    """Read and check a genesis file. Raises :class:`InvalidArgument` (unreadable) or :class:`MalformedOperation`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the genesis file {path}: {exc.strerror or exc}") from None
    try:
        return from_proposal(proposals.loads(data), str(path))
    except DidnodeError as exc:
        raise type(exc)(f"{path}: {exc}", **exc.details) from None


# --------------------------------------------------------------------------
# didnode init, step 1
# --------------------------------------------------------------------------


def inception_for(
    network: str,
    node_create: SignedOperation,
    governor_ops: Sequence[SignedOperation],
    threshold: int,
    create: str,
    registrar_ops: Sequence[SignedOperation] = (),
    include_ops: Sequence[SignedOperation] = (),
    publish: PublishQuota | None = None,
) -> builder.UnsignedOperation:
    """The unsigned inception of a genesis ``[node create, governors, registrars, included]``.

    Precondition: the operations are creates for ``network`` (see
    :func:`initialise`). Registrars get no quota of their own: the governors
    set one with ``setRegistrarQuota``.
    """
    registrars = {op.did: CreateQuota() for op in registrar_ops}
    genesis = [node_create.did, *(op.did for op in (*governor_ops, *registrar_ops, *include_ops))]
    governors = [op.did for op in governor_ops]
    return gov_build.inception(network, genesis, governors, threshold, create, registrars, publish)


def initialise(
    data_dir: str,
    network: str,
    governor_ops: Sequence[SignedOperation],
    threshold: int,
    create: str,
    registrar_ops: Sequence[SignedOperation],
    include_ops: Sequence[SignedOperation],
    publish: PublishQuota | None,
    out: Path,
    create_key: Callable[[str, bytes], SigningKey],
    node_create: Callable[[str, SigningKey], SignedOperation],
) -> Genesis:
    """``didnode init`` step 1: the node key, the data directory bound to ``network``, the genesis file ``out``.

    Preconditions: ``data_dir`` holds no node (no key, an empty or missing
    ledger); ``out`` does not exist. Every input is checked before anything
    is written (the key last but one, the file last). Raises
    :class:`InvalidArgument` or :class:`MalformedOperation`.
    """
    key_path = os.path.join(data_dir, "node.key")
    if os.path.exists(key_path) or os.path.exists(os.path.join(data_dir, "ledger")):
        raise InvalidArgument(f"{data_dir} holds a node already (node.key or ledger/): didnode init starts a new node in a new --data directory")
    if out.exists():
        raise InvalidArgument(f"--out: {out} exists; didnode init never overwrites a genesis file")
    if registrar_ops and create != REGISTRARS:
        raise InvalidArgument(f"--registrar-op lists registrars, which only a registrars network has (--create {create}); use --include-op")
    ops = [*governor_ops, *registrar_ops, *include_ops]
    for op in ops:
        if op.type != "create" or op.network != network:
            raise InvalidArgument(f"{op.did}: a genesis operation file holds a create for network {network!r}, not a {op.type} for {op.network!r}")
    seed = os.urandom(32)
    key = SigningKey(seed)
    mine = node_create(network, key)
    unsigned = inception_for(network, mine, governor_ops, threshold, create, registrar_ops, include_ops, publish)
    signed = builder.sign(unsigned, [(f"{mine.did}#key-1", key)])
    # The round trip through the file format checks the whole genesis as a node will parse it
    # (distinct DIDs, the threshold, the limits) before anything is written.
    genesis = from_proposal(proposals.loads(proposals.from_operations(network, [mine, *ops, signed]).dumps().encode()))
    if len(set(genesis.dids)) != len(genesis.dids):
        raise InvalidArgument("a DID is named twice in the genesis (the same operation file given twice?)")
    create_key(key_path, seed)
    _bind(data_dir, network, mine.did)
    try:
        write_atomic(out, genesis.proposal.dumps().encode(), mode=0o644)
    except OSError as exc:
        raise storage_error(exc, f"write the genesis file {out}", str(out.parent)) from None
    return genesis


def _bind(data_dir: str, network: str, node_did: str) -> None:
    """Bind a new ledger to the network and the node DID, with no entry yet (the genesis comes in step 2)."""
    store = Store(os.path.join(data_dir, "ledger"))
    try:
        tables = LedgerTables(store)

        def mark(txn: lmdb.Transaction) -> None:
            tables.set_meta_text(txn, layout.META_NETWORK, network)
            tables.set_meta_text(txn, layout.META_NODE_DID, node_did)

        store.write(mark)
    finally:
        store.close()


# --------------------------------------------------------------------------
# Writing and checking (step 2, and every start with --genesis)
# --------------------------------------------------------------------------


def check_node(genesis: Genesis, node_did: str, where: str) -> None:
    """Embedded: the node's DID must be genesis entry 0 (the node recognises position 0 as its own create)."""
    if genesis.dids[0] != node_did:
        raise NodeKeyMismatch(
            f"the genesis begins with the create of {genesis.dids[0]}, but the node key in {where} is {node_did}'s: "
            "write a genesis with the node that didnode init created it for"
        )


def check_ledger(tables: LedgerTables, txn: lmdb.Transaction, genesis: Genesis, where: str) -> bool:
    """Does the ledger hold ``genesis``? False when it is empty (to be written); raises :class:`GenesisConflict` otherwise."""
    size = tables.log_size(txn)
    if size == 0:
        return False
    policy = tables.governance(txn)
    for i, want in enumerate(genesis.hashes()[:size]):
        got = hashlib.sha256(entry_codec.decode(tables.entry(txn, i)).payload).digest()
        if got == want:
            continue
        if policy is None:
            raise GenesisConflict(
                f"the ledger in {where} is an open network ({size} entries, no governance): a governed network starts from an "
                "empty ledger (didnode init --data NEWDIR ...); a running network is never made governed"
            )
        raise GenesisConflict(
            f"the ledger in {where} is governed by {policy.did}, not by this genesis's {genesis.governance} "
            f"(its entry {i} is operation {got.hex()[:16]}…, the genesis's {want.hex()[:16]}…)"
        )
    if size < len(genesis.operations):
        raise GenesisConflict(f"the ledger in {where} holds {size} entries, a beginning of this genesis's {len(genesis.operations)}: it was not written whole")
    return True


class _DryRun(Exception):
    """Aborts the transaction of a dry run once every genesis operation was accepted."""


def write(
    tables: LedgerTables,
    genesis: Genesis,
    now_ms: int,
    hooks: Sequence[BatchHook],
    bind: Callable[[lmdb.Transaction], None],
    dry_run: bool = False,
) -> None:
    """Write every genesis operation in one transaction: all accepted, or nothing written.

    Preconditions: the ledger is empty; ``genesis`` is for its network.
    ``bind(txn)`` writes the node's bindings in the same transaction. Raises
    the first rejection (e.g. :class:`~didnode.errors.GovernanceThreshold`
    when a genesis DID did not sign the inception), naming the operation.
    With ``dry_run`` the transaction is aborted even when all are accepted
    (cluster mode checks a genesis before publishing it).
    """
    ops = prepare_many([(op.payload, op.proofs) for op in genesis.operations], genesis.network, tables)

    def apply(txn: lmdb.Transaction) -> None:
        if tables.log_size(txn) != 0:
            raise StoreCorrupted("the ledger gained entries while its genesis was being written")
        outcomes = apply_batch(tables, txn, ops, now_ms, hooks)
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, DidnodeError):
                # Raising aborts the transaction: no entry of the genesis is written.
                what = "the inception" if i == len(outcomes) - 1 else f"the create of {genesis.dids[i]}"
                raise type(outcome)(f"genesis operation {i} ({what}) is rejected: {outcome}", **outcome.details)
        bind(txn)
        if dry_run:
            raise _DryRun()

    try:
        tables.store.write(apply)
    except _DryRun:
        pass


# --------------------------------------------------------------------------
# What the node says at start
# --------------------------------------------------------------------------


def describe(network: str, policy: Policy | None) -> str:
    """The governance in one log line."""
    if policy is None:
        return f"network {network} is open: anyone may create and publish (no governance; didnode init creates a governed network)"
    quota = ""
    if policy.publish is not None:
        q = policy.publish
        parts = [f"{q.count} publishes" if q.count is not None else "", f"{q.bytes} bytes" if q.bytes is not None else ""]
        quota = f", publish quota {' and '.join(p for p in parts if p)} per {q.window_s} s"
    return (
        f"network {network} governed by {policy.did}: create policy {policy.create}, {len(policy.registrars)} registrars, "
        f"governors {policy.threshold} of {len(policy.governors)}{quota}"
    )


__all__ = ["Genesis", "check_ledger", "check_node", "describe", "from_proposal", "initialise", "load", "write"]
