"""The handshake initiator over gRPC: authenticate this device to a peer (docs/authentication.md).

:class:`Authenticator` keeps one channel per peer and one nonce store across
handshakes; :func:`authenticate` / :func:`authenticate_sync` are one-shot
conveniences that check the peer's key through a node, verified against the
device's trust policy (docs/trust.md, "Devices").
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import grpc

from didnode.auth.driver import (
    CredentialChecker,
    HandshakeInitiator,
    KeyStateSource,
    Party,
    Wallet,
)
from didnode.auth.peers import StapledStateVerifier, device_view
from didnode.clock import wall_ms
from didnode.core.handshake.machine import Established, LocalIdentity
from didnode.core.handshake.messages import CredentialRequest, Hello, Message
from didnode.core.handshake.nonces import HandshakeLimits, MemoryNonceStore, NonceStore
from didnode.client import DEFAULT_ADDRESS, AsyncClient
from didnode.client.channel import open_channel
from didnode.core.handshake.policy import ACCEPT_ANYONE, Policy, require_credentials
from didnode.core.trust import TrustedLog, TrustPolicy
from didnode.errors import AuthenticationFailed, DidnodeError, Internal, NodeUnavailable
from didnode.wire.handshake import (
    CHALLENGE_HEADER_KEY,
    HELLO_HEADER_KEY,
    METHOD,
    METHOD_IN_HEADERS,
    RETRY_TRAILER_KEY,
    SESSION_IN_TRAILER,
    SESSION_TRAILER_KEY,
    decode,
    encode,
)
from didnode.wire.status import from_rpc_error
from didnode.wire.tls import TlsClientConfig, tls_failure

DEFAULT_TIMEOUT_S = 10.0
log = logging.getLogger("didnode.auth")
# On the classic method, asks the responder for the session message in the call's
# trailing metadata (see didnode.wire.handshake.SESSION_IN_TRAILER); a responder that
# does not know the request sends it as a stream message, which recv() accepts too.
_CALL_METADATA = (SESSION_IN_TRAILER,)


def _rpc_error(err: grpc.aio.AioRpcError, target: str, tls: TlsClientConfig | None = None) -> DidnodeError:
    """The didnode error a failed handshake call carries (the responder's reason), or the transport
    failure (a TLS one typed: :func:`didnode.wire.tls.tls_failure`; ``tls`` is the channel's, None: plaintext or unknown)."""
    rebuilt = from_rpc_error(err.code(), err.details() or "", err.trailing_metadata())
    if isinstance(rebuilt, NodeUnavailable) and "by" not in rebuilt.details:
        bare = NodeUnavailable(f"peer {target} unreachable: {err.details() or err.code().name}", grpc_code=err.code().name)
        return tls_failure(bare, tls, target)
    return rebuilt


class _NoHeaderCarriage(Exception):
    """The responder has no ``HandshakeInHeaders`` method (UNIMPLEMENTED): an older one.

    Not a :class:`DidnodeError`: it never reaches a caller. :meth:`Authenticator.authenticate`
    catches it and runs the handshake again over ``Handshake``.
    """


@dataclass(slots=True)
class _Route:
    """One responder's two handshake methods, whether it has the header carriage (learned on first
    contact), and the TLS configuration of its channel (None: plaintext, or a channel given by the caller)."""

    classic: grpc.aio.StreamStreamMultiCallable
    in_headers: grpc.aio.StreamStreamMultiCallable
    headers_ok: bool = True
    tls: TlsClientConfig | None = None

    @classmethod
    def on(cls, channel: grpc.aio.Channel, tls: TlsClientConfig | None = None) -> "_Route":
        # Raw bytes both ways: requests are encoded and replies decoded strictly by auth_wire.
        return cls(channel.stream_stream(METHOD), channel.stream_stream(METHOD_IN_HEADERS), tls=tls)


class _Stream:
    """One handshake's gRPC call, as the driver's ``send(msg)`` / ``recv()``, in either carriage.

    The call is opened by the first ``send`` (the hello): with the header
    carriage the hello becomes the call's request header, so it must be known
    when the call starts. A responder under load ends the call with a Retry in
    its trailer (``recv`` returns it); the hello sent again with the cookie
    opens a new call. See :mod:`didnode.wire.handshake` for both carriages.
    """

    __slots__ = ("route", "name", "timeout", "in_headers", "call", "_first_recv")

    def __init__(self, route: _Route, name: str, timeout: float, in_headers: bool) -> None:
        self.route = route
        self.name = name
        self.timeout = timeout
        self.in_headers = in_headers
        self.call: grpc.aio.StreamStreamCall | None = None
        self._first_recv = True

    async def send(self, msg: Message) -> None:
        """Send ``msg`` (precondition: the first message is the hello; a hello opens a new call)."""
        call = self.call
        if call is None or type(msg) is Hello:
            self._first_recv = True
            if self.in_headers:
                self.call = self.route.in_headers(timeout=self.timeout, metadata=((HELLO_HEADER_KEY, encode(msg)),))
                return
            call = self.call = self.route.classic(timeout=self.timeout, metadata=_CALL_METADATA)
        try:
            await call.write(encode(msg))
        except grpc.aio.AioRpcError as err:
            raise _rpc_error(err, self.name, self.route.tls) from None
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as err:
            # Writing after the call ended (cancelled by a local timeout, or finished).
            raise AuthenticationFailed(f"the stream to {self.name} is closed: {err}") from None

    async def recv(self) -> Message:
        """The responder's next message (precondition: :meth:`send` opened the call)."""
        call = self.call
        if call is None:
            raise Internal("a handshake cannot receive before it has sent its hello")
        first, self._first_recv = self._first_recv, False
        if first and self.in_headers:
            # (grpc.aio's Metadata is a mapping: get() finds the first value without a Python-level scan.)
            raw = (await call.initial_metadata()).get(CHALLENGE_HEADER_KEY)
            if isinstance(raw, bytes):
                return decode(raw)
            # Headers without a challenge: it is a stream message (too large for a
            # header), or the responder refused the hello and the status follows.
        try:
            raw = await call.read()
        except grpc.aio.AioRpcError as err:
            if first and self.in_headers and err.code() == grpc.StatusCode.UNIMPLEMENTED:
                # No didnode error maps to UNIMPLEMENTED (didnode.wire.status): the method is missing.
                raise _NoHeaderCarriage(self.name) from None
            if first and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                # A responder under load answers the hello with a Retry (a cookie) and ends the call.
                retry = (err.trailing_metadata() or {}).get(RETRY_TRAILER_KEY)  # type: ignore[union-attr]
                if isinstance(retry, bytes):
                    return decode(retry)
            raise _rpc_error(err, self.name, self.route.tls) from None
        if raw is grpc.aio.EOF:
            # An OK status: the session message may have come with it, as a trailer.
            # (Which message it is, and whether it is the expected one, is the state
            # machine's business: carriage changes nothing about what is checked.)
            trailer = (await call.trailing_metadata()).get(SESSION_TRAILER_KEY)
            if isinstance(trailer, bytes):
                return decode(trailer)
            raise AuthenticationFailed(f"{self.name} ended the stream before the handshake completed")
        return decode(raw)


class Authenticator:
    """An initiator that authenticates this device to peers, again and again.

    Keeps one gRPC channel per peer address and one nonce store (a replayed
    challenge is recognized across sessions). ``keys`` answers "what is the
    responder's current key state" (a device's: :class:`~didnode.auth.peers.ClientKeyStates`,
    verified against its trust policy); ``credentials`` verifies credentials the
    policy requires; ``present`` are this device's own credentials (vc+jwt),
    attached when a responder asks for their type and issuer; ``stapled``
    accepts responders' stapled state proofs instead of asking ``keys``;
    ``tls``: the channels it opens by address use TLS (docs/tls.md; None:
    plaintext). A channel passed to :meth:`authenticate` is used as it is.
    """

    def __init__(
        self,
        identity: LocalIdentity,
        network: str,
        keys: KeyStateSource,
        *,
        nonces: NonceStore | None = None,
        policy: Policy = ACCEPT_ANYONE,
        credentials: CredentialChecker | None = None,
        present: Sequence[str] = (),
        stapled: StapledStateVerifier | None = None,
        clock_ms: Callable[[], int] = wall_ms,
        random_bytes: Callable[[int], bytes] = os.urandom,
        limits: HandshakeLimits = HandshakeLimits(),
        tls: TlsClientConfig | None = None,
    ) -> None:
        self.tls = tls
        store = nonces if nonces is not None else MemoryNonceStore(limits, not_before_ms=clock_ms())
        self.party = Party(identity, network, store, keys, policy, credentials, Wallet.of(present), stapled, clock_ms, random_bytes)
        self.driver = HandshakeInitiator(self.party)
        self._channels: dict[str, tuple[grpc.aio.Channel, _Route]] = {}
        self._routes: weakref.WeakKeyDictionary[grpc.aio.Channel, _Route] = weakref.WeakKeyDictionary()
        self._finishing: set[grpc.aio.StreamStreamCall] = set()  # completed handshakes whose status is in flight

    def _route(self, target: str | grpc.aio.Channel) -> _Route:
        """The handshake methods on ``target``; channels this object opens are kept per address."""
        if not isinstance(target, str):
            route = self._routes.get(target)
            if route is None:
                route = self._routes[target] = _Route.on(target)
            return route
        entry = self._channels.get(target)
        if entry is None:
            ch = open_channel(target, self.tls, aio=True)
            entry = self._channels[target] = (ch, _Route.on(ch, self.tls))
        return entry[1]

    async def authenticate(
        self,
        target: str | grpc.aio.Channel,
        *,
        expect_peer: str = "",
        require: Sequence[CredentialRequest] = (),
        policy: Policy | None = None,
        session_credential: bool = True,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> Established:
        """Authenticate the peer serving ``didnode.v1.AuthService`` at ``target`` (HOST:PORT or a channel), and to it.

        Precondition: called on the event loop that owns this object.
        ``require``: credentials the peer must present (shorthand for a
        policy). Returns the established session (peer DID and key, session
        id and key, the checks that passed, a node's session credential).
        Raises the reason of the first failure, this side's or the peer's
        (e.g. :class:`~didnode.errors.PeerKeyRevoked` here,
        :class:`~didnode.errors.KeyRevoked` with ``details["by"] ==
        "responder"`` when the responder refused this device's key).
        """
        pol = policy if policy is not None else (require_credentials(require) if require else None)
        name = target if isinstance(target, str) else "peer"
        route = self._route(target)
        while True:
            stream = _Stream(route, name, timeout + 2.0, route.headers_ok)
            ok = False
            try:
                est = await self.driver.initiate(
                    stream.recv, stream.send, expect_peer=expect_peer, policy=pol, session_credential=session_credential, timeout_ms=int(timeout * 1000)
                )
                ok = True
                return est
            except _NoHeaderCarriage:
                # An older responder: remember it, and run the handshake again (fresh nonces) the classic way.
                route.headers_ok = False
                log.info("%s has no %s; handshakes with it use %s", name, METHOD_IN_HEADERS, METHOD)
            finally:
                call = stream.call
                if call is not None and not call.done():
                    if ok:
                        # No half-close: the responder ends the call right after the session message.
                        # Its status is usually still in flight here, and grpc.aio *cancels* a call
                        # that is garbage-collected before it is done (an RST_STREAM both sides must
                        # process, and a "cancelled" handshake RPC on the responder). Keep the call
                        # referenced until its status arrives instead of waiting for it.
                        self._finishing.add(call)
                        call.add_done_callback(self._finishing.discard)
                    else:
                        await _close_after_alert(call)

    async def close(self) -> None:
        """Close the channels this object opened and flush its nonce store."""
        for ch, _ in self._channels.values():
            await ch.close()
        self._channels.clear()
        self._routes.clear()
        self.party.nonces.sync()


async def _close_after_alert(call: grpc.aio.StreamStreamCall) -> None:
    """End a failed handshake's call: half-close so that an alert just written is
    delivered, give the responder a moment to end the stream, then cancel."""
    try:
        async with asyncio.timeout(0.5):
            await call.done_writing()
            await call.code()
    except (TimeoutError, grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
        pass  # nothing more to tell a responder that is gone or slow
    call.cancel()


async def authenticate(
    address: str,
    identity: LocalIdentity,
    *,
    trust: TrustPolicy | TrustedLog | None,
    node: str = DEFAULT_ADDRESS,
    network: str | None = None,
    insecure_no_verify: bool = False,
    nonces: NonceStore | None = None,
    expect_peer: str = "",
    require: Sequence[CredentialRequest] = (),
    policy: Policy | None = None,
    present: Sequence[str] = (),
    session_credential: bool = True,
    max_staleness_ms: int = 0,
    timeout: float = DEFAULT_TIMEOUT_S,
    tls: TlsClientConfig | None = None,
    node_tls: TlsClientConfig | None = None,
) -> Established:
    """Authenticate the peer at ``address`` as ``identity``, checking its key through the node at ``node``.

    One-shot convenience over :class:`Authenticator` (which keeps channels
    and a nonce store across calls). ``trust`` (required): the trust policy
    (or the device's shared :class:`~didnode.core.trust.TrustedLog`) every
    answer of the node is verified against (docs/trust.md, "Devices"); the
    network is the policy's. ``trust=None, insecure_no_verify=True`` believes
    the node unverified (``network`` then defaults to the node's).
    ``max_staleness_ms`` > 0 accepts a state proof the responder stapled,
    if its checkpoint is signed by the policy's keys, does not contradict the
    latest verified checkpoint, and is at most that old (and at most the
    policy's maximum staleness). ``tls`` / ``node_tls``:
    TLS to the peer / to the node (None: plaintext).
    """
    async with AsyncClient(node, tls=node_tls) as client:
        view = await device_view(client, trust, network=network, insecure_no_verify=insecure_no_verify)
        auth = Authenticator(
            identity, view.network, view.keys, nonces=nonces, credentials=view.credentials, present=present, stapled=view.stapled(max_staleness_ms), tls=tls
        )
        try:
            return await auth.authenticate(
                address, expect_peer=expect_peer, require=require, policy=policy, session_credential=session_credential, timeout=timeout
            )
        finally:
            await auth.close()


def authenticate_sync(address: str, identity: LocalIdentity, **kwargs: object) -> Established:
    """Blocking :func:`authenticate` (runs its own event loop; not from inside one)."""
    return asyncio.run(authenticate(address, identity, **kwargs))  # type: ignore[arg-type]
