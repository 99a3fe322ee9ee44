"""Device creates for factory provisioning, and the device public-key input file.

Every provisioned device DID has the same shape (docs/provisioning.md):

* ``key-1``: Ed25519, purposes ``assertionMethod`` and ``authentication``;
* ``ka-1``: X25519 key agreement (optional);
* ``next``: the pre-rotation commitment to the device's next key;
* ``controllers``: exactly ``[manufacturer DID]``; no services.

So a device whose keys are born in a secure element can build the very
create payload the tool will submit, from the network id and the
manufacturer DID it is configured with, and sign it (proof of possession of
``key-1``) without ever exporting a private key: :func:`device_create` and
:func:`create_signing_bytes` are what its firmware (or the line's test
station) runs. The manufacturer adds its own signature; the node requires both.

Input file of device-generated public keys (``--from-public-keys FILE``),
UTF-8, either JSON lines (one object per line) or CSV with a header row;
members / columns::

    serial             optional  [A-Za-z0-9][A-Za-z0-9._-]{0,63}; else the tool numbers the devices
    authenticationKey  required  Ed25519 Multikey (z6Mk...) of key-1
    keyAgreementKey    optional  X25519 Multikey (z6LS...) of ka-1
    nextKeyCommitment  one of    hex sha256 of the next key's multicodec form (what the ledger stores)
    nextKey                      Ed25519 Multikey of the next key (the tool computes the commitment)
    createSignature    required  base64url (unpadded) Ed25519 signature by key-1 over
                                 create_signing_bytes(network, manufacturer, ...)

Blank lines and, in JSON lines, lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from didnode.core import canonical
from didnode.core.builder import UnsignedOperation
from didnode.core.did import did_from_create_payload
from didnode.core.encoding import ED25519_PUB, X25519_PUB, b64url_decode, multikey_decode, multikey_encode
from didnode.core.operations import PURPOSES, build_payload, next_commitment, signing_bytes
from didnode.errors import DeviceKeyFileInvalid, InvalidKey

AUTH_KEY_ID = "key-1"
KA_KEY_ID = "ka-1"
SERIAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
COLUMNS = ("serial", "authenticationKey", "keyAgreementKey", "nextKeyCommitment", "nextKey", "createSignature")
_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_FILE_BYTES = 64 << 20  # ~150,000 devices; a bigger run is split into several


def device_body(network: str, manufacturer: str, auth_public: bytes, commitment: str, ka_public: bytes | None) -> dict[str, Any]:
    """The create body of a provisioned device (module docstring).

    Preconditions: ``auth_public`` a raw 32-byte Ed25519 key, ``commitment``
    64 lowercase hex (:func:`didnode.core.operations.next_commitment`),
    ``ka_public`` a raw 32-byte X25519 key or None.
    """
    body: dict[str, Any] = {
        "type": "create",
        "network": network,
        "seq": 0,
        "keys": [{"id": AUTH_KEY_ID, "publicKeyMultibase": multikey_encode(auth_public, ED25519_PUB), "purposes": sorted(PURPOSES)}],
        "next": commitment,
        "controllers": [manufacturer],
        "services": [],
    }
    if ka_public is not None:
        body["keyAgreement"] = {"id": KA_KEY_ID, "publicKeyMultibase": multikey_encode(ka_public, X25519_PUB)}
    return body


def device_create(network: str, manufacturer: str, auth_public: bytes, commitment: str, ka_public: bytes | None = None) -> UnsignedOperation:
    """The canonical create of a provisioned device (the reference encoder: RFC 8785 via the method's codec).

    Same preconditions as :func:`device_body`; raises what
    :func:`didnode.core.operations.build_payload` raises for bad values.
    """
    payload = build_payload(device_body(network, manufacturer, auth_public, commitment, ka_public))
    return UnsignedOperation("create", network, did_from_create_payload(payload), payload)


def create_signing_bytes(network: str, manufacturer: str, auth_public: bytes, commitment: str, ka_public: bytes | None = None) -> bytes:
    """What a device signs with key-1 for its ``createSignature`` (and the manufacturer with its key)."""
    return signing_bytes(network, "create", device_create(network, manufacturer, auth_public, commitment, ka_public).payload)


class FastCreate:
    """Builds the canonical create payload of one run's devices by string
    formatting instead of the general canonical encoder (about 3x faster,
    which matters at thousands of devices per second).

    Safe because every value substituted is ASCII from a fixed alphabet that
    JSON never escapes (base58, hex, a network id, a did:dnode DID), and the
    member order is RFC 8785's (sorted). The constructor checks the template
    against :func:`device_create` and raises ``AssertionError`` (a bug, not
    an input error) if they ever differ.

    Preconditions: ``network`` matches the method's network-id syntax and
    ``manufacturer`` is a valid did:dnode DID (both checked by the caller).
    """

    __slots__ = ("network", "manufacturer", "_with_ka", "_without_ka")

    def __init__(self, network: str, manufacturer: str) -> None:
        self.network = network
        self.manufacturer = manufacturer
        head = '{"controllers":["' + manufacturer + '"],'
        keys = '"keys":[{"id":"' + AUTH_KEY_ID + '","publicKeyMultibase":"%s","purposes":["assertionMethod","authentication"]}],'
        tail = '"network":"' + network + '","next":"%s","seq":0,"services":[],"type":"create"}'
        self._with_ka = head + '"keyAgreement":{"id":"' + KA_KEY_ID + '","publicKeyMultibase":"%s"},' + keys + tail
        self._without_ka = head + keys + tail
        sample = bytes(range(32))
        commitment = next_commitment(sample[::-1])
        for ka in (sample[1:] + b"\x01", None):
            if self.payload(sample, commitment, ka) != device_create(network, manufacturer, sample, commitment, ka).payload:
                raise AssertionError("the fast device-create template no longer matches the canonical encoder")

    def payload(self, auth_public: bytes, commitment: str, ka_public: bytes | None) -> bytes:
        """Canonical create payload bytes (same preconditions as :func:`device_body`)."""
        auth = multikey_encode(auth_public, ED25519_PUB)
        if ka_public is None:
            return (self._without_ka % (auth, commitment)).encode("ascii")
        return (self._with_ka % (multikey_encode(ka_public, X25519_PUB), auth, commitment)).encode("ascii")


# --------------------------------------------------------------------------
# The device public-key file
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DevicePublicKeys:
    """One device's public material from ``--from-public-keys``, checked."""

    line: int
    serial: str | None
    auth_public: bytes
    ka_public: bytes | None
    commitment: str
    signature: bytes


def read_public_keys(path: Path, network: str, manufacturer: str) -> list[DevicePublicKeys]:
    """Parse and check a device public-key file (module docstring) for a run of ``manufacturer`` on ``network``.

    Every line is checked before anything is submitted: key encodings, the
    commitment, serial syntax and uniqueness (serials, keys and DIDs must
    all be unique), and the create signature against the exact payload the
    tool will submit. Raises :class:`DeviceKeyFileInvalid` naming the file and line.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DeviceKeyFileInvalid(f"cannot read {path}: {exc.strerror or exc}", file=str(path)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise DeviceKeyFileInvalid(f"{path} is {len(raw)} bytes; split runs over {MAX_FILE_BYTES} bytes", file=str(path))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DeviceKeyFileInvalid(f"{path} is not UTF-8", file=str(path)) from None
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    rows = _json_lines(path, text) if first.startswith("{") else _csv_rows(path, text)
    fast = FastCreate(network, manufacturer)
    out: list[DevicePublicKeys] = []
    serials: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    for line, row in rows:
        dev = _device(path, line, row, fast)
        if dev.serial is not None:
            if dev.serial in serials:
                raise DeviceKeyFileInvalid(f"{path}:{line}: serial {dev.serial!r} repeats line {serials[dev.serial]}", file=str(path), line=line)
            serials[dev.serial] = line
        # One key, one device: a repeated key would be the same DID (or a cloned secure element).
        if dev.auth_public in keys:
            raise DeviceKeyFileInvalid(f"{path}:{line}: authenticationKey repeats line {keys[dev.auth_public]}", file=str(path), line=line)
        keys[dev.auth_public] = line
        out.append(dev)
    if not out:
        raise DeviceKeyFileInvalid(f"{path} lists no device", file=str(path))
    if any(d.serial is None for d in out) and any(d.serial is not None for d in out):
        raise DeviceKeyFileInvalid(f"{path}: either every line names a serial or none does", file=str(path))
    return out


def _json_lines(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for n, ln in enumerate(text.splitlines(), 1):
        s = ln.strip()
        if not s or s.startswith("#"):
            continue
        obj = canonical.loads(s, lambda msg, n=n: DeviceKeyFileInvalid(f"{path}:{n}: not JSON ({msg})", file=str(path), line=n), "the line")
        if not isinstance(obj, dict):
            raise DeviceKeyFileInvalid(f"{path}:{n}: not a JSON object", file=str(path), line=n)
        yield n, obj


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a bare CR inside a field, a field over csv's size limit, ...
            raise DeviceKeyFileInvalid(f"{path}:{reader.line_num}: not CSV ({exc})", file=str(path), line=reader.line_num) from None
        n = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if header is None:
            header = [f.strip() for f in fields]
            unknown = [h for h in header if h not in COLUMNS]
            if unknown or len(set(header)) != len(header):
                raise DeviceKeyFileInvalid(
                    f"{path}:{n}: header must name distinct columns of {', '.join(COLUMNS)} (unknown or repeated: {unknown or header})",
                    file=str(path),
                    line=n,
                )
            continue
        if len(fields) != len(header):
            raise DeviceKeyFileInvalid(f"{path}:{n}: {len(fields)} fields, the header has {len(header)}", file=str(path), line=n)
        yield n, {h: f.strip() for h, f in zip(header, fields) if f.strip()}


def _device(path: Path, line: int, row: Mapping[str, Any], fast: FastCreate) -> DevicePublicKeys:
    where = f"{path}:{line}"

    def bad(msg: str) -> DeviceKeyFileInvalid:
        return DeviceKeyFileInvalid(f"{where}: {msg}", file=str(path), line=line)

    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise bad(f"unknown member(s) {', '.join(unknown)}")
    for k, v in row.items():
        if not isinstance(v, str):
            raise bad(f"{k} must be a string")
    serial = row.get("serial")
    if serial is not None and not SERIAL_RE.fullmatch(serial):
        raise bad(f"serial {serial[:70]!r} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}")
    try:
        auth = multikey_decode(row["authenticationKey"], ED25519_PUB)
        ka = multikey_decode(row["keyAgreementKey"], X25519_PUB) if "keyAgreementKey" in row else None
        if ("nextKey" in row) == ("nextKeyCommitment" in row):
            raise bad("give exactly one of nextKey and nextKeyCommitment")
        if "nextKey" in row:
            next_raw = multikey_decode(row["nextKey"], ED25519_PUB)
            if next_raw == auth:
                raise bad("nextKey must differ from authenticationKey (pre-rotation)")
            commitment = next_commitment(next_raw)
        else:
            commitment = row["nextKeyCommitment"]
            if not _HEX64.fullmatch(commitment):
                raise bad("nextKeyCommitment must be 64 lowercase hex characters (sha256 of 0xed01 || next key)")
    except KeyError:
        raise bad("authenticationKey is required") from None
    except InvalidKey as exc:
        raise bad(str(exc)) from None
    if commitment == hashlib.sha256(ED25519_PUB + auth).hexdigest():
        raise bad("the next-key commitment names the authentication key itself (pre-rotation needs another key)")
    sig_text = row.get("createSignature")
    if sig_text is None:
        raise bad(
            "createSignature is required: the device signs its own create (proof of possession of key-1); "
            "see docs/provisioning.md"
        )
    signature = b64url_decode(sig_text, "createSignature", bad)
    if len(signature) != 64:
        raise bad(f"createSignature has {len(signature)} bytes; an Ed25519 signature has 64")
    payload = fast.payload(auth, commitment, ka)
    try:
        crypto_sign_open(signature + signing_bytes(fast.network, "create", payload), auth)
    except BadSignatureError:
        raise bad(
            f"createSignature does not verify over the create for manufacturer {fast.manufacturer} on network {fast.network!r} "
            f"(DID would be {did_from_create_payload(payload)})"
        ) from None
    return DevicePublicKeys(line, serial, auth, ka, commitment, signature)


__all__ = [
    "AUTH_KEY_ID",
    "COLUMNS",
    "DevicePublicKeys",
    "FastCreate",
    "KA_KEY_ID",
    "SERIAL_RE",
    "create_signing_bytes",
    "device_body",
    "device_create",
    "read_public_keys",
]
