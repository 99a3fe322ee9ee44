"""Authentication on a node: the node as a handshake responder, composed from the SDK's responder.

The handshake itself is the device SDK's (:mod:`didnode.auth.driver`); a node
supplies what only it has: key states read from its own LMDB
(:class:`LedgerKeyStates`), credential checks against its ledger, a session
issuer (:class:`HandshakeSessions`), and the LMDB nonce store in ``DATA/auth``
(:func:`node_responder`).
"""

from __future__ import annotations

import atexit
import os
from typing import Callable

from didnode.auth.driver import (
    HandshakeResponder,
    KeyStateSource,
    Party,
    ResponderSetup,
    VerifierCredentials,
)
from didnode.clock import wall_ms
from didnode.core.handshake.machine import LocalIdentity
from didnode.core.handshake.nonces import HandshakeLimits
from didnode.core.keystate import CURRENT, DidState
from didnode.errors import Internal
from didnode.service.ledger import LedgerService
from didnode.service.node import Node
from didnode.auth.lmdb_nonces import LmdbNonceStore

AUTH_DIR = "auth"



class LedgerKeyStates:
    """Key states read from the node's own LMDB: one read transaction per lookup, never stale.

    The record bytes are read every time; only their *decoding* is cached
    (per DID, keyed by the exact bytes), because a device authenticates
    far more often than its state changes and decoding the record is
    most of a lookup's cost. The same holds for the handshake's re-check
    after the response (:meth:`recheck`): a state unchanged since the hello
    comes back as the very object the hello's check passed.
    """

    def __init__(self, node: object, limit: int = 4096) -> None:
        """``node``: a :class:`didnode.service.node.Node` (its store and tables are read)."""
        self._store = node.store  # type: ignore[attr-defined]
        self._tables = node.tables  # type: ignore[attr-defined]
        self._decoded: dict[str, tuple[bytes, DidState]] = {}
        self._limit = limit

    async def key_state(self, did: str) -> DidState:
        with self._store.read() as txn:
            raw = self._tables.state_record(txn, did)
        hit = self._decoded.get(did)
        if hit is not None and hit[0] == raw:
            return hit[1]
        state = DidState.from_record(raw)
        if len(self._decoded) >= self._limit:
            self._decoded.clear()
        self._decoded[did] = (raw, state)
        return state

    async def recheck(self, did: str, seen: DidState, read_at_ms: int, now_ms: int) -> DidState:
        """The handshake's re-check, exact and cheap: one read transaction for the DID's state record;
        ``seen`` itself when those bytes are still the ones it was decoded from (nothing changed since
        the hello, so the key check need not run again), else the new state."""
        return await self.key_state(did)



class HandshakeSessions:
    """:class:`SessionIssuer` for the node responder: the credential service's issuer and lifetime, minus re-checks.

    The token is the one ``issue_session_credential`` makes (same issuer
    key ``key-1``, type, whole-second ``validUntil`` at the configured
    lifetime, claim ``sessionId``). What that call re-checks is already
    established here: the subject's key was checked on the ledger moments
    ago, and the node's own key is checked on the ledger at most once a
    second (an operator rotating the node DID stops issuance within 1 s).
    """

    def __init__(self, credentials: object, node_keys: KeyStateSource, node_did: str, clock_ms: Callable[[], int] = wall_ms) -> None:
        """``credentials``: a :class:`didnode.service.credentials.CredentialService`."""
        self.issuer = credentials.issuer  # type: ignore[attr-defined]
        self.lifetime_s: int = credentials.session_lifetime_s  # type: ignore[attr-defined]
        self.node_keys = node_keys
        self.node_did = node_did
        self.clock_ms = clock_ms
        self._checked_at = -1_000_000

    async def refresh(self) -> None:
        """Re-check (at most once a second) that the issuer key is a current key of the node DID."""
        from didnode.core.keystate import CURRENT
        from didnode.errors import KeyRotated

        now = self.clock_ms()
        if 0 <= now - self._checked_at < 1000:
            return
        key = (await self.node_keys.key_state(self.node_did)).key(self.issuer.key_id)
        if key.fate != CURRENT:
            raise KeyRotated(f"the node's {self.issuer.key_id} is no longer current; it cannot issue session credentials", kid=self.issuer.kid)
        self._checked_at = now

    def issue(self, subject: str, session_id: bytes, now_ms: int) -> tuple[str, int]:
        from didnode.core.credentials.model import NODE_SESSION

        until = (now_ms // 1000 + self.lifetime_s) * 1000
        return self.issuer.issue(subject, [NODE_SESSION], {"sessionId": session_id.hex()}, now_ms, until), until


def node_identity(node: Node, ledger: LedgerService) -> LocalIdentity:
    """The node's handshake identity: its DID and the current authentication key its ``node.key`` holds.

    Raises :class:`Internal` when ``node.key`` is no longer a current
    authentication key of the node's DID (an operator rotated it elsewhere).
    """
    state = ledger.state(node.node_did)
    public = bytes(node.signing_key.verify_key)
    for key in state.current_keys("authentication"):
        if key.fate == CURRENT and key.raw == public:
            return LocalIdentity.from_signing_key(node.node_did, key.id, node.signing_key)
    raise Internal(f"the node's key file holds no current authentication key of {node.node_did}; the node cannot authenticate")


def node_responder(node: Node, ledger: LedgerService, limits: HandshakeLimits = HandshakeLimits()) -> HandshakeResponder:
    """The node as responder: any DID on its ledger may authenticate; it then gets a session credential.

    Handshake state lives in ``DATA/auth`` (see :mod:`didnode.auth.lmdb_nonces`),
    flushed and closed at process exit.
    """
    from didnode.service.credentials import CredentialService

    nonces = _node_store(os.path.join(node.config.data_dir, AUTH_DIR), node.clock_ms(), limits)
    credentials = CredentialService(node, ledger)
    keys = LedgerKeyStates(node)
    party = Party(
        node_identity(node, ledger),
        node.network,
        nonces,
        keys,
        credentials=VerifierCredentials(credentials.verifier),
        clock_ms=node.clock_ms,
    )
    return HandshakeResponder(ResponderSetup(party, sessions=HandshakeSessions(credentials, keys, node.node_did, node.clock_ms)))




# One handle per environment and process (LMDB's rule): a node restarted inside
# the same process (tests, embedding) reuses the store it opened before.
_NODE_STORES: dict[str, LmdbNonceStore] = {}


def _node_store(path: str, now_ms: int, limits: HandshakeLimits) -> LmdbNonceStore:
    key = os.path.realpath(path)
    store = _NODE_STORES.get(key)
    if store is None or store.closed:
        store = _NODE_STORES[key] = LmdbNonceStore(path, now_ms, limits)
        atexit.register(store.close)  # flush the last second of nonces at exit
    return store
