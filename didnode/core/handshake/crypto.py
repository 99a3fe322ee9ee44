"""Primitives of the handshake: X25519, HKDF-SHA256 (RFC 5869), HMAC-SHA256, Ed25519.

Pure functions over bytes; secrets come in from the caller (no randomness
here). Everything asymmetric is libsodium (PyNaCl), the library the ledger
uses; measured here it computes an X25519 key pair plus shared secret
faster than ``cryptography``'s OpenSSL binding (45 vs 55 µs), mostly
because the latter re-derives the public key when a private key is loaded.
"""

from __future__ import annotations

import hashlib
import hmac

try:  # OpenSSL's one-shot HMAC without hmac.digest's Python wrapper (it is what that wrapper calls)
    from _hashlib import hmac_digest as _hmac_digest
except ImportError:  # pragma: no cover - CPython without OpenSSL
    _hmac_digest = None

from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base, crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError
from nacl.exceptions import RuntimeError as NaclRuntimeError

from didnode.errors import HandshakeBadSignature, PeerInvalidKey

_ZERO32 = bytes(32)


class Ephemeral:
    """One ephemeral X25519 key pair, used for exactly one handshake.

    Precondition: ``secret`` is 32 bytes from a cryptographic RNG, never reused.
    """

    __slots__ = ("_public", "_secret")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("an X25519 secret has 32 bytes")
        self._secret = secret
        self._public = b""

    @property
    def public(self) -> bytes:
        """The public key, computed when first asked for: a responder that refuses a hello (or answers
        it with a Retry) before its challenge never spends the scalar multiplication."""
        if not self._public:
            self._public = crypto_scalarmult_base(self._secret)
        return self._public

    def shared(self, peer_public: bytes) -> bytes:
        """The X25519 shared secret with ``peer_public``.

        Raises :class:`PeerInvalidKey` for a low-order peer key (the result
        would be all zeros and known to anyone: RFC 7748 section 6.1).
        """
        return x25519(self._secret, peer_public)


def x25519(secret: bytes, peer_public: bytes) -> bytes:
    """X25519(secret, peer_public); raises :class:`PeerInvalidKey` when the result is all zeros."""
    try:
        out = crypto_scalarmult(secret, peer_public)
    except NaclRuntimeError:
        # libsodium refuses an all-zero result itself (crypto_scalarmult returns -1).
        raise PeerInvalidKey("the peer's ephemeral X25519 key is a low-order point") from None
    if hmac.compare_digest(out, _ZERO32):
        raise PeerInvalidKey("the peer's ephemeral X25519 key is a low-order point")
    return out


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    # OpenSSL's one-shot HMAC: several times faster than hmac.new(...).digest(); a
    # handshake computes nine per side, so even hmac.digest's wrapper shows.
    if _hmac_digest is not None:
        return _hmac_digest(key, data, "sha256")  # type: ignore[no-any-return]
    return hmac.digest(key, data, "sha256")


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 HKDF-Extract with SHA-256 (an empty salt means 32 zero bytes)."""
    return hmac_sha256(salt or _ZERO32, ikm)


def mac_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two MACs."""
    return hmac.compare_digest(a, b)


class SigningIdentityKey:
    """An Ed25519 key in libsodium's 64-byte form (seed || public), prepared once."""

    __slots__ = ("public", "_secret")

    def __init__(self, seed: bytes) -> None:
        self.public, self._secret = crypto_sign_seed_keypair(seed)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached Ed25519 signature of ``message``."""
        return crypto_sign(message, self._secret)[:64]


def verify_signature(public_key: bytes, signature: bytes, message: bytes, kid: str) -> None:
    """Strict Ed25519 verification; raises :class:`HandshakeBadSignature`."""
    if len(signature) != 64:
        raise HandshakeBadSignature(f"the signature by {kid} has {len(signature)} bytes; Ed25519 signatures have 64", kid=kid)
    try:
        crypto_sign_open(signature + message, public_key)
    except BadSignatureError:
        raise HandshakeBadSignature(f"the transcript signature by {kid} does not verify", kid=kid) from None
