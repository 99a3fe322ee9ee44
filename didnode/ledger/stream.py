"""The cluster's JetStream stream: names, subjects, message bodies, metadata (pure; no I/O).

One stream per network, one subject per DID::

    stream   DIDNODE_<NETWORK>            (dashes become underscores)
    subject  didnode.<network>.op.<id>    <id> = the DID's method-specific id

A create goes to the subject of the DID it creates, so every operation of a
DID, its create included, is on one subject and the per-subject sequence is
a compare-and-set token for the DID (``Nats-Expected-Last-Subject-Sequence``).

Message body (big-endian integers), the operation exactly as submitted::

    u8   version (1)
    u32  payload length, then the canonical JSON payload
    u8   number of proofs, then per proof:
         u16 kid length, kid (UTF-8 DID URL), 64-byte Ed25519 signature

Headers: ``Nats-Msg-Id`` = hex sha256 of the payload (the operation hash:
JetStream drops a retried publish inside the duplicate window) and
``Nats-Expected-Last-Subject-Sequence``. Nodes read only the body, the
subject and the stream's own sequence and timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from didnode.core import entry as entry_codec
from didnode.core.did import PREFIX
from didnode.core.operations import MAX_PROOFS, MAX_PUBLISH_PAYLOAD_BYTES, Proof
from didnode.errors import MalformedMessage

VERSION = 1
SIG_BYTES = entry_codec.SIG_BYTES
# The largest body a valid operation can produce (a publish at its limit with
# every proof, kids at their DID URL limit), rounded up: the stream's max_msg_size.
MAX_BODY_BYTES = 128 * 1024
assert MAX_PUBLISH_PAYLOAD_BYTES + MAX_PROOFS * (2 + 256 + SIG_BYTES) + 16 < MAX_BODY_BYTES

HDR_MSG_ID = "Nats-Msg-Id"
HDR_EXPECTED_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
HDR_BATCH_ID = "Nats-Batch-Id"
HDR_BATCH_SEQ = "Nats-Batch-Sequence"
HDR_BATCH_COMMIT = "Nats-Batch-Commit"


def default_stream_name(network: str) -> str:
    """``DIDNODE_<NETWORK>``: JetStream names allow no dots or wildcards; network ids have none."""
    return "DIDNODE_" + network.upper().replace("-", "_")


def subject_filter(network: str) -> str:
    return f"didnode.{network}.op.*"


def subject_for(network: str, did: str) -> str:
    """The subject of ``did``'s operations. Precondition: ``did`` is a valid did:dnode DID."""
    return f"didnode.{network}.op.{did[len(PREFIX):]}"


def did_for_subject(subject: str) -> str:
    """The DID a subject names (its last token after the method prefix); not validated."""
    return PREFIX + subject.rsplit(".", 1)[-1]


def encode_body(payload: bytes, proofs: Sequence[Proof]) -> bytes:
    """Message body bytes. Precondition: every signature is 64 bytes, fewer than 256 proofs."""
    return bytes((VERSION,)) + entry_codec.encode_operation(payload, proofs)


def decode_body(data: bytes) -> tuple[bytes, tuple[Proof, ...]]:
    """(payload, proofs) of a message body; raises :class:`MalformedMessage` on anything else."""
    if not data:
        raise MalformedMessage("stream message is empty")
    if data[0] != VERSION:
        raise MalformedMessage(f"stream message has unknown version {data[0]}")
    return entry_codec.decode_operation(data, 1, MalformedMessage, "stream message")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a consumer's reply subject says about a delivered message."""

    stream_seq: int
    timestamp_ns: int
    pending: int


def parse_ack_reply(reply: str) -> Delivery:
    """Parse ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``
    (and the 12-token form with domain and account hash); raises :class:`MalformedMessage`."""
    tokens = reply.split(".")
    try:
        if len(tokens) == 9:
            return Delivery(int(tokens[5]), int(tokens[7]), int(tokens[8]))
        if len(tokens) >= 11:
            return Delivery(int(tokens[7]), int(tokens[9]), int(tokens[10]))
    except ValueError:
        pass
    raise MalformedMessage(f"not a JetStream delivery subject: {reply[:80]!r}")


def stream_config(name: str, network: str, replicas: int, duplicate_window_s: float, atomic: bool) -> dict[str, Any]:
    """The JetStream stream configuration of a network's ledger (JSON API form).

    Nothing may ever leave the stream: no limits on count, bytes or age,
    deletes and purges denied, and no rollups. ``atomic`` enables atomic
    batch publishing (NATS 2.12+), which the node uses to publish a whole
    submission chunk in one replicated proposal.
    """
    cfg: dict[str, Any] = {
        "name": name,
        "subjects": [subject_filter(network)],
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_msgs_per_subject": -1,
        "max_msg_size": MAX_BODY_BYTES,
        "discard": "new",
        "storage": "file",
        "num_replicas": replicas,
        "duplicate_window": int(duplicate_window_s * 1e9),
        "deny_delete": True,
        "deny_purge": True,
        "allow_rollup_hdrs": False,
        "allow_direct": True,
    }
    if atomic:
        cfg["allow_atomic"] = True
    return cfg
