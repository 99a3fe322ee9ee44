"""A transparency-log witness (c2sp.org/tlog-witness), the witness role of issue #17 (docs/witness.md).

Pure parts: :mod:`~didnode.witness.request` (the ``add-checkpoint`` body) and
:mod:`~didnode.witness.core` (the consistency decision and what counts as
evidence). Edges: :mod:`~didnode.witness.state` (durable per-log state and
evidence files), :mod:`~didnode.witness.service` (signature checks, per-origin
serialization, cosigning), :mod:`~didnode.witness.http` (aiohttp routes) and
:mod:`~didnode.witness.keyfile` (the witness key). ``didnode witness`` runs
one standalone (``cli/didnode_witness.py``).
"""
