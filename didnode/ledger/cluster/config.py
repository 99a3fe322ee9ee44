"""How a node joins a cluster (:class:`ClusterConfig`) and where it stands (:class:`ClusterStatus`)."""

from __future__ import annotations

from dataclasses import dataclass

from didnode.ledger import stream as st


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How a node joins a cluster (``didnode serve --nats ... --stream ...``)."""

    servers: tuple[str, ...]
    network: str
    stream: str = ""  # default: DIDNODE_<NETWORK>
    replicas: int = 0  # 0: 3, or 1 on a single server
    duplicate_window_s: float = 120.0
    publish_timeout_s: float = 2.0  # one publish attempt (nats-py futures never time out alone)
    # An atomic batch waits this long for its acknowledgement while the stream makes no
    # progress (this node receives nothing): then it is sent again. While the stream
    # stores other messages the batch is only queued behind them (each message is
    # fsync'd on every replica) and the wait goes on, up to batch_max_wait_s.
    batch_timeout_s: float = 3.0
    batch_max_wait_s: float = 10.0
    # Atomic batches of this node awaiting their acknowledgement at once. More only
    # lengthen the queue at the stream leader (and so every batch's wait) without
    # storing anything sooner; two keep the leader busy while one is acknowledged.
    max_inflight_batches: int = 2
    api_timeout_s: float = 3.0
    # While following, the stream's identity (name, creation time, last sequence) is
    # checked this often: the backstop when a deletion's advisory was missed.
    stream_check_s: float = 1.0
    catch_up_s: float = 5.0  # longest wait for this node to catch up before judging a submission
    submit_deadline_s: float = 20.0  # all attempts of one submission, publish to local apply
    pull_batch: int = 1000  # messages per read (a direct get batch, or a consumer pull)
    pull_max_bytes: int = 4 << 20  # bytes per direct get batch
    pull_expires_s: float = 5.0
    heartbeat_s: float = 1.0
    # With direct gets, a node reads the stream when told that it grew (its own acks,
    # the other nodes' ticks) and, for writes from elsewhere, at least this often.
    poll_interval_s: float = 0.1
    max_buffered: int = 20_000  # delivered but not yet applied messages
    commit_interval_s: float = 0.2  # under load, at most one follower commit per interval (group commit)
    busy_commit: int = 32  # a commit of this many messages means "under load"
    flush_interval_s: float = 0.005  # under load, delivered messages reach the follow thread at most this often
    atomic_batch_max: int = 1000  # the server's default limit of messages per atomic batch
    client_name: str = "didnode"

    @property
    def stream_name(self) -> str:
        return self.stream or st.default_stream_name(self.network)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Where a cluster node stands (NodeInfo and health report it)."""

    stream: str
    writable: bool
    applied_seq: int
    stream_last_seq: int
    lag: int
    reason: str  # why the node is not writable; empty when it is

