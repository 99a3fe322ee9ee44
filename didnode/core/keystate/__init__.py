"""Key state of a DID and the pure state transition ``apply(state, op) -> state``.

The state is a fold over the DID's operations in ledger order; every node that
applies the same log computes byte-identical states. Two modules:

* :mod:`.state`: the records a state is made of (:class:`KeyRecord`,
  :class:`DidState`), their queries, the JSON view for clients and the
  binary *state record* that is stored, hashed into the state tree and
  carried in state proofs (laid out there and in docs/storage.md).
* :mod:`.transitions`: :class:`ApplyContext` and :func:`apply`, signer
  resolution and one transition per operation type, with the signing rules
  (docs/did-method.md has the table).

Every name is importable from this package (``from didnode.core.keystate import DidState, apply``).
"""

from didnode.core.keystate.state import (
    ACTIVE,
    CURRENT,
    DEACTIVATED,
    ED25519,
    MAX_KEY_HISTORY,
    MAX_RESOURCES,
    RECORD_VERSION,
    REVOKED,
    ROTATED,
    X25519,
    DidState,
    KeyRecord,
)
from didnode.core.keystate.transitions import ApplyContext, apply

__all__ = [
    "ACTIVE",
    "CURRENT",
    "DEACTIVATED",
    "ED25519",
    "MAX_KEY_HISTORY",
    "MAX_RESOURCES",
    "RECORD_VERSION",
    "REVOKED",
    "ROTATED",
    "X25519",
    "ApplyContext",
    "DidState",
    "KeyRecord",
    "apply",
]
