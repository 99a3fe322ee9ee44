"""Keys out of (and into) the keystore: the plain "didnode-secrets" export and the sealed bundle.

:func:`export_plain` / :func:`import_plain` (unencrypted, the loud ``--plain``
case) and :func:`export_sealed` / :func:`import_sealed` (the
"didnode-sealed-secrets" bundle under a recipient passphrase, for handing a
device its keys). Both formats are in the package docstring.
"""

from __future__ import annotations

from typing import Any, Mapping

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from didnode.core.encoding import b64url, b64url_decode
from didnode.errors import InvalidArgument, InvalidDid, KeystoreCorrupted, WrongPassphrase
from didnode.keystore.didsecrets import DidSecrets, _check_did
from didnode.keystore.encoding import (
    _MAX_FILE_BYTES,
    _SEALED_FORMAT,
    _VERSION,
    _expect_format,
    _json_bytes,
    _parse_json_object,
    _secrets_from_obj,
    _secrets_to_obj,
)
from didnode.keystore.kdf import KdfName, KdfParams, _argon2id, _kdf_from_obj, _kdf_to_obj, _normalize_passphrase, _subkey


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
            "box": b64url(bytes(box)),
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
    did, salt, params, box = read_sealed(blob)
    key = _subkey(_argon2id(_normalize_passphrase(passphrase), salt, params, where), b"sealed-secrets")
    try:
        plaintext = nacl.secret.SecretBox(key).decrypt(box)
    except nacl.exceptions.CryptoError as e:
        raise WrongPassphrase(
            f"the passphrase does not open the sealed bundle for {did!r} (or the bundle was altered)"
        ) from e
    secrets = _secrets_from_obj(_parse_json_object(plaintext, where, KeystoreCorrupted), where, KeystoreCorrupted)
    if secrets.did != did:
        raise KeystoreCorrupted(f"{where}: labelled {did!r} but seals secrets of {secrets.did}")
    return secrets


def read_sealed(blob: bytes | bytearray) -> tuple[str, bytes, KdfParams, bytes]:
    """(clear DID, salt, KDF parameters, box) of a sealed bundle; :class:`KeystoreCorrupted` for any other bytes.

    Parsing only: the parameters are bounded, no Argon2id runs here.
    """
    where = "sealed bundle"
    if len(blob) > _MAX_FILE_BYTES:
        raise KeystoreCorrupted(f"{where}: {len(blob)} bytes is over the {_MAX_FILE_BYTES}-byte limit")
    obj = _parse_json_object(bytes(blob), where, KeystoreCorrupted)
    _expect_format(obj, _SEALED_FORMAT, where, KeystoreCorrupted)
    if set(obj) != {"format", "version", "did", "kdf", "box"}:
        raise KeystoreCorrupted(f"{where}: unexpected members {sorted(obj)}")
    try:
        did = _check_did(obj["did"])
    except InvalidDid as e:
        raise KeystoreCorrupted(f"{where}: clear did is not a DID") from e
    salt, params = _kdf_from_obj(obj["kdf"], where, KeystoreCorrupted)
    return did, salt, params, b64url_decode(obj["box"], f"{where}: box", KeystoreCorrupted)
