"""The node's HTTP face: W3C DID Resolution's HTTP(S) binding, status lists by URL, metrics and health.

A server edge in the node's event loop beside grpc.aio (``didnode serve
--http HOST:PORT``), serving the ledger's read side only; writes stay on
gRPC. Modules: :mod:`~didnode.http.app` (routes, limits, errors as
documents), :mod:`~didnode.http.resolver` (``/1.0/identifiers/...``),
:mod:`~didnode.http.status` (the one table from errors to HTTP statuses),
:mod:`~didnode.http.metrics` (Prometheus), :mod:`~didnode.http.server`
(listening, TLS, composition for a node). Specification: docs/http.md.
"""
