"""Issuing ``vc+jwt`` credentials and status list credentials (pure: ``now`` passed in).

An :class:`Issuer` holds one signing key in libsodium's form, so issuing is
one JSON encoding, two base64url encodings and one Ed25519 signature: our own
canonical compact serialization (header ``{"alg":"EdDSA","kid":KID,"typ":"vc+jwt"}``,
members sorted; payload compact UTF-8 JSON). ``KID`` names the key's
``JsonWebKey`` verification method (``did#key-1-jwk``): VC-JOSE-COSE secures
with JOSE only keys expressed as JWKs when they come from a controlled
identifier document. Status entries name their lists by HTTP(S) URL under the
issuer's status base URL (:mod:`.status_url`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from nacl.bindings import crypto_sign_seed_keypair
from nacl.signing import SigningKey

from didnode.core.credentials.jose import sign_compact
from didnode.core.credentials.model import (
    DEVICE_ATTESTATION,
    StatusEntry,
    build_claims,
    format_time,
    status_entry,
)
from didnode.core.credentials.status_list import Bitstring, build_list_claims, resource_id
from didnode.core.credentials.status_url import DEFAULT_STATUS_BASE_URL, status_list_url, validate_base_url
from didnode.core.did import JWK_SUFFIX, split_did_url


class Issuer:
    """Signs credentials as ``did`` with its key ``key_id``.

    ``kid`` is the JOSE ``kid`` (the JsonWebKey method ``did#key-1-jwk``);
    ``signer_kid`` the DID URL a ledger operation's proof names
    (``did#key-1``). ``status_base_url`` is where status entries say their
    lists can be fetched (validated; None: the DID URL form of credentials
    issued before HTTP(S) URLs).

    Precondition: ``key`` is the private half of a current assertionMethod
    key ``key_id`` of ``did`` (verifiers check that on the ledger).
    """

    __slots__ = ("did", "key_id", "kid", "signer_kid", "status_base_url", "_secret")

    def __init__(self, did: str, key_id: str, key: SigningKey | bytes, status_base_url: str | None = DEFAULT_STATUS_BASE_URL) -> None:
        seed = bytes(key) if isinstance(key, SigningKey) else key
        self.did = did
        self.key_id = key_id
        self.signer_kid = f"{did}#{key_id}"
        split_did_url(self.signer_kid)
        self.kid = f"{self.signer_kid}{JWK_SUFFIX}"
        self.status_base_url = validate_base_url(status_base_url) if status_base_url is not None else None
        self._secret = crypto_sign_seed_keypair(seed)[1]

    def status_url(self, resource: str) -> str:
        """The URL under which this issuer's status entries name its resource ``resource``."""
        return status_list_url(self.did, resource, self.status_base_url)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Sign a prepared payload as is (the caller built and checked it)."""
        return sign_compact(claims, self.kid, self._secret)

    def issue(
        self,
        subject: str,
        types: Sequence[str],
        subject_claims: Mapping[str, Any],
        now_ms: int,
        valid_until_ms: int | None = None,
        status: Sequence[StatusEntry] = (),
        credential_id: str | None = None,
    ) -> str:
        """A credential about ``subject`` valid from ``now_ms`` (see :func:`model.build_claims`)."""
        claims = build_claims(self.did, subject, types, subject_claims, now_ms, valid_until_ms, status, credential_id)
        return sign_compact(claims, self.kid, self._secret)

    def status_entries(self, number: int, index: int) -> tuple[StatusEntry, StatusEntry]:
        """The revocation and suspension entries for ``index`` of list ``number``."""
        base = self.status_base_url
        return (
            status_entry(self.did, resource_id("revocation", number), "revocation", index, base),
            status_entry(self.did, resource_id("suspension", number), "suspension", index, base),
        )

    def status_list(self, purpose: str, number: int, bits: Bitstring, now_ms: int, allocated: int | None = None, url: str | None = None) -> str:
        """A signed status list credential for resource ``<purpose>-<number>``.

        ``url`` is its ``id``: the one it had when it is republished (default:
        :meth:`status_url`); ``allocated`` only for a list that had the legacy member.
        """
        rid = resource_id(purpose, number)
        claims = build_list_claims(self.did, rid, purpose, bits, now_ms, allocated, url if url is not None else self.status_url(rid))
        return sign_compact(claims, self.kid, self._secret)


def device_attestation_claims(
    model: str, serial_number: str, hardware_version: str, firmware_version: str, manufacture_time_ms: int, **extra: Any
) -> dict[str, Any]:
    """The credentialSubject members (besides ``id``) of a :data:`DEVICE_ATTESTATION`."""
    return {
        "model": model,
        "serialNumber": serial_number,
        "hardwareVersion": hardware_version,
        "firmwareVersion": firmware_version,
        "manufactureTime": format_time(manufacture_time_ms),
        **extra,
    }


__all__ = ["Issuer", "device_attestation_claims", "DEVICE_ATTESTATION"]
