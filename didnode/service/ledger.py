"""Ledger use cases over a node: submit, resolve (current or past version), history, key state.

No protobuf here: the transport converts. Async methods are for the gRPC
event loop; the blocking parts (verification, the writer) run in threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import replace
from typing import Any, Callable, Sequence

from didnode.core import canonical
from didnode.core import entry as entry_codec
from didnode.core.did import validate_did
from didnode.core.document import resolution_result
from didnode.core.governance.policy import OPEN
from didnode.core.keystate import DidState
from didnode.core.operations import Proof
from didnode.core.trust.history import ProvenOperation, pick_version, replay
from didnode.core.results import HistoryEntry, HistoryPage, KeyState, NodeInfo, Receipt, Resource
from didnode.core.merkle import proof_build
from didnode.errors import DidnodeError, Internal, InvalidArgument, TooLarge, UnknownDid
from didnode.store.tree_tables import LogNodes
from didnode.ledger.batch import Outcome
from didnode.ledger.orderer import settle
from didnode.ledger.prepare import Item
from didnode.service.node import Node
from didnode.store import layout
from didnode.store.ledger_tables import VersionRef

MAX_BATCH_CHUNK = 1024
# History pages (docs/security.md, "Limits"): entries per page by default and at most, and the
# bytes of operations one page carries at most (always at least one entry; one operation is at
# most ~68 KB), so a reply stays far under the 16 MiB a node sends.
HISTORY_PAGE = 256
MAX_HISTORY_PAGE = 1000
MAX_HISTORY_PAGE_BYTES = 4 * 1024 * 1024
log = logging.getLogger("didnode.service")


class LedgerService:
    """Use cases of the ledger for one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        # Told the outcomes of every submitted group once it is durable (e.g. the node's
        # metrics: submissions and rejections by reason); runs on the event loop, must not block.
        self.on_outcomes: Callable[[Sequence[Outcome]], None] | None = None

    async def submit(self, payload: bytes, proofs: Sequence[Proof]) -> Receipt:
        """Submit one operation; returns once it is durably applied, or raises its rejection."""
        outcome = (await self.submit_many([(payload, proofs)]))[0]
        if isinstance(outcome, DidnodeError):
            raise outcome
        return outcome

    async def submit_many(
        self,
        items: Sequence[Item],
        after: asyncio.Event | None = None,
        enqueued: asyncio.Event | None = None,
    ) -> list[Outcome]:
        """Submit a group; one outcome per item, in order, after the group is durable.

        An item may already be the error that rejects it (the transport could
        not read that operation); it is answered as such, in its place. One
        item never fails its group: preparation answers per item, and should
        preparing the group itself fail (a worker process died), every item
        is answered with that failure instead of the call raising.

        Groups of one stream keep their order: a group is handed to the
        orderer only after ``after`` is set (the previous group was handed
        over), and sets ``enqueued`` once it was; verification of several
        groups still runs in parallel.
        """
        try:
            if len(items) > MAX_BATCH_CHUNK:
                raise InvalidArgument(f"a batch chunk holds at most {MAX_BATCH_CHUNK} operations, not {len(items)}")
            loop = asyncio.get_running_loop()
            try:
                ops = await asyncio.wrap_future(self.node.prepare_future(items))
            except DidnodeError as err:
                ops = [err] * len(items)
            except Exception:  # noqa: BLE001 -- e.g. BrokenProcessPool: answer each item, keep the stream
                log.exception("preparing a group of %d operations failed", len(items))
                ops = [Internal("internal error while preparing this group; see the node log")] * len(items)
            if after is not None:
                await after.wait()
            fut: asyncio.Future[list[Outcome]] = loop.create_future()

            def done(outcomes: list[Outcome]) -> None:
                loop.call_soon_threadsafe(settle, fut, outcomes)

            self.node.orderer.submit(ops, done)
        finally:
            if enqueued is not None:
                enqueued.set()
        outcomes = await fut
        if self.on_outcomes is not None:
            self.on_outcomes(outcomes)
        return outcomes

    # -- reads ---------------------------------------------------------------

    def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        """A W3C DID Resolution result for the current or a past version."""
        validate_did(did)
        tables = self.node.tables
        with self.node.store.read() as txn:
            versions = tables.versions(txn, did)
            created = versions[0].time
            if version_id is None and version_time is None:
                return resolution_result(tables.get_state(txn, did), created)
            target = pick_version(did, [v.time for v in versions], version_id, version_time)
            state = self._replay(txn, did, versions[: target + 1])
            following = versions[target + 1] if target + 1 < len(versions) else None
            nxt = (following.seq, following.time) if following else None
            return resolution_result(state, created, nxt)

    def _replay(self, txn: Any, did: str, versions: list[VersionRef]) -> DidState:
        """Rebuild a past state by replaying the DID's accepted operations (trusted)."""
        ops = []
        for v in versions:
            e = entry_codec.decode(self.node.tables.entry(txn, v.position))
            ops.append(ProvenOperation(e.position, e.time, v.seq, e.payload, e.proofs, ()))
        return replay(did, ops, self.node.network)[-1].state

    def history(
        self, did: str, after_seq: int | None = None, page_size: int | None = HISTORY_PAGE, prove_at_size: int | None = None
    ) -> HistoryPage:
        """One page of ``did``'s operations in seq order (position, time, type, signers, hash, signed bytes).

        The page holds the operations with seq > ``after_seq`` (None: from the
        create), at most ``page_size`` (capped at MAX_HISTORY_PAGE) and
        MAX_HISTORY_PAGE_BYTES of operations, at least one. ``page_size`` None
        asks for the whole history in one page: :class:`TooLarge` when it does
        not fit (what a client from before paging asks; it must never get a
        silently truncated history).

        With ``prove_at_size`` (at most the log size, else :class:`InvalidArgument`): the history
        as of the log of that size (operations at positions below it), each entry with its
        inclusion proof at that size, all read in one transaction (docs/trust.md).
        """
        validate_did(did)
        if page_size is not None and page_size < 1:
            raise InvalidArgument(f"a history page holds at least one entry, not {page_size}")
        limit = MAX_HISTORY_PAGE if page_size is None else min(page_size, MAX_HISTORY_PAGE)
        tables = self.node.tables
        out: list[HistoryEntry] = []
        size = 0
        with self.node.store.read() as txn:
            versions = tables.versions(txn, did)
            if prove_at_size is not None:
                n = tables.log_size(txn)
                if not 1 <= prove_at_size <= n:
                    raise InvalidArgument(f"prove_at_size {prove_at_size} must be 1..{n} (the log size)", size=prove_at_size)
                versions = [v for v in versions if v.position < prove_at_size]
                if not versions:
                    raise UnknownDid(f"{did} did not exist yet in the log of {prove_at_size} entries", did=did)
            start = 0 if after_seq is None else min(after_seq + 1, len(versions))  # versions[i].seq == i
            for v in versions[start : start + limit]:
                e = entry_codec.decode(tables.entry(txn, v.position))
                cost = len(e.payload) + sum(len(p.kid) + len(p.signature) for p in e.proofs) + 64
                if out and size + cost > MAX_HISTORY_PAGE_BYTES:
                    break
                size += cost
                body = canonical.decode_strict(e.payload)
                out.append(
                    HistoryEntry(
                        v.position,
                        v.time,
                        body["type"],
                        v.seq,
                        hashlib.sha256(e.payload).digest(),
                        tuple(p.kid for p in e.proofs),
                        e.payload,
                        e.proofs,
                        () if prove_at_size is None else tuple(proof_build.inclusion_proof(LogNodes(txn, self.node.store), v.position, prove_at_size)),
                    )
                )
        more = start + len(out) < len(versions)
        if more and page_size is None:
            raise TooLarge(
                f"{did} has {len(versions)} operations, more than one reply carries ({len(out)}); read its history in pages",
                did=did, entries=len(versions), page=len(out),
            )
        return HistoryPage(tuple(out), out[-1].seq if more and out else None)

    def key_state(self, did: str, at_position: int | None = None) -> KeyState:
        """The current state of ``did`` (keys with their fates, controllers, commitment) on this node's network.

        With ``at_position``, also the ids of the keys that could sign at that ledger position.
        """
        state = self.state(did)
        valid_at = None if at_position is None else tuple(k.id for k in state.keys_valid_at(at_position))
        return KeyState(state, self.node.network, valid_at)

    def state(self, did: str) -> DidState:
        """The current state of ``did``; raises :class:`UnknownDid`."""
        validate_did(did)
        with self.node.store.read() as txn:
            return self.node.tables.get_state(txn, did)

    def resource(self, did: str, resource_id: str) -> Resource:
        """The latest content of ``did``'s resource ``resource_id``; raises :class:`UnknownResource`."""
        validate_did(did)
        tables = self.node.tables
        with self.node.store.read() as txn:
            ref = tables.get_state(txn, did).resource(resource_id)
            e = entry_codec.decode(tables.entry(txn, ref["pos"]))
        res = canonical.decode_strict(e.payload)["resource"]
        return Resource(did, resource_id, res["mediaType"], res["content"], e.position, ref["seq"], e.time, bytes.fromhex(ref["hash"]))

    def info(self) -> NodeInfo:
        tables = self.node.tables
        # Read the cluster position before the snapshot: the snapshot then holds at least that much.
        cluster = self.node.cluster_status()
        with self.node.store.read() as txn:
            policy = tables.governance(txn)
            info = NodeInfo(
                self.node.network,
                self.node.node_did,
                tables.log_size(txn),
                self.node.version,
                tables.count_dids(txn),
                tables.last_time(txn),
                layout.SCHEMA_VERSION,
                self.node.mode,
                governance=policy.did if policy is not None else "",
                create_policy=policy.create if policy is not None else OPEN,
            )
        if cluster is None:
            return info
        return replace(
            info,
            stream=cluster.stream,
            stream_seq=cluster.applied_seq,
            stream_last_seq=cluster.stream_last_seq,
            lag=cluster.lag,
            writable=cluster.writable,
            not_writable_reason=cluster.reason,
        )

