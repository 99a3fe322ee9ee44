"""Cluster mode: a replicated NATS JetStream stream orders the ledger; every node follows it.

:class:`JetStreamOrderer` offers the interface of the embedded
:class:`~didnode.ledger.orderer.LocalOrderer` (``submit``, ``submit_task``,
``start``, ``stop``), so the service layer is the same in both modes. Inside
it are three stages on three threads:

* **publisher** (thread ``didnode-nats``, an asyncio loop owning the NATS
  connection). A submission group is dry-run against this node's state (the
  same :func:`~didnode.core.keystate.apply`, in a read snapshot: obviously
  invalid operations are rejected with the same errors as embedded mode),
  then published, one message per operation on its DID's subject, with
  ``Nats-Msg-Id`` = the operation hash (retries are idempotent) and
  ``Nats-Expected-Last-Subject-Sequence`` = the stream sequence of the last
  message this node applied on that subject (per-DID compare-and-set). A
  chunk of independent operations goes out as one JetStream *atomic batch*
  (one replicated proposal instead of one per message; with
  ``sync_interval: always`` this is what makes durable throughput possible);
  when a batch fails as a whole (a compare-and-set lost, a duplicate, a
  timeout) its operations are published one by one, which tells each one's
  fate. At most ``max_inflight_batches`` batches await their
  acknowledgement at once. Every publish is bounded by a timeout (for a
  batch: without progress of the stream) and retried with the same
  message id through leader changes until the submission deadline. The
  client is answered only when *this* node's LMDB has applied the stream
  sequence of its operation (read-your-writes), with what
  :func:`~didnode.ledger.batch.apply_batch` decided at that position: an
  operation that passed the dry run can still lose to a concurrent write.
* **follower** (same loop, then thread ``didnode-follow``). Batched direct
  gets (answered by the nearest replica, no consumer on the servers) read
  the stream in order from the last applied sequence + 1, when the stream
  grew (acknowledgements, the other nodes' ticks) and at least every
  ``poll_interval_s``; on a stream without ``allow_direct`` an ephemeral pull
  consumer (no acks, in memory) does. The loop checks that sequences are
  dense and reads again (or recreates the consumer) on any gap, stall or
  reconnect. No acknowledgement goes back: the position is the applied
  stream sequence recorded in LMDB. The follow thread
  decodes and parses messages and verifies their signatures in bulk (the
  node's verifier process), reusing the already verified operation when the
  message is one this node published.
* **writer** (thread ``didnode-writer``): applies each batch of messages with
  ``apply_batch(times=...)`` (the stream's timestamps) and records the last
  applied stream sequence, the per-DID subject sequences and the clamped
  stream time in the *same* LMDB transaction, then wakes the waiters. Tasks
  (checkpoint signing) run in that transaction too, as in embedded mode.

Determinism: every node applies the same messages in the same order with the
same times, so log positions (dense: a message rejected at apply takes none),
entries, states and tree roots are byte-identical on every node whatever the
batch boundaries. Message times are clamped to be non-decreasing over *all*
messages (rejected ones included) before ``apply_batch`` sees them, which
makes each entry's time independent of how messages were grouped.

Modules: :mod:`.config` (:class:`ClusterConfig`, :class:`ClusterStatus`),
:mod:`.shared` (the state the stages share, the messages they hand each
other), :mod:`.connection` (NATS, the stream), :mod:`.follower`,
:mod:`.writer`, :mod:`.publisher`, :mod:`.genesis` (a governed network's
genesis as the stream's first messages), and :mod:`.orderer`, which builds them.
Each stage knows only those before it in that list: no import circles.
"""

from didnode.ledger.cluster.config import ClusterConfig, ClusterStatus
from didnode.ledger.cluster.orderer import JetStreamOrderer

__all__ = ["ClusterConfig", "ClusterStatus", "JetStreamOrderer"]
