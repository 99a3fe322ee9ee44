"""Fuzz targets: governance operations (payload parse), governance records, proposal and operation files, usage records.

Governance operations arrive from anyone (a submission, a cluster stream message);
records come back from the store and inside state proofs; proposal files pass from
governor to governor. Each must parse to a valid value or fail typed.
"""

from __future__ import annotations

import functools
import hashlib

from didnode.core import builder, opfile
from didnode.core.governance import build as gb
from didnode.core.governance import proposal
from didnode.core.governance.policy import CreateQuota, Policy, PublishQuota, Usage
from didnode.core.governance.rules import govern
from didnode.core.keystate import ApplyContext
from didnode.core.operations import Proof, parse
from didnode.errors import UnknownDid
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, JSON_TOKENS, NET, signing_key

GOV_TOKENS = (
    *JSON_TOKENS,
    *DID_TOKENS,
    '"govern"', '"genesis":', '"governors":', '"threshold":', '"policy":', '"changes":', '"action":', '"quota":',
    '"window":', '"perWindow":', '"total":', '"count":', '"bytes":', '"create":', '"registrars":', '"publishers":', '"publish":',
    '"open"', '"registrars"', '"governors"', *(f'"{a}"' for a in ("addRegistrar", "removeRegistrar", "setRegistrarQuota", "setCreatePolicy", "setPublishQuota", "setPublisherQuota", "setGovernors")),
)
PROOFS = (Proof("did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG#key-1", bytes(64)),)


@functools.cache
def _samples() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(govern payloads, governance records, proposal files), deterministic."""
    dids = []
    ops = []
    for i in range(3):
        key = signing_key(f"governor {i}")
        u = builder.create(NET, [builder.NewKey("key-1", bytes(key.verify_key))], bytes(signing_key(f"next {i}").verify_key))
        dids.append(u.did)
        ops.append(builder.sign(u, [(f"{u.did}#key-1", key)]))
    inc = gb.inception(NET, dids, dids[:2], 2, "registrars", registrars={dids[2]: CreateQuota(3600, 10, 100)}, publish=PublishQuota(60, 5, 9000))
    prev = hashlib.sha256(inc.payload).hexdigest()
    change = gb.change(NET, inc.did, 1, prev, [
        gb.add_registrar(dids[0], CreateQuota(total=3)), gb.remove_registrar(dids[2]), gb.set_create_policy("open"),
        gb.set_publish_quota(None), gb.set_publisher_quota(dids[1], PublishQuota(10, bytes=5)), gb.set_governors(dids, 3),
    ])
    # Replayed as accepted operations (trusted: signatures are not verified, signers still must be the right DIDs).
    kids = tuple(Proof(f"{d}#key-1", bytes(64)) for d in dids)
    policy = govern(None, parse(inc.payload, kids, NET), ApplyContext(3, 1_700_000_000_000, _nobody, trusted=True))
    after = govern(policy, parse(change.payload, kids, NET), ApplyContext(4, 1_700_000_001_000, _nobody, trusted=True))
    files = [
        proposal.from_operations(NET, [*ops, builder.sign(inc, [])]).dumps().encode(),
        proposal.from_operations(NET, [builder.sign(change, [(f"{dids[0]}#key-1", signing_key("governor 0"))])]).dumps().encode(),
    ]
    return [inc.payload, change.payload], [policy.to_record(), after.to_record()], files


def _nobody(did: str):  # type: ignore[no-untyped-def]
    raise UnknownDid(did)


@target("govern_payload", seeds=lambda: _samples()[0], tokens=GOV_TOKENS, max_len=8192)
def fuzz_govern_payload(data: bytes) -> None:
    op = parse(data, PROOFS, NET)
    if op.type == "govern":
        assert op.governance is not None


@target("governance_record", seeds=lambda: _samples()[1], tokens=GOV_TOKENS, max_len=8192)
def fuzz_governance_record(data: bytes) -> None:
    policy = Policy.from_record(data)
    assert policy.to_record() == data, "a decoded governance record must re-encode to the same bytes"
    policy.to_json()


@target("proposal_file", seeds=lambda: _samples()[2], tokens=(*GOV_TOKENS, '"format":', '"didnode/proposal/v1"', '"operations":', '"payload":', '"proofs":', '"kid":', '"signature":'), max_len=16384)
def fuzz_proposal_file(data: bytes) -> None:
    p = proposal.loads(data)
    assert p.govern.type == "govern"
    assert proposal.loads(p.dumps().encode()).operations == p.operations


@target("operation_file", seeds=lambda: [opfile.dumps(op).encode() for op in _creates()], tokens=(*GOV_TOKENS, '"format":', '"didnode/operation/v1"', '"payload":', '"proofs":', '"kid":', '"signature":'), max_len=16384)
def fuzz_operation_file(data: bytes) -> None:
    op = opfile.loads(data)
    assert opfile.loads(opfile.dumps(op).encode()) == op


def _creates() -> list:  # type: ignore[type-arg]
    key = signing_key("governor 0")
    u = builder.create(NET, [builder.NewKey("key-1", bytes(key.verify_key))], bytes(signing_key("next 0").verify_key))
    return [builder.sign(u, [(f"{u.did}#key-1", key)])]


@target("usage_record", seeds=lambda: [Usage(5, 1, 2, 3, 4).encode(), Usage().encode()], max_len=64)
def fuzz_usage_record(data: bytes) -> None:
    assert Usage.decode(data).encode() == data


# Crashes the fuzzers found, kept as regression tests: a payload string holding a lone surrogate escape.
REGRESSIONS = {
    "proposal-payload-lone-surrogate": (
        "proposal_file",
        b'{"format":"didnode/proposal/v1","network":"local","operations":[{"payload":"{\\"type\\":\\"govern\\ud800\\"}","proofs":[]}]}',
    ),
    "operation-file-payload-lone-surrogate": (
        "operation_file",
        b'{"format":"didnode/operation/v1","network":"local","payload":"\\ud800","proofs":[{"kid":"did:dnode:x#k","signature":"AA"}]}',
    ),
}
test_regression = harness.regression_tests(REGRESSIONS)
test_fuzz = harness.fuzz_tests(__name__)
