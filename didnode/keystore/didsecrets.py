"""One DID's secrets in the keystore: :class:`DidSecrets` and the checks of its fields.

A DID here is any DID Core 1.0 DID (``did:<method>:<id>``: the keystore also
holds keys of DIDs on other methods); a key id has the ledger's own key-id
syntax, :data:`didnode.core.did.KEY_ID_RE`, so the keystore never holds a
key under an id that no operation could name. How the secrets are encoded
and sealed is in the package docstring (:mod:`didnode.keystore`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Mapping

import nacl.public
import nacl.signing

from didnode.core.did import KEY_ID_RE
from didnode.errors import InvalidArgument, InvalidDid, KeyNotInKeystore

SEED_BYTES: Final = 32

# DID Core 1.0 section 3.1 syntax: did:<method-name>:<method-specific-id>.
_DID_RE: Final = re.compile(r"did:[a-z0-9]+:(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2}|:)*(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})")
_MAX_LABEL_KEY: Final = 64
_MAX_LABEL_VALUE: Final = 1024
_MAX_LABELS: Final = 64
_MAX_SIGNING_KEYS: Final = 64


@dataclass(frozen=True, repr=False)
class DidSecrets:
    """Everything secret the keystore holds for one DID.

    Preconditions (checked; :class:`InvalidArgument` or :class:`InvalidDid`
    otherwise): ``did`` is a DID (``did:<method>:<id>``); key ids are DID URL
    fragments in the ledger's key-id syntax (:data:`didnode.core.did.KEY_ID_RE`:
    1-32 characters of ``[A-Za-z0-9_-]``, no ``#``) and are unique across
    signing, next and key-agreement keys; every seed/private key is
    exactly 32 bytes; ``next_key_id``/``next_key_seed`` and
    ``key_agreement_id``/``key_agreement_key`` are both set or both ``None``;
    at least one secret is present (recovery material may hold only a next
    key); labels are ``str -> str``.

    ``repr``/``str`` show ids and labels only, never secret bytes.
    Mappings are copied into read-only views, so an instance is immutable.
    """

    did: str
    signing_keys: Mapping[str, bytes] = field(default_factory=dict)
    """Ed25519 signing seeds by key id, e.g. ``{"key-1": seed}``."""
    next_key_id: str | None = None
    """Key id the pre-committed next (rotation) key will take."""
    next_key_seed: bytes | None = None
    """Ed25519 seed of the pre-committed next key."""
    key_agreement_id: str | None = None
    key_agreement_key: bytes | None = None
    """X25519 private key (32 bytes)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Free-form metadata, e.g. ``{"role": "manufacturer-recovery"}``."""

    # Mappings are not hashable; equality is enough for secrets.
    __hash__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        _check_did(self.did)
        if not isinstance(self.signing_keys, Mapping):
            raise InvalidArgument(f"{self.did}: signing_keys must be a mapping of key id to seed", did=self.did)
        if len(self.signing_keys) > _MAX_SIGNING_KEYS:
            raise InvalidArgument(f"{self.did}: more than {_MAX_SIGNING_KEYS} signing keys", did=self.did)
        signing = {
            _check_key_id(self.did, kid): _check_seed(self.did, f"signing key {kid!r}", seed)
            for kid, seed in self.signing_keys.items()
        }
        # Frozen dataclass: the only way to normalize fields is object.__setattr__.
        object.__setattr__(self, "signing_keys", MappingProxyType(signing))

        ids = list(signing)
        for id_field, secret_field, what in (
            ("next_key_id", "next_key_seed", "next key"),
            ("key_agreement_id", "key_agreement_key", "key-agreement key"),
        ):
            kid, secret = getattr(self, id_field), getattr(self, secret_field)
            if (kid is None) != (secret is None):
                raise InvalidArgument(f"{self.did}: {id_field} and {secret_field} must be set together", did=self.did)
            if kid is not None:
                ids.append(_check_key_id(self.did, kid))
                object.__setattr__(self, secret_field, _check_seed(self.did, what, secret))
        if len(set(ids)) != len(ids):
            raise InvalidArgument(f"{self.did}: key ids are not unique: {sorted(ids)}", did=self.did)
        if not ids:
            raise InvalidArgument(f"{self.did}: no secret to store (no signing, next or key-agreement key)", did=self.did)

        if not isinstance(self.labels, Mapping) or len(self.labels) > _MAX_LABELS:
            raise InvalidArgument(f"{self.did}: labels must be a mapping of at most {_MAX_LABELS} entries", did=self.did)
        for k, v in self.labels.items():
            if not isinstance(k, str) or not isinstance(v, str) or not 0 < len(k) <= _MAX_LABEL_KEY:
                raise InvalidArgument(f"{self.did}: label {k!r} must be a non-empty str key with a str value", did=self.did)
            if len(v) > _MAX_LABEL_VALUE:
                raise InvalidArgument(f"{self.did}: label {k!r} is over {_MAX_LABEL_VALUE} characters", did=self.did)
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def __repr__(self) -> str:
        return (
            f"DidSecrets(did={self.did!r}, signing_keys={sorted(self.signing_keys)!r}, "
            f"next_key_id={self.next_key_id!r}, key_agreement_id={self.key_agreement_id!r}, "
            f"labels={dict(self.labels)!r}, secrets=<redacted>)"
        )

    __str__ = __repr__

    def signing_key(self, key_id: str) -> nacl.signing.SigningKey:
        """The Ed25519 signing key ``key_id``; :class:`KeyNotInKeystore` if absent."""
        seed = self.signing_keys.get(key_id)
        if seed is None:
            raise KeyNotInKeystore(
                f"keystore has no signing key {key_id!r} for {self.did} (has {sorted(self.signing_keys)})",
                did=self.did,
                key_id=key_id,
            )
        return nacl.signing.SigningKey(seed)

    def next_signing_key(self) -> nacl.signing.SigningKey:
        """The pre-committed next (rotation) key; :class:`KeyNotInKeystore` if absent."""
        if self.next_key_seed is None:
            raise KeyNotInKeystore(f"keystore has no next (rotation) key for {self.did}", did=self.did)
        return nacl.signing.SigningKey(self.next_key_seed)

    def key_agreement_private_key(self) -> nacl.public.PrivateKey:
        """The X25519 key-agreement private key; :class:`KeyNotInKeystore` if absent."""
        if self.key_agreement_key is None:
            raise KeyNotInKeystore(f"keystore has no key-agreement key for {self.did}", did=self.did)
        return nacl.public.PrivateKey(self.key_agreement_key)


def _check_did(did: object) -> str:
    if not isinstance(did, str) or _DID_RE.fullmatch(did) is None:
        raise InvalidDid(f"not a DID: {did!r} (expected did:<method>:<id>)", did=str(did))
    return did


def _check_key_id(did: str, kid: object) -> str:
    # The ledger's key-id syntax (one definition, in core): an id it would
    # refuse in an operation is refused here too, before it is stored.
    if not isinstance(kid, str) or KEY_ID_RE.fullmatch(kid) is None:
        raise InvalidArgument(
            f"{did}: bad key id {kid!r} (a key id is 1-32 characters of [A-Za-z0-9_-], e.g. 'key-1', no '#')",
            did=did,
        )
    return kid


def _check_seed(did: str, what: str, seed: object) -> bytes:
    if not isinstance(seed, (bytes, bytearray, memoryview)) or len(seed) != SEED_BYTES:
        # Never echo the value: it may be a (wrongly typed) secret.
        size = len(seed) if isinstance(seed, (bytes, bytearray, memoryview)) else type(seed).__name__
        raise InvalidArgument(f"{did}: {what} must be {SEED_BYTES} bytes, got {size}", did=did)
    return bytes(seed)

