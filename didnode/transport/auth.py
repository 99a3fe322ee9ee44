"""``didnode.v1.AuthService``: the handshake responder over a gRPC bidirectional stream.

:class:`AuthServicer` binds a :class:`~didnode.service.auth.HandshakeResponder`
to one stream per handshake. A failure ends the stream with the rich status
of its reason (``google.rpc.ErrorInfo``, details ``by=responder``), exactly
like every other didnode call, so the initiator rebuilds the same error.
The same servicer serves on a node (:func:`auth_entry`: the node's DID and
key, LMDB key states, session credentials) and inside a device's own
grpc.aio server (:mod:`didnode.auth`).
"""

from __future__ import annotations

import atexit
import logging
import os
from typing import Any, Awaitable, Callable, Union

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from didnode.api.v1 import auth_pb2 as pb
from didnode.core.handshake.machine import Established, LocalIdentity
from didnode.core.handshake.messages import Challenge, Message, Session
from didnode.core.handshake.nonces import HandshakeLimits
from didnode.core.keystate import CURRENT
from didnode.errors import AuthenticationFailed, DidnodeError, HandshakeMalformed, Internal
from didnode.service.auth import (
    HandshakeResponder,
    HandshakeSessions,
    LedgerKeyStates,
    Party,
    ResponderSetup,
    VerifierCredentials,
)
from didnode.service.ledger import LedgerService
from didnode.service.node import Node
from didnode.store.auth_store import LmdbNonceStore
from didnode.transport.auth_wire import decode, encode, from_pb, to_pb
from didnode.transport.servicers import Malformed
from didnode.transport.status import to_status

log = logging.getLogger("didnode.auth")
SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["AuthService"]
METHOD = "/didnode.v1.AuthService/Handshake"
METHOD_IN_HEADERS = "/didnode.v1.AuthService/HandshakeInHeaders"
AUTH_DIR = "auth"

# Carriage (docs/authentication.md, "On the wire"). Whatever carries a message,
# it is the same serialized AuthMessage, decoded as strictly and checked by the
# same state machine; carriage only decides how many gRPC operations (each a
# batch, a completion and a wake-up of both processes' event loops) a handshake
# costs. Every operation saved is about 20-40 µs of CPU per side.
#
# ``Handshake``: every message is a stream message, except that an initiator
# sending SESSION_IN_TRAILER as request metadata gets the session message in the
# trailing metadata of the OK status (one batch, status + trailer, instead of two).
#
# ``HandshakeInHeaders``: the hello rides in the request headers (a hello is at
# most MAX_HELLO_BYTES, so it always fits), the challenge in the response headers
# and the session in the trailer, each when it has at most MAX_HEADER_MESSAGE_BYTES
# (else it is a stream message, and the receiver takes it from the stream). Only
# the response is always a stream message. A responder without this method (an
# older one) answers UNIMPLEMENTED and the initiator falls back to ``Handshake``.
SESSION_IN_TRAILER: tuple[str, str] = ("didnode-auth-session", "trailer")
SESSION_TRAILER_KEY = "didnode-auth-session-bin"
HELLO_HEADER_KEY = "didnode-auth-hello-bin"
CHALLENGE_HEADER_KEY = "didnode-auth-challenge-bin"
# Base64 on the wire makes 4 KiB about 5.5 KB: under gRPC's default 8 KiB limit
# on received metadata, with room for the other headers.
MAX_HEADER_MESSAGE_BYTES = 4096


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer string (``ipv4:127.0.0.1:5000`` -> ``ipv4:127.0.0.1``): bounds are per host, not per port."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


OnDone = Callable[[Union[Established, DidnodeError], str], None]


class AuthServicer:
    """didnode.v1.AuthService over one :class:`HandshakeResponder`: both carriages of the handshake.

    ``on_done(outcome, peer)`` is told every handshake's outcome (the
    established session or the error), e.g. to log it; it must not block.
    """

    def __init__(self, responder: HandshakeResponder, on_done: OnDone | None = None) -> None:
        self.responder = responder
        self.on_done = on_done

    async def Handshake(self, requests: Any, context: grpc.aio.ServicerContext) -> None:
        """One handshake per stream, every message on the stream (the session in the trailer on request)."""
        trailer = _wants_session_trailer(context.invocation_metadata())

        async def send(msg: Message) -> None:
            if trailer and type(msg) is Session and _in_trailer(context, msg):
                return
            await context.write(to_pb(msg))

        await self._serve(_stream_recv(context), send, context)

    async def HandshakeInHeaders(self, requests: Any, context: grpc.aio.ServicerContext) -> None:
        """One handshake per stream: hello, challenge and session in headers (see MAX_HEADER_MESSAGE_BYTES)."""
        hello = metadata_value(context.invocation_metadata(), HELLO_HEADER_KEY)
        from_stream = _stream_recv(context)
        first = True

        async def recv() -> Message:
            nonlocal first
            if first:
                first = False
                if not isinstance(hello, bytes):
                    raise HandshakeMalformed(f"a {METHOD_IN_HEADERS} call must carry the hello in its {HELLO_HEADER_KEY} request header")
                return decode(hello)
            return await from_stream()

        async def send(msg: Message) -> None:
            kind = type(msg)
            if kind is Challenge:
                raw = encode(msg)
                if len(raw) <= MAX_HEADER_MESSAGE_BYTES:
                    await context.send_initial_metadata(((CHALLENGE_HEADER_KEY, raw),))
                    return
            elif kind is Session and _in_trailer(context, msg):
                return
            await context.write(to_pb(msg))

        await self._serve(recv, send, context)

    async def _serve(self, recv: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]], context: grpc.aio.ServicerContext) -> None:
        peer = context.peer()
        try:
            est = await self.responder.respond(recv, send, peer_host(peer))
        except DidnodeError as err:
            err.details.setdefault("by", "responder")
            log.debug("handshake from %s failed: %s [%s]", peer, err, err.reason)
            if self.on_done is not None:
                self.on_done(err, peer)
            await context.abort_with_status(to_status(err))
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("authenticated %s#%s, session %s", est.peer_did, est.peer_key_id, est.session_id.hex())
        if self.on_done is not None:
            try:
                self.on_done(est, peer)
            except Exception:  # noqa: BLE001 - a hook's failure must not fail an established handshake
                # The session message may still be waiting in the trailer (sent when this
                # handler returns): an exception here would replace it with an error status.
                log.exception("the on_done hook failed for the handshake with %s", peer)


def _stream_recv(context: grpc.aio.ServicerContext) -> Callable[[], Awaitable[Message]]:
    """recv() of the next stream message (parsed by the handler's safe deserializer, then strictly)."""

    async def recv() -> Message:
        m = await context.read()
        if m is grpc.aio.EOF:
            raise AuthenticationFailed("the initiator ended the stream before the handshake completed")
        if isinstance(m, Malformed):
            raise HandshakeMalformed(m.error.message)
        return from_pb(m)

    return recv


def _in_trailer(context: grpc.aio.ServicerContext, session: Session) -> bool:
    """Put ``session`` in the trailing metadata (sent with the OK status when the handler returns) if it fits."""
    raw = encode(session)
    if len(raw) > MAX_HEADER_MESSAGE_BYTES:
        return False
    context.set_trailing_metadata(((SESSION_TRAILER_KEY, raw),))
    return True


def metadata_value(metadata: Any, key: str) -> str | bytes | None:
    """The value of ``key`` in gRPC metadata (a sequence of pairs; None counts as empty), or None when absent."""
    for k, v in metadata or ():
        if k == key:
            return v  # type: ignore[no-any-return]
    return None


def _wants_session_trailer(metadata: Any) -> bool:
    """Whether the initiator asked for the session message in the trailing metadata (see SESSION_IN_TRAILER)."""
    key, value = SESSION_IN_TRAILER
    return metadata_value(metadata, key) == value


def node_identity(node: Node, ledger: LedgerService) -> LocalIdentity:
    """The node's handshake identity: its DID and the current authentication key its ``node.key`` holds.

    Raises :class:`Internal` when ``node.key`` is no longer a current
    authentication key of the node's DID (an operator rotated it elsewhere).
    """
    state = ledger.key_state(node.node_did)
    public = bytes(node.signing_key.verify_key)
    for key in state.current_keys("authentication"):
        if key.fate == CURRENT and key.raw == public:
            return LocalIdentity.from_signing_key(node.node_did, key.id, node.signing_key)
    raise Internal(f"the node's key file holds no current authentication key of {node.node_did}; the node cannot authenticate")


def node_responder(node: Node, ledger: LedgerService, limits: HandshakeLimits = HandshakeLimits()) -> HandshakeResponder:
    """The node as responder: any DID on its ledger may authenticate; it then gets a session credential.

    Handshake state lives in ``DATA/auth`` (see :mod:`didnode.store.auth_store`),
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


def auth_entry(node: Node, ledger: LedgerService) -> tuple[ServiceDescriptor, object]:
    """The (descriptor, servicer) pair that :func:`didnode.transport.services.build_servicers` lists."""
    return SERVICE, AuthServicer(node_responder(node, ledger))
