"""``did:dnode`` identifiers and DID URLs.

``did:dnode:<id>`` where ``<id>`` is base58btc(multihash sha2-256 of the
canonical create payload): always 46 characters starting with ``Qm``. The
syntax is exact: lowercase ``did`` and method, no percent-encoding, no
parameters, no alternative encodings of the same bytes.
"""

from __future__ import annotations

import re

from didnode.core.encoding import SHA2_256_MULTIHASH, b58decode, b58encode, sha256_multihash
from didnode.errors import InvalidArgument, InvalidDid

METHOD = "dnode"
PREFIX = "did:dnode:"
ID_LENGTH = 46
KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
JWK_SUFFIX = "-jwk"  # the JsonWebKey verification method of key ``k`` is ``did#k-jwk`` (core/document.py)
NEXT_KEY_ID = "next"  # ``did#next`` names the pre-committed next key (signs rotate, revoke, deactivate)
_ID_RE = re.compile(r"Qm[1-9A-HJ-NP-Za-km-z]{44}")


def did_from_create_payload(payload: bytes) -> str:
    """The DID that a canonical create payload self-certifies."""
    return PREFIX + b58encode(sha256_multihash(payload))


def did_for_create_hash(op_hash: bytes) -> str:
    """The DID that a create whose payload hashes to ``op_hash`` (32-byte sha256) would make.

    A create's operation hash *is* its DID's identifier, so the ledger needs
    no index row to find a create by hash: it looks the DID up instead.
    """
    return PREFIX + b58encode(SHA2_256_MULTIHASH + op_hash)


def validate_did(did: object) -> str:
    """Return ``did`` if it is a well-formed ``did:dnode`` DID, else raise :class:`InvalidDid`.

    The error message names the first thing wrong (scheme, method, case,
    length, alphabet, multihash), so a user can fix a typo.
    """
    if not isinstance(did, str):
        raise InvalidDid(f"DID must be a string, not {type(did).__name__}")
    if len(did) == len(PREFIX) + ID_LENGTH and did.startswith(PREFIX) and _ID_RE.fullmatch(did, len(PREFIX)):
        # Fast path; decoding confirms the multihash header and canonical base58.
        raw = b58decode(did[len(PREFIX) :])
        if len(raw) == 34 and raw[:2] == SHA2_256_MULTIHASH:
            return did
    _explain(did)
    raise InvalidDid(f"{_shown(did)} is not a valid did:dnode identifier", did=_shown(did))


def _shown(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _explain(did: str) -> None:
    shown = _shown(did)
    if "%" in did:
        raise InvalidDid(f"{shown}: percent-encoding is not allowed in a did:dnode DID", did=shown)
    parts = did.split(":")
    if len(parts) < 3 or parts[0].lower() != "did":
        raise InvalidDid(f"{shown} is not a DID (expected did:dnode:<id>)", did=shown)
    if parts[0] != "did" or parts[1].lower() == METHOD and parts[1] != METHOD:
        raise InvalidDid(f"{shown}: scheme and method name must be lowercase 'did:dnode'", did=shown)
    if parts[1] != METHOD:
        raise InvalidDid(f"{shown}: unsupported DID method {parts[1]!r}; this ledger resolves did:dnode", did=shown)
    if len(parts) != 3:
        raise InvalidDid(f"{shown}: the method-specific id must not contain ':'", did=shown)
    ident = parts[2]
    bad = [c for c in ident if c not in "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"]
    if bad:
        raise InvalidDid(f"{shown}: character {bad[0]!r} is not in the base58btc alphabet", did=shown)
    if len(ident) != ID_LENGTH:
        raise InvalidDid(f"{shown}: the id has {len(ident)} characters; a did:dnode id has {ID_LENGTH}", did=shown)
    raw = b58decode(ident)
    if len(raw) != 34 or raw[:2] != SHA2_256_MULTIHASH or b58encode(raw) != ident:
        raise InvalidDid(f"{shown}: the id is not a base58btc sha2-256 multihash", did=shown)


def split_did_url(url: str) -> tuple[str, str]:
    """Split ``did:dnode:<id>#<key-id>`` into (DID, key id).

    Raises :class:`InvalidDid` when the DID part is invalid, the fragment is
    missing or is not a valid key id.
    """
    if not isinstance(url, str) or "#" not in url:
        raise InvalidDid(f"{_shown(str(url))} is not a DID URL with a key fragment (did:dnode:<id>#<key-id>)")
    did, _, frag = url.partition("#")
    validate_did(did)
    if not KEY_ID_RE.fullmatch(frag):
        raise InvalidDid(f"{_shown(url)}: key id {frag!r} must be 1-32 characters of [A-Za-z0-9_-]")
    return did, frag


def validate_key_id(key_id: object) -> str:
    """Return ``key_id`` if it is a valid verification-method fragment, else raise :class:`InvalidDid`."""
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise InvalidDid(f"key id {str(key_id)[:40]!r} must be 1-32 characters of [A-Za-z0-9_-]")
    return key_id


def key_id_of(did: str, ref: str) -> str:
    """The key id that ``ref`` names among the keys of ``did``, in any form a user copies.

    ``ref`` is one of

    * a key id: ``key-1``;
    * a fragment: ``#key-1``;
    * a DID URL of ``did`` itself: ``did:dnode:<id>#key-1`` (as in the resolved document);

    and in each form the id of the key's JsonWebKey verification method
    (``key-1-jwk``, ``#key-1-jwk``, ``did:dnode:<id>#key-1-jwk``) names the same
    key: the result is ``key-1``. ``next`` (``did#next``, the pre-committed next
    key) is returned as is. The result always has the ledger's key-id syntax
    (:data:`KEY_ID_RE`) and never ends in ``-jwk``. Whether ``did`` has such a
    key is not checked here (that takes the DID's state). ``ref`` is taken
    exactly: no whitespace stripping, no percent-decoding.

    Raises :class:`InvalidDid` when ``did`` is not a valid ``did:dnode`` DID, or
    ``ref`` is empty, has a malformed key fragment, is a DID URL with a path or
    query or without a fragment, or its DID part is not a valid DID; and
    :class:`InvalidArgument` (details ``did`` and ``other``) when ``ref`` is a
    well-formed DID URL of another DID: the message names both DIDs.
    """
    validate_did(did)
    if not isinstance(ref, str):
        raise InvalidDid(f"a key reference must be a string, not {type(ref).__name__}", did=did)
    if not ref:
        raise InvalidDid(f"no key id given (e.g. key-1, #key-1 or {did}#key-1)", did=did)
    shown = _shown(ref)
    if ref.startswith("#"):
        frag = ref[1:]
    elif any(c in ref for c in "#:/?"):
        url, sep, frag = ref.partition("#")
        if any(c in url for c in "/?"):
            raise InvalidDid(f"{shown}: a DID URL with a path or query does not name a key (use {did}#<key-id>)", did=did, ref=shown)
        try:
            validate_did(url)
        except InvalidDid as exc:
            raise InvalidDid(f"{shown}: {exc}", did=did, ref=shown) from None
        if not sep:
            raise InvalidDid(f"{shown} names no key: a key's DID URL ends in #<key-id> (e.g. {did}#key-1)", did=did, ref=shown)
        if url != did:
            raise InvalidArgument(f"{shown} names a key of {url}, not of {did}", did=did, other=url)
    else:
        frag = ref
    return _fragment_key_id(frag, shown, did)


def _fragment_key_id(frag: str, shown: str, did: str) -> str:
    """The key id a DID URL fragment names: itself, or the key of its ``-jwk`` method."""
    if frag.endswith(JWK_SUFFIX):
        key_id = frag[: -len(JWK_SUFFIX)]
        if KEY_ID_RE.fullmatch(key_id) and key_id != NEXT_KEY_ID and not key_id.endswith(JWK_SUFFIX):
            return key_id
    elif KEY_ID_RE.fullmatch(frag):
        return frag
    where = "" if shown == frag else f"{shown}: "
    raise InvalidDid(
        f"{where}key id {_shown(frag)!r} must be 1-32 characters of [A-Za-z0-9_-], or such a key id + '-jwk'",
        did=did,
        ref=shown,
    )
