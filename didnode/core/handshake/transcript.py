"""Transcript hashes, signing bytes and the key schedule of the handshake.

Every hash is SHA-256 over a fixed context string (one per stage) and the
fields in a fixed order, each variable-length field prefixed by its length
(u32 big-endian), so no two different messages encode to the same bytes::

    H1  = SHA256("didnode/auth/v1/hello\\0"     || hello fields)
    TH2 = SHA256("didnode/auth/v1/challenge\\0" || H1 || challenge fields but signature and mac)
    TH3 = SHA256("didnode/auth/v1/response\\0"  || TH2 || sig_r || mac_r || response fields but signature and mac)
    TH4 = SHA256("didnode/auth/v1/final\\0"     || TH3 || sig_i || mac_i)

Signatures are Ed25519 over ``"didnode/auth/v1/signature\\0" || role || "\\0" || TH``
with role ``responder`` (over TH2) or ``initiator`` (over TH3): a context no
other didnode signature uses (operations sign ``didnode/operation/v1\\0 ...``,
checkpoints and session requests their own), and a role label so that one
side's signature can never stand in for the other's.

Key schedule (HKDF-SHA256, RFC 5869), from the X25519 secret ``ss``::

    PRK   = HKDF-Extract(salt = SHA256("didnode/auth/v1/salt\\0" || nonce_i || nonce_r), ss)
    K_r   = HKDF-Expand(PRK, "didnode/auth/v1 responder confirmation")   mac_r = HMAC(K_r, TH2)
    K_i   = HKDF-Expand(PRK, "didnode/auth/v1 initiator confirmation")   mac_i = HMAC(K_i, TH3)
    K_s   = HKDF-Expand(PRK, "didnode/auth/v1 session confirmation")     mac_s = HMAC(K_s, TH4 || session fields)
    session key = HKDF(ikm = ss, salt = TH4, info = "didnode/auth/v1 session key")
    session id  = SHA256("didnode/auth/v1/session-id\\0" || TH4)[:16]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from didnode.core.handshake.crypto import hkdf_extract, hmac_sha256, sha256
from didnode.core.handshake.messages import SESSION_ID_BYTES, Attachments, Challenge, CredentialRequest, Hello, Response, Session

HELLO_CONTEXT = b"didnode/auth/v1/hello\x00"
CHALLENGE_CONTEXT = b"didnode/auth/v1/challenge\x00"
RESPONSE_CONTEXT = b"didnode/auth/v1/response\x00"
FINAL_CONTEXT = b"didnode/auth/v1/final\x00"
SIGNATURE_CONTEXT = b"didnode/auth/v1/signature\x00"
SALT_CONTEXT = b"didnode/auth/v1/salt\x00"
SESSION_ID_CONTEXT = b"didnode/auth/v1/session-id\x00"
RESPONDER = b"responder"
INITIATOR = b"initiator"
_INFO_R = b"didnode/auth/v1 responder confirmation"
_INFO_I = b"didnode/auth/v1 initiator confirmation"
_INFO_S = b"didnode/auth/v1 session confirmation"
_INFO_KEY = b"didnode/auth/v1 session key"
# HKDF-Expand of one hash length is one HMAC over info || 0x01 (RFC 5869, T(1)).
_INFO_R1 = _INFO_R + b"\x01"
_INFO_I1 = _INFO_I + b"\x01"
_INFO_S1 = _INFO_S + b"\x01"
_INFO_KEY1 = _INFO_KEY + b"\x01"

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def _lp(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


# Encoded strings that recur in every handshake (network, DIDs, key ids): a
# party hashes the same few dozen of them over and over. Bounded; cleared when
# full (a miss only costs the encoding). Keyed by the exact string, so the
# bytes are always exactly what _lp(text.encode()) gives.
_ENCODED: dict[str, bytes] = {}
_ENCODED_LIMIT = 4096


def _s(text: str) -> bytes:
    out = _ENCODED.get(text)
    if out is None:
        out = _lp(text.encode("utf-8"))
        if len(text) <= 256:  # DIDs, ids and networks; not credentials
            if len(_ENCODED) >= _ENCODED_LIMIT:
                _ENCODED.clear()
            _ENCODED[text] = out
    return out


_NO_WANT = _U32.pack(0)
_NO_ATTACHMENTS = _U32.pack(0) + _lp(b"")


def _want(want: tuple[CredentialRequest, ...]) -> bytes:
    if not want:
        return _NO_WANT
    return _U32.pack(len(want)) + b"".join(_s(w.type) + _s(w.issuer) for w in want)


def _attachments(att: Attachments) -> bytes:
    if not att.credentials and not att.state_proof:
        return _NO_ATTACHMENTS
    return _U32.pack(len(att.credentials)) + b"".join(_lp(c.encode("utf-8")) for c in att.credentials) + _lp(att.state_proof)


def hello_hash(h: Hello) -> bytes:
    """H1: every field of the hello."""
    return sha256(
        b"".join(
            (
                HELLO_CONTEXT,
                _U32.pack(h.version),
                _s(h.network),
                _s(h.initiator_did),
                _s(h.key_id),
                h.nonce,
                h.ephemeral_key,
                _U64.pack(h.time_ms),
                _want(h.want),
                _s(h.responder_did),
                b"\x01" if h.session_credential else b"\x00",
            )
        )
    )


def challenge_hash(h1: bytes, c: Challenge) -> bytes:
    """TH2: the hello (via H1) and every challenge field but the signature and the MAC."""
    return sha256(
        b"".join(
            (
                CHALLENGE_CONTEXT,
                h1,
                _U32.pack(c.version),
                _s(c.network),
                _s(c.responder_did),
                _s(c.key_id),
                _s(c.initiator_did),
                c.initiator_nonce,
                c.nonce,
                c.ephemeral_key,
                _want(c.want),
                _attachments(c.attachments),
            )
        )
    )


def response_hash(th2: bytes, c: Challenge, r: Response) -> bytes:
    """TH3: TH2, the responder's signature and MAC, and every response field but its signature and MAC."""
    return sha256(
        b"".join(
            (
                RESPONSE_CONTEXT,
                th2,
                c.signature,
                c.mac,
                _s(r.initiator_did),
                _s(r.responder_did),
                r.initiator_nonce,
                r.responder_nonce,
                _attachments(r.attachments),
            )
        )
    )


def final_hash(th3: bytes, r: Response) -> bytes:
    """TH4: TH3 and the initiator's signature and MAC."""
    return sha256(FINAL_CONTEXT + th3 + r.signature + r.mac)


def signing_bytes(role: bytes, th: bytes) -> bytes:
    """What a party signs: the handshake context, its role label, the transcript hash."""
    return SIGNATURE_CONTEXT + role + b"\x00" + th


@dataclass(frozen=True, slots=True)
class ConfirmationKeys:
    """The three MAC keys of one handshake (derived from the X25519 secret and both nonces)."""

    responder: bytes
    initiator: bytes
    session: bytes


def confirmation_keys(shared: bytes, nonce_i: bytes, nonce_r: bytes) -> ConfirmationKeys:
    """K_r, K_i, K_s (see the module docstring)."""
    prk = hkdf_extract(sha256(SALT_CONTEXT + nonce_i + nonce_r), shared)
    return ConfirmationKeys(hmac_sha256(prk, _INFO_R1), hmac_sha256(prk, _INFO_I1), hmac_sha256(prk, _INFO_S1))


def mac(key: bytes, th: bytes) -> bytes:
    return hmac_sha256(key, th)


def session_fields(s_id: bytes, credential: str, expires_ms: int) -> bytes:
    """The session message's fields as its MAC covers them."""
    return s_id + _s(credential) + _U64.pack(expires_ms)


def session_mac(key: bytes, th4: bytes, s: Session) -> bytes:
    return hmac_sha256(key, th4 + session_fields(s.session_id, s.credential, s.expires_ms))


def session_key(shared: bytes, th4: bytes) -> bytes:
    """The 32-byte session key: HKDF over the X25519 secret, salted with the final transcript hash."""
    return hmac_sha256(hkdf_extract(th4, shared), _INFO_KEY1)


def session_id(th4: bytes) -> bytes:
    """The public 16-byte session id both sides derive from TH4."""
    return sha256(SESSION_ID_CONTEXT + th4)[:SESSION_ID_BYTES]
