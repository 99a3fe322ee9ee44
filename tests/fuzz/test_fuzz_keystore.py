"""Fuzz targets: the keystore's file reader (key files and what their box holds), its header, sealed bundles.

A keystore directory is untrusted on disk (a damaged, planted or foreign file): every
file must fail as :class:`~didnode.errors.KeystoreCorrupted` (or another typed error).
The header and sealed-bundle targets stop before Argon2id (``read_header``,
``read_sealed``): their parameters are bounded, and running the KDF per input would
make fuzzing a benchmark of Argon2id.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from didnode.core.encoding import b64url
from didnode.keystore import DidSecrets, Keystore, export_plain, export_sealed
from didnode.keystore.exports import read_sealed
from didnode.keystore.store import read_header
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, JSON_TOKENS, world

KS_TOKENS = (
    *JSON_TOKENS,
    *DID_TOKENS,
    *(f'"{m}":' for m in ("format", "version", "did", "box", "kdf", "check", "alg", "salt", "opslimit", "memlimit", "signing_keys", "next_key", "key_agreement", "labels", "id", "seed", "private_key")),
    '"didnode-keystore"', '"didnode-keystore-key"', '"didnode-secrets"', '"didnode-sealed-secrets"', '"argon2id"', ":1,",
)


@functools.lru_cache(maxsize=1)
def _keystore() -> tuple[Keystore, str, DidSecrets]:
    root = harness.scratch_dir("fuzz-keystore-")
    ks = Keystore.open(root / "ks", "fuzz passphrase", create=True, kdf="interactive")
    w = world()
    secrets = DidSecrets(w.admin.did, {"key-1": bytes(w.admin.key)}, "next-1", bytes(w.admin.next_key), "ka-1", bytes(w.admin.ka), {"role": "admin"})  # type: ignore[arg-type]
    ks.put(secrets)
    return ks, w.admin.did, secrets


def _key_files() -> list[bytes]:
    ks, did, _ = _keystore()
    return [ks.file_for(did).read_bytes()]


@target("keystore_key_file", seeds=_key_files, tokens=KS_TOKENS)
def fuzz_key_file(data: bytes) -> None:
    ks, did, _ = _keystore()
    ks.file_for(did).write_bytes(data)
    ks.get(did)


def _plaintexts() -> list[bytes]:
    _, _, secrets = _keystore()
    plain = export_plain(secrets)
    no_next = {**plain, "next_key": None, "key_agreement": None, "labels": {}}
    return [json.dumps(p, separators=(",", ":")).encode() for p in (plain, no_next)]


@target("keystore_secrets", seeds=_plaintexts, tokens=KS_TOKENS)
def fuzz_sealed_secrets(data: bytes) -> None:
    """What an authentic key file's box holds (the "didnode-secrets" object), sealed under the keystore's key."""
    ks, did, _ = _keystore()
    sealed = ks._secretbox().encrypt(data)
    doc = {"format": "didnode-keystore-key", "version": 1, "did": did, "box": b64url(bytes(sealed))}
    ks.file_for(did).write_bytes(json.dumps(doc).encode())
    ks.get(did)


@target("keystore_header", seeds=lambda: [(_keystore()[0].path / "keystore.json").read_bytes()], tokens=KS_TOKENS)
def fuzz_header(data: bytes) -> None:
    read_header(data, "keystore.json")


@target("sealed_bundle", seeds=lambda: [export_sealed(_keystore()[2], "recipient", kdf="interactive")], tokens=KS_TOKENS)
def fuzz_sealed_bundle(data: bytes) -> None:
    read_sealed(data)


test_fuzz = harness.fuzz_tests(__name__)


REGRESSIONS = {
    # json's int() limit and recursion limit escaped the keystore's JSON reader (ValueError, RecursionError).
    "header-5000-digit-integer": ("keystore_header", b'{"version":' + b"1" * 5000 + b"}"),
    "header-nested-too-deep": ("keystore_header", b"[" * 100_000),
    "sealed-5000-digit-integer": ("sealed_bundle", b'{"version":' + b"1" * 5000 + b"}"),
    "secrets-nested-too-deep": ("keystore_secrets", b'{"labels":' * 100_000),
}
test_regression = harness.regression_tests(REGRESSIONS)
