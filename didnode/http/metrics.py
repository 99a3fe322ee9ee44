"""A node's Prometheus metrics, in a registry of its own (docs/http.md, "Metrics").

:class:`NodeMetrics` owns a ``CollectorRegistry`` per node (never the
process-global one), so one process can run several nodes (tests, embedding)
and each ``/metrics`` shows its own. Events are counted where they happen,
through the hooks the node's parts offer (each a plain attribute, ``None``
unless metrics are on): the store's commits (``Store.on_commit``), the
writer's batches (``LocalOrderer.on_batch``), submission outcomes
(``LedgerService.on_outcomes``), gRPC calls (``NodeGuard.on_call``) and HTTP
requests (the HTTP face's middleware). Levels (queue depth, LMDB map use,
cluster lag, log size, handshakes by outcome) are read when scraped.

Every hook is a few dictionary lookups and one ``observe``: a labelled child
is looked up once per label value and kept.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any, Iterator, Mapping, Sequence

import lmdb
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from didnode.errors import DidnodeError
from didnode.service.health import Readiness
from didnode.service.ledger import LedgerService
from didnode.service.node import Node

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
disable_created_metrics()  # no *_created series: half the exposition, and nothing a node's dashboards use


class NodeMetrics:
    """The metrics of one node; :meth:`install` connects the hooks, :meth:`render` is the exposition text."""

    def __init__(self, node: Node, ledger: LedgerService, readiness: Readiness | None = None, handshakes: Mapping[str, int] | None = None) -> None:
        """``handshakes``: the responder's outcome tally (``Party.stats``: ``OK`` or a reason -> count), read when scraped."""
        self.node = node
        self.ledger = ledger
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.submissions = Counter("didnode_submissions", "Operations submitted (Submit, SubmitBatch), by outcome, once durable", ["outcome"], registry=r)
        self.rejections = Counter("didnode_rejections", "Submitted operations rejected, by didnode reason", ["reason"], registry=r)
        self.batch_operations = Histogram("didnode_batch_operations", "Operations per batch the writer applied in one transaction", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("didnode_batch_seconds", "Seconds per batch: apply and durable commit, one write transaction", buckets=LATENCY_BUCKETS, registry=r)
        self.commit_seconds = Histogram(
            "didnode_store_commit_seconds", "Seconds per LMDB commit: page writes and fsync (the durability cost)", buckets=LATENCY_BUCKETS, registry=r
        )
        self.rpc_seconds = Histogram("didnode_rpc_seconds", "Seconds per gRPC call of a one-reply method, by method", ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.http_requests = Counter("didnode_http_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r)
        self.http_seconds = Histogram("didnode_http_request_seconds", "Seconds per HTTP request, by route", ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self._accepted = self.submissions.labels("accepted")
        self._rejected = self.submissions.labels("rejected")
        self._rpc: dict[str, Any] = {}
        self._http: dict[tuple[str, int], Any] = {}
        self._http_time: dict[str, Any] = {}
        self.levels = _LevelCollector(node, readiness, handshakes)
        r.register(self.levels)

    def watch_cosigning(self, collector: Any) -> None:
        """Report a cosignature collector's tallies (:class:`~didnode.ledger.cosigning.CosignCollector`:
        ``cosigned`` and ``failures`` by witness URL), read when scraped."""
        self.levels.cosigning = collector

    # -- hooks -------------------------------------------------------------

    def install(self, guard: Any = None) -> None:
        """Connect the hooks of the node's store, writer and ledger service, and of a gRPC ``guard``
        (:class:`~didnode.transport.guard.NodeGuard`) when given."""
        self.node.store.on_commit = self.commit_seconds.observe
        if hasattr(self.node.orderer, "on_batch"):
            self.node.orderer.on_batch = self.on_batch  # type: ignore[attr-defined]
        self.ledger.on_outcomes = self.on_outcomes
        if guard is not None:
            guard.on_call = self.on_call

    def uninstall(self, guard: Any = None) -> None:
        """Disconnect what :meth:`install` connected."""
        self.node.store.on_commit = None
        if hasattr(self.node.orderer, "on_batch"):
            self.node.orderer.on_batch = None  # type: ignore[attr-defined]
        self.ledger.on_outcomes = None
        if guard is not None:
            guard.on_call = None

    def on_batch(self, operations: int, seconds: float) -> None:
        self.batch_operations.observe(operations)
        self.batch_seconds.observe(seconds)

    def on_outcomes(self, outcomes: Sequence[object]) -> None:
        reasons = Tally(o.reason for o in outcomes if isinstance(o, DidnodeError))
        rejected = sum(reasons.values())
        if len(outcomes) > rejected:
            self._accepted.inc(len(outcomes) - rejected)
        if rejected:
            self._rejected.inc(rejected)
            for reason, n in reasons.items():
                self.rejections.labels(reason).inc(n)

    def on_call(self, method: str, seconds: float) -> None:
        child = self._rpc.get(method)
        if child is None:
            child = self._rpc[method] = self.rpc_seconds.labels(method)
        child.observe(seconds)

    def on_http(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        count = self._http.get(key)
        if count is None:
            count = self._http[key] = self.http_requests.labels(route, str(status))
        count.inc()
        timer = self._http_time.get(route)
        if timer is None:
            timer = self._http_time[route] = self.http_seconds.labels(route)
        timer.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of this node's registry."""
        return generate_latest(self.registry)


class _LevelCollector:
    """Levels read at scrape time: identity, queue depth, log size, LMDB map use, cluster lag, readiness, handshakes."""

    def __init__(self, node: Node, readiness: Readiness | None, handshakes: Mapping[str, int] | None) -> None:
        self.node = node
        self.readiness = readiness
        self.handshakes = handshakes
        self.cosigning: Any = None  # a CosignCollector, with --witness

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: names are not registered ahead

    def collect(self) -> Iterator[Metric]:
        node = self.node
        info = GaugeMetricFamily("didnode_info", "The node: its network, DID, version and mode (value 1)", labels=["network", "node_did", "version", "mode"])
        info.add_metric([node.network, node.node_did, node.version, node.mode], 1)
        yield info
        pending = getattr(node.orderer, "pending", None)
        if isinstance(pending, int):
            yield GaugeMetricFamily("didnode_queue_depth", "Operations submitted and waiting to be applied", value=pending)
        yield from self._store()
        yield from self._cluster()
        if self.readiness is not None:
            report = self.readiness.check()
            yield GaugeMetricFamily("didnode_ready", "1 when the node is ready (GET /readyz), else 0", value=1 if report.ready else 0)
        if self.handshakes is not None:
            family = CounterMetricFamily("didnode_handshakes", "Authentication handshakes answered by the node, by outcome and reason", labels=["outcome", "reason"])
            for reason, n in sorted(dict(self.handshakes).items()):
                family.add_metric(["ok" if reason == "OK" else "refused", reason], n)
            yield family
        if self.cosigning is not None:
            yield CounterMetricFamily("didnode_checkpoints_cosigned", "Checkpoints stored with the cosignatures witnesses returned", value=self.cosigning.cosigned)
            failures = CounterMetricFamily("didnode_witness_failures", "Requests for a cosignature a witness did not answer with one, by witness URL", labels=["witness"])
            for url, n in sorted(dict(self.cosigning.failures).items()):
                failures.add_metric([url], n)
            yield failures

    def _store(self) -> Iterator[Metric]:
        env = self.node.store.env
        try:
            info, psize = env.info(), env.stat()["psize"]
            with self.node.store.read() as txn:
                size = self.node.tables.log_size(txn)
                dids = self.node.tables.count_dids(txn)
        except lmdb.Error:
            return  # closed: a stopping node has no levels
        used = (info["last_pgno"] + 1) * psize
        yield GaugeMetricFamily("didnode_log_entries", "Entries in the ledger's log", value=size)
        yield GaugeMetricFamily("didnode_dids", "DIDs on the ledger", value=dids)
        yield GaugeMetricFamily("didnode_lmdb_map_bytes", "Size of the LMDB memory map (grows by doubling when full)", value=info["map_size"])
        yield GaugeMetricFamily("didnode_lmdb_used_bytes", "Bytes of the LMDB map in use (pages up to the last one written)", value=used)
        yield GaugeMetricFamily("didnode_lmdb_map_use_ratio", "Share of the LMDB map in use", value=used / info["map_size"])

    def _cluster(self) -> Iterator[Metric]:
        status = self.node.cluster_status()
        if status is None:
            return
        yield GaugeMetricFamily("didnode_cluster_lag_messages", "Stream messages not yet applied by this node", value=status.lag)
        yield GaugeMetricFamily("didnode_cluster_applied_seq", "Last stream sequence this node applied", value=status.applied_seq)
        yield GaugeMetricFamily("didnode_cluster_writable", "1 when this node can order writes through the stream", value=1 if status.writable else 0)


def handshake_tally(servicers: Sequence[tuple[object, object]]) -> Mapping[str, int] | None:
    """The responder's outcome tally (``Party.stats``) among a node's (descriptor, servicer) pairs, if it serves one."""
    for _, servicer in servicers:
        responder = getattr(servicer, "responder", None)
        setup = getattr(responder, "setup", None)
        party = getattr(setup, "party", None)
        stats = getattr(party, "stats", None)
        if isinstance(stats, Tally):
            return stats
    return None


__all__ = ["CONTENT_TYPE", "NodeMetrics", "handshake_tally"]
