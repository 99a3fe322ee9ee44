"""Errors of a network's genesis: writing it (``didnode init --genesis``) and checking it at start.

Part of the one error tree: import from :mod:`didnode.errors`.
"""

from __future__ import annotations

from didnode.errors.base import Conflict


class GenesisConflict(Conflict):
    """The ledger (or the cluster stream) already holds another history than the genesis file names: another genesis, or an ungoverned network's first entries; a governed network is never made of a running one."""

    reason = "GENESIS_CONFLICT"
