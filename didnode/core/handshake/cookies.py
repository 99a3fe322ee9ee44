"""Stateless cookies: how a responder under load answers a hello without keeping anything.

As WireGuard's cookie reply and QUIC's Retry (docs/authentication.md, "Floods"): while a responder
has ``cookie_threshold`` or more half-open handshakes, a hello without a valid cookie, from an
address that holds at least its share of them (:meth:`NonceStore.cookie_required`), is answered
with a :class:`~didnode.core.handshake.messages.Retry` carrying a cookie, and nothing about it is
kept (no key-state read, no X25519, no write, no pending slot); the initiator sends the *same* hello
again with the cookie, and only then may the responder open a challenge for it. A cookie costs the
responder one HMAC to make and one to check.

Format (24 bytes, opaque to the initiator)::

    cookie = t || HMAC-SHA256(K_e, "didnode/auth/v1/cookie\\0" || u32 len(peer) || peer || H1 || t)[:16]

``t``: the responder's clock (ms, u64 big-endian) when it made the cookie. ``peer``: the peer's
address as the responder bounds it (host without port; an IPv6 /64). ``H1``: the hello's transcript
hash, which covers every hello field but the cookie itself, so the cookie fits exactly one hello
(its nonce, ephemeral key, DID, time, ...). ``K_e``: 32 random bytes for the period
``e = t // rotate_ms`` (2 min), drawn when the period's first cookie is made; the current and the
previous period's are kept, older ones forgotten, so a cookie is only ever checked with the secret
that made it. A cookie is valid from ``t`` to ``t + lifetime_ms`` (10 s: the initiator resends at
once), from the same address, for the same hello; its hello nonce can open one challenge only (the
nonce store refuses a second). Forging one means forging a 128-bit HMAC tag under a secret that never
leaves the responder's memory.

Pure: the randomness and the time are passed in.
"""

from __future__ import annotations

import struct
from typing import Callable

from didnode.core.handshake.crypto import hmac_sha256, mac_equal

COOKIE_CONTEXT = b"didnode/auth/v1/cookie\x00"
TAG_BYTES = 16
COOKIE_BYTES = 8 + TAG_BYTES
ROTATE_MS = 120_000
LIFETIME_MS = 10_000
SECRET_BYTES = 32

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class CookieJar:
    """Makes and checks one responder's cookies (see the module docstring). One per responder; not thread-safe."""

    __slots__ = ("random_bytes", "rotate_ms", "lifetime_ms", "_secrets")

    def __init__(self, random_bytes: Callable[[int], bytes], rotate_ms: int = ROTATE_MS, lifetime_ms: int = LIFETIME_MS) -> None:
        """``random_bytes``: where the secrets come from (``os.urandom`` in production).
        Precondition: ``0 < lifetime_ms <= rotate_ms`` (a valid cookie's secret is always still kept)."""
        if not 0 < lifetime_ms <= rotate_ms:
            raise ValueError("a cookie's lifetime must be positive and at most the rotation period")
        self.random_bytes = random_bytes
        self.rotate_ms = rotate_ms
        self.lifetime_ms = lifetime_ms
        self._secrets: dict[int, bytes] = {}

    def _tag(self, secret: bytes, peer: str, h1: bytes, t: bytes) -> bytes:
        p = peer.encode("utf-8")
        return hmac_sha256(secret, COOKIE_CONTEXT + _U32.pack(len(p)) + p + h1 + t)[:TAG_BYTES]

    def make(self, peer: str, h1: bytes, now_ms: int) -> bytes:
        """A cookie for the hello with transcript hash ``h1`` from ``peer``, made at ``now_ms``."""
        epoch = now_ms // self.rotate_ms
        secret = self._secrets.get(epoch)
        if secret is None:
            secret = self._secrets[epoch] = self.random_bytes(SECRET_BYTES)
            for old in [e for e in self._secrets if e < epoch - 1]:
                del self._secrets[old]
        t = _U64.pack(now_ms)
        return t + self._tag(secret, peer, h1, t)

    def check(self, cookie: bytes, peer: str, h1: bytes, now_ms: int) -> bool:
        """Whether ``cookie`` was made by this jar for this ``peer`` and hello, at most ``lifetime_ms`` ago."""
        if len(cookie) != COOKIE_BYTES:
            return False
        t = cookie[:8]
        made = _U64.unpack(t)[0]
        if not 0 <= now_ms - made <= self.lifetime_ms:
            return False
        secret = self._secrets.get(made // self.rotate_ms)
        if secret is None:
            return False
        return mac_equal(self._tag(secret, peer, h1, t), cookie[8:])


class BlindHellos:
    """Per address: how many cookies it was sent and did not bring back lately (decayed, half-life ``half_life_ms``).

    An initiator sends its hello again with the cookie at once, so an address of initiators
    scores about 0; an address that keeps sending hellos without ever returning a cookie (a blind
    flood: it cannot, or does not care to) scores up to about its rate of hellos times the half-life.
    A responder holds the Retry of an address over :attr:`threshold` (see
    :class:`didnode.auth.driver.ResponderSetup`). At most ``max_addresses`` are tracked; when full the
    least recently seen give their place (which only ever gives an address a fresh score).
    Pure: the time is passed in.
    """

    __slots__ = ("threshold", "half_life_ms", "max_addresses", "_scores")

    def __init__(self, threshold: float = 16, half_life_ms: int = LIFETIME_MS, max_addresses: int = 65_536) -> None:
        if threshold <= 0 or half_life_ms <= 0 or max_addresses < 1:
            raise ValueError("threshold, half_life_ms and max_addresses must be positive")
        self.threshold = threshold
        self.half_life_ms = half_life_ms
        self.max_addresses = max_addresses
        self._scores: dict[str, tuple[float, int]] = {}

    def __len__(self) -> int:
        return len(self._scores)

    def score(self, peer: str, now_ms: int) -> float:
        got = self._scores.get(peer)
        if got is None:
            return 0.0
        score, at = got
        return score * 0.5 ** (max(0, now_ms - at) / self.half_life_ms)

    def _set(self, peer: str, score: float, now_ms: int) -> None:
        self._scores.pop(peer, None)  # re-inserted last: the dict's order is least recently seen first
        if score < 0.5:
            return
        if len(self._scores) >= self.max_addresses:
            for old in list(self._scores)[: max(1, self.max_addresses // 8)]:
                del self._scores[old]
        self._scores[peer] = (score, now_ms)

    def sent(self, peer: str, now_ms: int) -> bool:
        """A cookie was sent to ``peer``: whether ``peer`` is now over the threshold (its Retry is to be held)."""
        score = self.score(peer, now_ms) + 1
        self._set(peer, score, now_ms)
        return score > self.threshold

    def returned(self, peer: str, now_ms: int) -> None:
        """``peer`` came back with a valid cookie."""
        self._set(peer, self.score(peer, now_ms) - 1, now_ms)
