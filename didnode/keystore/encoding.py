"""The JSON encodings shared by key files, sealed bundles and the plain export.

Format names and version, compact JSON (base64url is
:func:`didnode.core.encoding.b64url_decode`'s strict form), and the
"didnode-secrets" object (:class:`~didnode.keystore.didsecrets.DidSecrets`
to and from JSON). Every parser takes the error class to raise, so the same
code reports a damaged file as :class:`KeystoreCorrupted` and a bad argument
as :class:`InvalidArgument`. The formats are in the package docstring
(:mod:`didnode.keystore`).
"""

from __future__ import annotations

import json
from typing import Any, Final, Mapping

from didnode.core import canonical
from didnode.core.encoding import b64url, b64url_decode
from didnode.errors import InvalidArgument, InvalidDid, KeystoreError
from didnode.keystore.didsecrets import DidSecrets

_HEADER_FORMAT: Final = "didnode-keystore"
_KEYFILE_FORMAT: Final = "didnode-keystore-key"
_SECRETS_FORMAT: Final = "didnode-secrets"
_SEALED_FORMAT: Final = "didnode-sealed-secrets"
_VERSION: Final = 1

# Files are a few hundred bytes; refusing big ones keeps a planted or damaged
# file from making us read gigabytes.
_MAX_FILE_BYTES: Final = 1 << 20

def _json_bytes(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse_json_object(raw: bytes, where: str, err: type[KeystoreError] | type[InvalidArgument]) -> dict[str, Any]:
    obj = canonical.loads(raw, lambda msg: err(f"{where}: not UTF-8 JSON ({msg})"), "the text")
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
        "signing_keys": {kid: b64url(seed) for kid, seed in s.signing_keys.items()},
        "next_key": None if s.next_key_seed is None else {"id": s.next_key_id, "seed": b64url(s.next_key_seed)},
        "key_agreement": (
            None
            if s.key_agreement_key is None
            else {"id": s.key_agreement_id, "private_key": b64url(s.key_agreement_key)}
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
        return member["id"], b64url_decode(member[secret_name], f"{where}: {name}.{secret_name}", err)

    next_id, next_seed = pair("next_key", "seed")
    ka_id, ka_key = pair("key_agreement", "private_key")
    labels = obj["labels"]
    if not isinstance(labels, dict):
        raise err(f"{where}: labels is not an object")
    try:
        return DidSecrets(
            did=obj["did"],
            signing_keys={kid: b64url_decode(v, f"{where}: signing_keys[{kid!r}]", err) for kid, v in signing.items()},
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

