"""The client-side encrypted keystore of ``didctl`` (manufacturers, devices, admins).

A keystore is a directory (mode 0700)::

    <dir>/keystore.json          header: KDF parameters and a passphrase check
    <dir>/<sanitized-did>.key    one per DID (mode 0600): the DID in clear,
                                 its secrets in a secretbox

``keystore.json`` (UTF-8 JSON, format version 1)::

    {"format": "didnode-keystore", "version": 1,
     "kdf": {"alg": "argon2id", "salt": B64, "opslimit": int, "memlimit": int},
     "check": B64}

``<sanitized-did>.key`` (UTF-8 JSON, format version 1)::

    {"format": "didnode-keystore-key", "version": 1,
     "did": "did:dnode:...", "box": B64}

``B64`` is unpadded base64url (RFC 4648 section 5). Every ``box`` / ``check``
is a PyNaCl ``SecretBox`` message: 24-byte random nonce followed by the
XSalsa20-Poly1305 ciphertext and tag.

Key derivation. Argon2id (libsodium ``crypto_pwhash``, v1.3) runs **once** per
:meth:`Keystore.open`, turning the passphrase, the header's salt and its
``opslimit``/``memlimit`` into a 32-byte master key. Subkeys are derived
from it with keyed BLAKE2b (key = master key, message = purpose label,
personalization ``b"didnode-keystore"``): ``"check"`` encrypts the fixed
plaintext :data:`CHECK_PLAINTEXT` in the header and ``"files"`` encrypts every
``.key`` file. A third, ``"purpose"``, is never used as a key itself: tools
derive their own keys from it with :meth:`Keystore.purpose_key` (the journal
of ``didctl provision`` is encrypted that way). A wrong passphrase therefore
fails at open time, before any key file is touched, and sealing a file costs one secretbox, not one Argon2id run
(a manufacturer writes tens of thousands of files per run).

The plaintext inside each ``box`` is the compact JSON of :func:`export_plain`
(the "didnode-secrets" object, below). It repeats the DID, which is compared
with the file name on read, so swapping two (individually authentic) files
is detected.

"didnode-secrets" object, format version 1 (also the ``--plain`` export)::

    {"format": "didnode-secrets", "version": 1,
     "did": "did:...",
     "signing_keys": {"key-1": B64(32-byte Ed25519 seed), ...},
     "next_key": {"id": "key-2", "seed": B64(32 bytes)} | null,
     "key_agreement": {"id": "ka-1", "private_key": B64(32-byte X25519)} | null,
     "labels": {"role": "manufacturer-recovery", ...}}

Sealed bundle (:func:`export_sealed`), UTF-8 JSON, format version 1, for
handing a device its keys inside a provisioning bundle::

    {"format": "didnode-sealed-secrets", "version": 1,
     "did": "did:...",
     "kdf": {"alg": "argon2id", "salt": B64, "opslimit": int, "memlimit": int},
     "box": B64}

The bundle key is the keyed-BLAKE2b subkey ``"sealed-secrets"`` of
Argon2id(recipient passphrase, bundle salt, bundle params); ``box`` holds the
"didnode-secrets" object. Salt, parameters and the clear ``did`` are all
authenticated: changing the first two changes the key, and the clear ``did``
must equal the one inside.

Writes are atomic per file: the (already encrypted) content goes to a
temporary file ``.<name>.<random>.tmp`` in the keystore directory, which is
fsync'd, renamed over the target with ``os.replace`` and made durable by an
fsync of the directory. A crash leaves either the old file or the new one,
plus at worst a stray temporary file that :meth:`Keystore.list` ignores.
(The one exception is opt-in: :meth:`Keystore.put_many` with
``durability="batch"``, for bulk writers that journal the same secrets
themselves; see there.)

Python cannot reliably wipe memory: secrets live in ``bytes`` objects until
garbage collected. :meth:`Keystore.close` drops the keystore's own references
to the derived keys.
"""

from __future__ import annotations

import base64
import builtins
import ctypes
import json
import os
import re
import string
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Callable, Final, Iterable, Literal, Mapping, get_args

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.public
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.signing
import nacl.utils

from didnode.errors import (
    InvalidArgument,
    InvalidDid,
    KeyNotInKeystore,
    KeystoreCorrupted,
    KeystoreError,
    WrongPassphrase,
)

__all__ = [
    "CHECK_PLAINTEXT",
    "CREATE_HINT",
    "DidSecrets",
    "KdfName",
    "KdfParams",
    "Keystore",
    "export_plain",
    "export_sealed",
    "import_plain",
    "import_sealed",
    "kdf_from_env",
]

KdfName = Literal["interactive", "moderate", "sensitive"]

#: The command named in the "no keystore" error; the CLI owns the wording.
CREATE_HINT: Final = "didctl keystore init"

#: Fixed plaintext of the header's check value (format version 1).
CHECK_PLAINTEXT: Final = b"didnode keystore check v1"

HEADER_NAME: Final = "keystore.json"
KEY_SUFFIX: Final = ".key"
TMP_SUFFIX: Final = ".tmp"
SEED_BYTES: Final = 32

_HEADER_FORMAT: Final = "didnode-keystore"
_KEYFILE_FORMAT: Final = "didnode-keystore-key"
_SECRETS_FORMAT: Final = "didnode-secrets"
_SEALED_FORMAT: Final = "didnode-sealed-secrets"
_VERSION: Final = 1
_KDF_ALG: Final = "argon2id"
_PERSON: Final = b"didnode-keystore"  # BLAKE2b personalization: exactly 16 bytes

# Files are a few hundred bytes; refusing big ones keeps a planted or damaged
# file from making us read gigabytes.
_MAX_FILE_BYTES: Final = 1 << 20

# Parameters read from disk or from a bundle are attacker-influenced: bound
# them so a crafted header cannot demand terabytes of RAM or hours of CPU.
_OPSLIMIT_BOUNDS: Final = (argon2id.OPSLIMIT_MIN, argon2id.OPSLIMIT_SENSITIVE)
_MEMLIMIT_BOUNDS: Final = (argon2id.MEMLIMIT_MIN, argon2id.MEMLIMIT_SENSITIVE)

# File-name stems above this are refused: with the ".<stem>.<16 hex>.tmp"
# temporary name they must still fit the usual 255-byte NAME_MAX.
_MAX_STEM: Final = 200

# DID Core 1.0 section 3.1 syntax: did:<method-name>:<method-specific-id>.
_DID_RE: Final = re.compile(r"did:[a-z0-9]+:(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2}|:)*(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})")
# Key ids are DID URL fragments such as "key-1".
_KEY_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,63}")
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
_MAX_LABEL_KEY: Final = 64
_MAX_LABEL_VALUE: Final = 1024
_MAX_LABELS: Final = 64
_MAX_SIGNING_KEYS: Final = 64

# Characters kept as-is in file names. ':' becomes '_', everything else
# (including '_' and '%' themselves) becomes %XX, so the mapping is injective
# and list() can recover the DID from the name alone.
_FILENAME_SAFE: Final = frozenset(string.ascii_letters + string.digits + ".-")


# --------------------------------------------------------------------------
# KDF parameters
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters (libsodium units: passes, bytes)."""

    opslimit: int
    memlimit: int

    @classmethod
    def named(cls, name: str) -> KdfParams:
        """The libsodium preset ``name`` ("interactive", "moderate", "sensitive").

        Raises :class:`InvalidArgument` for any other name.
        """
        if name not in get_args(KdfName):
            raise InvalidArgument(
                f"unknown KDF cost {name!r}; use one of {', '.join(get_args(KdfName))}", kdf=str(name)
            )
        upper = name.upper()
        return cls(getattr(argon2id, f"OPSLIMIT_{upper}"), getattr(argon2id, f"MEMLIMIT_{upper}"))


def kdf_from_env(default: KdfName = "moderate") -> KdfName:
    """The KDF cost named by ``$DIDCTL_KDF`` ("interactive" in tests/CI), else ``default``.

    Raises :class:`InvalidArgument` if the variable is set to an unknown name.
    """
    value = os.environ.get("DIDCTL_KDF", "").strip()
    if not value:
        return default
    if value not in get_args(KdfName):
        raise InvalidArgument(
            f"DIDCTL_KDF={value!r} is not one of {', '.join(get_args(KdfName))}", variable="DIDCTL_KDF"
        )
    return value  # type: ignore[return-value]  # narrowed by the membership test above


# --------------------------------------------------------------------------
# DidSecrets
# --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class DidSecrets:
    """Everything secret the keystore holds for one DID.

    Preconditions (checked; :class:`InvalidArgument` or :class:`InvalidDid`
    otherwise): ``did`` is a DID (``did:<method>:<id>``); key ids are DID URL
    fragments (``[A-Za-z0-9][A-Za-z0-9._~-]{0,63}``, no ``#``) and are unique
    across signing, next and key-agreement keys; every seed/private key is
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
    if not isinstance(kid, str) or _KEY_ID_RE.fullmatch(kid) is None:
        raise InvalidArgument(f"{did}: bad key id {kid!r} (want e.g. 'key-1', no '#')", did=did)
    return kid


def _check_seed(did: str, what: str, seed: object) -> bytes:
    if not isinstance(seed, (bytes, bytearray, memoryview)) or len(seed) != SEED_BYTES:
        # Never echo the value: it may be a (wrongly typed) secret.
        size = len(seed) if isinstance(seed, (bytes, bytearray, memoryview)) else type(seed).__name__
        raise InvalidArgument(f"{did}: {what} must be {SEED_BYTES} bytes, got {size}", did=did)
    return bytes(seed)


# --------------------------------------------------------------------------
# Encodings shared by files, bundles and the plain export
# --------------------------------------------------------------------------


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: object, where: str, what: str, err: type[KeystoreError] | type[InvalidArgument]) -> bytes:
    # Strict: only the unpadded base64url alphabet, and the canonical encoding.
    if not isinstance(text, str) or _B64URL_RE.fullmatch(text) is None or len(text) % 4 == 1:
        raise err(f"{where}: {what} is not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64e(data) != text:
        raise err(f"{where}: {what} is not canonical base64url")
    return data


def _json_bytes(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse_json_object(raw: bytes, where: str, err: type[KeystoreError] | type[InvalidArgument]) -> dict[str, Any]:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise err(f"{where}: not UTF-8 JSON ({e})") from e
    if not isinstance(obj, dict):
        raise err(f"{where}: not a JSON object")
    return obj


def _expect_format(obj: Mapping[str, Any], fmt: str, where: str, err: type[KeystoreError] | type[InvalidArgument]) -> None:
    if obj.get("format") != fmt:
        raise err(f"{where}: format is {obj.get('format')!r}, expected {fmt!r}")
    if obj.get("version") != _VERSION:
        raise err(f"{where}: unsupported {fmt} version {obj.get('version')!r} (this didnode reads version {_VERSION})")


def _secrets_to_obj(s: DidSecrets) -> dict[str, Any]:
    return {
        "format": _SECRETS_FORMAT,
        "version": _VERSION,
        "did": s.did,
        "signing_keys": {kid: _b64e(seed) for kid, seed in s.signing_keys.items()},
        "next_key": None if s.next_key_seed is None else {"id": s.next_key_id, "seed": _b64e(s.next_key_seed)},
        "key_agreement": (
            None
            if s.key_agreement_key is None
            else {"id": s.key_agreement_id, "private_key": _b64e(s.key_agreement_key)}
        ),
        "labels": dict(s.labels),
    }


def _secrets_from_obj(
    obj: Mapping[str, Any], where: str, err: type[KeystoreError] | type[InvalidArgument]
) -> DidSecrets:
    _expect_format(obj, _SECRETS_FORMAT, where, err)
    expected = {"format", "version", "did", "signing_keys", "next_key", "key_agreement", "labels"}
    if set(obj) != expected:
        raise err(f"{where}: members {sorted(obj)} are not {sorted(expected)}")
    signing = obj["signing_keys"]
    if not isinstance(signing, dict):
        raise err(f"{where}: signing_keys is not an object")

    def pair(name: str, secret_name: str) -> tuple[str | None, bytes | None]:
        member = obj[name]
        if member is None:
            return None, None
        if not isinstance(member, dict) or set(member) != {"id", secret_name}:
            raise err(f"{where}: {name} must be null or {{'id', '{secret_name}'}}")
        return member["id"], _b64d(member[secret_name], where, f"{name}.{secret_name}", err)

    next_id, next_seed = pair("next_key", "seed")
    ka_id, ka_key = pair("key_agreement", "private_key")
    labels = obj["labels"]
    if not isinstance(labels, dict):
        raise err(f"{where}: labels is not an object")
    try:
        return DidSecrets(
            did=obj["did"],
            signing_keys={kid: _b64d(v, where, f"signing_keys[{kid!r}]", err) for kid, v in signing.items()},
            next_key_id=next_id,
            next_key_seed=next_seed,
            key_agreement_id=ka_id,
            key_agreement_key=ka_key,
            labels=labels,
        )
    except (InvalidArgument, InvalidDid) as e:
        if err is InvalidArgument:
            raise
        raise err(f"{where}: {e.message}") from e


def _normalize_passphrase(passphrase: str | bytes) -> bytes:
    # NFC so that the same passphrase typed on macOS (NFD input) and Linux
    # derives the same key. Bytes are taken as given.
    if isinstance(passphrase, str):
        data = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    elif isinstance(passphrase, (bytes, bytearray)):
        data = bytes(passphrase)
    else:
        raise InvalidArgument(f"passphrase must be str or bytes, not {type(passphrase).__name__}")
    if not data:
        raise InvalidArgument("passphrase is empty")
    return data


def _subkey(master: bytes, purpose: bytes) -> bytes:
    # Keyed BLAKE2b as a PRF: one Argon2id output, independent keys per use.
    return nacl.hash.blake2b(purpose, digest_size=32, key=master, person=_PERSON, encoder=nacl.encoding.RawEncoder)


def _argon2id(passphrase: bytes, salt: bytes, params: KdfParams, where: str) -> bytes:
    try:
        return argon2id.kdf(32, passphrase, salt, opslimit=params.opslimit, memlimit=params.memlimit)
    except nacl.exceptions.RuntimeError as e:
        # libsodium fails this way when it cannot allocate memlimit bytes.
        raise KeystoreError(
            f"{where}: Argon2id with memlimit {params.memlimit} bytes failed (out of memory?): {e}"
        ) from e


def _kdf_to_obj(salt: bytes, params: KdfParams) -> dict[str, Any]:
    return {"alg": _KDF_ALG, "salt": _b64e(salt), "opslimit": params.opslimit, "memlimit": params.memlimit}


def _kdf_from_obj(
    obj: object, where: str, err: type[KeystoreError] | type[InvalidArgument]
) -> tuple[bytes, KdfParams]:
    if not isinstance(obj, dict) or set(obj) != {"alg", "salt", "opslimit", "memlimit"}:
        raise err(f"{where}: kdf must be an object with alg, salt, opslimit, memlimit")
    if obj["alg"] != _KDF_ALG:
        raise err(f"{where}: kdf alg {obj['alg']!r} is not supported (only {_KDF_ALG!r})")
    salt = _b64d(obj["salt"], where, "kdf.salt", err)
    if len(salt) != argon2id.SALTBYTES:
        raise err(f"{where}: kdf.salt is {len(salt)} bytes, expected {argon2id.SALTBYTES}")
    for name, (lo, hi) in (("opslimit", _OPSLIMIT_BOUNDS), ("memlimit", _MEMLIMIT_BOUNDS)):
        value = obj[name]
        # bool is an int subclass; true/false in the JSON is not a cost.
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise err(f"{where}: kdf.{name}={value!r} is outside [{lo}, {hi}]")
    return salt, KdfParams(obj["opslimit"], obj["memlimit"])


# --------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------


def export_plain(secrets: DidSecrets) -> dict[str, Any]:
    """The secrets as an UNENCRYPTED "didnode-secrets" JSON object (module docstring).

    For the loud ``--plain`` case only: whoever sees the result holds the keys.
    Precondition: ``secrets`` is a :class:`DidSecrets`.
    """
    if not isinstance(secrets, DidSecrets):
        raise InvalidArgument(f"export_plain needs DidSecrets, not {type(secrets).__name__}")
    return _secrets_to_obj(secrets)


def import_plain(data: Mapping[str, Any]) -> DidSecrets:
    """Inverse of :func:`export_plain`; :class:`InvalidArgument` if ``data`` is not
    a valid "didnode-secrets" object of a supported version."""
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"import_plain needs a JSON object, not {type(data).__name__}")
    return _secrets_from_obj(data, "plain secrets", InvalidArgument)


def export_sealed(secrets: DidSecrets, recipient_passphrase: str | bytes, *, kdf: KdfName = "moderate") -> bytes:
    """A self-contained encrypted bundle of ``secrets`` (UTF-8 JSON bytes).

    Format "didnode-sealed-secrets" v1 (module docstring): its own random
    Argon2id salt and parameters, and a secretbox of the "didnode-secrets"
    object under a key derived from ``recipient_passphrase``. Runs Argon2id
    once (``kdf`` preset; "moderate" needs 256 MiB on the importing device,
    pick "interactive" (64 MiB) for small devices).

    Preconditions: ``secrets`` is a :class:`DidSecrets`; the passphrase is a
    non-empty str (NFC-normalized) or bytes.
    """
    if not isinstance(secrets, DidSecrets):
        raise InvalidArgument(f"export_sealed needs DidSecrets, not {type(secrets).__name__}")
    params = KdfParams.named(kdf)
    salt = nacl.utils.random(argon2id.SALTBYTES)
    key = _subkey(_argon2id(_normalize_passphrase(recipient_passphrase), salt, params, "sealed bundle"), b"sealed-secrets")
    box = nacl.secret.SecretBox(key).encrypt(_json_bytes(_secrets_to_obj(secrets)))
    return _json_bytes(
        {
            "format": _SEALED_FORMAT,
            "version": _VERSION,
            "did": secrets.did,
            "kdf": _kdf_to_obj(salt, params),
            "box": _b64e(bytes(box)),
        }
    )


def import_sealed(blob: bytes, passphrase: str | bytes) -> DidSecrets:
    """Open a bundle made by :func:`export_sealed`.

    Raises :class:`WrongPassphrase` if the passphrase does not open it (a
    bundle altered after sealing fails the same way: the two cannot be told
    apart), and :class:`KeystoreCorrupted` if the bundle is not a well-formed
    v1 bundle or its clear DID differs from the sealed one. Argon2id cost is
    read from the bundle, bounded by the "sensitive" preset.
    """
    where = "sealed bundle"
    if not isinstance(blob, (bytes, bytearray)):
        raise InvalidArgument(f"import_sealed needs bytes, not {type(blob).__name__}")
    if len(blob) > _MAX_FILE_BYTES:
        raise KeystoreCorrupted(f"{where}: {len(blob)} bytes is over the {_MAX_FILE_BYTES}-byte limit")
    obj = _parse_json_object(bytes(blob), where, KeystoreCorrupted)
    _expect_format(obj, _SEALED_FORMAT, where, KeystoreCorrupted)
    if set(obj) != {"format", "version", "did", "kdf", "box"}:
        raise KeystoreCorrupted(f"{where}: unexpected members {sorted(obj)}")
    try:
        _check_did(obj["did"])
    except InvalidDid as e:
        raise KeystoreCorrupted(f"{where}: clear did is not a DID") from e
    salt, params = _kdf_from_obj(obj["kdf"], where, KeystoreCorrupted)
    box = _b64d(obj["box"], where, "box", KeystoreCorrupted)
    key = _subkey(_argon2id(_normalize_passphrase(passphrase), salt, params, where), b"sealed-secrets")
    try:
        plaintext = nacl.secret.SecretBox(key).decrypt(box)
    except nacl.exceptions.CryptoError as e:
        raise WrongPassphrase(
            f"the passphrase does not open the sealed bundle for {obj['did']!r} (or the bundle was altered)"
        ) from e
    secrets = _secrets_from_obj(_parse_json_object(plaintext, where, KeystoreCorrupted), where, KeystoreCorrupted)
    if secrets.did != obj["did"]:
        raise KeystoreCorrupted(f"{where}: labelled {obj['did']!r} but seals secrets of {secrets.did}")
    return secrets


# --------------------------------------------------------------------------
# File names and file I/O
# --------------------------------------------------------------------------


def _did_stem(did: str) -> str:
    # Note: on a case-insensitive file system (macOS default) two DIDs that
    # differ only in case share a file. For hash-derived ids (did:dnode) that
    # cannot happen by chance; get() would still catch it, since the DID
    # sealed inside the file is compared with the one asked for.
    _check_did(did)
    out: list[str] = []
    for byte in did.encode("utf-8"):
        ch = chr(byte)
        if ch in _FILENAME_SAFE:
            out.append(ch)
        elif ch == ":":
            out.append("_")
        else:
            out.append(f"%{byte:02X}")
    stem = "".join(out)
    if len(stem) > _MAX_STEM:
        raise InvalidDid(f"DID is too long for a keystore file name ({len(stem)} > {_MAX_STEM}): {did[:60]}...", did=did)
    return stem


def _stem_to_did(stem: str) -> str | None:
    """The DID a file-name stem encodes, or ``None`` for a name that is not ours
    (a query answer for :meth:`Keystore.list`, not a failure signal)."""
    raw = bytearray()
    i = 0
    while i < len(stem):
        ch = stem[i]
        if ch == "_":
            raw += b":"
        elif ch == "%" and i + 2 < len(stem) and all(c in string.hexdigits for c in stem[i + 1 : i + 3]):
            raw.append(int(stem[i + 1 : i + 3], 16))
            i += 2
        elif ch in _FILENAME_SAFE:
            raw += ch.encode("ascii")
        else:
            return None
        i += 1
    try:
        did = raw.decode("utf-8")
        # Only the canonical spelling of a valid DID counts (e.g. not "%3A" for ':').
        return did if _did_stem(did) == stem else None
    except (UnicodeDecodeError, InvalidDid):
        return None


def _read_small(path: Path) -> bytes:
    """Read a keystore file; FileNotFoundError propagates (callers map it)."""
    with open(path, "rb") as f:
        data = f.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise KeystoreCorrupted(f"{path}: larger than {_MAX_FILE_BYTES} bytes; not a keystore file", file=str(path))
    return data


def _fsync_dir(directory: Path) -> None:
    # Makes the renames/unlinks in the directory durable, not just the data.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_filesystem(directory: Path) -> None:
    """Make everything written on ``directory``'s file system durable: one ``syncfs``
    (Linux), else ``sync``. Raises :class:`KeystoreError` on failure."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _SYNCFS is not None:
                if _SYNCFS(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            else:
                os.sync()
        finally:
            os.close(fd)
    except OSError as e:
        raise KeystoreError(f"cannot sync the file system of {directory}: {e.strerror or e}", path=str(directory)) from e


def _load_syncfs() -> Callable[[int], int] | None:
    # syncfs(2) flushes one file system (not every mounted one, as sync does);
    # it is Linux-only and not in the os module.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_SYNCFS: Final = _load_syncfs()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_new_or_replace(directory: Path, name: str, data: bytes) -> None:
    """put_many's "batch" mode: create ``directory/name`` in place if it does not exist
    (mode 0600, no fsync), else replace it as :func:`_write_atomic` does (without fsync).
    Raises :class:`KeystoreError` naming the file on any OS error."""
    target = directory / name
    try:
        # O_EXCL: never write through a pre-planted file or symlink; an existing file
        # (an earlier, interrupted attempt) is replaced atomically instead.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        _write_atomic(directory, name, data, sync_dir=False, sync_file=False)
        return
    except OSError as e:
        raise KeystoreError(f"cannot write {target}: {e.strerror or e}", file=str(target)) from e
    try:
        try:
            os.fchmod(fd, 0o600)  # exact mode whatever the umask
            _write_all(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        raise KeystoreError(f"cannot write {target}: {e.strerror or e}", file=str(target)) from e


def _write_atomic(directory: Path, name: str, data: bytes, *, sync_dir: bool, sync_file: bool = True) -> None:
    """Write ``directory/name`` (mode 0600) so that a crash leaves the old or the new file.

    With ``sync_dir=False`` the caller must fsync the directory before
    reporting the write as durable (:meth:`Keystore.put_many` does it per chunk).
    With ``sync_file=False`` the data is not fsync'd before the rename either:
    the caller syncs the file system afterwards (put_many's "batch" mode) and
    gives up the old-or-new guarantee for a crash before that sync.
    Raises :class:`KeystoreError` naming the file on any OS error.
    """
    target = directory / name
    tmp = directory / f".{name}.{nacl.utils.random(8).hex()}{TMP_SUFFIX}"
    renamed = False
    try:
        # O_EXCL: never write through a pre-planted file or symlink.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.fchmod(fd, 0o600)  # exact mode whatever the umask
            _write_all(fd, data)
            if sync_file:
                os.fsync(fd)  # data on disk before the rename can make it visible
        finally:
            os.close(fd)
        os.replace(tmp, target)
        renamed = True
        if sync_dir:
            _fsync_dir(directory)
    except OSError as e:
        raise KeystoreError(f"cannot write {target}: {e.strerror or e}", file=str(target)) from e
    finally:
        if not renamed:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                # Best effort: a leftover temp file is harmless (ignored by list()).
                pass


# --------------------------------------------------------------------------
# Keystore
# --------------------------------------------------------------------------


class Keystore:
    """An open, unlocked keystore directory. Obtain one with :meth:`open`.

    Methods are safe to call from several threads, and several processes may
    use one keystore: every write is an atomic whole-file replace (the last
    writer of a DID wins). Usable as a context manager (closes on exit).
    """

    def __init__(self, path: Path, files_key: bytes, params: KdfParams, purpose_root: bytes | None = None) -> None:
        """Internal: use :meth:`open`. ``files_key`` is the derived "files" subkey,
        ``purpose_root`` the "purpose" subkey (see :meth:`purpose_key`)."""
        self._path = path
        self._box: nacl.secret.SecretBox | None = nacl.secret.SecretBox(files_key)
        self._params = params
        self._purpose_root: bytes | None = purpose_root

    # -- opening -----------------------------------------------------------

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` holds a keystore header (no passphrase needed)."""
        return (Path(path) / HEADER_NAME).is_file()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        passphrase: str | bytes,
        create: bool = False,
        kdf: KdfName = "moderate",
    ) -> Keystore:
        """Unlock the keystore at ``path``, creating it first if ``create``.

        Runs Argon2id once, with the parameters stored in the keystore's
        header (``kdf`` only chooses them for a keystore created by this call;
        use :func:`kdf_from_env` to honour ``$DIDCTL_KDF``).

        With ``create=True`` an existing keystore is simply opened; a missing
        directory is created with mode 0700 (parents as by ``mkdir -p``);
        an existing directory without ``keystore.json`` is initialized (and
        chmod'ed 0700) unless it already holds ``.key`` files, which a new
        salt would orphan.

        Raises :class:`WrongPassphrase` if the passphrase does not decrypt the
        header's check value; :class:`KeystoreError` if there is no keystore
        and ``create`` is false, or on I/O errors; :class:`KeystoreCorrupted`
        if the header is malformed; :class:`InvalidArgument` for an empty
        passphrase or unknown ``kdf``.
        """
        root = Path(path)
        secret = _normalize_passphrase(passphrase)
        params = KdfParams.named(kdf)  # validate even when opening
        header = root / HEADER_NAME
        try:
            if not root.exists():
                if not create:
                    raise KeystoreError(
                        f"no keystore at {root}; create one with `{CREATE_HINT} --keystore {root}`", path=str(root)
                    )
                os.makedirs(root, mode=0o700, exist_ok=True)
            if not root.is_dir():
                raise KeystoreError(f"keystore path {root} is not a directory", path=str(root))
            if not header.exists():
                if not create:
                    raise KeystoreError(
                        f"{root} holds no {HEADER_NAME}; create a keystore with `{CREATE_HINT} --keystore {root}`",
                        path=str(root),
                    )
                cls._initialize(root, secret, params)
            raw = _read_small(header)
        except FileNotFoundError as e:
            raise KeystoreError(f"no keystore at {root} ({e.filename} vanished while opening)", path=str(root)) from e
        except OSError as e:
            raise KeystoreError(f"cannot open keystore {root}: {e.strerror or e}", path=str(root)) from e

        where = str(header)
        obj = _parse_json_object(raw, where, KeystoreCorrupted)
        _expect_format(obj, _HEADER_FORMAT, where, KeystoreCorrupted)
        if set(obj) != {"format", "version", "kdf", "check"}:
            raise KeystoreCorrupted(f"{where}: unexpected members {sorted(obj)}", file=where)
        salt, stored = _kdf_from_obj(obj["kdf"], where, KeystoreCorrupted)
        check = _b64d(obj["check"], where, "check", KeystoreCorrupted)

        master = _argon2id(secret, salt, stored, where)
        try:
            plain = nacl.secret.SecretBox(_subkey(master, b"check")).decrypt(check)
        except nacl.exceptions.CryptoError as e:
            raise WrongPassphrase(
                f"wrong passphrase for keystore {root} (it does not decrypt the check value in {HEADER_NAME})",
                path=str(root),
            ) from e
        if plain != CHECK_PLAINTEXT:
            # Decrypts under our key yet says something else: written by a
            # different (future?) program, not a wrong passphrase.
            raise KeystoreCorrupted(f"{where}: check value decrypts to an unexpected plaintext", file=where)
        return cls(root, _subkey(master, b"files"), stored, _subkey(master, b"purpose"))

    @staticmethod
    def _initialize(root: Path, secret: bytes, params: KdfParams) -> None:
        """Write a fresh header into ``root``; tolerates a concurrent creator."""
        stray = [e.name for e in os.scandir(root) if e.name.endswith(KEY_SUFFIX) and not e.name.startswith(".")]
        if stray:
            raise KeystoreCorrupted(
                f"{root} has {len(stray)} .key file(s) (e.g. {stray[0]}) but no {HEADER_NAME}; "
                "refusing to create a new keystore that could not decrypt them",
                path=str(root),
            )
        os.chmod(root, 0o700)
        salt = nacl.utils.random(argon2id.SALTBYTES)
        master = _argon2id(secret, salt, params, str(root / HEADER_NAME))
        check = nacl.secret.SecretBox(_subkey(master, b"check")).encrypt(CHECK_PLAINTEXT)
        data = _json_bytes(
            {
                "format": _HEADER_FORMAT,
                "version": _VERSION,
                "kdf": _kdf_to_obj(salt, params),
                "check": _b64e(bytes(check)),
            }
        )
        # Write a complete temp file, then link() it into place: unlike
        # os.replace this fails if another process created the header
        # meanwhile, and we then open theirs instead of clobbering it.
        tmp = root / f".{HEADER_NAME}.{nacl.utils.random(8).hex()}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, root / HEADER_NAME)
            except FileExistsError:
                return
            _fsync_dir(root)
        finally:
            tmp.unlink(missing_ok=True)

    # -- properties --------------------------------------------------------

    @property
    def path(self) -> Path:
        """The keystore directory."""
        return self._path

    @property
    def kdf_params(self) -> KdfParams:
        """The Argon2id cost this keystore was created with."""
        return self._params

    def __repr__(self) -> str:
        state = "closed" if self._box is None else "open"
        return f"Keystore({str(self._path)!r}, {state}, opslimit={self._params.opslimit}, memlimit={self._params.memlimit})"

    def close(self) -> None:
        """Drop the derived keys; every later call raises :class:`KeystoreError`."""
        self._box = None
        self._purpose_root = None

    def __enter__(self) -> Keystore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def purpose_key(self, purpose: str) -> bytes:
        """A 32-byte secret key for an application ``purpose``, derived from this keystore's master key.

        The same passphrase and keystore give the same key on every open, and
        no one without the passphrase can compute it, so a tool can encrypt
        its own durable state (e.g. ``didctl provision``'s journal) without
        adding a key file or running Argon2id again. Keys for different
        purposes are independent (keyed BLAKE2b of the "purpose" subkey over
        ``b"purpose:" + purpose``), and none equals the files or check key.

        Preconditions: the keystore is open; ``purpose`` is a non-empty string
        naming the use (include a run or file id to scope it). Raises
        :class:`KeystoreError` if closed, :class:`InvalidArgument` for an empty purpose.
        """
        self._secretbox()
        root = self._purpose_root
        if root is None:
            raise KeystoreError(f"keystore {self._path} is closed", path=str(self._path))
        if not isinstance(purpose, str) or not purpose:
            raise InvalidArgument("a purpose key needs a non-empty purpose string")
        return _subkey(root, b"purpose:" + purpose.encode("utf-8"))

    def _secretbox(self) -> nacl.secret.SecretBox:
        box = self._box
        if box is None:
            raise KeystoreError(f"keystore {self._path} is closed", path=str(self._path))
        return box

    # -- reading -----------------------------------------------------------

    def file_for(self, did: str) -> Path:
        """The path of ``did``'s key file (whether or not it exists).
        Raises :class:`InvalidDid` if ``did`` is not a DID."""
        return self._path / (_did_stem(did) + KEY_SUFFIX)

    def has(self, did: str) -> bool:
        """Whether the keystore holds a file for ``did`` (not decrypted).
        Raises :class:`InvalidDid` if ``did`` is not a DID."""
        self._secretbox()
        return self.file_for(did).is_file()

    def get(self, did: str) -> DidSecrets:
        """The secrets stored for ``did``.

        Raises :class:`KeyNotInKeystore` (naming the DID) if absent,
        :class:`KeystoreCorrupted` (naming the file) if the file does not
        parse, does not decrypt under this keystore's key (tampered, or copied
        from another keystore) or holds another DID's secrets, and
        :class:`InvalidDid` if ``did`` is not a DID.
        """
        box = self._secretbox()
        path = self.file_for(did)
        where = str(path)
        try:
            raw = _read_small(path)
        except FileNotFoundError as e:
            raise KeyNotInKeystore(f"no secrets for {did} in keystore {self._path}", did=did) from e
        except OSError as e:
            raise KeystoreError(f"cannot read {path}: {e.strerror or e}", file=where) from e
        obj = _parse_json_object(raw, where, KeystoreCorrupted)
        _expect_format(obj, _KEYFILE_FORMAT, where, KeystoreCorrupted)
        if set(obj) != {"format", "version", "did", "box"}:
            raise KeystoreCorrupted(f"{where}: unexpected members {sorted(obj)}", file=where)
        if obj["did"] != did:
            raise KeystoreCorrupted(f"{where}: names {obj['did']!r} but its file name is for {did}", file=where)
        sealed = _b64d(obj["box"], where, "box", KeystoreCorrupted)
        try:
            plaintext = box.decrypt(sealed)
        except nacl.exceptions.CryptoError as e:
            raise KeystoreCorrupted(
                f"{where} does not decrypt with this keystore's key: altered, or copied from another keystore",
                file=where,
            ) from e
        secrets = _secrets_from_obj(_parse_json_object(plaintext, where, KeystoreCorrupted), where, KeystoreCorrupted)
        if secrets.did != did:
            # Authentic file of another DID renamed over this one.
            raise KeystoreCorrupted(f"{where}: holds the secrets of {secrets.did}, not {did}", file=where)
        return secrets

    def list(self) -> builtins.list[str]:
        """The DIDs with a key file, sorted. Reads names only (nothing is
        decrypted); temporary files and names that are not the canonical
        encoding of a DID are ignored."""
        self._secretbox()
        try:
            entries = [e.name for e in os.scandir(self._path)]
        except OSError as e:
            raise KeystoreError(f"cannot list keystore {self._path}: {e.strerror or e}", path=str(self._path)) from e
        dids = []
        for name in entries:
            if name.startswith(".") or not name.endswith(KEY_SUFFIX):
                continue
            did = _stem_to_did(name[: -len(KEY_SUFFIX)])
            if did is not None:
                dids.append(did)
        return sorted(dids)

    # -- writing -----------------------------------------------------------

    def _seal(self, box: nacl.secret.SecretBox, secrets: DidSecrets) -> tuple[str, bytes]:
        if not isinstance(secrets, DidSecrets):
            raise InvalidArgument(f"keystore stores DidSecrets, not {type(secrets).__name__}")
        sealed = box.encrypt(_json_bytes(_secrets_to_obj(secrets)))  # random 24-byte nonce
        doc = {"format": _KEYFILE_FORMAT, "version": _VERSION, "did": secrets.did, "box": _b64e(bytes(sealed))}
        return _did_stem(secrets.did) + KEY_SUFFIX, _json_bytes(doc)

    def put(self, secrets: DidSecrets) -> None:
        """Store ``secrets`` (replacing any earlier file for its DID), durably
        and atomically. Raises :class:`KeystoreError` naming the file on I/O errors."""
        name, data = self._seal(self._secretbox(), secrets)
        _write_atomic(self._path, name, data, sync_dir=True)

    def put_many(
        self,
        items: Iterable[DidSecrets],
        *,
        progress: Callable[[int], None] | None = None,
        chunk_size: int = 512,
        workers: int = 8,
        durability: Literal["file", "batch"] = "file",
    ) -> int:
        """Store many entries; returns how many files were written.

        Each file is written atomically exactly as :meth:`put` does, but
        ``workers`` threads overlap the per-file fsyncs and the directory is
        fsync'd once per chunk of ``chunk_size`` instead of once per file.
        ``items`` is consumed lazily (a generator of 20,000 is fine). When a
        chunk repeats a DID, its last entry wins. After each chunk is durable
        ``progress(total_written_so_far)`` is called (for a progress bar, or
        to checkpoint a resumable run).

        On the first failure the writes already started finish and are made
        durable, then the error is raised: :class:`KeystoreError` naming the
        file for an I/O error, :class:`InvalidArgument` for an item that is
        not a :class:`DidSecrets` (the items before it are stored first).
        Earlier chunks stay stored, so a rerun can skip DIDs for which
        :meth:`has` is true.

        ``durability="batch"`` is for bulk writers that keep their own
        durable, encrypted copy of every entry until the call returns (a
        journal; ``didctl provision`` is one): the files of a chunk are
        written and renamed into place (by ``workers`` threads, each taking
        a slice) without a per-file fsync, then the whole file system is
        synced once (``syncfs``) before ``progress`` is called: about ten
        times less CPU than one fsync per file. A file that does not exist
        yet is created in place (no temporary file and rename: creating files
        is most of this mode's cost), an existing one is replaced atomically.
        A chunk that returned is exactly as durable as in "file" mode. Until
        then a new entry may be seen half-written, and a crash *during* a
        chunk can leave a new entry (or, on file systems that do not order
        data before renames, a replaced one) whose content did not reach the
        disk: it then fails :meth:`get` with :class:`KeystoreCorrupted` (never
        silently wrong) until it is written again. So the caller must be able
        to redo the chunk, and nobody may rely on these entries before the
        call returns. Never use it to replace entries the caller cannot
        rewrite.
        """
        box = self._secretbox()
        if chunk_size < 1 or workers < 1:
            raise InvalidArgument(f"chunk_size ({chunk_size}) and workers ({workers}) must be >= 1")
        if durability not in ("file", "batch"):
            raise InvalidArgument(f"durability must be 'file' or 'batch', not {durability!r}")
        if durability == "batch":
            return self._put_many_batch(box, items, progress, chunk_size, workers)
        written = 0

        def write(entry: tuple[str, bytes]) -> None:
            _write_atomic(self._path, entry[0], entry[1], sync_dir=False)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keystore-put") as pool:

            def flush(chunk: dict[str, bytes]) -> None:
                nonlocal written
                if not chunk:
                    return
                futures = [pool.submit(write, entry) for entry in chunk.items()]
                chunk.clear()
                try:
                    for future in futures:
                        future.result()  # re-raises the first failure
                finally:
                    # Let every started write finish, then make this chunk's
                    # renames durable whether or not one of them failed.
                    for future in futures:
                        future.exception()
                    try:
                        _fsync_dir(self._path)
                    except OSError as e:
                        raise KeystoreError(f"cannot fsync keystore {self._path}: {e.strerror or e}") from e
                written += len(futures)
                if progress is not None:
                    progress(written)

            pending: dict[str, bytes] = {}
            for secrets in items:
                try:
                    name, data = self._seal(box, secrets)
                except InvalidArgument:
                    flush(pending)
                    raise
                pending.pop(name, None)  # a repeated DID: the last occurrence wins
                pending[name] = data
                if len(pending) >= chunk_size:
                    flush(pending)
            flush(pending)
        return written

    def _put_many_batch(
        self, box: nacl.secret.SecretBox, items: Iterable[DidSecrets], progress: Callable[[int], None] | None, chunk_size: int, workers: int
    ) -> int:
        """:meth:`put_many` with ``durability="batch"`` (see there)."""
        written = 0
        pending: dict[str, bytes] = {}

        def write_slice(entries: builtins.list[tuple[str, bytes]]) -> None:
            for name, data in entries:
                _write_new_or_replace(self._path, name, data)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keystore-put") as pool:

            def flush() -> None:
                nonlocal written
                if not pending:
                    return
                # Creating a file can block for a while when the file system is
                # committing its journal (other processes' fsyncs): a few threads,
                # each writing a contiguous slice, overlap those waits.
                entries = builtins.list(pending.items())
                step = -(-len(entries) // workers)
                futures = [pool.submit(write_slice, entries[i : i + step]) for i in range(0, len(entries), step)]
                try:
                    for future in futures:
                        future.result()  # re-raises the first failure
                finally:
                    for future in futures:
                        future.exception()
                    # Whatever was renamed so far becomes durable before we report or raise.
                    _sync_filesystem(self._path)
                written += len(entries)
                pending.clear()
                if progress is not None:
                    progress(written)

            for secrets in items:
                try:
                    name, data = self._seal(box, secrets)
                except InvalidArgument:
                    flush()
                    raise
                pending.pop(name, None)  # a repeated DID: the last occurrence wins
                pending[name] = data
                if len(pending) >= chunk_size:
                    flush()
            flush()
        return written

    def delete(self, did: str) -> None:
        """Remove ``did``'s file durably. Raises :class:`KeyNotInKeystore` if absent."""
        self._secretbox()
        path = self.file_for(did)
        try:
            path.unlink()
            _fsync_dir(self._path)
        except FileNotFoundError as e:
            raise KeyNotInKeystore(f"no secrets for {did} in keystore {self._path}", did=did) from e
        except OSError as e:
            raise KeystoreError(f"cannot delete {path}: {e.strerror or e}", file=str(path)) from e
