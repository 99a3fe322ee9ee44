"""The client library: talk to a didnode over gRPC, verify what it proves (README, "Client library").

:class:`Client` is blocking, :class:`AsyncClient` its asyncio twin; both return
the result types of :mod:`didnode.core.results` and raise the error classes of
:mod:`didnode.errors`, rebuilt from the node's reasons. Offline checks need no
node: :func:`verify_offline` for proof bundles, :func:`verify_resolution` for a
proven resolution, :class:`OfflineVerifier` for credentials. Issuers administer
status lists with :class:`StatusLists`.

This package loads no server code (no LMDB, store, ledger, service or transport);
``tests/test_imports.py`` holds that.
"""

from didnode.client.aio import AsyncClient
from didnode.client.channel import CHANNEL_OPTIONS, DEFAULT_ADDRESS, NODE_KEY_FRAGMENT
from didnode.client.credentials import OfflineVerifier
from didnode.client.proofs import (
    ProvenResolution,
    load_bundle,
    signer_key_from_did_document,
    signer_key_from_multibase,
    verify_offline,
    verify_resolution,
)
from didnode.client.status_lists import Allocation, LedgerAccess, StatusLists
from didnode.client.sync import Client
from didnode.core.results import HistoryEntry, HistoryPage, KeyState, NodeInfo, Receipt, Resource, SessionCredential, StatusInfo

__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_ADDRESS",
    "NODE_KEY_FRAGMENT",
    "Allocation",
    "AsyncClient",
    "Client",
    "HistoryEntry",
    "HistoryPage",
    "KeyState",
    "LedgerAccess",
    "NodeInfo",
    "OfflineVerifier",
    "ProvenResolution",
    "Receipt",
    "Resource",
    "SessionCredential",
    "StatusInfo",
    "StatusLists",
    "load_bundle",
    "signer_key_from_did_document",
    "signer_key_from_multibase",
    "verify_offline",
    "verify_resolution",
]
