"""What defines a provisioning run: its output layout, its defaults and limits, the run
spec (a resumed run must present the same), the manufacturer's signing material, and
the serials of tool-numbered devices. docs/provisioning.md has the options and formats.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from nacl.signing import SigningKey

from didnode.core.credentials import Issuer

JOURNAL_NAME = "provision.journal"
MANIFEST_CSV = "manifest.csv"
MANIFEST_JSONL = "manifest.jsonl"
BUNDLES_DIR = "bundles"
DEFAULT_CHUNK = 1024
DEFAULT_WINDOW = 4
SUBMIT_BATCH = 1024  # the node accepts at most 1,024 operations per streamed chunk; bigger chunks cost it less per op
FILE_WORKERS = 8  # threads creating bundle and keystore files (see output.write_bundles); more spin on the directory lock
MAX_STATUS_ALLOCATION = 131_072  # one Bitstring Status List (the spec's minimum size)
CSV_COLUMNS = ("serial", "did", "position", "opHash", "manufacturer", "model", "bundle", "statusListCredential", "statusListIndex")
RECOVERY_ROLE = "device-recovery"
NEXT_KEY_ID = "next"  # the keystore's id for a committed next key (as didctl's own entries)
HELPER_MIN_DEVICES = 4096  # below this a helper process costs more to start than it saves
# Namespace of the credential ids of provisioned devices: uuid5(NS, run id + "/" + DID) makes
# a redone chunk issue byte-identical credentials.
CREDENTIAL_NS = uuid.UUID("5b0e6c1e-8f7a-4d55-9a0c-2f3b7c1d9e42")


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; a resumed run must present the same (compared field by field)."""

    manufacturer: str
    model: str
    count: int
    hardware_version: str
    firmware_version: str
    serial_prefix: str
    key_agreement: bool
    network: str
    keys: str  # "generated" | "device"
    input_sha256: str | None  # of the --from-public-keys file
    protection: str  # "passphrase" | "recipient" | "none" (plain) | "device" (no keys in bundles)
    recipient: str | None
    kdf: str | None  # Argon2id preset of the bundle passphrase

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Manufacturer:
    """The manufacturer's signing material (from its keystore).

    Preconditions: ``auth_kid``/``auth_key`` are a current authentication key
    of ``did``; ``issuer`` signs with a current assertionMethod key whose
    private half is ``assertion_key``.
    """

    did: str
    auth_kid: str
    auth_key: SigningKey
    issuer: Issuer
    assertion_key: SigningKey


def serial_for(prefix: str, i: int, count: int) -> str:
    """The serial of device ``i`` (0-based) of a tool-numbered run: prefix + 1-based number, zero-padded."""
    return f"{prefix}{i + 1:0{max(6, len(str(count)))}d}"
