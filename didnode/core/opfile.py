"""The operation file: one signed operation, written offline and carried to whoever submits it.

``didctl did create --offline --out FILE`` writes one (a governor's or a
registrar's create for a network's genesis); ``didnode init --governor-op
FILE`` reads it. The file is JSON::

    {"format": "didnode/operation/v1",
     "network": "prod",
     "payload": "<the canonical payload, as a JSON string>",
     "proofs": [{"kid": "did:dnode:...#key-1", "signature": "<base64url>"}]}

The payload and proofs are those of a proposal file's operations
(:mod:`didnode.core.governance.proposal`), so an operation moves from one
file to the other unchanged. Parsing checks the shape and that the operation
parses for the file's network; its signatures are the ledger's to check.
"""

from __future__ import annotations

import json
from typing import Any

from didnode.core import canonical
from didnode.core.builder import SignedOperation
from didnode.core.encoding import b64url, b64url_decode
from didnode.core.operations import MAX_PROOFS, Proof, parse
from didnode.errors import DidnodeError, MalformedOperation

FORMAT = "didnode/operation/v1"
MAX_FILE_BYTES = 256 * 1024


def to_json(op: SignedOperation) -> dict[str, Any]:
    """The file's JSON object for ``op``."""
    return {
        "format": FORMAT,
        "network": op.network,
        "payload": op.payload.decode(),
        "proofs": [{"kid": p.kid, "signature": b64url(p.signature)} for p in op.proofs],
    }


def dumps(op: SignedOperation) -> str:
    """The file's text for ``op`` (indented JSON, one trailing newline)."""
    return json.dumps(to_json(op), indent=2) + "\n"


def loads(data: bytes, what: str = "operation file") -> SignedOperation:
    """Parse an operation file; raises :class:`MalformedOperation` (or the operation's own parse error).

    ``what`` names the file in messages (e.g. its path).
    """
    if len(data) > MAX_FILE_BYTES:
        raise MalformedOperation(f"{what}: an operation file is at most {MAX_FILE_BYTES} bytes")
    doc = canonical.loads(data, MalformedOperation, what)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or set(doc) != {"format", "network", "payload", "proofs"}:
        raise MalformedOperation(f"{what} is not an operation file: expected an object with format {FORMAT!r}, network, payload and proofs")
    network, payload, raw = doc["network"], doc["payload"], doc["proofs"]
    if not isinstance(network, str) or not isinstance(payload, str) or not isinstance(raw, list) or not 1 <= len(raw) <= MAX_PROOFS:
        raise MalformedOperation(f"{what}: network and payload are strings, proofs a list of 1 to {MAX_PROOFS} proofs")
    proofs = parse_proofs(raw, what)
    data = payload_bytes(payload, what)
    try:
        op = parse(data, proofs, network)
    except DidnodeError as exc:
        raise type(exc)(f"{what}: {exc}", **exc.details) from None
    return SignedOperation(op.type, network, op.did, data, tuple(proofs))


def parse_proofs(raw: list[Any], what: str) -> list[Proof]:
    """The proofs of a file's operation: objects with exactly kid (a string) and signature (base64url)."""
    proofs = []
    for p in raw:
        if not isinstance(p, dict) or set(p) != {"kid", "signature"} or not isinstance(p["kid"], str):
            raise MalformedOperation(f"{what}: a proof is an object with kid and signature")
        proofs.append(Proof(p["kid"], b64url_decode(p["signature"], "signature", MalformedOperation)))
    return proofs


def payload_bytes(text: str, what: str) -> bytes:
    """A file's payload string as UTF-8 bytes; a lone surrogate (a JSON escape such as \\ud800, which no
    UTF-8 text holds) is :class:`MalformedOperation`."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedOperation(f"{what}: a payload holds a lone UTF-16 surrogate, which UTF-8 cannot carry") from None
