"""Device data use cases of the node: the anchor of a reading, with the ledger's half of its receipt.

No protobuf here. The answer is read under the *latest* checkpoint, in the
snapshot it signs (:meth:`TransparencyService.at_latest`): a checkpoint the
node holds covers its whole log, or a new one is signed in the writer's
transaction, so the checkpoint always covers the anchor entry, and the state
proof is of the same snapshot as the checkpoint's state root.
"""

from __future__ import annotations

import lmdb

from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.data.anchor_proof import AnchorProof
from didnode.core.data.anchoring import AnchorRow
from didnode.core.data.records import MAX_SEQ, check_stream
from didnode.core.did import validate_did
from didnode.core.merkle import proof_build
from didnode.errors import InvalidArgument, NodeUnavailable, UnknownAnchor
from didnode.service.node import Node
from didnode.service.transparency import TransparencyService
from didnode.store.tree_tables import LogNodes


class DataService:
    """The data reads of one node (docs/data.md, "Receipts")."""

    def __init__(self, node: Node, transparency: TransparencyService) -> None:
        self.node = node
        self.transparency = transparency

    def _check(self, did: str, stream: str, seq: int) -> None:
        validate_did(did)
        check_stream(stream)
        if not 0 <= seq <= MAX_SEQ:
            raise InvalidArgument(f"sequence number {seq} is not 0..2^53-1", seq=seq)

    def _covering(self, txn: lmdb.Transaction, did: str, stream: str, seq: int) -> tuple[int, AnchorRow]:
        found = self.node.tables.covering_anchor(txn, did, stream, seq)
        if found is None:
            raise UnknownAnchor(f"no anchored segment head of {did} stream {stream} covers sequence number {seq}", did=did, stream=stream, seq=seq)
        return found

    async def get_anchor(self, did: str, stream: str, seq: int) -> AnchorProof:
        """The anchor of (did, stream, seq) with its proofs under the latest checkpoint.

        Raises :class:`UnknownAnchor` when no anchored head covers it, the
        input errors of a malformed DID, stream or sequence number.
        """
        self._check(did, stream, seq)
        with self.node.store.read() as txn:
            self._covering(txn, did, stream, seq)  # refuse before asking the writer for a checkpoint

        def read(txn: lmdb.Transaction, checkpoint: SignedCheckpoint) -> AnchorProof:
            first, row = self._covering(txn, did, stream, seq)  # anchors are never removed: found again
            size = checkpoint.tree_size
            if row.position >= size:  # cannot happen: the checkpoint covers the snapshot's whole log
                raise NodeUnavailable(f"the latest checkpoint ({size} entries) does not cover the anchor at {row.position} yet; ask again")
            nodes = LogNodes(txn, self.node.store)
            state = self.transparency.state_proof_in(txn, checkpoint, did)
            return AnchorProof(
                did=did,
                stream=stream,
                position=row.position,
                head_index=row.index,
                first=first,
                count=row.count,
                entry=self.node.tables.entry(txn, row.position),
                checkpoint=checkpoint,
                inclusion=tuple(proof_build.inclusion_proof(nodes, row.position, size)),
                genesis_consistency=tuple(proof_build.consistency_proof(nodes, 1, size)) if size > 1 else (),
                state_record=state.state_record,
                state_proof=state.proof,
            )

        return await self.transparency.at_latest(read)
