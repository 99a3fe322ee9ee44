"""Factory provisioning of device identities and fleet transfer (``didctl provision``).

Modules: :mod:`.devices` (the device create, the device public-key file),
:mod:`.bundle` (device bundles and how their keys are sealed and opened),
:mod:`.journal` (the fsync'd, locked journal), :mod:`.run` (the resumable
provisioning run; its spec and settings in :mod:`.spec`, its chunks and their
journal records in :mod:`.chunks`, its bundles, manifests and result in
:mod:`.output`), :mod:`.transfer` (the resumable fleet transfer).
docs/provisioning.md specifies every format.
"""

from didnode.provisioning.bundle import BundleOpener, Sealer, bundle_trust, read_bundle
from didnode.provisioning.devices import DevicePublicKeys, create_signing_bytes, device_create, read_public_keys
from didnode.provisioning.run import Manufacturer, ProvisionRun, RunResult, RunSpec
from didnode.provisioning.transfer import FleetTransfer, ManifestRow, TransferResult, read_manifest

__all__ = [
    "BundleOpener",
    "DevicePublicKeys",
    "FleetTransfer",
    "ManifestRow",
    "Manufacturer",
    "ProvisionRun",
    "RunResult",
    "RunSpec",
    "Sealer",
    "TransferResult",
    "bundle_trust",
    "create_signing_bytes",
    "device_create",
    "read_bundle",
    "read_manifest",
    "read_public_keys",
]
