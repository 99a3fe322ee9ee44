"""The proposal file: a governance operation passed from governor to governor for signatures.

One format for both uses: a governance change (``didctl gov propose`` writes
it, each governor runs ``didctl gov sign FILE``, anyone runs ``didctl gov
submit FILE``) and a network's genesis (``didnode init`` writes the genesis
creates and the unsigned inception; every genesis DID signs the inception;
``didnode init --genesis FILE`` writes it to the ledger). The file is JSON::

    {"format": "didnode/proposal/v1",
     "network": "prod",
     "operations": [{"payload": "<the canonical payload, as a JSON string>",
                     "proofs": [{"kid": "did:dnode:...#key-1", "signature": "<base64url>"}]}, ...]}

The last operation is the ``govern`` operation that signers sign; those
before it (a genesis's creates) are complete already. Parsing checks the
shape and that every operation parses for the file's network; whether the
signatures suffice is the ledger's decision (:mod:`.rules`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from didnode.core import canonical
from didnode.core.builder import SignedOperation
from didnode.core.did import did_for_create_hash
from didnode.core.opfile import parse_proofs, payload_bytes
from didnode.core.encoding import b64url
from didnode.core.operations import MAX_PROOFS, Operation, Proof, parse, signing_bytes
from didnode.errors import DidnodeError, MalformedOperation

FORMAT = "didnode/proposal/v1"
MAX_OPERATIONS = 64  # a genesis: up to 32 creates and the inception
MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Proposal:
    """Operations in ledger order; the last is the ``govern`` operation being signed."""

    network: str
    operations: tuple[SignedOperation, ...]

    @property
    def govern(self) -> SignedOperation:
        return self.operations[-1]

    def signed(self, kid: str, signature: bytes) -> "Proposal":
        """This proposal with one more signature on its governance operation (replacing one by the same key id)."""
        last = self.govern
        proofs = tuple(p for p in last.proofs if p.kid != kid) + (Proof(kid, signature),)
        if len(proofs) > MAX_PROOFS:
            raise MalformedOperation(f"an operation carries at most {MAX_PROOFS} signatures")
        op = SignedOperation(last.type, last.network, last.did, last.payload, proofs)
        return Proposal(self.network, self.operations[:-1] + (op,))

    def message(self) -> bytes:
        """The bytes a signer of the governance operation signs."""
        return signing_bytes(self.network, self.govern.type, self.govern.payload)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "network": self.network,
            "operations": [
                {"payload": op.payload.decode(), "proofs": [{"kid": p.kid, "signature": b64url(p.signature)} for p in op.proofs]}
                for op in self.operations
            ],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def from_operations(network: str, operations: Sequence[SignedOperation]) -> Proposal:
    """A proposal of ``operations`` (the last one a ``govern``)."""
    if not operations or operations[-1].type != "govern":
        raise MalformedOperation("a proposal ends with a govern operation")
    return Proposal(network, tuple(operations))


def loads(data: bytes) -> Proposal:
    """Parse a proposal file; raises :class:`MalformedOperation` (or the operation's own parse error)."""
    if len(data) > MAX_FILE_BYTES:
        raise MalformedOperation(f"a proposal file is at most {MAX_FILE_BYTES} bytes")
    doc = canonical.loads(data, MalformedOperation, "proposal file")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or set(doc) != {"format", "network", "operations"}:
        raise MalformedOperation(f"not a proposal file: expected an object with format {FORMAT!r}, network and operations")
    network, items = doc["network"], doc["operations"]
    if not isinstance(network, str) or not isinstance(items, list) or not 1 <= len(items) <= MAX_OPERATIONS:
        raise MalformedOperation(f"a proposal names its network and 1 to {MAX_OPERATIONS} operations")
    ops: list[SignedOperation] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"payload", "proofs"} or not isinstance(item["payload"], str):
            raise MalformedOperation(f"operation {i} of the proposal must be an object with payload (a string) and proofs")
        raw = item["proofs"]
        if not isinstance(raw, list) or len(raw) > MAX_PROOFS:
            raise MalformedOperation(f"operation {i} carries a list of at most {MAX_PROOFS} proofs")
        proofs = parse_proofs(raw, f"operation {i} of the proposal")
        payload = payload_bytes(item["payload"], f"operation {i} of the proposal")
        op = _parse_unsigned(payload, proofs, network, i, last=i == len(items) - 1)
        ops.append(SignedOperation(op.type, network, op.did, payload, tuple(proofs)))
    return from_operations(network, ops)


def _parse_unsigned(payload: bytes, proofs: list[Proof], network: str, index: int, last: bool) -> Operation:
    # parse() wants at least one proof: the governance operation may have none yet.
    placeholder = [Proof(did_for_create_hash(bytes(32)) + "#unsigned", bytes(64))] if last and not proofs else proofs
    try:
        op = parse(payload, placeholder, network)
    except DidnodeError as exc:
        raise type(exc)(f"operation {index} of the proposal: {exc}", **exc.details) from None
    if last and op.type != "govern":
        raise MalformedOperation("the last operation of a proposal is the govern operation to sign")
    return op
