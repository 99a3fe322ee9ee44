"""Errors that happen only on the client side: files, the keystore, provisioning runs.

Part of the one error tree: import from :mod:`didnode.errors`.
"""

from __future__ import annotations

from didnode.errors.base import InvalidInput, LocalError

# --------------------------------------------------------------------------
# Client-side only.
# --------------------------------------------------------------------------


class KeystoreError(LocalError):
    """The keystore is missing, unreadable or inconsistent."""

    reason = "KEYSTORE_ERROR"


class WrongPassphrase(KeystoreError):
    """The keystore passphrase does not decrypt the keystore."""

    reason = "WRONG_PASSPHRASE"


class KeyNotInKeystore(KeystoreError):
    """The keystore holds no secret for that DID or key."""

    reason = "KEY_NOT_IN_KEYSTORE"


# --------------------------------------------------------------------------
# Keystore.
# --------------------------------------------------------------------------


class KeystoreCorrupted(KeystoreError):
    """A keystore file or sealed bundle does not parse, does not decrypt
    under the right key, or contradicts itself (tampered or foreign)."""

    reason = "KEYSTORE_CORRUPTED"


# --------------------------------------------------------------------------
# Provisioning: `didctl provision` (didnode.provisioning; docs/provisioning.md).
# --------------------------------------------------------------------------


class ProvisioningError(LocalError):
    """A factory provisioning run or fleet transfer cannot go on; the subclass says why."""

    reason = "PROVISIONING_ERROR"


class RunMismatch(ProvisioningError):
    """The output directory (or transfer journal) belongs to a run with other
    arguments, network or keystore; resume it with the same ones or use a new directory."""

    reason = "RUN_MISMATCH"


class RunLocked(ProvisioningError):
    """Another process holds the run's journal lock (a run on the same directory is going on)."""

    reason = "RUN_LOCKED"


class JournalCorrupted(ProvisioningError):
    """A provisioning or transfer journal does not parse (other than a torn last
    record, which is dropped) or contradicts itself or the ledger."""

    reason = "JOURNAL_CORRUPTED"


class BundleInvalid(ProvisioningError):
    """A device bundle is not a well-formed bundle of a supported version, or its
    sealed keys name another DID than the bundle."""

    reason = "BUNDLE_INVALID"


class DeviceKeyFileInvalid(InvalidInput):
    """A line of a device public-key file (``--from-public-keys``) is malformed,
    repeats a serial or key, or its create signature does not verify."""

    reason = "DEVICE_KEY_FILE_INVALID"


class ManifestInvalid(InvalidInput):
    """A provisioning manifest (CSV or JSON lines) is malformed or names a DID twice."""

    reason = "MANIFEST_INVALID"
