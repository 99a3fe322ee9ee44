"""Every LMDB named database and key layout of a didnode store, in one place.

Integers in keys are fixed-width big-endian so that LMDB's byte order is
numeric order (cursor scans walk the log and a DID's history in order).

=============  ==========================================  ==============================================
database       key                                         value
=============  ==========================================  ==============================================
meta           ASCII name (see META_*)                     bytes / u64 / UTF-8, per name
log            u64 position                                log entry bytes (didnode.core.entry)
ophash         32-byte sha256 of the payload (not creates)  u64 position
state          DID (UTF-8)                                 binary state record (core.keystate)
merkle         u64 last leaf covered + u8 level            32-byte RFC 6962 node hash (perfect subtrees)
smt            node id (core.merkle.sparse, 2..34 bytes)   65-byte node record (0x00|key|value or 0x01|l|r)
checkpoints    u64 tree size                               signed checkpoint (core.checkpoint encoding)
stream_subj    DID (UTF-8; cluster mode)                   u64 stream seq of the last message on its subject
usage          u8 kind (c: creates, p: publishes) + DID    governance usage (core.governance.policy.Usage)
streams        DID 0x00 stream                             data stream state (core.data.anchoring.StreamState)
anchors        DID 0x00 stream 0x00 u64 first seq          anchored head (core.data.anchoring.AnchorRow)
evidence       DID 0x00 stream 0x00 u64 first + 32 hash    a refused equivocating signed head + u64 position
controlled     controller DID 0x00 controlled DID          u8 status of the controlled DID (0 active, 1 deactivated)
=============  ==========================================  ==============================================
"""

from __future__ import annotations

import struct

# 2: no history table (versions walk the prev chain), short sparse-tree node ids, Merkle nodes keyed by their last leaf, binary state records.
# 3: creates have no op-hash row (a create's hash is its DID; found through the state table).
SCHEMA_VERSION = 3

DB_META = b"meta"
DB_LOG = b"log"
DB_OPHASH = b"ophash"
DB_STATE = b"state"
DB_MERKLE = b"merkle"
DB_SMT = b"smt"
# The node's latest signed checkpoints, one per tree size (the latest few hundred are kept).
DB_CHECKPOINTS = b"checkpoints"
# Cluster mode: per DID, the stream sequence of the last message (accepted or
# rejected) on the DID's subject: the Nats-Expected-Last-Subject-Sequence of
# the next write to that DID. Written in the same transaction as the state.
DB_STREAM_SUBJECTS = b"stream_subj"
# Governed networks: what the log counted against each registrar's and publisher's
# quota (docs/governance.md), written in the same transaction as the operations.
DB_USAGE = b"usage"
# Device data (docs/data.md): each stream's anchoring state, the index of anchored heads (which
# entry anchors (DID, stream, seq)), and the evidence of devices that equivocated.
DB_STREAMS = b"streams"
DB_ANCHORS = b"anchors"
DB_EVIDENCE = b"evidence"
# The reverse index of controllers (derived from the state table, same transaction;
# didnode.ledger.controlled): the DIDs each DID controls now, with their status.
DB_CONTROLLED = b"controlled"
ALL_DBS = (
    DB_META, DB_LOG, DB_OPHASH, DB_STATE, DB_MERKLE, DB_SMT, DB_CHECKPOINTS, DB_STREAM_SUBJECTS, DB_USAGE,
    DB_STREAMS, DB_ANCHORS, DB_EVIDENCE, DB_CONTROLLED,
)

# The handshake's state lives in its own small environment (DATA/auth), with its
# own layout in didnode.auth.lmdb_nonces: devices keep the same state, and the
# device SDK does not import the node's store.

META_SCHEMA = b"schema_version"
META_NETWORK = b"network"
META_LOG_SIZE = b"log_size"
META_NODE_DID = b"node_did"
META_LAST_TIME = b"last_time"
META_STREAM_SEQ = b"stream_seq"
# A governed network: its governance identifier (the record is in the state table under it).
META_GOVERNANCE = b"governance"
# Cluster mode: the stream this store follows (name and creation time, so a
# recreated stream is never mixed with the old history) and the largest
# message timestamp seen (ms; clamps ordering times so they never go back).
META_STREAM_NAME = b"stream_name"
META_STREAM_CREATED = b"stream_created"
META_STREAM_TIME = b"stream_time"
# Present once the controlled table indexes every state (a store from before the table gets it at
# the first batch the node applies; didnode.ledger.controlled.rebuild).
META_CONTROLLED = b"controlled_index"

_U64 = struct.Struct(">Q")
_LAST_LEVEL = struct.Struct(">QB")


def u64(n: int) -> bytes:
    return _U64.pack(n)


def read_u64(b: bytes) -> int:
    return _U64.unpack(b)[0]


def did_key(did: str) -> bytes:
    return did.encode()


def usage_key(kind: bytes, did: str) -> bytes:
    return kind + did.encode()


def stream_key(did: str, stream: str) -> bytes:
    return did.encode() + b"\x00" + stream.encode()


def anchor_key(did: str, stream: str, first: int) -> bytes:
    return stream_key(did, stream) + b"\x00" + _U64.pack(first)


def merkle_key(level: int, index: int) -> bytes:
    """Key of the perfect subtree node ``(level, index)``: ``u64 last leaf it covers || u8 level``.

    Appending a leaf completes exactly the nodes whose last leaf it is, from
    level 0 up, so appends write strictly increasing keys: LMDB appends them
    to the last page and fills pages completely (``(level, index)`` keys put
    each level's new nodes in the middle of the table, which splits pages in
    half and doubled the table's size).
    """
    return _LAST_LEVEL.pack(((index + 1) << level) - 1, level)
