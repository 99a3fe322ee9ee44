"""Device bundles: what ``didctl provision`` hands each device, and how its keys are sealed.

A bundle is one UTF-8 JSON file per device, ``<out>/bundles/<serial>.json``
(docs/provisioning.md has the full format)::

    {"format": "didnode-device-bundle", "version": 1,
     "serial", "did", "manufacturer", "model", "hardwareVersion", "firmwareVersion",
     "network", "node": "HOST:PORT", "position": int, "opHash": HEX,
     "credential": "<DeviceAttestationCredential, vc+jwt>",
     "checkpoint": {signed checkpoint JSON} | null,
     "trust": {trust policy, docs/trust.md} | null,
     "keys": null | SEALED}

``trust`` is the trust policy the provisioning host verified the ledger
with (network, genesis, checkpoint keys, threshold, staleness, latest
verified checkpoint): the device verifies every answer against it from its
first boot (:func:`bundle_trust`). Bundles written before it existed lack the
member and are read as null.

``keys`` is null when the device generated its own keys. Otherwise it holds
the device's secrets as a "didnode-secrets" object (the keystore's format:
``key-1`` seed, ``ka-1`` X25519 key, never the next key, which stays with
the manufacturer) protected in one of three ways:

``passphrase``
    ``{"protection": "passphrase", "kdf": {"alg": "argon2id", "salt", "opslimit", "memlimit"}, "box": B64}``.
    Argon2id runs **once per run** (one salt per run) on the bundle
    passphrase, giving the run key ``R``; each device's key is keyed BLAKE2b
    (key ``R``, message ``"bundle:" + DID``, personalization
    ``"didnode-bundle"``), and ``box`` is a secretbox (24-byte nonce ||
    XSalsa20-Poly1305) under it. A flashing station derives ``R`` once per
    run too and opens each bundle with one hash and one secretbox. A per-run
    KDF keeps the passphrase as hard to guess as one Argon2id allows, while
    one Argon2id per device (64 MiB, tens of ms) would cap a run at tens of
    devices per second; the per-DID subkey means a box moved into another
    device's bundle does not open.
``recipient``
    ``{"protection": "recipient", "recipient": "z6LS...", "box": B64}``: a
    libsodium sealed box (ephemeral X25519 + XSalsa20-Poly1305) to the
    installer's (or the device's) X25519 public key. One X25519 operation
    per device; the provisioning host cannot open its own output afterwards,
    only the holder of the private key can.
``none``
    ``{"protection": "none", "secrets": {...}}``: plain, only with the loud
    ``--plain-keys`` flag (e.g. when the files go straight into an HSM-backed
    flashing pipeline).

Every sealed plaintext repeats the DID, compared with the bundle's on opening.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import nacl.exceptions
import nacl.public
import nacl.pwhash.argon2id as argon2id
from nacl.bindings import crypto_generichash_blake2b_salt_personal, crypto_secretbox, crypto_secretbox_open

from didnode.core import canonical
from didnode.core.did import validate_did
from didnode.core.encoding import X25519_PUB, b64url, b64url_decode, multikey_decode, multikey_encode
from didnode.core.trust import TrustPolicy
from didnode.core.trust.policy import from_json as policy_from_json
from didnode.errors import BundleInvalid, InvalidArgument, InvalidDid, InvalidKey, TrustPolicyInvalid, WrongPassphrase
from didnode.keystore import DidSecrets, KdfParams, import_plain

BUNDLE_FORMAT = "didnode-device-bundle"
BUNDLE_VERSION = 1
SECRETS_FORMAT = "didnode-secrets"
_PERSON = b"didnode-bundle\x00\x00"  # BLAKE2b personalization: exactly 16 bytes
_NONCE = 24
MODES = ("passphrase", "recipient", "none")
MAX_BUNDLE_BYTES = 1 << 20


def secrets_json(did: str, auth_seed: bytes, ka_key: bytes | None) -> bytes:
    """The device's "didnode-secrets" object (keystore format v1), compact UTF-8 JSON.

    Precondition: 32-byte ``auth_seed`` (key-1) and ``ka_key`` (ka-1) or None.
    Built by hand (the keystore's ``export_plain`` gives the same object, a
    test checks it) because this runs once per device on the hot path.
    """
    ka = 'null' if ka_key is None else '{"id":"ka-1","private_key":"' + b64url(ka_key) + '"}'
    return (
        '{"did":"' + did + '","format":"' + SECRETS_FORMAT + '","key_agreement":' + ka
        + ',"labels":{},"next_key":null,"signing_keys":{"key-1":"' + b64url(auth_seed) + '"},"version":1}'
    ).encode("ascii")


def _device_key(run_key: bytes, did: str) -> bytes:
    return crypto_generichash_blake2b_salt_personal(b"bundle:" + did.encode("ascii"), digest_size=32, key=run_key, person=_PERSON)


def run_key(passphrase: str | bytes, salt: bytes, params: KdfParams) -> bytes:
    """Argon2id of the bundle passphrase: the run key ``R`` (module docstring). Raises
    :class:`InvalidArgument` for an empty passphrase or a salt of the wrong size."""
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not secret:
        raise InvalidArgument("the bundle passphrase is empty")
    if len(salt) != argon2id.SALTBYTES:
        raise InvalidArgument(f"bundle KDF salt must be {argon2id.SALTBYTES} bytes")
    return argon2id.kdf(32, secret, salt, opslimit=params.opslimit, memlimit=params.memlimit)


@dataclass(frozen=True)
class Sealer:
    """Seals device secrets for bundles of one run (module docstring).

    Build with :meth:`passphrase`, :meth:`recipient` or :meth:`plain`.
    """

    mode: str
    kdf: Mapping[str, Any] | None = None
    _run_key: bytes | None = None
    _recipient: nacl.public.SealedBox | None = None
    recipient_multikey: str | None = None

    @classmethod
    def passphrase(cls, passphrase: str | bytes, salt: bytes, params: KdfParams) -> "Sealer":
        """Runs Argon2id once; see :func:`run_key` for what it raises."""
        kdf = {"alg": "argon2id", "salt": b64url(salt), "opslimit": params.opslimit, "memlimit": params.memlimit}
        return cls("passphrase", kdf, run_key(passphrase, salt, params))

    @classmethod
    def recipient(cls, multikey: str) -> "Sealer":
        """Seal to the X25519 public key ``multikey`` (z6LS...); raises :class:`InvalidKey`."""
        raw = multikey_decode(multikey, X25519_PUB)
        return cls("recipient", None, None, nacl.public.SealedBox(nacl.public.PublicKey(raw)), multikey_encode(raw, X25519_PUB))

    @classmethod
    def plain(cls) -> "Sealer":
        return cls("none")

    def check_value(self) -> str:
        """For the passphrase mode: a hex MAC of a fixed text under the run key, so a resumed
        run can tell that it was given the same passphrase (a guesser learns nothing it could
        not get from any sealed bundle: each guess still costs one Argon2id)."""
        if self._run_key is None:
            raise InvalidArgument("only a passphrase sealer has a check value")
        return crypto_generichash_blake2b_salt_personal(b"didctl provision bundle check", digest_size=16, key=self._run_key, person=_PERSON).hex()

    @property
    def run_key_bytes(self) -> bytes | None:
        """The passphrase mode's run key (to hand to a helper process of the same run), else None."""
        return self._run_key

    def seal(self, did: str, secrets: bytes) -> dict[str, Any]:
        """The bundle's ``keys`` member for ``secrets`` (from :func:`secrets_json`) of ``did``."""
        if self.mode == "passphrase":
            assert self._run_key is not None
            nonce = os.urandom(_NONCE)
            box = nonce + crypto_secretbox(secrets, nonce, _device_key(self._run_key, did))
            return {"protection": "passphrase", "kdf": self.kdf, "box": b64url(box)}
        if self.mode == "recipient":
            assert self._recipient is not None
            return {"protection": "recipient", "recipient": self.recipient_multikey, "box": b64url(bytes(self._recipient.encrypt(secrets)))}
        return {"protection": "none", "secrets": json.loads(secrets)}


class BundleOpener:
    """Opens the ``keys`` of device bundles (the flashing station's or the device's side).

    Give the bundle passphrase, or the X25519 private key the bundles were
    sealed to, or neither for plain bundles. Run keys are cached per
    (salt, cost), so opening a whole run costs one Argon2id.
    """

    def __init__(self, passphrase: str | bytes | None = None, private_key: bytes | None = None) -> None:
        self._passphrase = passphrase
        self._unseal = nacl.public.SealedBox(nacl.public.PrivateKey(private_key)) if private_key is not None else None
        self._run_keys: dict[tuple[bytes, int, int], bytes] = {}

    def open(self, bundle: Mapping[str, Any]) -> DidSecrets | None:
        """The device's secrets, or None when the bundle holds no keys (device-generated keys).

        Raises :class:`BundleInvalid` for a malformed bundle or sealed secrets
        of another DID, :class:`WrongPassphrase` when the passphrase or private
        key does not open it (or it was altered), :class:`InvalidArgument`
        when the opener lacks what this protection needs.
        """
        did = check_bundle(bundle)
        keys = bundle["keys"]
        if keys is None:
            return None
        mode = keys.get("protection") if isinstance(keys, dict) else None
        if mode == "none":
            plaintext = keys.get("secrets")
            if not isinstance(plaintext, dict):
                raise BundleInvalid(f"bundle of {did}: keys.secrets is not an object")
            secrets = import_plain(plaintext)
        elif mode == "passphrase":
            secrets = self._open_passphrase(did, keys)
        elif mode == "recipient":
            if self._unseal is None:
                raise InvalidArgument(f"the bundle of {did} is sealed to {keys.get('recipient')}: give its X25519 private key")
            try:
                plain = self._unseal.decrypt(b64url_decode(keys.get("box"), "keys.box", BundleInvalid))
            except nacl.exceptions.CryptoError:
                raise WrongPassphrase(f"the private key does not open the bundle of {did} (another recipient, or altered)") from None
            secrets = _secrets(plain, did)
        else:
            raise BundleInvalid(f"bundle of {did}: keys.protection {mode!r} is not one of {', '.join(MODES)}")
        if secrets.did != did:
            raise BundleInvalid(f"bundle of {did} seals the secrets of {secrets.did}")
        return secrets

    def _open_passphrase(self, did: str, keys: Mapping[str, Any]) -> DidSecrets:
        if self._passphrase is None:
            raise InvalidArgument(f"the bundle of {did} is passphrase-protected: give the bundle passphrase")
        kdf = keys.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("alg") != "argon2id":
            raise BundleInvalid(f"bundle of {did}: keys.kdf must be an argon2id object")
        salt = b64url_decode(kdf.get("salt"), "keys.kdf.salt", BundleInvalid)
        ops, mem = kdf.get("opslimit"), kdf.get("memlimit")
        # Bounded: a crafted bundle must not demand terabytes or hours.
        if not (isinstance(ops, int) and argon2id.OPSLIMIT_MIN <= ops <= argon2id.OPSLIMIT_SENSITIVE):
            raise BundleInvalid(f"bundle of {did}: keys.kdf.opslimit out of range")
        if not (isinstance(mem, int) and argon2id.MEMLIMIT_MIN <= mem <= argon2id.MEMLIMIT_SENSITIVE):
            raise BundleInvalid(f"bundle of {did}: keys.kdf.memlimit out of range")
        cache_key = (salt, ops, mem)
        rk = self._run_keys.get(cache_key)
        if rk is None:
            try:
                rk = run_key(self._passphrase, salt, KdfParams(ops, mem))
            except InvalidArgument as exc:
                raise BundleInvalid(f"bundle of {did}: {exc}") from None
            self._run_keys[cache_key] = rk
        box = b64url_decode(keys.get("box"), "keys.box", BundleInvalid)
        if len(box) < _NONCE + 16:
            raise BundleInvalid(f"bundle of {did}: keys.box is too short")
        try:
            plain = crypto_secretbox_open(box[_NONCE:], box[:_NONCE], _device_key(rk, did))
        except nacl.exceptions.CryptoError:
            raise WrongPassphrase(f"the passphrase does not open the bundle of {did} (or the bundle was altered)") from None
        return _secrets(plain, did)


def _secrets(plaintext: bytes, did: str) -> DidSecrets:
    obj = canonical.loads(plaintext, BundleInvalid, f"bundle of {did}: sealed secrets")
    if not isinstance(obj, dict):
        raise BundleInvalid(f"bundle of {did}: sealed secrets are not an object")
    try:
        return import_plain(obj)
    except InvalidArgument as exc:
        raise BundleInvalid(f"bundle of {did}: {exc}") from None


def check_bundle(bundle: Mapping[str, Any]) -> str:
    """Check the envelope of a bundle; return its DID. Raises :class:`BundleInvalid`."""
    if not isinstance(bundle, Mapping) or bundle.get("format") != BUNDLE_FORMAT:
        raise BundleInvalid(f"not a {BUNDLE_FORMAT} object")
    if bundle.get("version") != BUNDLE_VERSION:
        raise BundleInvalid(f"unsupported {BUNDLE_FORMAT} version {bundle.get('version')!r} (this didnode reads {BUNDLE_VERSION})")
    did = bundle.get("did")
    if not isinstance(did, str) or not did.startswith("did:"):
        raise BundleInvalid("bundle has no did")
    try:
        validate_did(did)  # ASCII: it keys the per-device box (module docstring)
    except InvalidDid as exc:
        raise BundleInvalid(f"bundle did: {exc}") from None
    for name in ("serial", "manufacturer", "credential", "network", "node"):
        if not isinstance(bundle.get(name), str):
            raise BundleInvalid(f"bundle of {did}: {name} must be a string")
    if "keys" not in bundle:
        raise BundleInvalid(f"bundle of {did} has no keys member (null when the device holds its own keys)")
    bundle_trust(bundle)
    return did


def bundle_trust(bundle: Mapping[str, Any]) -> TrustPolicy | None:
    """The trust policy a bundle carries for its device (None: an older bundle, or none given).

    Raises :class:`BundleInvalid` when the member is not a valid policy, or is of another network than the bundle.
    """
    raw = bundle.get("trust")
    if raw is None:
        return None
    try:
        policy = policy_from_json(raw)
    except TrustPolicyInvalid as exc:
        raise BundleInvalid(f"bundle of {bundle.get('did')}: {exc}") from None
    if policy.network != bundle.get("network"):
        raise BundleInvalid(f"bundle of {bundle.get('did')}: its trust policy is for network {policy.network!r}, the bundle for {bundle.get('network')!r}")
    return policy


def read_bundle(data: bytes) -> dict[str, Any]:
    """Parse bundle bytes (bounded); raises :class:`BundleInvalid`."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleInvalid(f"bundle is {len(data)} bytes; the limit is {MAX_BUNDLE_BYTES}")
    obj = canonical.loads(data, BundleInvalid, "bundle")
    check_bundle(obj)
    return obj  # type: ignore[no-any-return]


def parse_recipient(value: str) -> str:
    """``--bundle-recipient``: an X25519 Multikey (z6LS...), or ``@FILE`` holding one. Raises :class:`InvalidKey`."""
    text = value
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as f:
                text = f.read().strip()
        except OSError as exc:
            raise InvalidKey(f"cannot read {value[1:]}: {exc.strerror or exc}") from None
    return multikey_encode(multikey_decode(text.strip(), X25519_PUB), X25519_PUB)


__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "BundleOpener",
    "MODES",
    "bundle_trust",
    "Sealer",
    "check_bundle",
    "parse_recipient",
    "read_bundle",
    "run_key",
    "secrets_json",
]
