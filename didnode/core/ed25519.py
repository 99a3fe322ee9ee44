"""Ed25519 verification as every didnode protocol does it (libsodium, strict)."""

from __future__ import annotations

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from didnode.errors import InvalidSignature


def verify_raw(public_key: bytes, signature: bytes, message: bytes, kid: str) -> None:
    """Ed25519 verify (libsodium, strict: rejects non-canonical and small-order encodings).

    Raises :class:`InvalidSignature` naming ``kid``.
    """
    if len(signature) != 64:
        raise InvalidSignature(f"signature by {kid} has {len(signature)} bytes; Ed25519 signatures have 64", kid=kid)
    try:
        crypto_sign_open(signature + message, public_key)
    except BadSignatureError:
        raise InvalidSignature(f"signature by {kid} does not verify", kid=kid) from None
