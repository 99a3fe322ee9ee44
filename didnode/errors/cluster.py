"""Cluster errors: the JetStream orderer (docs/cluster.md).

Part of the one error tree: import from :mod:`didnode.errors`.
"""

from __future__ import annotations

from didnode.errors.base import Conflict, Unavailable
from didnode.errors.ledger import MalformedOperation, StoreCorrupted

# --------------------------------------------------------------------------
# Cluster: the JetStream orderer (didnode.ledger.cluster; docs/cluster.md).
# --------------------------------------------------------------------------


class ClusterUnavailable(Unavailable):
    """The node cannot reach its NATS JetStream cluster, or the stream has no
    leader right now; reads keep working, writes are refused until it is back."""

    reason = "CLUSTER_UNAVAILABLE"


class StreamMissing(ClusterUnavailable):
    """The stream this node's store follows is gone from a reachable JetStream
    (deleted); the node never recreates it (that would be another history):
    reads keep working, writes are refused until an operator acts."""

    reason = "STREAM_MISSING"


class WriteConflict(Conflict):
    """Concurrent writes to the same DID kept winning the per-DID compare-and-set
    (``Nats-Expected-Last-Subject-Sequence``); rebuild the operation on the new state."""

    reason = "WRITE_CONFLICT"


class WrongSubject(MalformedOperation):
    """A stream message carries an operation of another DID than its subject
    names (only a foreign publisher can cause this); every node rejects it alike."""

    reason = "WRONG_SUBJECT"


class StreamMismatch(StoreCorrupted):
    """The store was built from another stream (or in embedded mode) than the
    one the node is told to follow, or the stream was replaced (recreated under
    its name: another creation time); it will not mix the two histories."""

    reason = "STREAM_MISMATCH"
