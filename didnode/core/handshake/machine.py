"""The two state machines of the handshake: :class:`Initiator` and :class:`Responder`.

Pure: randomness (:class:`Fresh`), time (``now_ms``), the peer's key state
and the nonce store are all passed in; nothing here blocks, reads a clock or
touches the network. A driver (``didnode.service.auth``) moves messages
between the machines and a stream, looks peer key states up, and applies
the verifier's policy between "the peer proved who it is" and "the session
is granted".

Initiator::

    hello(now) -> Hello                                  # msg 1
    retry(msg, now) -> Hello                             # the same hello with the responder's cookie (under load)
    check_challenge(msg, now) -> Challenge               # schema, version, network, reflection, echoes, replay
    verify_challenge(peer_state) -> KeyRecord            # key on the ledger, key confirmation, signature
    response(attachments) -> Response                    # msg 3
    finish(msg) -> Session                               # msg 4: MAC and session id
    recheck(peer_state) -> Established                   # the responder's key, read again: still current

Responder::

    check_hello(msg, now) -> Hello                       # schema, version, network, reflection, clock window
    admit(cookies, now) -> Retry | None                  # under load: a valid cookie, or a stateless Retry
    challenge(peer_state, now, attachments) -> Challenge # key on the ledger, nonce claim + pending, msg 2
    check_response(msg, now) -> Response                 # deadline, echoes, key confirmation, signature
    recheck(peer_state)                                  # the initiator's key, read again: still current
    session(credential, expires_ms) -> (Session, Established)   # msg 4
    abandon(now)                                          # on any failure after challenge()

``recheck`` is a step of its own on both sides: a key revoked while the
handshake ran must not complete it, so each side reads the peer's key state
again after the peer's last message (the driver decides how cheaply: see
:mod:`didnode.auth.driver`) and nothing is granted before that passed (a
node's session credential needs :attr:`Responder.session_id`, known only then).

Every step checks that it is the expected one (:class:`HandshakeOutOfOrder`
otherwise) and that the message is of the expected kind; an :class:`Alert`
from the peer raises the error it names. Each failure raises its own
:mod:`didnode.errors` class; see docs/authentication.md for the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from nacl.signing import SigningKey

from didnode.core.did import key_id_of
from didnode.core.handshake import transcript as tr
from didnode.core.handshake.cookies import CookieJar
from didnode.core.handshake.crypto import Ephemeral, SigningIdentityKey, mac_equal, verify_signature
from didnode.core.handshake.keycheck import authentication_key, raw_key
from didnode.core.handshake.messages import (
    NO_ATTACHMENTS,
    NONCE_BYTES,
    PROTOCOL_VERSION,
    Alert,
    Attachments,
    Challenge,
    CredentialRequest,
    Hello,
    Message,
    Response,
    Retry,
    Session,
    kind,
    validate,
)
from didnode.core.handshake.nonces import NonceStore, Origin
from didnode.core.keystate import DidState, KeyRecord
from didnode.errors import (
    DidnodeError,
    HandshakeOutOfOrder,
    HandshakeReflection,
    HandshakeReplay,
    HandshakeStale,
    HandshakeTimeout,
    IdentityMisbinding,
    KeyConfirmationFailed,
    PeerKeyRotated,
    PeerWrongNetwork,
    TooManyPending,
    UnsupportedVersion,
    error_for_reason,
)

INITIATOR = "initiator"
RESPONDER = "responder"
# How many Retry messages an initiator follows in one handshake: one is the protocol (the
# responder is under load); a second may follow a cookie that expired on a slow path; a third
# means the cookie never fits (the address changes between calls, or someone meddles).
MAX_RETRIES = 2
M = TypeVar("M", Hello, Challenge, Response, Session, Retry)


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """Who this party is: its DID and one current authentication key (id and secret).

    Precondition: ``key_id`` is a current authentication key of ``did`` on
    the ledger and ``key`` its private half (the peer checks the former).
    """

    did: str
    key_id: str
    key: SigningIdentityKey

    @classmethod
    def from_seed(cls, did: str, key_id: str, seed: bytes) -> "LocalIdentity":
        """``key_id`` in any form a user copies (``key-1``, ``#key-1``, ``did#key-1``, the ``-jwk`` form):
        see :func:`didnode.core.did.key_id_of`, which raises for another DID's key or a malformed one."""
        return cls(did, key_id_of(did, key_id), SigningIdentityKey(seed))

    @classmethod
    def from_signing_key(cls, did: str, key_id: str, key: SigningKey) -> "LocalIdentity":
        """As :meth:`from_seed`, from a pynacl signing key."""
        return cls(did, key_id_of(did, key_id), SigningIdentityKey(bytes(key)))

    @property
    def kid(self) -> str:
        return f"{self.did}#{self.key_id}"


@dataclass(frozen=True, slots=True)
class Fresh:
    """The randomness of one handshake: a nonce and an ephemeral X25519 secret (32 bytes each)."""

    nonce: bytes
    ephemeral_secret: bytes

    @classmethod
    def draw(cls, random_bytes: Callable[[int], bytes]) -> "Fresh":
        """Draw both from ``random_bytes`` (``os.urandom`` in production), in one call.

        One draw of 64 bytes instead of two of 32: each ``os.urandom`` is a
        ``getrandom`` system call, and the halves are as independent as two draws.
        """
        raw = random_bytes(NONCE_BYTES + 32)
        return cls(raw[:NONCE_BYTES], raw[NONCE_BYTES:])


@dataclass(frozen=True, slots=True)
class Established:
    """A completed handshake, as one side sees it.

    ``session_key`` is secret (32 bytes, both sides hold the same);
    ``session_id`` is public. ``checks`` are human-readable lines, one per
    check that passed, in order. ``credential``/``expires_ms``: a session
    credential the responder (a node) issued to the initiator, or empty.
    """

    role: str
    peer_did: str
    peer_key_id: str
    peer_state: DidState
    session_id: bytes
    session_key: bytes
    checks: tuple[str, ...]
    credential: str = ""
    expires_ms: int = 0

    def __repr__(self) -> str:
        return f"Established(role={self.role}, peer={self.peer_did}#{self.peer_key_id}, session={self.session_id.hex()})"


def peer_error(alert: Alert) -> DidnodeError:
    """The error a peer's alert names (rebuilt from its reason, like a gRPC status)."""
    err = error_for_reason(alert.reason or "AUTHENTICATION_FAILED", f"the peer gave up: {alert.message or alert.reason}")
    err.details["by"] = "peer"
    return err


class _Machine:
    """What both roles share: the expected step, the received-message gate, the transcript state."""

    role = ""

    def __init__(self, me: LocalIdentity, network: str, fresh: Fresh, nonces: NonceStore) -> None:
        self.me = me
        self.network = network
        self.fresh = fresh
        self.nonces = nonces
        self.eph = Ephemeral(fresh.ephemeral_secret)
        self.checks: list[str] = []
        self.step = "start"
        self._h1 = b""
        self._th2 = b""
        self._th3 = b""
        self._th4 = b""
        self._shared = b""
        self._keys: tr.ConfirmationKeys | None = None
        self._peer_key: KeyRecord | None = None
        self._peer_state: DidState | None = None

    def _at(self, step: str, action: str) -> None:
        if self.step != step:
            raise HandshakeOutOfOrder(f"the {self.role} cannot {action} now (it is at step {self.step!r})", step=self.step)

    def _receive(self, msg: Message, cls: type[M], step: str) -> M:
        if isinstance(msg, Alert):
            self.step = "failed"
            raise peer_error(msg)
        if self.step != step or not isinstance(msg, cls):
            expected = {"start": "hello", "challenge": "challenge", "response": "response", "session": "session"}.get(self.step, "nothing more")
            raise HandshakeOutOfOrder(
                f"the {self.role} received a {kind(msg)} while expecting {expected}", got=type(msg).__name__, step=self.step
            )
        validate(msg)
        return msg

    def _version_and_network(self, version: int, network: str) -> None:
        if version != PROTOCOL_VERSION:
            raise UnsupportedVersion(f"the peer speaks handshake version {version}; this side speaks {PROTOCOL_VERSION}", version=version)
        if network != self.network:
            raise PeerWrongNetwork(f"the peer is on network {network!r}; this side is on {self.network!r}", network=network)
        self.checks.append(f"network {network}, protocol version {version}")

    def _echo(self, got: bytes, want: bytes, origin: Origin, what: str, now_ms: int) -> None:
        """An echoed nonce must be this handshake's; an old one of ours is a replay, any other a misbinding."""
        if got == want:
            return
        if self.nonces.origin(got, now_ms) is origin:
            raise HandshakeReplay(f"the {what} echoed is from an earlier handshake: a replayed message")
        raise IdentityMisbinding(f"the {what} echoed is not this handshake's: the message was made for another session")

    def _check_key(self, state: DidState, did: str, key_id: str) -> KeyRecord:
        key = authentication_key(state, did, key_id)
        self._peer_key = key
        self._peer_state = state
        self.checks.append(f"{did}#{key_id} is a current authentication key on the ledger (DID active, seq {state.seq})")
        return key

    def _recheck(self, state: DidState) -> None:
        """The peer's key state read again after its last message: the key must still authenticate."""
        self._at("recheck", "re-check the peer's key")
        key, seen = self._peer_key, self._peer_state
        assert key is not None and seen is not None
        if state is not seen:
            again = authentication_key(state, seen.did, key.id)
            if again.multibase != key.multibase:  # a key id names one key forever; never expected
                raise PeerKeyRotated(f"{seen.did}#{key.id} is another key now", kid=f"{seen.did}#{key.id}")
            self._peer_key, self._peer_state = again, state
        self.checks.append(f"{seen.did}#{key.id} still a current authentication key at the end of the handshake (seq {state.seq})")

    def _confirm(self, key: bytes, th: bytes, got: bytes, who: str) -> None:
        if not mac_equal(tr.mac(key, th), got):
            raise KeyConfirmationFailed(f"the {who}'s key confirmation MAC does not verify: it does not hold this handshake's X25519 secret")

    def established(self, peer_did: str, credential: str = "", expires_ms: int = 0) -> Established:
        assert self._peer_key is not None and self._peer_state is not None
        return Established(
            self.role,
            peer_did,
            self._peer_key.id,
            self._peer_state,
            tr.session_id(self._th4),
            tr.session_key(self._shared, self._th4),
            tuple(self.checks),
            credential,
            expires_ms,
        )


class Initiator(_Machine):
    """The side that opens the stream and sends the hello.

    ``want``: credentials the responder must present (checked by the
    driver's policy). ``expect_peer``: the responder DID this side means to
    reach ("" accepts whoever proves an identity; the policy may restrict).
    ``session_credential``: ask a node responder for a session credential.
    """

    role = INITIATOR

    def __init__(
        self,
        me: LocalIdentity,
        network: str,
        fresh: Fresh,
        nonces: NonceStore,
        *,
        want: Sequence[CredentialRequest] = (),
        expect_peer: str = "",
        session_credential: bool = False,
    ) -> None:
        super().__init__(me, network, fresh, nonces)
        self.want = tuple(want)
        self.expect_peer = expect_peer
        self.session_credential = session_credential
        self._hello: Hello | None = None
        self._challenge: Challenge | None = None
        self._response: Response | None = None
        self._session: Session | None = None
        self._retries = 0

    def hello(self, now_ms: int) -> Hello:
        """Message 1. Records the own nonce as used (so a reflection or replay of it is recognized)."""
        self._at("start", "send a hello")
        self.nonces.claim(self.fresh.nonce, Origin.OWN, now_ms)
        h = Hello(
            PROTOCOL_VERSION,
            self.network,
            self.me.did,
            self.me.key_id,
            self.fresh.nonce,
            self.eph.public,
            now_ms,
            self.want,
            self.expect_peer,
            self.session_credential,
        )
        self._hello = h
        self._h1 = tr.hello_hash(h)
        self.step = "challenge"
        return h

    def retry(self, msg: Message, now_ms: int) -> Hello:
        """The responder is under load and kept nothing: the same hello again, with its cookie.

        The hello is unchanged but for the cookie (the cookie is made over H1, which leaves it
        out), so the transcript is the one the first hello began. Raises :class:`TooManyPending`
        after :data:`MAX_RETRIES` retries.
        """
        r = self._receive(msg, Retry, "challenge")
        h = self._hello
        assert h is not None
        self._retries += 1
        if self._retries > MAX_RETRIES:
            raise TooManyPending(f"the responder asked for a cookie {self._retries} times; it does not accept the ones it gave")
        h = self._hello = Hello(
            h.version, h.network, h.initiator_did, h.key_id, h.nonce, h.ephemeral_key, h.time_ms, h.want, h.responder_did, h.session_credential, r.cookie
        )
        return h

    def check_challenge(self, msg: Message, now_ms: int) -> Challenge:
        """Message 2, before any key state: schema, version, network, reflection, echoes, replay.

        Returns the challenge; the caller then looks up ``responder_did``'s
        key state and calls :meth:`verify_challenge`.
        """
        c = self._receive(msg, Challenge, "challenge")
        h = self._hello
        assert h is not None
        self._version_and_network(c.version, c.network)
        if c.responder_did == self.me.did or c.ephemeral_key == self.eph.public or c.nonce == self.fresh.nonce:
            raise HandshakeReflection("the challenge carries this initiator's own DID, ephemeral key or nonce: a reflected message")
        self._echo(c.initiator_nonce, h.nonce, Origin.OWN, "hello nonce", now_ms)
        if c.initiator_did != self.me.did:
            raise IdentityMisbinding(f"the challenge answers a hello of {c.initiator_did}, not of {self.me.did}")
        if self.expect_peer and c.responder_did != self.expect_peer:
            raise IdentityMisbinding(f"the responder proves to be {c.responder_did}, not the expected {self.expect_peer}")
        self.nonces.claim(c.nonce, Origin.PEER, now_ms)
        self.checks.append("nonces fresh: the challenge echoes this hello and its nonce was never used before")
        self._challenge = c
        self.step = "verify"
        return c

    def verify_challenge(self, peer_state: DidState) -> KeyRecord:
        """Message 2 against the responder's key state: authentication key, key confirmation, signature."""
        self._at("verify", "verify a challenge")
        c = self._challenge
        assert c is not None
        key = self._check_key(peer_state, c.responder_did, c.key_id)
        self._shared = self.eph.shared(c.ephemeral_key)
        self._keys = tr.confirmation_keys(self._shared, self.fresh.nonce, c.nonce)
        self._th2 = tr.challenge_hash(self._h1, c)
        self._confirm(self._keys.responder, self._th2, c.mac, "responder")
        verify_signature(raw_key(key), c.signature, tr.signing_bytes(tr.RESPONDER, self._th2), f"{c.responder_did}#{c.key_id}")
        self.checks.append(f"transcript signed by {c.responder_did}#{c.key_id} as responder; key confirmation MAC verified")
        self.step = "verified"
        return key

    def response(self, attachments: Attachments = NO_ATTACHMENTS) -> Response:
        """Message 3: the initiator's transcript signature and key confirmation."""
        self._at("verified", "send a response")
        c = self._challenge
        assert c is not None and self._keys is not None
        r = Response(self.me.did, c.responder_did, self.fresh.nonce, c.nonce, attachments, b"", b"")
        self._th3 = th3 = tr.response_hash(self._th2, c, r)
        r = Response(
            r.initiator_did,
            r.responder_did,
            r.initiator_nonce,
            r.responder_nonce,
            attachments,
            self.me.key.sign(tr.signing_bytes(tr.INITIATOR, th3)),
            tr.mac(self._keys.initiator, th3),
        )
        self._th4 = tr.final_hash(self._th3, r)
        self._response = r
        self.step = "session"
        return r

    def finish(self, msg: Message) -> Session:
        """Message 4: the responder's final key confirmation and the session id. The session is
        established once :meth:`recheck` found the responder's key still current."""
        s = self._receive(msg, Session, "session")
        assert self._keys is not None and self._challenge is not None
        if not mac_equal(tr.session_mac(self._keys.session, self._th4, s), s.mac):
            raise KeyConfirmationFailed("the session message's MAC does not verify under this handshake's session confirmation key")
        if s.session_id != tr.session_id(self._th4):
            raise IdentityMisbinding("the session id is not the one this transcript derives")
        self.checks.append(f"session {s.session_id.hex()} confirmed by the responder")
        self._session = s
        self.step = "recheck"
        return s

    def recheck(self, peer_state: DidState) -> Established:
        """The responder's key state, read again after the session message: its key must still
        authenticate (it may have been revoked since the challenge). Then the session is established."""
        self._recheck(peer_state)
        s, c = self._session, self._challenge
        assert s is not None and c is not None
        self.step = "done"
        return self.established(c.responder_did, s.credential, s.expires_ms)


class Responder(_Machine):
    """The side that serves the stream: answers a hello with a challenge.

    ``peer``: the peer's network address without port (the bound on pending
    challenges is per address). ``want``: credentials the initiator must
    present (from the responder's policy).
    """

    role = RESPONDER

    def __init__(
        self,
        me: LocalIdentity,
        network: str,
        fresh: Fresh,
        nonces: NonceStore,
        *,
        peer: str = "",
        want: Sequence[CredentialRequest] = (),
        on_evict: Callable[[bytes], None] | None = None,
    ) -> None:
        """``on_evict(challenge_nonce)``: told when this responder's challenge takes the place of
        another pending one (a full table; see :meth:`NonceStore.open_challenge`)."""
        super().__init__(me, network, fresh, nonces)
        self.peer = peer
        self.want = tuple(want)
        self.on_evict = on_evict
        self._hello: Hello | None = None
        self._challenge: Challenge | None = None
        self._response: Response | None = None
        self._opened = False
        self._deadline = 0

    def check_hello(self, msg: Message, now_ms: int) -> Hello:
        """Message 1, before any key state or storage: schema, version, network, reflection, clock window."""
        h = self._receive(msg, Hello, "start")
        self._version_and_network(h.version, h.network)
        # (This responder's own ephemeral key is compared in challenge(), where it is first computed:
        # fresh for this handshake, it cannot have been seen by anyone before the challenge.)
        if h.initiator_did == self.me.did or h.nonce == self.fresh.nonce:
            raise HandshakeReflection(f"the hello comes from this responder's own DID {self.me.did}: a reflected message")
        if h.responder_did and h.responder_did != self.me.did:
            raise IdentityMisbinding(f"the hello is meant for {h.responder_did}, not for {self.me.did}")
        skew = self.nonces.limits.max_skew_ms
        if abs(now_ms - h.time_ms) > skew:
            raise HandshakeStale(
                f"the hello is dated {(now_ms - h.time_ms) / 1000:+.1f} s from this responder's clock; at most {skew // 1000} s are accepted"
            )
        self._hello = h
        self._h1 = tr.hello_hash(h)
        self.step = "lookup"
        return h

    def admit(self, cookies: CookieJar, now_ms: int) -> Retry | None:
        """Whether this hello may open a challenge: always while the responder is not under load
        or its address holds less than its share of the load; otherwise only with a valid cookie. Otherwise the :class:`Retry` to send instead: the
        handshake ends there, and nothing about it was read, computed or kept but one HMAC."""
        self._at("lookup", "admit a hello")
        if not self.nonces.cookie_required(self.peer):
            return None
        h = self._hello
        assert h is not None
        if h.cookie and cookies.check(h.cookie, self.peer, self._h1, now_ms):
            self.checks.append("cookie valid: the hello came back from its address with the cookie this responder sent there")
            return None
        self.step = "retried"
        return Retry(cookies.make(self.peer, self._h1, now_ms))

    def challenge(self, peer_state: DidState, now_ms: int, attachments: Attachments = NO_ATTACHMENTS) -> Challenge:
        """Message 2. Checks the initiator's key first, so a hello from a revoked or unknown key
        costs no X25519 and no storage; then claims the hello nonce and opens the pending challenge."""
        self._at("lookup", "send a challenge")
        h = self._hello
        assert h is not None
        self._check_key(peer_state, h.initiator_did, h.key_id)
        if h.ephemeral_key == self.eph.public:
            raise HandshakeReflection("the hello carries this responder's own ephemeral key: a reflected message")
        self._shared = self.eph.shared(h.ephemeral_key)
        self._deadline = self.nonces.open_challenge(h.nonce, self.fresh.nonce, self.peer, now_ms, h.time_ms, self.on_evict)
        self._opened = True
        self.checks.append("hello nonce fresh: never used before (recorded until it can no longer be replayed)")
        self._keys = tr.confirmation_keys(self._shared, h.nonce, self.fresh.nonce)
        c = Challenge(
            PROTOCOL_VERSION,
            self.network,
            self.me.did,
            self.me.key_id,
            h.initiator_did,
            h.nonce,
            self.fresh.nonce,
            self.eph.public,
            self.want,
            attachments,
            b"",
            b"",
        )
        self._th2 = th2 = tr.challenge_hash(self._h1, c)
        c = Challenge(
            c.version,
            c.network,
            c.responder_did,
            c.key_id,
            c.initiator_did,
            c.initiator_nonce,
            c.nonce,
            c.ephemeral_key,
            c.want,
            attachments,
            self.me.key.sign(tr.signing_bytes(tr.RESPONDER, th2)),
            tr.mac(self._keys.responder, th2),
        )
        self._challenge = c
        self.step = "response"
        return c

    def check_response(self, msg: Message, now_ms: int) -> Response:
        """Message 3: deadline, echoes, key confirmation, the initiator's signature; closes the challenge.
        Then :meth:`recheck`."""
        r = self._receive(msg, Response, "response")
        h, c, key = self._hello, self._challenge, self._peer_key
        assert h is not None and c is not None and key is not None and self._keys is not None
        if now_ms > self._deadline:
            raise HandshakeTimeout(f"the response came {now_ms - self._deadline} ms after the challenge's deadline")
        self._echo(r.responder_nonce, self.fresh.nonce, Origin.OWN, "challenge nonce", now_ms)
        self._echo(r.initiator_nonce, h.nonce, Origin.PEER, "hello nonce", now_ms)
        if r.initiator_did != h.initiator_did:
            raise IdentityMisbinding(f"the response is signed as {r.initiator_did}, but the hello came from {h.initiator_did}")
        if r.responder_did != self.me.did:
            raise IdentityMisbinding(f"the response is meant for {r.responder_did}, not for {self.me.did}")
        self._th3 = tr.response_hash(self._th2, c, r)
        self._confirm(self._keys.initiator, self._th3, r.mac, "initiator")
        kid = f"{h.initiator_did}#{h.key_id}"
        verify_signature(raw_key(key), r.signature, tr.signing_bytes(tr.INITIATOR, self._th3), kid)
        self.nonces.close_challenge(self.fresh.nonce, now_ms)
        self._opened = False
        self.checks.append(f"transcript signed by {kid} as initiator; key confirmation MAC verified")
        self._th4 = tr.final_hash(self._th3, r)
        self._response = r
        self.step = "recheck"
        return r

    def recheck(self, peer_state: DidState) -> None:
        """The initiator's key state, read again after its response: its key must still authenticate
        (it may have been revoked since the hello). Only then may the session be granted."""
        self._recheck(peer_state)
        self.step = "verified"

    @property
    def session_id(self) -> bytes:
        """The session id (known once the response verified)."""
        self._at("verified", "name the session")
        return tr.session_id(self._th4)

    def session(self, credential: str = "", expires_ms: int = 0) -> tuple[Session, Established]:
        """Message 4 and the established session (with the credential issued to the initiator, if any)."""
        self._at("verified", "grant a session")
        assert self._keys is not None and self._hello is not None and self._response is not None
        s = Session(tr.session_id(self._th4), credential, expires_ms, b"")
        s = Session(s.session_id, credential, expires_ms, tr.session_mac(self._keys.session, self._th4, s))
        self.step = "done"
        return s, self.established(self._hello.initiator_did, credential, expires_ms)

    def abandon(self, now_ms: int) -> None:
        """Release the pending challenge after any failure (idempotent; the nonce stays used)."""
        if self._opened:
            self._opened = False
            self.nonces.abandon_challenge(self.fresh.nonce, now_ms)
        if self.step not in ("done",):
            self.step = "failed"
