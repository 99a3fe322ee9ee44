"""The one vocabulary of results: what the node answers, as the service layer, the client and the CLI see it.

The service layer returns these, :mod:`didnode.wire` turns them into protobuf
and back (``<thing>_to_pb`` / ``<thing>_from_pb``), and the client returns the
very same classes, so a value means the same thing on both ends of the wire.
Every time is a ``*_ms`` integer: milliseconds since the Unix epoch (ledger
ordering time unless the name says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from didnode.core.governance.policy import CREATES, PUBLISHES, Policy, Usage
from didnode.core.keystate import DidState
from didnode.core.operations import Proof
from didnode.core.proof_bundle import StateProof


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of acceptance: the operation is durable on the node at ``position``."""

    position: int
    time_ms: int
    op_hash: bytes
    did: str
    type: str
    seq: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One operation of a DID as ``did history`` shows it: where and when it was ordered, and its signed bytes."""

    position: int
    time_ms: int
    type: str
    seq: int
    op_hash: bytes
    signers: tuple[str, ...]
    payload: bytes
    proofs: tuple[Proof, ...]
    # Only when asked for proofs at a tree size: the RFC 9162 inclusion path at that size.
    inclusion: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a DID's history: ``entries`` in seq order; ``next_after_seq`` is where the next page starts after (None: the last page)."""

    entries: tuple[HistoryEntry, ...]
    next_after_seq: int | None


@dataclass(frozen=True, slots=True)
class Resource:
    """The latest published content of a DID's resource (e.g. a status list credential)."""

    did: str
    id: str
    media_type: str
    content: str
    position: int
    seq: int
    time_ms: int
    op_hash: bytes


@dataclass(frozen=True, slots=True)
class KeyState:
    """A DID's key state as the node holds it, the network it belongs to, and the keys valid at a position if asked.

    ``valid_at`` is None unless a position was asked for; then it holds the ids
    of the keys that could sign at that position.
    """

    state: DidState
    network: str
    valid_at: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a node says about itself (``didctl node info``)."""

    network: str
    node_did: str
    log_size: int
    version: str
    did_count: int
    last_time_ms: int
    schema_version: int
    mode: str
    # Cluster mode only: stream followed, applied and last known stream sequence, lag, writability.
    stream: str = ""
    stream_seq: int = 0
    stream_last_seq: int = 0
    lag: int = 0
    writable: bool = True
    not_writable_reason: str = ""
    # Governance (docs/governance.md): the governance identifier ("" when the network has none)
    # and the create policy ("open" when ungoverned).
    governance: str = ""
    create_policy: str = "open"


# The usage counts of governance, by table kind: a registrar's creates, a publisher's publishes.
USAGE_KINDS: dict[bytes, str] = {CREATES: "creates", PUBLISHES: "publishes"}


@dataclass(frozen=True, slots=True)
class GovernanceInfo:
    """The network's governance record as a node reads it (``GetGovernance``), at a position or now.

    ``record_position`` is the position of the govern operation that made
    ``policy``; ``log_size`` and ``last_time_ms`` describe the log the answer
    was read at. ``usage`` maps (kind, did) to the counts the node derived from
    its log (kind ``"creates"`` as registrar, ``"publishes"``): the node's advice,
    not covered by any proof.
    """

    policy: Policy
    record_position: int
    log_size: int
    last_time_ms: int
    usage: dict[tuple[str, str], Usage]


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """One entry of a published status list, with where the list version sits on the ledger."""

    list_url: str
    purpose: str
    index: int
    set: bool
    size: int
    allocated: int
    list_valid_from_ms: int
    position: int
    seq: int
    time_ms: int
    op_hash: bytes
    credential: str


@dataclass(frozen=True, slots=True)
class SessionCredential:
    """A node-issued session credential (a ``vc+jwt``) and its facts."""

    token: str
    credential_id: str
    issuer: str
    subject: str
    kid: str
    valid_from_ms: int
    valid_until_ms: int


__all__ = ["HistoryEntry", "KeyState", "NodeInfo", "Receipt", "Resource", "SessionCredential", "StatusInfo"]


@dataclass(frozen=True, slots=True)
class ProvenState:
    """A DID's state proof under a checkpoint and, when the client named the size it verified, the
    RFC 9162 consistency proof from that size to the checkpoint's (not yet verified)."""

    proof: StateProof
    consistency: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class ProvenResolution:
    """A DID Resolution result with the state proof of the record it was computed from, and the
    consistency proof as in :class:`ProvenState` (not yet verified)."""

    result: dict[str, Any]
    proof: StateProof
    consistency: tuple[bytes, ...] = ()
