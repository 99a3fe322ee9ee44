"""How many bytes a request message of each method may have (docs/security.md, "Limits").

Both ends use these: servers built with :func:`didnode.wire.handlers.generic_handler`
refuse a longer message before parsing it (``TOO_LARGE``, or
``HANDSHAKE_TOO_LARGE`` on ``AuthService``), the node sets gRPC's own receive
limit to the largest of them (:data:`MAX_REQUEST_BYTES`: grpc refuses a longer
message before the node copies it, with ``RESOURCE_EXHAUSTED``), and the client
splits a batch into chunks of at most :data:`MAX_BATCH_CHUNK_BYTES`.

Each limit fits the largest valid message of its method: a ``Submit`` carries
one operation (``MAX_PUBLISH_PAYLOAD_BYTES`` of payload and ``MAX_PROOFS``
signatures under DID URLs of the method's length), a handshake message is at
most ``core.handshake.messages.MAX_MESSAGE_BYTES``, and every other request
names a few DIDs, ids, sizes or a credential of at most ``DEFAULT_MAX_TOKEN``
characters. A ``SubmitBatch`` chunk holds at most 1,024 operations
(``didnode.service.ledger.MAX_BATCH_CHUNK``) *and* at most ``MAX_BATCH_CHUNK_BYTES``.
"""

from __future__ import annotations

from didnode.core.credentials.jose import DEFAULT_MAX_TOKEN
from didnode.core.did import ID_LENGTH, PREFIX
from didnode.core.handshake.messages import MAX_MESSAGE_BYTES as MAX_HANDSHAKE_MESSAGE_BYTES
from didnode.core.operations import MAX_PROOFS, MAX_PUBLISH_PAYLOAD_BYTES

# A proof's kid is a DID URL: did:dnode:<46>#<key id of at most 32 characters>.
MAX_KID_CHARS = len(PREFIX) + ID_LENGTH + 1 + 32
_FIELD = 1 + 3  # a tag and a length prefix (a varint of at most 3 bytes below 2 MiB)
MAX_PROOF_BYTES = _FIELD + MAX_KID_CHARS + _FIELD + 64
# One Operation message: payload and proofs, each a length-delimited field.
MAX_OPERATION_BYTES = _FIELD + MAX_PUBLISH_PAYLOAD_BYTES + MAX_PROOFS * (_FIELD + MAX_PROOF_BYTES)
MAX_SUBMIT_BYTES = _FIELD + MAX_OPERATION_BYTES
MAX_BATCH_CHUNK_BYTES = 256 * 1024
# Entries a client asks for per History page (the node caps a page at its maximum and at a byte budget).
HISTORY_PAGE = 256
# Resolve, History, key state, proofs, credential checks: DIDs, ids, sizes, one token.
MAX_SMALL_REQUEST_BYTES = max(64 * 1024, 2 * DEFAULT_MAX_TOKEN + 4096)

LEDGER = "/didnode.v1.LedgerService/"
AUTH = "/didnode.v1.AuthService/"
REQUEST_LIMITS: dict[str, int] = {
    LEDGER + "Submit": MAX_SUBMIT_BYTES,
    LEDGER + "SubmitBatch": MAX_BATCH_CHUNK_BYTES,
    AUTH + "Handshake": MAX_HANDSHAKE_MESSAGE_BYTES,
    AUTH + "HandshakeInHeaders": MAX_HANDSHAKE_MESSAGE_BYTES,
}
# The largest request any method takes: gRPC's receive limit on a node.
MAX_REQUEST_BYTES = max(MAX_SMALL_REQUEST_BYTES, *REQUEST_LIMITS.values())


def request_limit(method: str) -> int:
    """The largest request message ``method`` (``/package.Service/Method``) takes, in bytes."""
    return REQUEST_LIMITS.get(method, MAX_SMALL_REQUEST_BYTES)


def operation_wire_bytes(payload_len: int, proof_lens: list[tuple[int, int]]) -> int:
    """An upper bound on the bytes an operation adds to a batch chunk (payload length, (kid, signature) lengths)."""
    proofs = sum(_FIELD + (_FIELD + k) + (_FIELD + s) for k, s in proof_lens)
    return _FIELD + (_FIELD + payload_len) + proofs
