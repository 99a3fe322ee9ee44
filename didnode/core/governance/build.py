"""Client-side construction of ``govern`` operations (pure, like :mod:`didnode.core.builder`).

Sign the result with :func:`didnode.core.builder.sign`: an inception with a
current authentication key of every genesis DID, a change with those of at
least ``threshold`` governors (and of every governor it adds).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from didnode.core.builder import UnsignedOperation
from didnode.core.did import did_from_create_payload
from didnode.core.governance.policy import CreateQuota, PublishQuota
from didnode.core.operations import build_payload


def inception(
    network: str,
    genesis: Sequence[str],
    governors: Sequence[str],
    threshold: int,
    create: str,
    registrars: Mapping[str, CreateQuota] | None = None,
    publish: PublishQuota | None = None,
    publishers: Mapping[str, PublishQuota] | None = None,
) -> UnsignedOperation:
    """The governance inception: ``genesis`` lists the DIDs created at positions 0..n-1, in that order."""
    policy: dict[str, Any] = {"create": create}
    if registrars:
        policy["registrars"] = [{"did": d, "quota": q.to_json()} for d, q in sorted(registrars.items())]
    if publish is not None:
        policy["publish"] = publish.to_json()
    if publishers:
        policy["publishers"] = [{"did": d, "quota": q.to_json()} for d, q in sorted(publishers.items())]
    body = {
        "type": "govern",
        "network": network,
        "seq": 0,
        "genesis": list(genesis),
        "governors": sorted(governors),
        "threshold": threshold,
        "policy": policy,
    }
    payload = build_payload(body)
    return UnsignedOperation("govern", network, did_from_create_payload(payload), payload)


def change(network: str, governance: str, seq: int, prev: str, changes: Sequence[Mapping[str, Any]]) -> UnsignedOperation:
    """A governance change (``changes`` in the JSON form of docs/did-method.md, "govern")."""
    body = {"type": "govern", "network": network, "did": governance, "seq": seq, "prev": prev, "changes": [dict(c) for c in changes]}
    return UnsignedOperation("govern", network, governance, build_payload(body))


def add_registrar(did: str, quota: CreateQuota | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"action": "addRegistrar", "did": did}
    if quota is not None and quota.to_json():
        out["quota"] = quota.to_json()
    return out


def set_registrar_quota(did: str, quota: CreateQuota) -> dict[str, Any]:
    return {"action": "setRegistrarQuota", "did": did, "quota": quota.to_json()}


def remove_registrar(did: str) -> dict[str, Any]:
    return {"action": "removeRegistrar", "did": did}


def set_create_policy(mode: str) -> dict[str, Any]:
    return {"action": "setCreatePolicy", "create": mode}


def set_publish_quota(quota: PublishQuota | None) -> dict[str, Any]:
    return {"action": "setPublishQuota", "quota": None if quota is None else quota.to_json()}


def set_publisher_quota(did: str, quota: PublishQuota | None) -> dict[str, Any]:
    return {"action": "setPublisherQuota", "did": did, "quota": None if quota is None else quota.to_json()}


def set_governors(governors: Sequence[str], threshold: int) -> dict[str, Any]:
    return {"action": "setGovernors", "governors": sorted(governors), "threshold": threshold}
