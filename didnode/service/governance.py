"""The governance use case over a node: the network's governance record, now or at a past position, with usage counts.

No protobuf here: the transport converts (:mod:`didnode.wire.ledger`). The
current record is the stored state record under the governance identifier
(the one the state tree commits to); a past one is recomputed by replaying
the record's ``govern`` operations up to the position, trusted
(:func:`didnode.core.trust.governance_history.replay_governance`). Usage
counts are derived from the log and not committed to by any proof: what a
client gets is this node's advice.
"""

from __future__ import annotations

from typing import Any, Sequence

from didnode.core import entry as entry_codec
from didnode.core.did import validate_did
from didnode.core.governance.policy import Policy
from didnode.core.results import USAGE_KINDS, GovernanceInfo
from didnode.core.trust.governance_history import policy_at, replay_governance
from didnode.core.trust.history import ProvenOperation
from didnode.errors import InvalidArgument, NoGovernance, TooLarge
from didnode.service.node import Node

# DIDs one GetGovernance asks the usage counts of, at most.
MAX_USAGE_OF = 64


class GovernanceService:
    """Reads of the network's governance for one node."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def network_policy(self) -> Policy | None:
        """The current governance record, or None on a network without governance (open to all)."""
        with self.node.store.read() as txn:
            return self.node.tables.governance(txn)

    def governance(self, at_position: int | None = None, usage_of: Sequence[str] = ()) -> GovernanceInfo:
        """The governance record in effect once the log holds ``at_position`` (None: the current one).

        Preconditions: ``at_position`` below the log size (else
        :class:`InvalidArgument`), at most :data:`MAX_USAGE_OF` valid DIDs in
        ``usage_of`` (else :class:`TooLarge`, :class:`InvalidDid`). Raises
        :class:`NoGovernance` on a network without governance, or before its
        inception. The usage counts of ``usage_of`` (each DID's creates as
        registrar and its publishes) are the current ones, whatever ``at_position``.
        """
        if len(usage_of) > MAX_USAGE_OF:
            raise TooLarge(f"usage is asked for at most {MAX_USAGE_OF} DIDs at once, not {len(usage_of)}", field="usage_of", limit=MAX_USAGE_OF)
        dids = list(dict.fromkeys(validate_did(d) for d in usage_of))
        tables = self.node.tables
        with self.node.store.read() as txn:
            size = tables.log_size(txn)
            last_time = tables.last_time(txn)
            policy = tables.governance(txn)
            if policy is None:
                raise NoGovernance("this network has no governance record: anyone may create and publish (create policy open)")
            if at_position is not None:
                if not 0 <= at_position < size:
                    raise InvalidArgument(f"position {at_position} is beyond the log: positions are 0..{size - 1}", position=at_position)
                if at_position < policy.updated_pos:
                    policy = policy_at(self._replay(txn, policy.did, at_position), at_position)
            usage = {(name, did): tables.usage(txn, kind, did) for did in dids for kind, name in USAGE_KINDS.items()}
        return GovernanceInfo(policy, policy.updated_pos, size, last_time, usage)

    def _replay(self, txn: Any, governance: str, up_to: int) -> list[Policy]:
        """The records after each govern operation at a position at most ``up_to`` (none before the inception)."""
        ops = []
        for v in self.node.tables.versions(txn, governance):
            if v.position > up_to:
                break
            e = entry_codec.decode(self.node.tables.entry(txn, v.position))
            ops.append(ProvenOperation(e.position, e.time, v.seq, e.payload, e.proofs, ()))
        return replay_governance(governance, ops, self.node.network)
