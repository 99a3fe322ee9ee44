"""A governed network's ledger written before its node starts (bench scripts and tests share it).

A governed network's log begins with its genesis: entries ``0..n-1`` are the
creates of the DIDs the inception lists in ``genesis``, entry ``n`` is the
``govern`` inception signed by every genesis DID. A node's own create must be
entry 0, so :func:`write_governed_node` writes, into a node data directory,
the node key (``DATA/node.key``, the file ``didnode serve`` loads) and a
ledger (``DATA/ledger``) holding: the node DID's create, the creates of the
``members`` (governors, registrars, a manufacturer ...), and the inception
signed by all of them, through the node's own apply path (``prepare_many`` +
``apply_batch`` with the transparency hooks) and with the meta records
``didnode serve`` writes with its genesis. ``didnode serve --data DATA
--network NET`` then serves that network as it would any other.

Until ``didnode init --genesis FILE`` exists this is how a governed node is
made; governance changes afterwards go through the running node
(:func:`change`, signed by the governors, submitted like any operation).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from nacl.signing import SigningKey  # noqa: E402

from didnode.core import builder  # noqa: E402
from didnode.core.builder import SignedOperation  # noqa: E402
from didnode.core.governance import build as gov_build  # noqa: E402
from didnode.core.governance.policy import CreateQuota, Policy, PublishQuota  # noqa: E402
from didnode.errors import DidnodeError  # noqa: E402
from didnode.fileio import write_atomic  # noqa: E402
from didnode.ledger.batch import apply_batch  # noqa: E402
from didnode.ledger.prepare import prepare_many  # noqa: E402
from didnode.ledger.trees import transparency_hooks  # noqa: E402
from didnode.service.node import NODE_KEY_FILE, _derive  # noqa: E402
from didnode.store import layout  # noqa: E402
from didnode.store.env import Store  # noqa: E402
from didnode.store.ledger_tables import LedgerTables  # noqa: E402

NEXT_KEY_ID = "next"  # the key id a rotation gives the revealed next key (cli.didctl_secrets)


@dataclass(frozen=True)
class Member:
    """A DID of the genesis with its keys: ``key-1`` (authentication and assertion) and the next key."""

    did: str
    auth: SigningKey
    next: SigningKey
    create: SignedOperation

    @property
    def kid(self) -> str:
        return f"{self.did}#key-1"

    def secrets(self, **labels: str) -> Any:
        """The keystore entry of this DID (what ``didctl did create`` stores), for :meth:`Keystore.put`."""
        from didnode.keystore import DidSecrets

        return DidSecrets(did=self.did, signing_keys={"key-1": bytes(self.auth)}, next_key_id=NEXT_KEY_ID, next_key_seed=bytes(self.next), labels=labels)


def new_member(network: str, auth: SigningKey | None = None, nxt: SigningKey | None = None) -> Member:
    """A fresh DID (its create signed, not submitted) with one Ed25519 key for every purpose."""
    auth = auth or SigningKey.generate()
    nxt = nxt or SigningKey.generate()
    u = builder.create(network, [builder.NewKey("key-1", bytes(auth.verify_key))], bytes(nxt.verify_key))
    return Member(u.did, auth, nxt, builder.sign(u, [(f"{u.did}#key-1", auth)]))


def node_member(network: str, key: SigningKey) -> Member:
    """The node DID exactly as ``didnode serve`` derives it from its key (``Node._genesis_op``)."""
    return new_member(network, key, SigningKey(_derive(bytes(key), b"next")))


@dataclass
class GovernedGenesis:
    """What :func:`write_governed_node` wrote: the node, the members, the governance record's identifier and chain head."""

    network: str
    node: Member
    members: list[Member]
    governance: str
    last: str  # hex hash of the latest governance operation (the next change's prev)
    seq: int = 0
    governors: list[Member] = field(default_factory=list)

    def change(self, changes: Sequence[Mapping[str, Any]], signers: Sequence[Member] | None = None) -> SignedOperation:
        """The next governance change, signed by ``signers`` (default: every governor); advances ``seq``/``last``
        on the assumption that the caller submits it and it is accepted."""
        u = gov_build.change(self.network, self.governance, self.seq + 1, self.last, changes)
        op = builder.sign(u, [(m.kid, m.auth) for m in (signers if signers is not None else self.governors)])
        self.seq += 1
        self.last = hashlib.sha256(op.payload).hexdigest()
        return op


def apply_ops(store: Store, tables: LedgerTables, network: str, ops: Sequence[SignedOperation], now_ms: int, node_did: str | None = None) -> None:
    """Apply ``ops`` in one write transaction with the node's apply path and trees; every one must be accepted.

    ``node_did``: also write the network/node meta records (the first batch of a node's ledger)."""
    prepared = prepare_many([(o.payload, o.proofs) for o in ops], network, tables)
    hooks = transparency_hooks(tables)

    def write(txn: Any) -> None:
        outcomes = apply_batch(tables, txn, prepared, now_ms, hooks)
        bad = [o for o in outcomes if isinstance(o, DidnodeError)]
        if bad:
            raise RuntimeError(f"{len(bad)} genesis operation(s) rejected, e.g. {bad[0]!r}")
        if node_did is not None:
            tables.set_meta_text(txn, layout.META_NETWORK, network)
            tables.set_meta_text(txn, layout.META_NODE_DID, node_did)

    store.write(write)


def write_governed_ledger(
    store: Store,
    tables: LedgerTables,
    network: str,
    first: Member,
    members: Sequence[Member],
    governors: Sequence[Member],
    create: str,
    registrars: Mapping[str, CreateQuota] | None = None,
    publish: PublishQuota | None = None,
    now_ms: int | None = None,
    node: bool = True,
) -> GovernedGenesis:
    """Write the genesis of a governed network into an empty ledger: ``first`` (the node DID) and ``members``
    created at positions 0..n-1, the inception (threshold 1 of ``governors``) at n, signed by all of them."""
    import time

    now = now_ms if now_ms is not None else int(time.time() * 1000)
    genesis = [first, *members]
    inc = gov_build.inception(network, [m.did for m in genesis], [g.did for g in governors], 1, create, registrars, publish)
    signed = builder.sign(inc, [(m.kid, m.auth) for m in genesis])
    apply_ops(store, tables, network, [m.create for m in genesis] + [signed], now, first.did if node else None)
    with store.read() as txn:
        policy: Policy | None = tables.governance(txn)
    assert policy is not None and policy.did == signed.did
    return GovernedGenesis(network, first, list(members), signed.did, policy.last, 0, list(governors))


def write_governed_node(
    data_dir: Path,
    network: str,
    members: Sequence[Member],
    governors: Sequence[Member],
    create: str,
    registrars: Mapping[str, CreateQuota] | None = None,
    publish: PublishQuota | None = None,
) -> GovernedGenesis:
    """A node data directory for ``didnode serve --data DATA --network NETWORK`` whose ledger begins with a
    governance genesis (module docstring). Precondition: ``data_dir`` holds no ledger yet."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    write_atomic(data_dir / NODE_KEY_FILE, bytes(key).hex().encode() + b"\n", mode=0o600)
    store = Store(str(data_dir / "ledger"), map_size=1 << 28)
    try:
        return write_governed_ledger(store, LedgerTables(store), network, node_member(network, key), members, governors, create, registrars, publish)
    finally:
        store.close()
