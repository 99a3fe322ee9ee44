"""The handshake responder over gRPC: ``didnode.v1.AuthService`` for a device's own server, and the node's.

:class:`AuthServicer` binds a :class:`~didnode.auth.driver.HandshakeResponder`
to one stream per handshake, in both carriages (:mod:`didnode.wire.handshake`).
A failure ends the stream with the rich status of its reason
(``google.rpc.ErrorInfo``, details ``by=responder``), exactly like every other
didnode call, so the initiator rebuilds the same error. A node mounts the same
servicer over its own responder (:func:`didnode.service.auth.node_responder`).

A device builds its responder with :func:`device_responder` (peers' keys and
credentials read through its node, verified against its trust policy) and mounts it with
:func:`add_auth_responder`, or runs a server of its own with :func:`serve`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence, Union

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from didnode.auth.driver import HandshakeResponder, KeyStateSource, Party, ResponderSetup, Wallet
from didnode.auth.peers import CachedKeyStates, StateStapler, device_view
from didnode.clock import wall_ms
from didnode.core.handshake.machine import Established, LocalIdentity
from didnode.core.handshake.messages import Challenge, Message, Retry, Session
from didnode.core.handshake.nonces import NonceStore
from didnode.core.handshake.policy import ACCEPT_ANYONE, Policy
from didnode.core.keystate import DidState
from didnode.core.trust import TrustedLog, TrustPolicy
from didnode.errors import AuthenticationFailed, DidnodeError, HandshakeMalformed, KeyNotInKeystore
from didnode.wire.handlers import Malformed, generic_handler
from didnode.wire.handshake import (
    CHALLENGE_HEADER_KEY,
    HELLO_HEADER_KEY,
    MAX_HEADER_MESSAGE_BYTES,
    METHOD_IN_HEADERS,
    RETRY_TRAILER_KEY,
    SERVICE,
    SESSION_IN_TRAILER,
    SESSION_TRAILER_KEY,
    decode,
    encode,
    message_from_pb,
    metadata_value,
    message_to_pb,
)
from didnode.wire.status import to_status
from didnode.wire.tls import TlsServerConfig

log = logging.getLogger("didnode.auth")


def peer_host(peer: str) -> str:
    """The address a gRPC peer string counts as for the bounds on half-open handshakes and for cookies.

    Per host, not per port (``ipv4:127.0.0.1:5000`` -> ``ipv4:127.0.0.1``); for IPv6 per /64
    (``ipv6:[2001:db8::1]:5000`` -> ``ipv6:2001:db8::/64``), the block one host or one LAN
    gets: a peer that owns a /64 has 2^64 addresses, and bounds per address would mean nothing.
    """
    host, sep, port = peer.rpartition(":")
    if not sep or not port.isdigit():
        return peer
    if host.startswith("ipv6:["):
        try:
            ip = ipaddress.IPv6Address(host[6:].rstrip("]").partition("%")[0])
        except ValueError:
            return host
        if ip.ipv4_mapped is not None:
            return f"ipv4:{ip.ipv4_mapped}"
        return f"ipv6:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return host


class _Status(namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):  # type: ignore[misc]
    """A grpc.Status with extra trailing metadata (the Retry trailer next to the rich error details)."""


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
        retry: list[bytes] = []

        async def send(msg: Message) -> None:
            kind = type(msg)
            if kind is Retry:
                retry.append(encode(msg))  # ends the call, in the status's trailer (see _serve)
                return
            if trailer and kind is Session and _in_trailer(context, msg):
                return
            await context.write(message_to_pb(msg))

        await self._serve(_stream_recv(context), send, context, retry)

    async def HandshakeInHeaders(self, requests: Any, context: grpc.aio.ServicerContext) -> None:
        """One handshake per stream: hello, challenge and session in headers (see MAX_HEADER_MESSAGE_BYTES)."""
        hello = metadata_value(context.invocation_metadata(), HELLO_HEADER_KEY)
        from_stream = _stream_recv(context)
        first = True
        retry: list[bytes] = []

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
            elif kind is Retry:
                retry.append(encode(msg))  # ends the call, in the status's trailer (see _serve)
                return
            await context.write(message_to_pb(msg))

        await self._serve(recv, send, context, retry)

    async def _serve(
        self,
        recv: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
        context: grpc.aio.ServicerContext,
        retry: list[bytes],
    ) -> None:
        peer = context.peer()
        try:
            est = await self.responder.respond(recv, send, peer_host(peer))
        except DidnodeError as err:
            err.details.setdefault("by", "responder")
            log.debug("handshake from %s failed: %s [%s]", peer, err, err.reason)
            if self.on_done is not None:
                self.on_done(err, peer)
            status = to_status(err)
            if retry:
                # The Retry rides next to the rich error details (abort replaces any trailer set before).
                status = _Status(status.code, status.details, (*status.trailing_metadata, (RETRY_TRAILER_KEY, retry[-1])))
            await context.abort_with_status(status)
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
        return message_from_pb(m)

    return recv


def _in_trailer(context: grpc.aio.ServicerContext, session: Session) -> bool:
    """Put ``session`` in the trailing metadata (sent with the OK status when the handler returns) if it fits."""
    raw = encode(session)
    if len(raw) > MAX_HEADER_MESSAGE_BYTES:
        return False
    context.set_trailing_metadata(((SESSION_TRAILER_KEY, raw),))
    return True


def _wants_session_trailer(metadata: Any) -> bool:
    """Whether the initiator asked for the session message in the trailing metadata (see SESSION_IN_TRAILER)."""
    key, value = SESSION_IN_TRAILER
    return metadata_value(metadata, key) == value




async def device_responder(
    identity: LocalIdentity,
    client: Any,
    *,
    nonces: NonceStore,
    trust: TrustPolicy | TrustedLog | None,
    network: str | None = None,
    insecure_no_verify: bool = False,
    policy: Policy = ACCEPT_ANYONE,
    present: Sequence[str] = (),
    staple: bool = False,
    max_staleness_ms: int = 0,
    clock_ms: Callable[[], int] = wall_ms,
) -> HandshakeResponder:
    """A responder for a device: peers' keys and credentials are read through the node behind ``client``
    and verified against ``trust`` before they are believed (docs/trust.md, "Devices").

    ``client``: a :class:`didnode.client.AsyncClient`. ``trust`` (required):
    the device's trust policy, or the :class:`~didnode.core.trust.TrustedLog`
    its other sources share (each checkpoint's signatures are then verified
    once); ``trust=None, insecure_no_verify=True`` believes the node
    unverified. The network is the policy's. ``nonces``: where used
    nonces and pending challenges live (:class:`didnode.auth.lmdb_nonces.LmdbNonceStore`
    survives restarts). ``max_staleness_ms`` > 0 caches peers' verified key states that
    long (0: ask the node on every handshake, so a revocation applies to the
    very next one). ``staple``: attach this device's own state proof to its challenges.
    """
    view = await device_view(client, trust, network=network, insecure_no_verify=insecure_no_verify, clock_ms=clock_ms)
    keys: KeyStateSource = view.keys
    if max_staleness_ms > 0:
        keys = CachedKeyStates(keys, max_staleness_ms, clock_ms)
    party = Party(identity, view.network, nonces, keys, policy, view.credentials, Wallet.of(present), None, clock_ms)
    stapler: Callable[[], Awaitable[bytes]] | None = StateStapler(client, identity.did, clock_ms=clock_ms) if staple else None
    return HandshakeResponder(ResponderSetup(party, staple=stapler))


def add_auth_responder(server: grpc.aio.Server, responder: HandshakeResponder, on_done: OnDone | None = None) -> AuthServicer:
    """Mount ``didnode.v1.AuthService`` into ``server`` (before it starts); returns the servicer."""
    servicer = AuthServicer(responder, on_done)
    server.add_generic_rpc_handlers((generic_handler(SERVICE, servicer),))
    return servicer


@dataclass(slots=True)
class ResponderServer:
    """A running grpc.aio server that answers handshakes (see :func:`serve`)."""

    server: grpc.aio.Server
    port: int
    servicer: AuthServicer

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)


async def serve(
    responder: HandshakeResponder,
    listen: str,
    on_done: OnDone | None = None,
    options: Sequence[tuple[str, Any]] = (),
    tls: TlsServerConfig | None = None,
) -> ResponderServer:
    """Serve ``responder`` on ``listen`` (HOST:PORT; port 0 picks a free one), with gRPC health checking.

    For a device that runs no other gRPC service; one that does mounts the
    responder into its own server with :func:`add_auth_responder`.
    ``tls``: serve TLS with this certificate (and require client
    certificates if it names a client CA; docs/tls.md); None: plaintext.
    Raises ``OSError`` when the address cannot be bound.
    """
    server = grpc.aio.server(options=list(options))
    servicer = add_auth_responder(server, responder, on_done)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(listen) if tls is None else server.add_secure_port(listen, tls.server_credentials())
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    for name in ("", SERVICE.full_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return ResponderServer(server, port, servicer)


def identity_for(did: str, state: DidState, signing_keys: Mapping[str, bytes]) -> LocalIdentity:
    """The identity of ``did`` from its key state and the Ed25519 seeds held for it (by key id).

    Picks the newest current authentication key whose seed is held.
    Raises :class:`~didnode.errors.KeyNotInKeystore` when none is.
    """
    from nacl.signing import SigningKey

    held = [k for k in state.current_keys("authentication") if k.id in signing_keys and bytes(SigningKey(signing_keys[k.id]).verify_key) == k.raw]
    if not held:
        current = ", ".join(k.id for k in state.current_keys("authentication")) or "none"
        raise KeyNotInKeystore(f"no current authentication key of {did} is held here (current on the ledger: {current})", did=did)
    key = max(held, key=lambda k: k.added_pos)
    return LocalIdentity.from_seed(did, key.id, signing_keys[key.id])
