"""The node as a cosignature collector (``didnode serve --witness URL=VKEY``; docs/witness.md).

:class:`CosignCollector` runs in the node's event loop beside the servers and
never in the way of a write or a read:

* every ``interval_s`` it looks (one read transaction) at the log size and
  the latest stored checkpoint; when the log grew it has the checkpoint
  signed (``TransparencyService.checkpoint``, what a reader would trigger);
* when the latest stored checkpoint's note carries no cosignature yet, it
  asks the witnesses (:class:`~didnode.witness.client.WitnessClient`, in
  parallel, timeouts, bounded retries), with consistency proofs built from
  the node's own log tree;
* the cosigned note replaces the stored checkpoint at that size (a small
  task in the writer's transaction, only if the stored row is still that
  very checkpoint), so everything served from then on (GetCheckpoint, state
  proofs, resolutions with proof, /checkpoint) carries the cosignatures.
  Until then what is served is the note with the log's signature only.

A witness that is down or refuses is logged (warning) and counted
(:attr:`CosignCollector.failures`, by witness URL); the node keeps serving.
The witnesses that did not cosign the latest checkpoint are asked again
about it (only they, the cosignatures collected are kept) after
``retry_s``, doubling up to :data:`MAX_RETRY_S`, until the log grows: a
witness that starts after the node (the nodes of a cluster start one by
one) cosigns an idle log's checkpoint too.
One round at a time; a checkpoint that was overtaken by a newer one before
its round started is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

import lmdb

from didnode.core import note as note_codec
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.merkle import proof_build
from didnode.errors import DidnodeError
from didnode.store.checkpoint_tables import CheckpointTables
from didnode.store.tree_tables import LogNodes
from didnode.witness.client import CosignResult, WitnessClient, WitnessEndpoint

log = logging.getLogger("didnode.cosigning")

DEFAULT_INTERVAL_S = 0.2
DEFAULT_RETRY_S = 2.0
MAX_RETRY_S = 60.0


class CosignCollector:
    """Collects witness cosignatures of ``node``'s checkpoints (module docstring)."""

    def __init__(self, node: object, transparency: object, witnesses: Sequence[WitnessEndpoint], *, interval_s: float = DEFAULT_INTERVAL_S, timeout_s: float = 5.0, attempts: int = 3, retry_s: float = DEFAULT_RETRY_S) -> None:
        self.node = node
        self.transparency = transparency
        self.tables = CheckpointTables(node.tables.store)  # type: ignore[attr-defined]
        self.client = WitnessClient(witnesses, self._proof, timeout_s=timeout_s, attempts=attempts)
        self.interval_s = interval_s
        self.rounds = 0
        self.cosigned = 0  # checkpoints stored with cosignatures
        self.failures: dict[str, int] = {w.url: 0 for w in witnesses}
        self.last_result: CosignResult | None = None
        self._done: set[bytes] = set()  # note texts already asked about
        self.retry_s = retry_s
        self._missing: set[str] = set()  # URLs of the witnesses that did not cosign the latest text
        self._retry_delay = retry_s
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None

    # -- reading the node's own log ----------------------------------------

    def _proof_sync(self, old: int, new: int) -> list[bytes]:
        store = self.node.store  # type: ignore[attr-defined]
        with store.read() as txn:
            return proof_build.consistency_proof(LogNodes(txn, store), old, new)

    async def _proof(self, old: int, new: int) -> list[bytes]:
        return await asyncio.to_thread(self._proof_sync, old, new)

    def _look(self) -> tuple[int, SignedCheckpoint | None]:
        with self.node.store.read() as txn:  # type: ignore[attr-defined]
            return self.node.tables.log_size(txn), self.tables.latest(txn)  # type: ignore[attr-defined]

    # -- the loop ------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await self.client.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything; the node keeps serving
                log.exception("cosigning round failed")
            await asyncio.sleep(self.interval_s)

    async def step(self) -> bool:
        """One look and, if there is something new, one round; True when a round ran."""
        size, latest = self._look()
        if latest is None or latest.tree_size < size:
            try:
                latest = await self.transparency.checkpoint()  # type: ignore[attr-defined]
            except DidnodeError as exc:
                log.warning("cannot sign a checkpoint to have it cosigned: %s [%s]", exc, exc.reason)
                return False
        if latest is None or not latest.note:
            return False
        text = note_codec.parse(latest.note).text
        now = asyncio.get_running_loop().time()
        if text in self._done:
            if not self._missing or now < self._retry_at:
                return False
            result = await self.cosign(latest, only=set(self._missing))  # the stored note, with the cosignatures it has
            self._retry_delay = min(self._retry_delay * 2, MAX_RETRY_S)
        else:
            self._done = {text}
            self._retry_delay = self.retry_s
            result = await self.cosign(latest)
        self._missing = set(result.failures)
        self._retry_at = asyncio.get_running_loop().time() + self._retry_delay
        return True

    async def cosign(self, signed: SignedCheckpoint, only: set[str] | None = None) -> CosignResult:
        """Ask the witnesses (those of ``only``, by URL) about ``signed`` and store the cosigned note if any cosignature came back."""
        self.rounds += 1
        result = await self.client.cosign(signed.note, signed.tree_size, only)
        self.last_result = result
        for url in result.failures:
            self.failures[url] = self.failures.get(url, 0) + 1
        if result.cosignatures:
            cosigned = SignedCheckpoint(signed.checkpoint, signed.kid, signed.signature, result.note)
            if await self._store(signed, cosigned):
                self.cosigned += 1
                log.info("checkpoint of %d entries cosigned by %d of %d witness(es)", signed.tree_size, len(result.cosignatures), len(self.client.witnesses))
        return result

    async def _store(self, signed: SignedCheckpoint, cosigned: SignedCheckpoint) -> bool:
        """Replace ``signed`` by ``cosigned`` in the checkpoints table, in the writer's transaction,
        only if the row at that size is still ``signed`` (a re-signed checkpoint is left alone)."""

        def task(txn: lmdb.Transaction) -> bool:
            row = self.tables.find(txn, signed.tree_size)
            if row != signed:
                return False
            self.tables.put(txn, cosigned)
            return True

        return bool(await self.transparency._in_writer(task))  # type: ignore[attr-defined]


__all__ = ["CosignCollector", "DEFAULT_INTERVAL_S"]
