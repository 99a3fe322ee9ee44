"""A ledger on paper, for pure receipt tests: entries, the RFC 6962 log, the sparse state tree and
checkpoint notes, all in memory, with the node's codecs (no LMDB, no node, no clock).

It applies operations with :func:`didnode.core.keystate.apply` (the anchor's heads are not judged:
a test can write what the real ledger would refuse, to check that a receipt of it is refused).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from didnode.core import builder
from didnode.core import entry as entry_codec
from didnode.core.builder import SignedOperation
from didnode.core.checkpoint import Checkpoint, SignedCheckpoint
from didnode.core.data.anchor_proof import AnchorProof
from didnode.core.data.heads import SignedHead
from didnode.core.merkle import log_tree, proof_build, sparse
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.merkle.log_tree import MemoryNodeStore
from didnode.core.tlog_checkpoint import default_origin, sign_with_note
from didnode.core.trust import TrustedKey, TrustPolicy
from tests.factory import Identity, MemLedger, new_create

NET = "local"


@dataclass
class PaperLedger:
    """Operations applied in order; :meth:`anchor_proof` answers as ``GetAnchor`` would."""

    network: str = NET
    key: SigningKey = field(default_factory=lambda: SigningKey(hashlib.sha256(b"paper node").digest()))
    kid: str = "did:dnode:QmPaperNodeKey#key-1"
    mem: MemLedger = field(default_factory=MemLedger)
    entries: list[bytes] = field(default_factory=list)
    log: MemoryNodeStore = field(default_factory=MemoryNodeStore)
    state: sparse.MemorySparseStore = field(default_factory=sparse.MemorySparseStore)

    def submit(self, op: SignedOperation) -> int:
        """Apply ``op`` at the next position; returns the position."""
        position = self.mem.position
        time = self.mem.time
        new = self.mem.submit(op)
        raw = entry_codec.encode(position, time, op.payload, op.proofs)
        log_tree.append_many(self.log, len(self.entries), [leaf_hash(raw)])
        self.entries.append(raw)
        sparse.update(self.state, sparse.key_for_did(new.did), hashlib.sha256(new.to_record()).digest())
        return position

    def create(self, label: str | None = None, controllers: tuple[Identity, ...] = ()) -> Identity:
        """A new DID (keys derived from ``label`` when given, so the ledger is the same every run)."""
        if label is None:
            ident, op = new_create(list(controllers), network=self.network, with_ka=False)
            self.submit(op)
            return ident
        auth, nxt = (SigningKey(hashlib.sha256(f"{label}/{what}".encode()).digest()) for what in ("auth", "next"))
        u = builder.create(self.network, [builder.NewKey("key-1", bytes(auth.verify_key))], bytes(nxt.verify_key), controllers=[c.did for c in controllers])
        self.submit(builder.sign(u, [(f"{u.did}#key-1", auth)] + [(c.kid, c.key) for c in controllers]))
        return Identity(u.did, {"key-1": auth}, "key-1", nxt)

    def anchor(self, gateway: Identity, heads: list[SignedHead]) -> int:
        st = self.mem.states[gateway.did]
        return self.submit(builder.sign(builder.anchor(self.network, gateway.did, st.seq + 1, st.last, [h.raw for h in heads]), [(gateway.kid, gateway.key)]))

    def checkpoint(self, key: SigningKey | None = None) -> SignedCheckpoint:
        size = len(self.entries)
        cp = Checkpoint(self.network, size, log_tree.root(self.log, size), sparse.root(self.state), 1_700_000_000_000 + size)
        return sign_with_note(cp, key or self.key, self.kid, default_origin(self.network))

    def policy(self) -> TrustPolicy:
        return TrustPolicy.create(self.network, leaf_hash(self.entries[0]), [TrustedKey(self.kid, bytes(self.key.verify_key))])

    def anchor_proof(self, did: str, stream: str, position: int, head_index: int, first: int, count: int) -> AnchorProof:
        """The ledger's half for the head ``head_index`` of the anchor at ``position``, under a checkpoint of the whole log."""
        cp = self.checkpoint()
        size = cp.tree_size
        return AnchorProof(
            did=did, stream=stream, position=position, head_index=head_index, first=first, count=count,
            entry=self.entries[position], checkpoint=cp,
            inclusion=tuple(proof_build.inclusion_proof(self.log, position, size)),
            genesis_consistency=tuple(proof_build.consistency_proof(self.log, 1, size)) if size > 1 else (),
            state_record=self.mem.states[did].to_record(),
            state_proof=sparse.prove(self.state, sparse.key_for_did(did)),
        )  # fmt: skip
