"""Key derivation: the Argon2id cost presets (and ``$DIDCTL_KDF``), Argon2id itself,
the keyed-BLAKE2b subkeys, passphrase normalization and the ``kdf`` member of
headers and bundles (package docstring, "Key derivation").
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.pwhash.argon2id as argon2id

from didnode.core.encoding import b64url, b64url_decode
from didnode.errors import InvalidArgument, KeystoreError

KdfName = Literal["interactive", "moderate", "sensitive"]

_KDF_ALG: Final = "argon2id"
_PERSON: Final = b"didnode-keystore"  # BLAKE2b personalization: exactly 16 bytes

# Parameters read from disk or from a bundle are attacker-influenced: bound
# them so a crafted header cannot demand terabytes of RAM or hours of CPU.
_OPSLIMIT_BOUNDS: Final = (argon2id.OPSLIMIT_MIN, argon2id.OPSLIMIT_SENSITIVE)
_MEMLIMIT_BOUNDS: Final = (argon2id.MEMLIMIT_MIN, argon2id.MEMLIMIT_SENSITIVE)


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


def kdf_from_env() -> KdfName:
    """The KDF cost named by ``$DIDCTL_KDF`` ("interactive" in tests/CI), else "moderate".

    Raises :class:`InvalidArgument` if the variable is set to an unknown name.
    """
    value = os.environ.get("DIDCTL_KDF", "").strip()
    if not value:
        return "moderate"
    if value not in get_args(KdfName):
        raise InvalidArgument(
            f"DIDCTL_KDF={value!r} is not one of {', '.join(get_args(KdfName))}", variable="DIDCTL_KDF"
        )
    return value  # type: ignore[return-value]  # narrowed by the membership test above


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
    return {"alg": _KDF_ALG, "salt": b64url(salt), "opslimit": params.opslimit, "memlimit": params.memlimit}


def _kdf_from_obj(
    obj: object, where: str, err: type[KeystoreError] | type[InvalidArgument]
) -> tuple[bytes, KdfParams]:
    if not isinstance(obj, dict) or set(obj) != {"alg", "salt", "opslimit", "memlimit"}:
        raise err(f"{where}: kdf must be an object with alg, salt, opslimit, memlimit")
    if obj["alg"] != _KDF_ALG:
        raise err(f"{where}: kdf alg {obj['alg']!r} is not supported (only {_KDF_ALG!r})")
    salt = b64url_decode(obj["salt"], f"{where}: kdf.salt", err)
    if len(salt) != argon2id.SALTBYTES:
        raise err(f"{where}: kdf.salt is {len(salt)} bytes, expected {argon2id.SALTBYTES}")
    for name, (lo, hi) in (("opslimit", _OPSLIMIT_BOUNDS), ("memlimit", _MEMLIMIT_BOUNDS)):
        value = obj[name]
        # bool is an int subclass; true/false in the JSON is not a cost.
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise err(f"{where}: kdf.{name}={value!r} is outside [{lo}, {hi}]")
    return salt, KdfParams(obj["opslimit"], obj["memlimit"])
