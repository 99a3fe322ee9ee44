"""An in-memory ledger for the pure trust tests: real operations, the real log and state trees, signed checkpoints.

:class:`MemLog` appends signed operations as a node does (the entry at its
position, its leaf in the RFC 6962 log tree, the DID's state record in the
sparse state tree) and keeps the state root after every size, so a checkpoint
at any past size commits to the ledger exactly as it was then. Nothing here is
mocked: the trees are :mod:`didnode.core.merkle`'s, the operations
:mod:`didnode.core.builder`'s, the fold :mod:`didnode.core.keystate`'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from didnode.core import builder
from didnode.core import entry as entry_codec
from didnode.core.builder import SignedOperation
from didnode.core.checkpoint import Checkpoint, SignedCheckpoint, sign
from didnode.core.keystate import DidState
from didnode.core.merkle import log_tree, proof_build, sparse
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.trust import TrustedKey, TrustPolicy
from didnode.core.trust.history import ProvenOperation
from tests.factory import Identity, MemLedger, adopt_rotation, new_create, rotate_op

T0 = 1_700_000_000_000
NODE = "did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def signer(name: str) -> tuple[SigningKey, str]:
    """A deterministic checkpoint key and its kid, named ``name``."""
    return SigningKey(hashlib.sha256(f"trust tests {name}".encode()).digest()), f"{NODE}#{name}"


KEY, KID = signer("key-1")


@dataclass
class MemLog:
    """Entries, both trees and the DIDs' states (module docstring)."""

    network: str = "local"
    fold: MemLedger = field(init=False)
    entries: list[bytes] = field(default_factory=list)
    nodes: log_tree.MemoryNodeStore = field(default_factory=log_tree.MemoryNodeStore)
    smt: sparse.MemorySparseStore = field(default_factory=sparse.MemorySparseStore)
    state_roots: list[bytes] = field(default_factory=list)  # state_roots[n - 1]: after n entries
    records: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)  # did -> [(size, record)]
    positions: dict[str, list[int]] = field(default_factory=dict)  # did -> positions of its operations

    def __post_init__(self) -> None:
        self.fold = MemLedger(self.network)

    @property
    def size(self) -> int:
        return len(self.entries)

    @property
    def genesis(self) -> bytes:
        """The leaf hash of entry 0 (what a trust policy names)."""
        return leaf_hash(self.entries[0])

    def append(self, op: SignedOperation) -> DidState:
        """Apply ``op`` at the next position (raises the fold's typed error for an invalid one)."""
        position, time_ms = self.fold.position, self.fold.time
        state = self.fold.submit(op)
        e = entry_codec.encode(position, time_ms, op.payload, op.proofs)
        log_tree.append(self.nodes, position, leaf_hash(e))
        self.entries.append(e)
        record = state.to_record()
        sparse.update(self.smt, sparse.key_for_did(state.did), hashlib.sha256(record).digest())
        self.state_roots.append(sparse.root(self.smt))
        self.records.setdefault(state.did, []).append((self.size, record))
        self.positions.setdefault(state.did, []).append(position)
        return state

    def create(self) -> Identity:
        """A new DID (its create appended)."""
        ident, op = new_create(network=self.network)
        self.append(op)
        return ident

    def rotate(self, ident: Identity) -> DidState:
        """A rotation of ``ident``'s keys, signed by its committed next key (``ident`` adopts the new keys)."""
        unsigned, auth, nxt, key_id = rotate_op(ident, self.fold.states[ident.did], self.network)
        state = self.append(builder.sign(unsigned, [(builder.next_kid(ident.did), ident.next_key)]))
        adopt_rotation(ident, auth, nxt, key_id)
        return state

    def publish(self, ident: Identity, resource_id: str, content: str) -> DidState:
        """A publish of a resource by ``ident``'s current key."""
        st = self.fold.states[ident.did]
        unsigned = builder.publish(self.network, ident.did, st.seq + 1, st.last, resource_id, "text/plain", content)
        return self.append(builder.sign(unsigned, [(ident.kid, ident.key)]))

    def grow(self, n: int) -> None:
        """``n`` more creates of fresh DIDs."""
        for _ in range(n):
            self.create()

    def root(self, size: int) -> bytes:
        return log_tree.root(self.nodes, size)

    def checkpoint(self, size: int | None = None, time_ms: int | None = None, key: SigningKey = KEY, kid: str = KID, network: str | None = None) -> SignedCheckpoint:
        """The checkpoint at ``size`` (default: all entries), signed by ``key`` at ``time_ms`` (default T0 + size)."""
        size = self.size if size is None else size
        body = Checkpoint(network or self.network, size, self.root(size), self.state_roots[size - 1], T0 + size if time_ms is None else time_ms)
        return sign(body, key, kid)

    def consistency(self, size1: int, size2: int | None = None) -> tuple[bytes, ...]:
        """The RFC 9162 consistency proof from ``size1`` to ``size2`` (default: all entries)."""
        return tuple(proof_build.consistency_proof(self.nodes, size1, self.size if size2 is None else size2))

    def inclusion(self, position: int, size: int | None = None) -> tuple[bytes, ...]:
        return tuple(proof_build.inclusion_proof(self.nodes, position, self.size if size is None else size))

    def record_at(self, did: str, size: int) -> bytes:
        """``did``'s state record in the ledger of ``size`` entries."""
        return [r for s, r in self.records[did] if s <= size][-1]

    def history(self, did: str, size: int | None = None) -> list[ProvenOperation]:
        """``did``'s operations in the log of ``size`` entries, each with its inclusion proof there (what an honest node sends)."""
        size = self.size if size is None else size
        out = []
        for pos in self.positions[did]:
            if pos >= size:
                break
            e = entry_codec.decode(self.entries[pos])
            seq = len(out)
            out.append(ProvenOperation(pos, e.time, seq, e.payload, e.proofs, self.inclusion(pos, size)))
        return out

    def policy(self, *keys: tuple[SigningKey, str], threshold: int = 1, max_staleness_ms: int = 120_000) -> TrustPolicy:
        """A policy trusting ``keys`` (default: :data:`KEY`) for this log's genesis."""
        trusted = [TrustedKey(kid, bytes(k.verify_key)) for k, kid in (keys or ((KEY, KID),))]
        return TrustPolicy.create(self.network, self.genesis, trusted, threshold, max_staleness_ms)
