"""First contact with a node: the trust policy a client would adopt, taken from the node itself.

Trust on first use, as ssh's first connection: what :func:`policy_from_node`
returns is only what the node says of itself (its network, the genesis entry
of its log, its checkpoint key read from its own DID document, the origin its checkpoint
notes use). A client shows
it to a person who compares it with what the node's operator published
(``didnode trust-policy``) before keeping it; from then on every answer is
checked against it (:mod:`didnode.client.verified`) and a node presenting
anything else is an error, never a new question (docs/trust.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from didnode.clock import wall_ms
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.tlog_checkpoint import note_origin
from didnode.core.trust import DEFAULT_MAX_STALENESS_MS, TrustedKey, TrustedLog, TrustPolicy
from didnode.errors import TrustChanged

if TYPE_CHECKING:
    from didnode.client.sync import Client


def policy_from_node(client: "Client", max_staleness_ms: int = DEFAULT_MAX_STALENESS_MS) -> TrustPolicy:
    """The policy the node at ``client`` presents (unverified claims: module docstring), checked for
    coherence: its latest checkpoint must verify under it (signature, genesis, freshness), and the
    policy returned remembers that checkpoint."""
    from didnode.client.verified import VerifiedClient

    info = client.node_info()
    kid, key = client.node_signer_key()
    genesis = leaf_hash(client.inclusion_proof(position=0, tree_size=1).entry)
    # The origin the node's checkpoint notes use (recorded so that they verify; none from nodes before notes).
    origin = note_origin(client.checkpoint())
    policy = TrustPolicy.create(info.network, genesis, [TrustedKey(kid, key)], 1, max_staleness_ms, origin=origin)
    log = TrustedLog(policy)
    VerifiedClient(client, log, wall_ms).state(info.node_did)
    return log.policy


def check_same_anchors(known: TrustPolicy, presented: TrustPolicy, address: str, remedy: str | None = None) -> None:
    """Raise :class:`TrustChanged` (naming what changed) unless ``presented`` trusts the same ledger as ``known``.

    ``remedy`` ends the message (default: how to replace a trust store entry)."""
    changes = []
    if known.network != presented.network:
        changes.append(f"network {known.network!r} -> {presented.network!r}")
    if known.genesis != presented.genesis:
        changes.append(f"genesis {known.genesis.hex()[:16]}… -> {presented.genesis.hex()[:16]}…")
    if {k.public_key for k in presented.keys} - {k.public_key for k in known.keys}:
        old = ", ".join(k.fingerprint for k in known.keys)
        new = ", ".join(k.fingerprint for k in presented.keys)
        changes.append(f"checkpoint key {old} -> {new}")
    if known.log_origin != presented.log_origin:
        changes.append(f"checkpoint origin {known.log_origin!r} -> {presented.log_origin!r}")
    if changes:
        if remedy is None:
            remedy = f". If the operator really replaced it, remove the old entry (didctl trust remove {address}) and accept the new one"
        raise TrustChanged(f"the node at {address} is not the one this client trusts: {'; '.join(changes)}{remedy}", address=address)
