"""The handshake drivers: run the pure state machine over any message stream, as initiator or responder.

No protobuf and no gRPC here: a driver gets ``recv()`` / ``send(msg)``
coroutines that move :mod:`didnode.core.handshake.messages` values (the
SDK's initiator and responder bind them to a gRPC stream). Between the pure
state machine's steps the driver does what needs the outside world, through
small interfaces that a device and a node fill differently:

* the peer's key state: a :class:`KeyStateSource` (a node reads its own
  LMDB; a device asks its node and verifies the answer against its trust
  policy, :mod:`didnode.auth.peers`), or a stapled state proof checked by a
  :class:`StapleVerifier`; read when the peer
  names itself, and read *again* after the peer's last message, before the
  session is declared established (:meth:`Party.recheck`: as cheaply as the
  source allows, see :class:`RecheckingKeyStates`);
* the policy: the peer's presented credentials are verified by a
  :class:`CredentialChecker`, then :func:`didnode.core.handshake.policy.evaluate` decides;
* a node responder issues a session credential through a :class:`SessionIssuer`;
* time limits: a handshake that does not complete within the limit fails
  with :class:`HandshakeTimeout` and releases its pending challenge;
* load: a responder under load answers hellos without a valid cookie, from
  an address holding its share of the load, with a stateless Retry (:class:`~didnode.core.handshake.cookies.CookieJar`), and
  ends at once a handshake whose pending challenge gave its place to a newer
  one (:class:`TooManyPending`); an initiator follows a Retry by itself. The
  Retry to an address that keeps sending hellos without returning their
  cookies (:class:`~didnode.core.handshake.cookies.BlindHellos`) is sent only
  after ``ResponderSetup.retry_hold_ms``, so a blind flood cannot come faster
  than the calls it keeps open.

The node runs the very same responder (:mod:`didnode.service.auth` only
supplies its key states, credential checks and session issuer).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol, Sequence

from didnode.clock import wall_ms
from didnode.core.credentials import Verifier
from didnode.core.credentials.model import format_time
from didnode.core.handshake.cookies import BlindHellos, CookieJar
from didnode.core.handshake.machine import Established, Fresh, Initiator, LocalIdentity, Responder
from didnode.core.handshake.messages import MAX_WANT, NO_ATTACHMENTS, Alert, Attachments, CredentialRequest, Message, Retry
from didnode.core.handshake.nonces import NonceStore
from didnode.core.handshake.policy import ACCEPT_ANYONE, Claimed, Findings, Policy, evaluate, peek
from didnode.core.keystate import DidState
from didnode.errors import (
    CredentialInvalid,
    DidnodeError,
    HandshakeRetry,
    HandshakeTimeout,
    Internal,
    PeerUnknown,
    TooManyPending,
    UnknownDid,
)

Recv = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]



# --------------------------------------------------------------------------
# Interfaces to the outside world
# --------------------------------------------------------------------------


class KeyStateSource(Protocol):
    """Where a verifier reads a peer DID's current key state. Raises :class:`UnknownDid`."""

    async def key_state(self, did: str) -> DidState: ...


class RecheckingKeyStates(KeyStateSource, Protocol):
    """A source that knows a cheaper way to answer "is the state I gave you still current?".

    Optional: for a source without :meth:`recheck`, the drivers simply call
    :meth:`key_state` again. The sources here: a node compares the DID's state
    record bytes in one read transaction (:class:`didnode.service.auth.LedgerKeyStates`);
    a device re-asks its node only when its first read is older than a bound
    (:class:`didnode.auth.peers.ClientKeyStates`), or answers from its cache
    within the cache's own staleness (:class:`didnode.auth.peers.CachedKeyStates`).
    """

    async def recheck(self, did: str, seen: DidState, read_at_ms: int, now_ms: int) -> DidState:
        """The state of ``did`` now, as fresh as this source promises; ``seen`` itself (the same
        object) when it is known to be still current. ``read_at_ms``: when ``seen`` was read."""
        ...


class StapleVerifier(Protocol):
    """Checks a state proof a peer stapled to its challenge (:class:`didnode.auth.peers.StapledStateVerifier`)."""

    def verify(self, did: str, data: bytes, now_ms: int) -> DidState:
        """The state of ``did`` the proof proves; raises an :class:`~didnode.errors.InvalidProof` subclass or :class:`PeerUnknown`."""
        ...

    def verify_until(self, did: str, data: bytes, now_ms: int) -> tuple[DidState, int]:
        """As :meth:`verify`, and until when (ms) the proof stays fresh enough for this verifier."""
        ...


@dataclass(frozen=True, slots=True)
class PeerReading:
    """A peer's key state as a driver read it: at ``read_at_ms``; from a stapled proof, acceptable
    without asking anyone until ``fresh_until_ms`` (-1: read from the party's source)."""

    state: DidState
    read_at_ms: int
    fresh_until_ms: int = -1


class CredentialChecker(Protocol):
    """Verifies one presented credential for one request; returns a one-line description.

    Raises a :class:`CredentialInvalid` subclass when the credential is not
    acceptable (wrong subject, type or issuer, revoked, expired, forged, ...).
    """

    async def check(self, token: str, now_ms: int, subject: str, request: CredentialRequest) -> str: ...


def describe_credential(cred: object) -> str:
    """One line about a verified credential for the handshake's checks: its id and validity end."""
    until = getattr(cred, "valid_until", None)
    cid = getattr(cred, "id", None) or "no id"
    return f"{cid}, valid until {format_time(until)}" if until is not None else str(cid)


class VerifierCredentials:
    """A :class:`CredentialChecker` over a core :class:`Verifier` (on a node: LMDB-backed, never cached)."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    async def check(self, token: str, now_ms: int, subject: str, request: CredentialRequest) -> str:
        cred = self.verifier.verify(token, now_ms, subject, request.issuer, request.type).raise_if_invalid()
        return describe_credential(cred)



class SessionIssuer(Protocol):
    """Issues a short-lived session credential to an initiator that just authenticated (nodes only)."""

    async def refresh(self) -> None:
        """Called before :meth:`issue`: re-check whatever may have changed (e.g. the issuer's key)."""
        ...

    def issue(self, subject: str, session_id: bytes, now_ms: int) -> tuple[str, int]:
        """(vc+jwt token, validUntil ms)."""
        ...



# --------------------------------------------------------------------------
# Shared driver pieces
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wallet:
    """Credentials this party can present about itself, pre-parsed once."""

    claimed: tuple[Claimed, ...] = ()

    @classmethod
    def of(cls, tokens: Sequence[str]) -> "Wallet":
        return cls(tuple(peek(tokens)))

    def for_requests(self, want: Sequence[CredentialRequest]) -> tuple[str, ...]:
        """The tokens that satisfy some request (each once), in wallet order."""
        if not want:
            return ()
        return tuple(c.token for c in self.claimed if any(c.matches(w) for w in want))


@dataclass(slots=True)
class Party:
    """What both drivers share: identity, network, nonces, ledger view, policy, clock, randomness."""

    identity: LocalIdentity
    network: str
    nonces: NonceStore
    keys: KeyStateSource
    policy: Policy = ACCEPT_ANYONE
    credentials: CredentialChecker | None = None
    wallet: Wallet = field(default_factory=Wallet)
    stapled: StapleVerifier | None = None
    clock_ms: Callable[[], int] = wall_ms
    random_bytes: Callable[[int], bytes] = os.urandom
    stats: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.policy.requests() and self.credentials is None:
            raise Internal("a policy that requires credentials needs a credential checker")

    async def peer_state(self, did: str, stapled_proof: bytes, now_ms: int) -> PeerReading:
        """The peer's key state: from its stapled proof when this party trusts such proofs, else from the source."""
        if stapled_proof and self.stapled is not None:
            verify_until = getattr(self.stapled, "verify_until", None)
            if verify_until is None:
                return PeerReading(self.stapled.verify(did, stapled_proof, now_ms), now_ms, now_ms)
            state, until = verify_until(did, stapled_proof, now_ms)
            return PeerReading(state, now_ms, until)
        try:
            return PeerReading(await self.keys.key_state(did), now_ms)
        except UnknownDid:
            raise PeerUnknown(f"the peer {did} does not exist on this ledger", did=did) from None

    async def recheck(self, did: str, seen: PeerReading, now_ms: int) -> DidState:
        """The peer's key state again, after its last message (a key revoked during the handshake
        must not complete it): a stapled proof still fresh enough is its own answer; past that, the
        source is asked; a source's own :meth:`RecheckingKeyStates.recheck` decides how cheaply."""
        if now_ms <= seen.fresh_until_ms:
            return seen.state
        try:
            again = getattr(self.keys, "recheck", None)
            if again is None or seen.fresh_until_ms >= 0:
                return await self.keys.key_state(did)
            return await again(did, seen.state, seen.read_at_ms, now_ms)  # type: ignore[no-any-return]
        except UnknownDid:
            raise PeerUnknown(f"the peer {did} does not exist on this ledger", did=did) from None

    async def judge(self, policy: Policy, peer: DidState, attachments: Attachments, now_ms: int) -> tuple[str, ...]:
        """Verify what the peer presented for ``policy`` and evaluate it; the checks that passed."""
        findings = Findings()
        requests = policy.requests()
        if requests:
            assert self.credentials is not None
            claimed = peek(attachments.credentials)
            for req in requests:
                for c in claimed:
                    if not c.matches(req):
                        continue
                    try:
                        findings.satisfied[req] = await self.credentials.check(c.token, now_ms, peer.did, req)
                        break
                    except CredentialInvalid as err:
                        findings.failed.setdefault(req, err)
        return evaluate(policy, peer, findings).checks

    def maintain(self) -> None:
        """Purge expired nonces now and then, and flush the store (off the loop) when due."""
        now = self.clock_ms()
        if self.nonces.maintenance_due(now) and self.nonces.maintain(now):
            # The flush is an fsync: never on the event loop.
            asyncio.get_running_loop().run_in_executor(None, self.nonces.sync)


class Deadlines:
    """Time limits for the handshakes of one driver, with one loop timer at a time instead of one per handshake.

    ``async with deadlines.limit(seconds):`` behaves like ``asyncio.timeout``:
    when the time is up, the task is cancelled at the await it is blocked in
    and the block raises :class:`TimeoutError` (a cancellation from outside
    stays a cancellation). ``asyncio.timeout`` costs, per handshake, a timer
    handle pushed on the loop's heap and cancelled again, and a cancelled
    handle stays in the heap until its time comes; at 1,500 handshakes/s
    that is measurable (about 10 µs of CPU per handshake and side, py-spy).
    Here a handshake is one entry appended to a FIFO per time limit: every
    handshake of a driver mostly has the same limit, so deadlines leave each
    FIFO in the order they entered it, and one timer armed at the earliest
    pending deadline serves them all. Finished entries are dropped from the
    front as new ones arrive, so a FIFO holds about the handshakes started
    since the oldest one still running. One instance per event loop (like
    the drivers that own it).
    """

    __slots__ = ("_queues", "_timer", "_timer_at", "_loop")

    def __init__(self) -> None:
        self._queues: dict[float, deque[_Deadline]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None

    def limit(self, seconds: float) -> "_Deadline":
        """An async context manager bounding its block to ``seconds``."""
        return _Deadline(self, seconds)

    def _add(self, d: "_Deadline", loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            # First use, or this driver moved to a new loop (the old one is gone): start afresh.
            self._queues.clear()
            self._timer = None
            self._timer_at = float("inf")
            self._loop = loop
        q = self._queues.get(d.seconds)
        if q is None:
            q = self._queues[d.seconds] = deque()
        while q and q[0].task is None:
            q.popleft()  # finished handshakes at the front
        q.append(d)
        if d.when < self._timer_at:
            self._arm(loop, d.when)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire, loop)
        self._timer_at = when

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = loop.time()
        earliest = float("inf")
        for seconds, q in list(self._queues.items()):
            while q and (q[0].task is None or q[0].when <= now):
                d = q.popleft()
                if d.task is not None and not d.evicted:
                    d.expire()
            if q:
                earliest = min(earliest, q[0].when)
            else:
                del self._queues[seconds]
        if earliest != float("inf"):
            self._arm(loop, earliest)


class _Deadline:
    """One handshake's time limit (see :class:`Deadlines`); also how a responder ends a handshake
    whose pending challenge gave its place to a newer one (:meth:`evict`)."""

    __slots__ = ("owner", "seconds", "when", "task", "expired", "evicted", "_cancelling")

    def __init__(self, owner: Deadlines, seconds: float) -> None:
        self.owner = owner
        self.seconds = seconds
        self.when = 0.0
        self.task: asyncio.Task[object] | None = None
        self.expired = False
        self.evicted = False
        self._cancelling = 0

    async def __aenter__(self) -> "_Deadline":
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a handshake time limit must be used inside a task")
        self.task = task
        self._cancelling = task.cancelling()
        self.when = loop.time() + self.seconds
        self.owner._add(self, loop)
        return self

    def expire(self) -> None:
        assert self.task is not None
        self.expired = True
        self.task.cancel()

    def evict(self) -> None:
        """End the block now with :class:`TooManyPending` (as :meth:`expire` ends it with a timeout)."""
        if self.task is not None and not self.expired and not self.evicted:
            self.evicted = True
            self.task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        task, self.task = self.task, None  # finished: the FIFO drops it
        if (self.expired or self.evicted) and task is not None:
            # As asyncio.timeout: our cancellation becomes TimeoutError, unless someone else cancelled too.
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                if self.evicted:
                    raise TooManyPending(
                        "this half-open handshake gave its place to a newer one: every slot was taken and its address held the most"
                    ) from exc
                raise TimeoutError from exc


def _timeout_error(role: str, limit_ms: int) -> HandshakeTimeout:
    return HandshakeTimeout(f"the handshake did not complete within {limit_ms / 1000:g} s ({role} side)", limit_ms=limit_ms)


# --------------------------------------------------------------------------
# Responder
# --------------------------------------------------------------------------


@dataclass(slots=True)
class ResponderSetup:
    """A responder: a :class:`Party`, plus a session issuer on a node and an optional state-proof stapler."""

    party: Party
    sessions: SessionIssuer | None = None
    staple: Callable[[], Awaitable[bytes]] | None = None
    # The Retry to an address that keeps sending hellos without bringing their cookies back
    # (BlindHellos over its threshold) is sent only after this long (at most half the handshake's
    # time limit); its call stays open, so such an address makes at most (its calls open) hellos
    # per hold. An initiator that returns its cookies is answered at once. 0: never held.
    retry_hold_ms: int = 5000


class HandshakeResponder:
    """Answers handshakes (one per call of :meth:`respond`). One per event loop."""

    def __init__(self, setup: ResponderSetup) -> None:
        self.setup = setup
        self.party = setup.party
        self._want = setup.party.policy.requests()[:MAX_WANT]
        self._deadlines = Deadlines()
        self.cookies = CookieJar(setup.party.random_bytes)
        self.blind = BlindHellos()
        # This responder's handshakes with a pending challenge, by challenge nonce: a challenge
        # that gives its place to a newer one (a full table) ends its handshake at once.
        self._open: dict[bytes, _Deadline] = {}

    def _evict(self, nonce: bytes) -> None:
        d = self._open.get(nonce)
        if d is not None:
            d.evict()

    async def respond(self, recv: Recv, send: Send, peer: str) -> Established:
        """Run one handshake as responder over ``recv``/``send`` with the peer at address ``peer``.

        Returns the established session; raises the :mod:`didnode.errors`
        reason of any failure (the caller reports it to the peer). The
        pending challenge is released on every failure. Under load, a hello
        without a valid cookie is answered with a :class:`Retry` (sent, then
        :class:`HandshakeRetry` raised: the caller ends the call).
        """
        p = self.party
        m = Responder(p.identity, p.network, Fresh.draw(p.random_bytes), p.nonces, peer=peer, want=self._want, on_evict=self._evict)
        limit = p.nonces.limits.timeout_ms
        done = False
        deadline = self._deadlines.limit(limit / 1000)
        try:
            async with deadline:
                msg = await recv()
                now = p.clock_ms()
                h = m.check_hello(msg, now)
                retry = m.admit(self.cookies, now)
                if retry is not None:
                    if self.blind.sent(peer, now) and self.setup.retry_hold_ms > 0:
                        p.stats["RETRY_HELD"] += 1
                        await asyncio.sleep(min(self.setup.retry_hold_ms, limit // 2) / 1000)
                    await send(retry)
                    raise HandshakeRetry(f"{p.nonces.pending_count()} handshakes are half-open: send the hello again with the cookie")
                if h.cookie:
                    # Admitted with a cookie: valid under load; unchecked when the load has passed meanwhile,
                    # which can only ever bring a score down to 0 (an initiator's must not grow then).
                    self.blind.returned(peer, now)
                seen = await p.peer_state(h.initiator_did, b"", now)
                proof = await self.setup.staple() if self.setup.staple is not None else b""
                attachments = Attachments(p.wallet.for_requests(h.want), proof) if (h.want or proof) else NO_ATTACHMENTS
                challenge = m.challenge(seen.state, now, attachments)
                self._open[m.fresh.nonce] = deadline
                await send(challenge)
                r = m.check_response(await recv(), p.clock_ms())
                now = p.clock_ms()
                state = await p.recheck(h.initiator_did, seen, now)
                m.recheck(state)
                if p.policy is not ACCEPT_ANYONE:
                    m.checks.extend(await p.judge(p.policy, state, r.attachments, now))
                credential, expires = "", 0
                if h.session_credential and self.setup.sessions is not None:
                    await self.setup.sessions.refresh()
                    credential, expires = self.setup.sessions.issue(h.initiator_did, m.session_id, now)
                    m.checks.append(f"session credential issued, valid until {format_time(expires)}")
                session, est = m.session(credential, expires)
                await send(session)
                done = True
        except TimeoutError:
            p.stats["HANDSHAKE_TIMEOUT"] += 1
            raise _timeout_error("responder", limit) from None
        except DidnodeError as err:
            p.stats[err.reason] += 1
            raise
        finally:
            self._open.pop(m.fresh.nonce, None)
            if not done:
                # Any failure, including cancellation: the pending slot is released.
                m.abandon(p.clock_ms())
            p.maintain()
        p.stats["OK"] += 1
        return est


# --------------------------------------------------------------------------
# Initiator
# --------------------------------------------------------------------------


class HandshakeInitiator:
    """Opens handshakes as :attr:`party`. One per event loop; many handshakes may run concurrently."""

    def __init__(self, party: Party) -> None:
        self.party = party
        self._deadlines = Deadlines()

    async def initiate(
        self,
        recv: Recv,
        send: Send,
        *,
        expect_peer: str = "",
        policy: Policy | None = None,
        session_credential: bool = False,
        timeout_ms: int | None = None,
    ) -> Established:
        """Run one handshake as initiator over ``recv``/``send``.

        ``policy`` (default: the party's) decides which responders are
        accepted; the credentials it requires are asked for in the hello.
        Local failures are sent to the responder as an :class:`Alert` and
        raised; a responder's rejection arrives through ``recv`` (as the
        error the transport rebuilt) and is raised as is.
        """
        p = self.party
        pol = policy if policy is not None else p.policy
        if pol.requests() and p.credentials is None:
            raise Internal("a policy that requires credentials needs a credential checker")
        limit = timeout_ms if timeout_ms is not None else p.nonces.limits.timeout_ms
        m = Initiator(
            p.identity,
            p.network,
            Fresh.draw(p.random_bytes),
            p.nonces,
            want=pol.requests()[:MAX_WANT],
            expect_peer=expect_peer,
            session_credential=session_credential,
        )
        sent_hello = False
        try:
            async with self._deadlines.limit(limit / 1000):
                await send(m.hello(p.clock_ms()))
                sent_hello = True
                msg = await recv()
                while type(msg) is Retry:
                    # The responder is under load and kept nothing: the same hello, with its cookie
                    # (the transport opens a new call for a hello).
                    await send(m.retry(msg, p.clock_ms()))
                    msg = await recv()
                now = p.clock_ms()
                c = m.check_challenge(msg, now)
                seen = await p.peer_state(c.responder_did, c.attachments.state_proof, now)
                m.verify_challenge(seen.state)
                if c.attachments.state_proof and p.stapled is not None:
                    m.checks.append("responder key state taken from its stapled state proof (checkpoint signature and freshness verified)")
                if pol is not ACCEPT_ANYONE:
                    m.checks.extend(await p.judge(pol, seen.state, c.attachments, now))
                await send(m.response(Attachments(p.wallet.for_requests(c.want)) if c.want else NO_ATTACHMENTS))
                m.finish(await recv())
                est = m.recheck(await p.recheck(c.responder_did, seen, p.clock_ms()))
        except TimeoutError:
            err: DidnodeError = _timeout_error("initiator", limit)
            p.stats[err.reason] += 1
            await _alert(send, err, sent_hello)
            raise err from None
        except DidnodeError as e:
            p.stats[e.reason] += 1
            if e.details.get("by") not in ("peer", "responder"):
                await _alert(send, e, sent_hello)
            raise
        finally:
            p.maintain()
        p.stats["OK"] += 1
        return est


async def _alert(send: Send, err: DidnodeError, opened: bool) -> None:
    """Tell the responder why this side gives up (best effort: the stream may be gone)."""
    if not opened:
        return
    try:
        async with asyncio.timeout(1.0):
            await send(Alert(err.reason, err.message[:500]))
    except (DidnodeError, TimeoutError):
        # The stream is gone or stuck: nothing left to tell (send maps transport errors to DidnodeError).
        return


__all__ = [
    "CredentialChecker",
    "Deadlines",
    "HandshakeInitiator",
    "HandshakeResponder",
    "KeyStateSource",
    "Party",
    "PeerReading",
    "RecheckingKeyStates",
    "ResponderSetup",
    "SessionIssuer",
    "StapleVerifier",
    "VerifierCredentials",
    "Wallet",
    "describe_credential",
]
