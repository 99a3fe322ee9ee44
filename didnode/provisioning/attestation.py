"""Fast issuance of one run's DeviceAttestationCredentials.

A run issues thousands of credentials that differ only in the subject DID,
the serial, the credential id and the status index. :class:`AttestationBatch`
encodes the claims of one chunk once (with :func:`didnode.core.credentials.model.build_claims`
and the issuer's own JSON encoder), cuts the encoded text at those four
values, and per device only joins strings, base64url-encodes and signs:
about half the cost of :meth:`didnode.core.credentials.Issuer.issue`.

The result is byte-identical to ``Issuer.issue`` with the same arguments
(Ed25519 signatures are deterministic). The batch proves it on its first
credential and otherwise falls back to ``Issuer.issue`` for every device,
so a change in the claims builder can make this slower, never wrong.
"""

from __future__ import annotations

import json
import re
import uuid
from nacl.bindings import crypto_sign, crypto_sign_seed_keypair
from nacl.signing import SigningKey

from didnode.core.credentials import DEVICE_ATTESTATION, Issuer, device_attestation_claims
from didnode.core.credentials.jose import header_segment
from didnode.core.credentials.model import StatusEntry, build_claims
from didnode.core.encoding import b64url

_FIELDS = ("did", "serial", "cid", "list", "index")
# The issuer's payload encoding (didnode.core.credentials.jose.sign_compact); the
# self-check on each batch's first credential catches any divergence.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class AttestationBatch:
    """Issues the DeviceAttestationCredentials of one chunk (same model, versions, time).

    Preconditions: ``key`` is the private half of ``issuer``'s signing key;
    serials and DIDs are free of characters that JSON escapes (the run checks
    serials against :data:`didnode.provisioning.devices.SERIAL_RE`; DIDs are base58).
    """

    def __init__(self, issuer: Issuer, key: SigningKey, model: str, hardware_version: str, firmware_version: str, time_ms: int) -> None:
        self.issuer = issuer
        self.model = model
        self.hardware_version = hardware_version
        self.firmware_version = firmware_version
        self.time_ms = time_ms
        self._sk = crypto_sign_seed_keypair(bytes(key))[1]
        self._head = header_segment(issuer.kid) + "."
        self._parts: list[str] | None = None
        self._order: list[str] = []
        self._checked = False
        self._template()

    def _template(self) -> None:
        marks = {f: f"m{uuid.uuid4().hex}" for f in _FIELDS}
        entries = tuple(
            # Built directly (not with status_entry) so the list number and index can be markers.
            StatusEntry(purpose, marks["index"], self.issuer.status_url(f"{purpose}-{marks['list']}"), self.issuer.did, "")  # type: ignore[arg-type]
            for purpose in ("revocation", "suspension")
        )
        claims = build_claims(
            self.issuer.did,
            marks["did"],
            [DEVICE_ATTESTATION],
            device_attestation_claims(self.model, marks["serial"], self.hardware_version, self.firmware_version, self.time_ms),
            self.time_ms,
            status=entries,
            credential_id=marks["cid"],
        )
        text = _ENCODER.encode(claims)
        by_mark = {m: f for f, m in marks.items()}
        pieces = re.split("(" + "|".join(marks.values()) + ")", text)
        self._parts = pieces[0::2]
        self._order = [by_mark[m] for m in pieces[1::2]]

    def issue(self, did: str, serial: str, credential_id: str, list_number: int, index: int) -> str:
        """The credential of one device (same as ``Issuer.issue`` with these values)."""
        if self._parts is None:
            return self._slow(did, serial, credential_id, list_number, index)
        values = {"did": did, "serial": serial, "cid": credential_id, "list": str(list_number), "index": str(index)}
        parts = self._parts
        out = [parts[0]]
        for i, f in enumerate(self._order):
            out.append(values[f])
            out.append(parts[i + 1])
        signing_input = self._head + b64url("".join(out).encode("utf-8"))
        token = signing_input + "." + b64url(crypto_sign(signing_input.encode("ascii"), self._sk)[:64])
        if not self._checked:
            self._checked = True
            if token != self._slow(did, serial, credential_id, list_number, index):
                self._parts = None  # the builder changed shape: stay correct, be slower
                return self._slow(did, serial, credential_id, list_number, index)
        return token

    def _slow(self, did: str, serial: str, credential_id: str, list_number: int, index: int) -> str:
        claims = device_attestation_claims(self.model, serial, self.hardware_version, self.firmware_version, self.time_ms)
        return self.issuer.issue(
            did, [DEVICE_ATTESTATION], claims, self.time_ms, status=self.issuer.status_entries(list_number, index), credential_id=credential_id
        )


def credential_id(namespace: uuid.UUID, run_id: str, did: str) -> str:
    """The deterministic credential id of a device of a run: ``urn:uuid:`` + uuid5(namespace, run/DID)."""
    return f"urn:uuid:{uuid.uuid5(namespace, run_id + '/' + did)}"


__all__ = ["AttestationBatch", "credential_id"]
