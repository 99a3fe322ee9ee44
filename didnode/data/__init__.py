"""Device data integrity, the device and gateway side (issue #19; docs/data.md, "Devices and gateways").

:class:`Recorder` records a device's readings and signs its segment heads;
:class:`SegmentStore` reads them back (pending heads, reading proofs for
receipts); :mod:`didnode.data.gateway` anchors many devices' heads and serves
them over gRPC; :mod:`didnode.data.uplink` is the device's side of that.
Client-side: imports the core, the wire and the client only (``tests/test_imports.py``).
"""

from didnode.data.recorder import Recorder
from didnode.data.store import SegmentStore

__all__ = ["Recorder", "SegmentStore"]
