"""Transparency use cases: checkpoints, inclusion/consistency/state proofs, resolution with proof.

No protobuf here. Reads that need the *latest* checkpoint (state proofs,
default sizes) run where the checkpoint and the data are one snapshot: in a
read transaction when the stored checkpoint already covers the whole log,
else as a task in the writer's transaction, which signs the new checkpoint
and builds the proof before anything else can be applied
(``Checkpointer``; ``LocalOrderer.submit_task``). Log proofs at a fixed
size can be read from any later snapshot, since log tree nodes never change.

A checkpoint signed in the writer's transaction is recorded beside the node
key (``Checkpointer.committed``: ``node.checkpoint``) on the writer thread,
after the commit and before the waiting call is answered: no checkpoint
leaves the node before it is recorded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, TypeVar

import lmdb

from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.did import validate_did
from didnode.core.document import resolution_result
from didnode.core.keystate import DidState
from didnode.core.merkle import proof_build, sparse
from didnode.core.proof_bundle import ConsistencyProof, InclusionProof, StateProof
from didnode.core.results import ProvenResolution, ProvenState
from didnode.errors import DidnodeError, Internal, InvalidArgument, UnknownDid, UnknownOperation
from didnode.ledger.checkpoints import DEFAULT_MAX_AGE_MS, Checkpointer
from didnode.ledger.orderer import settle
from didnode.service.node import Node
from didnode.store import layout
from didnode.store.tree_tables import LogNodes, StateNodes

T = TypeVar("T")
NODE_KEY_FRAGMENT = "key-1"
log = logging.getLogger("didnode.transparency")


class TransparencyService:
    """Transparency use cases for one node; checkpoints are signed with the node's DID key."""

    def __init__(self, node: Node, max_age_ms: int = DEFAULT_MAX_AGE_MS) -> None:
        self.node = node
        self.checkpointer = Checkpointer(
            node.tables, node.network, node.signing_key, f"{node.node_did}#{NODE_KEY_FRAGMENT}", node.clock_ms, max_age_ms,
            record=node.checkpoint_record, origin=node.origin,
        )

    # -- plumbing ----------------------------------------------------------

    async def _in_writer(self, task: Callable[[lmdb.Transaction], T], after_commit: Callable[[T], None] | None = None) -> T:
        """Run ``task`` in the writer's next transaction; return its result after the commit.

        ``after_commit(result)`` runs on the writer thread once the transaction
        committed, before the result is handed back; its error replaces the result.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def done(result: Any) -> None:
            if after_commit is not None and not isinstance(result, DidnodeError):
                try:
                    after_commit(result)
                except DidnodeError as exc:
                    result = exc
                except Exception:  # the writer thread must survive
                    log.exception("after-commit step failed")
                    result = Internal("internal error after a writer task; see the node log")
            loop.call_soon_threadsafe(settle, fut, result)

        self.node.orderer.submit_task(task, done)
        result = await fut
        if isinstance(result, DidnodeError):
            raise result
        return result  # type: ignore[no-any-return]

    async def at_latest(self, fn: Callable[[lmdb.Transaction, SignedCheckpoint], T]) -> T:
        """``fn(txn, checkpoint)`` where ``checkpoint`` covers exactly the log of ``txn``."""
        with self.node.store.read() as txn:
            current = self.checkpointer.current(txn)
            if current is not None:
                return fn(txn, current)

        def task(txn: lmdb.Transaction) -> tuple[SignedCheckpoint, T]:
            checkpoint = self.checkpointer.ensure(txn)
            return checkpoint, fn(txn, checkpoint)

        _, result = await self._in_writer(task, lambda out: self.checkpointer.committed(out[0]))
        return result

    # -- checkpoints -------------------------------------------------------

    async def checkpoint(self, tree_size: int | None = None) -> SignedCheckpoint:
        """The latest checkpoint (signed now if the log grew or it is stale), or
        the stored one at ``tree_size`` (:class:`NoCheckpoint` if none)."""
        if tree_size is not None:
            with self.node.store.read() as txn:
                return self.checkpointer.checkpoints.at(txn, tree_size)
        return await self.at_latest(lambda _txn, cp: cp)

    # -- log proofs --------------------------------------------------------

    async def inclusion_proof(
        self, position: int | None = None, op_hash: bytes | None = None, tree_size: int | None = None
    ) -> InclusionProof:
        """Inclusion of the entry at ``position`` (or of the operation ``op_hash``) at ``tree_size``.

        Exactly one of ``position`` / ``op_hash`` (:class:`InvalidArgument`).
        Default size: the latest checkpoint's. Raises :class:`UnknownOperation`
        for an entry that is not in the log, :class:`InvalidArgument` for one
        that is not below ``tree_size`` or a size beyond the log.
        """
        if (position is None) == (op_hash is None):
            raise InvalidArgument("name the entry by exactly one of position or operation hash")
        checkpoint = None if tree_size is not None else await self.checkpoint()
        tables = self.node.tables
        with self.node.store.read() as txn:
            if op_hash is not None:
                position = tables.position_of(txn, op_hash)
            assert position is not None
            n = tables.log_size(txn)
            if position >= n:
                raise UnknownOperation(f"no log entry at position {position}; the log holds {n}", position=position)
            if checkpoint is None:
                assert tree_size is not None
                if tree_size > n:
                    raise InvalidArgument(f"tree size {tree_size} is beyond the log size {n}", size=tree_size)
                checkpoint = self.checkpointer.checkpoints.find(txn, tree_size)
                size = tree_size
            else:
                size = checkpoint.tree_size
            if position >= size:
                raise InvalidArgument(f"entry {position} is not in the tree of size {size}", position=position, size=size)
            hashes = proof_build.inclusion_proof(LogNodes(txn, self.node.store), position, size)
            return InclusionProof(tables.entry(txn, position), position, size, tuple(hashes), checkpoint)

    async def consistency_proof(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """That the log of ``size1`` entries is a prefix of the log of ``size2`` (default: latest checkpoint).

        Precondition: ``0 <= size1 <= size2 <= log size`` (else :class:`InvalidArgument`).
        """
        latest = None if size2 is not None else await self.checkpoint()
        with self.node.store.read() as txn:
            n = self.node.tables.log_size(txn)
            end = latest.tree_size if latest is not None else size2
            assert end is not None
            if not 0 <= size1 <= end <= n:
                raise InvalidArgument(
                    f"consistency needs 0 <= size1 <= size2 <= log size ({n}); got {size1} and {end}", size1=size1, size2=end
                )
            finder = self.checkpointer.checkpoints.find
            cp2 = latest if latest is not None else finder(txn, end)
            cp1 = finder(txn, size1) if size1 else None
            hashes = proof_build.consistency_proof(LogNodes(txn, self.node.store), size1, end)
            return ConsistencyProof(size1, end, tuple(hashes), cp1, cp2)

    # -- state proofs ------------------------------------------------------

    def state_proof_in(self, txn: lmdb.Transaction, checkpoint: SignedCheckpoint, did: str) -> StateProof:
        """The state proof of ``did`` under ``checkpoint``, read in ``txn`` (the log ``checkpoint`` covers)."""
        proof = sparse.prove(StateNodes(txn, self.node.store), sparse.key_for_did(did))
        raw = txn.get(layout.did_key(did), db=self.node.tables.state)
        if raw is None:
            return StateProof(did, False, b"", proof, checkpoint)
        return StateProof(did, True, raw, proof, checkpoint)

    def _proven(self, txn: lmdb.Transaction, checkpoint: SignedCheckpoint, did: str, known_size: int | None) -> ProvenState:
        """The state proof and, for a client that verified ``known_size`` (at most the checkpoint's
        size), the consistency proof from there, read in the checkpoint's transaction."""
        consistency: tuple[bytes, ...] = ()
        if known_size is not None and 1 <= known_size <= checkpoint.tree_size:
            consistency = tuple(proof_build.consistency_proof(LogNodes(txn, self.node.store), known_size, checkpoint.tree_size))
        return ProvenState(self.state_proof_in(txn, checkpoint, did), consistency)

    async def state_proof(self, did: str, known_size: int | None = None) -> ProvenState:
        """``did``'s state record under the latest checkpoint, or the proof that it has none; with
        ``known_size``, the consistency proof from that size to the checkpoint's (docs/trust.md)."""
        validate_did(did)
        return await self.at_latest(lambda txn, cp: self._proven(txn, cp, did, known_size))

    async def resolve_with_proof(self, did: str, known_size: int | None = None) -> ProvenResolution:
        """The current resolution result with the state proof of the record it comes from.

        Raises :class:`UnknownDid` for a DID that does not exist (ask
        :meth:`state_proof` for the proof of its absence).
        """
        validate_did(did)
        proven = await self.at_latest(lambda txn, cp: self._proven(txn, cp, did, known_size))
        proof = proven.proof
        if not proof.present:
            raise UnknownDid(f"{did} does not exist on this ledger", did=did)
        state = DidState.from_record(proof.state_record)
        return ProvenResolution(resolution_result(state, state.created_time), proof, proven.consistency)
