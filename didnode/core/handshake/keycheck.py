"""Is a peer's signing key a current authentication key of its DID on the ledger?

The peer's key state comes from outside (the node's LMDB, a client RPC, or
a stapled state proof); the asynchronous sources live in
:mod:`didnode.service.auth`.
"""

from __future__ import annotations

from didnode.core.keystate import REVOKED, ROTATED, X25519, DidState, KeyRecord
from didnode.errors import (
    IdentityMisbinding,
    NotAnAuthenticationKey,
    PeerDeactivated,
    PeerKeyRevoked,
    PeerKeyRotated,
    PeerUnknownKey,
    UnknownKey,
)


def authentication_key(state: DidState, did: str, key_id: str) -> KeyRecord:
    """The key ``key_id`` of ``did`` if it may authenticate now; raises the precise reason otherwise.

    Precondition: ``state`` is the current (or verified-fresh) state read for
    ``did``. Raises, in this order: :class:`IdentityMisbinding` (the state
    is of another DID), :class:`PeerDeactivated`, :class:`PeerUnknownKey`,
    :class:`NotAnAuthenticationKey` (a key-agreement key),
    :class:`PeerKeyRevoked`, :class:`PeerKeyRotated`,
    :class:`NotAnAuthenticationKey` (an Ed25519 key without the
    ``authentication`` purpose).
    """
    kid = f"{did}#{key_id}"
    if state.did != did:
        raise IdentityMisbinding(f"the key state offered for {did} is of {state.did}", did=did)
    if not state.active:
        raise PeerDeactivated(f"{did} is deactivated; it cannot authenticate", did=did)
    try:
        key = state.key(key_id)
    except UnknownKey:
        raise PeerUnknownKey(f"{did} has no key {key_id!r}", did=did, key=key_id) from None
    if key.kind == X25519:
        raise NotAnAuthenticationKey(f"{kid} is a key-agreement (X25519) key; it cannot sign a handshake", kid=kid)
    if key.fate == REVOKED:
        raise PeerKeyRevoked(f"{kid} was revoked ({key.reason or 'compromised'}) at seq {key.ended_seq}; it authenticates nothing", kid=kid)
    if key.fate == ROTATED:
        raise PeerKeyRotated(f"{kid} was rotated out at seq {key.ended_seq}; only a current key authenticates", kid=kid)
    if "authentication" not in key.purposes:
        raise NotAnAuthenticationKey(f"{kid} is not an authentication key (purposes: {', '.join(key.purposes)})", kid=kid)
    return key


# Decoded raw keys by Multikey string (a key's encoding never changes; bounded).
_RAW: dict[str, bytes] = {}


def raw_key(key: KeyRecord) -> bytes:
    """``key.raw``, decoded once per Multikey string."""
    raw = _RAW.get(key.multibase)
    if raw is None:
        raw = key.raw
        if len(_RAW) >= 8192:
            _RAW.clear()
        _RAW[key.multibase] = raw
    return raw
