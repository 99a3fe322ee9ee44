"""Whether a node is ready to serve: its store open and writable, its cluster caught up.

One answer for every interface that reports it: the HTTP ``/readyz`` route
(:mod:`didnode.http`) and the gRPC health service's overall status
(:mod:`didnode.transport.readiness`). No protobuf, no HTTP here.

Checks, in order (the first that fails is the reason):

* ``store``: the LMDB environment answers (it is open);
* ``writable``: the writer is running, the last batch committed (a full disk
  or a read-only store makes a batch fail: the reason is that failure, until a
  batch commits again), the data directory is writable, and its file system
  has room (at least :data:`~didnode.store.env.FULL_BELOW` bytes);
* ``cluster`` (cluster mode only): the node can order writes through the
  stream, and it has applied the stream up to at most ``max_lag`` messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import lmdb

from didnode.service.node import Node
from didnode.store.env import FULL_BELOW

DEFAULT_MAX_LAG = 1000  # stream messages a cluster node may be behind and still be ready
OK = "ok"


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """Each check's result (``"ok"`` or why not), and whether all passed."""

    checks: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(v == OK for v in self.checks.values())

    @property
    def reason(self) -> str:
        """The first failed check's reason ("" when ready)."""
        return next((f"{k}: {v}" for k, v in self.checks.items() if v != OK), "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ready": self.ready, "checks": dict(self.checks)}
        if not self.ready:
            out["reason"] = self.reason
        return out


class Readiness:
    """Computes a node's :class:`ReadinessReport` (cheap: a few system calls, no transaction)."""

    def __init__(self, node: Node, max_lag: int = DEFAULT_MAX_LAG) -> None:
        self.node = node
        self.max_lag = max_lag

    def check(self) -> ReadinessReport:
        checks = {"store": self._store()}
        checks["writable"] = self._writable() if checks["store"] == OK else "the store is not open"
        if self.node.jetstream is not None:
            checks["cluster"] = self._cluster()
        return ReadinessReport(checks)

    def _store(self) -> str:
        try:
            self.node.store.env.info()
        except lmdb.Error as exc:
            return f"the LMDB store at {self.node.store.path} is not open ({exc})"
        return OK

    def _writable(self) -> str:
        orderer = self.node.orderer
        if getattr(orderer, "closed", False):
            return "the node is shutting down"
        last = getattr(orderer, "last_error", None)
        if last is not None:
            return f"the last batch did not commit: {last} [{last.reason}]"
        path = self.node.store.path
        if not os.access(path, os.W_OK) or not os.access(os.path.join(path, "data.mdb"), os.W_OK):
            return f"the data directory {path} is not writable by the node"
        try:
            st = os.statvfs(path)
        except OSError as exc:
            return f"cannot read the file system of {path}: {exc.strerror or exc}"
        free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
        if free < FULL_BELOW:
            return f"the file system of {path} is full ({free} bytes free)"
        return OK

    def _cluster(self) -> str:
        status = self.node.cluster_status()
        if status is None:
            return OK
        if not status.writable:
            return f"cannot order writes: {status.reason or 'the stream is unreachable'}"
        if status.lag > self.max_lag:
            return f"{status.lag} stream messages behind (applied {status.applied_seq} of {status.stream_last_seq}; ready within {self.max_lag})"
        return OK


__all__ = ["DEFAULT_MAX_LAG", "Readiness", "ReadinessReport"]
