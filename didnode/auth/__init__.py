"""The device SDK for mutual authentication (docs/authentication.md).

Initiator::

    from didnode.auth import authenticate, authenticate_sync, LocalIdentity
    me = LocalIdentity.from_signing_key(did, "key-1", signing_key)
    session = await authenticate("10.0.0.7:7000", me, node="127.0.0.1:50051")
    session.peer_did, session.session_id.hex(), session.session_key, session.checks

Responder, mounted into any grpc.aio server (device makers embed it), or
served on its own with :func:`serve`::

    from didnode.auth import add_auth_responder, device_responder
    from didnode.auth.lmdb_nonces import LmdbNonceStore
    async with AsyncClient(node_address) as client:
        responder = await device_responder(me, client, nonces=LmdbNonceStore(path, now_ms))
        add_auth_responder(server, responder)

Both sides check the other's key on the ledger: through the node
(``AsyncClient.key_state``) by default, or through a state proof the
responder stapled (``staple=True``) when the initiator trusts the node's
checkpoint key and sets a maximum staleness.

Modules: :mod:`~didnode.auth.driver` (the drivers over any message stream),
:mod:`~didnode.auth.peers` (peers' key states and credentials through a node),
:mod:`~didnode.auth.initiator` and :mod:`~didnode.auth.responder` (gRPC),
:mod:`~didnode.auth.lmdb_nonces` (a nonce store that survives restarts; loads
LMDB, so it is imported only by those who ask for it). Nothing here loads
server code; ``tests/test_imports.py`` holds that.
"""

from didnode.auth.driver import CredentialChecker, HandshakeInitiator, HandshakeResponder, KeyStateSource, Party, ResponderSetup, Wallet
from didnode.auth.initiator import DEFAULT_TIMEOUT_S, Authenticator, authenticate, authenticate_sync
from didnode.auth.peers import CachedKeyStates, ClientCredentials, ClientKeyStates, StapledStateVerifier, StateStapler
from didnode.auth.responder import AuthServicer, ResponderServer, add_auth_responder, device_responder, identity_for, serve
from didnode.core.handshake.machine import Established, LocalIdentity
from didnode.core.handshake.messages import CredentialRequest
from didnode.core.handshake.nonces import HandshakeLimits, MemoryNonceStore, NonceStore
from didnode.core.handshake.policy import ACCEPT_ANYONE, Policy, load_policy

__all__ = [
    "ACCEPT_ANYONE",
    "DEFAULT_TIMEOUT_S",
    "AuthServicer",
    "Authenticator",
    "CachedKeyStates",
    "ClientCredentials",
    "ClientKeyStates",
    "CredentialChecker",
    "CredentialRequest",
    "Established",
    "HandshakeInitiator",
    "HandshakeLimits",
    "HandshakeResponder",
    "KeyStateSource",
    "LocalIdentity",
    "MemoryNonceStore",
    "NonceStore",
    "Party",
    "Policy",
    "ResponderServer",
    "ResponderSetup",
    "StapledStateVerifier",
    "StateStapler",
    "Wallet",
    "add_auth_responder",
    "authenticate",
    "authenticate_sync",
    "device_responder",
    "identity_for",
    "load_policy",
    "serve",
]
