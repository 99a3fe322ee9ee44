"""Fuzz targets: trust policy files (``--trust FILE``, ``didctl``'s known nodes, provisioning bundles) and a node's
state proof reply as the verified client checks it against a trust policy (docs/trust.md).

A policy file is the client's own, but it travels (an operator publishes it, a bundle carries it, a user edits it):
``core.trust.policy.loads`` must fail typed (``TRUST_POLICY_INVALID``) for any bytes, and a policy it accepts
must write itself back unchanged. A ``GetStateProof`` reply is the node's: converted and checked by
``client.verified.Checks.state`` (signature and threshold, growth from the latest verified checkpoint,
freshness, the state proof), it must fail typed too.
"""

from __future__ import annotations

import functools

from google.protobuf.message import DecodeError

from didnode.api.v1 import transparency_pb2 as tpb
from didnode.client.verified import Checks
from didnode.core import checkpoint as cp_codec
from didnode.core.checkpoint import Checkpoint
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.proof_bundle import ConsistencyProof, StateProof
from didnode.core.trust import TrustedKey, TrustedLog, TrustPolicy
from didnode.core.trust.policy import TRUST_TYPE, loads
from didnode.errors import MalformedMessage
from didnode.wire import transparency as tw
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, JSON_TOKENS, T0, signing_key, world
from tests.fuzz.test_fuzz_transparency import KEY, KID, NODE, _bundles

WITNESS = signing_key("witness")


@functools.lru_cache(maxsize=1)
def _policies() -> tuple[TrustPolicy, ...]:
    genesis = leaf_hash(world().entries[0])
    node_key = TrustedKey(KID, bytes(KEY.verify_key))
    witness = TrustedKey(f"{NODE}#witness", bytes(WITNESS.verify_key))
    latest = _bundles()[0][1]
    other = cp_codec.sign(Checkpoint("local", 3, b"\x01" * 32, b"\x02" * 32, T0), WITNESS, witness.kid)
    return (
        TrustPolicy.create("local", genesis, [node_key]),
        TrustPolicy.create("local", genesis, [node_key], 1, 60_000, latest),
        TrustPolicy.create("prod-eu-1", b"\x07" * 32, [node_key, witness], 2, 366 * 86_400_000),
        TrustPolicy.create("local", genesis, [witness, node_key], 1, 1_000, other),
    )


POLICY_TOKENS = (
    *JSON_TOKENS,
    *DID_TOKENS,
    f'"{TRUST_TYPE}"',
    *(f'"{m}":' for m in ("type", "network", "genesis", "checkpointKeys", "threshold", "maxStalenessMs", "latestCheckpoint", "kid", "publicKeyMultibase")),
    *(f'"{m}":' for m in ("treeSize", "logRoot", "stateRoot", "timeMs", "signature")),
    '"local"',
    "1000",
    "31622400000",
)


@target("trust_policy", seeds=lambda: [p.dumps().encode() for p in _policies()], tokens=POLICY_TOKENS)
def fuzz_trust_policy(data: bytes) -> None:
    """A trust policy file: parsed, then written back and parsed again to the same policy."""
    policy = loads(data)
    assert loads(policy.dumps()) == policy, "a parsed policy must write itself back unchanged"


KNOWN_SIZE = 5  # the client verified the checkpoint of size 5 (the reply proves consistency from it)


def _state_replies() -> list[bytes]:
    cps, bundles = _bundles()
    consistency = next(b for b in bundles if isinstance(b, ConsistencyProof))
    out = []
    for b in bundles:
        if isinstance(b, StateProof):
            m = tw.state_proof_to_pb(b)
            m.consistency.extend(consistency.hashes)
            out.append(m.SerializeToString())
    same_size = tw.state_proof_to_pb(next(b for b in bundles if isinstance(b, StateProof)))
    same_size.checkpoint.CopyFrom(tw.checkpoint_to_pb(cps[1]))  # answered under the checkpoint the client holds
    out.append(same_size.SerializeToString())
    return out


def _trusted() -> TrustedLog:
    return TrustedLog(_policies()[1].with_latest(_bundles()[0][1]))


@target("verified_state_reply", seeds=_state_replies, tokens=(*DID_TOKENS, b"\x05local"), max_len=16384)
def fuzz_verified_state_reply(data: bytes) -> None:
    """A node's GetStateProof reply to a client that verified size 5: converted and checked against its trust policy
    (a fresh TrustedLog per input; the clock fixed)."""
    try:
        m = tpb.StateProof.FromString(data)
    except DecodeError as exc:
        raise MalformedMessage(f"not a StateProof: {exc}") from None
    proven = tw.proven_state_from_pb(m)
    Checks(_trusted(), lambda: T0 + 60_000).state(proven.proof.did, proven, KNOWN_SIZE)


def test_the_seeds_verify() -> None:
    for data in _state_replies():
        fuzz_verified_state_reply(data)
    for p in _policies():
        assert loads(p.dumps()) == p


test_fuzz = harness.fuzz_tests(__name__)
