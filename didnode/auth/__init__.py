"""The device SDK for mutual authentication (docs/authentication.md).

Initiator::

    from didnode.auth import authenticate, authenticate_sync, trusted_log, LocalIdentity
    from didnode.provisioning import bundle_trust
    me = LocalIdentity.from_signing_key(did, "key-1", signing_key)
    trust = trusted_log(bundle_trust(bundle))  # the device's trust policy, from its provisioning bundle
    session = await authenticate("10.0.0.7:7000", me, trust=trust, node="127.0.0.1:50051")
    session.peer_did, session.session_id.hex(), session.session_key, session.checks

Responder, mounted into any grpc.aio server (device makers embed it), or
served on its own with :func:`serve`::

    from didnode.auth import add_auth_responder, device_responder
    from didnode.auth.lmdb_nonces import LmdbNonceStore
    async with AsyncClient(node_address) as client:
        responder = await device_responder(me, client, nonces=LmdbNonceStore(path, now_ms), trust=trust)
        add_auth_responder(server, responder)

Both sides check the other's key on the ledger, and believe the node only
once its answer is proven under a checkpoint the device's trust policy
accepts (docs/trust.md, "Devices"): a state proof read through the node
(:class:`ClientKeyStates` over :class:`~didnode.client.verified.AsyncVerifiedClient`),
or one the responder stapled (``staple=True``), checked against the same
policy when the initiator sets a maximum staleness. The policy is a required
argument; ``insecure_no_verify=True`` in its place believes the node
unverified (tests and tools only). Give one :class:`~didnode.core.trust.TrustedLog`
(:func:`trusted_log`) to all of a device's sources: each checkpoint's
signatures are then verified once.

Modules: :mod:`~didnode.auth.driver` (the drivers over any message stream),
:mod:`~didnode.auth.peers` (peers' key states and credentials through a node),
:mod:`~didnode.auth.initiator` and :mod:`~didnode.auth.responder` (gRPC),
:mod:`~didnode.auth.lmdb_nonces` (a nonce store that survives restarts; loads
LMDB, so it is imported only by those who ask for it). Nothing here loads
server code; ``tests/test_imports.py`` holds that.
"""

from didnode.auth.driver import CredentialChecker, HandshakeInitiator, HandshakeResponder, KeyStateSource, Party, ResponderSetup, Wallet
from didnode.auth.initiator import DEFAULT_TIMEOUT_S, Authenticator, authenticate, authenticate_sync
from didnode.auth.peers import CachedKeyStates, ClientCredentials, ClientKeyStates, DeviceView, StapledStateVerifier, StateStapler, device_view, trusted_log
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
    "DeviceView",
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
    "device_view",
    "identity_for",
    "load_policy",
    "serve",
    "trusted_log",
]
