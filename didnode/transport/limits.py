"""The node's resource limits and the gRPC server options they become (docs/security.md, "Limits").

:class:`Limits` holds every bound with its default (``didnode serve`` options
change them); :func:`server_options` turns the connection-level ones into
grpc core options; :mod:`didnode.transport.guard` enforces the per-peer and
per-stream ones. Request sizes per method are :mod:`didnode.wire.limits`.

What grpc core bounds: each request message (:data:`MAX_REQUEST_BYTES`,
refused before the node copies it), calls open at once (``max_calls``,
refused at once), streams per connection, connections in total (below the
file-descriptor limit), how long a connection may take to send its HTTP/2
preface (``connect_timeout_s``), stay without calls (``connection_idle_s``)
and live (``connection_age_s``, then as long again for its calls to finish),
and dead peers under open calls (keepalive pings). grpcio has no hook to
bound connections per peer address: that one is bounded only in total.
"""

from __future__ import annotations

import ipaddress
import resource
from dataclasses import dataclass, field
from typing import Any

from didnode.core.ratelimit import Rate
from didnode.service.ledger import MAX_BATCH_CHUNK
from didnode.wire.limits import MAX_REQUEST_BYTES

MAX_REPLY_BYTES = 16 * 1024 * 1024
# File descriptors kept for LMDB, the log, the prepare processes' pipes, NATS: the rest may be connections.
FD_RESERVE = 256
NOFILE_CAP = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Every resource bound of a node's gRPC server; 0 turns a bound off where its doc says so."""

    max_calls: int = 2048  # calls open at once, in total (grpc's maximum_concurrent_rpcs)
    max_calls_per_peer: int = 64  # calls open at once from one peer address, counted before their request is read
    max_batch_chunks: int = 128  # SubmitBatch chunks (at most 256 KiB each) read and not yet answered, all streams together
    max_batch_chunks_per_peer: int = 16  # the same, from one peer address
    max_streams_per_connection: int = 128  # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
    max_connections: int = 0  # 0: the RLIMIT_NOFILE soft limit (raised to the hard one) minus FD_RESERVE
    connect_timeout_s: float = 10.0  # a new connection must send its HTTP/2 preface within this
    connection_idle_s: float = 300.0  # a connection without calls for this long is closed (0: never)
    connection_age_s: float = 3600.0  # a connection is closed after this, its calls get as long again (0: never)
    stream_idle_s: float = 60.0  # a batch (or reflection) stream with nothing pending that sends nothing for this long is closed
    contended_idle_s: float = 5.0  # ... and a batch stream after this long while other streams wait for the batch chunk budget
    keepalive_s: float = 60.0  # with calls open, ping the peer this often; close when no answer in keepalive_timeout_s
    keepalive_timeout_s: float = 20.0
    # Per peer address; sized so that one host can provision (or benchmark) at the node's full speed.
    submit_rate: Rate = field(default_factory=lambda: Rate(10_000, 20_000))  # operations per second
    handshake_rate: Rate = field(default_factory=lambda: Rate(2_000, 4_000))  # handshakes and session credentials per second
    max_pace_ms: int = 1000  # a batch chunk over the rate waits at most this long for its tokens, then RATE_LIMITED
    # A unary Submit refused as invalid (PERMISSION_DENIED: a signature or signer that does not verify;
    # INVALID_ARGUMENT: malformed) costs its peer this many more submission tokens: forged work is
    # paid for by the peer that sent it: at most rate/cost per second (10,000 / 200 = 50 forged/s).
    invalid_submit_cost: int = 200
    # A refused call is answered only after a hold (its call stays open, counted in max_calls_per_peer):
    # RATE_LIMITED once the peer's tokens are back, at most this long; this long while the peer is in
    # debt for invalid Submits (those refusals too). A peer in debt then makes at most
    # max_calls_per_peer calls per this long (0: refusals are answered at once).
    refusal_hold_ms: int = 1000
    max_peers: int = 100_000  # peer addresses whose rate is tracked at once

    def __post_init__(self) -> None:
        for name in ("max_calls", "max_calls_per_peer", "max_batch_chunks", "max_batch_chunks_per_peer", "max_streams_per_connection", "max_peers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("connect_timeout_s", "stream_idle_s", "contended_idle_s", "keepalive_s", "keepalive_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.max_connections < 0 or self.connection_idle_s < 0 or self.connection_age_s < 0 or self.max_pace_ms < 0 or self.invalid_submit_cost < 0 or self.refusal_hold_ms < 0:
            raise ValueError("max_connections, connection_idle_s, connection_age_s, max_pace_ms, invalid_submit_cost and refusal_hold_ms are non-negative")
        if not self.submit_rate.unlimited and self.submit_rate.burst < MAX_BATCH_CHUNK:
            raise ValueError(f"the submission burst must hold a whole batch chunk ({MAX_BATCH_CHUNK} operations), not {self.submit_rate.burst}")


def raise_nofile_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit (at most NOFILE_CAP); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return NOFILE_CAP if soft == resource.RLIM_INFINITY else soft


def connection_limit(limits: Limits, nofile: int) -> int:
    """How many connections the server accepts at once: ``max_connections``, or what the descriptors allow."""
    by_fds = max(64, nofile - FD_RESERVE)
    return min(limits.max_connections, by_fds) if limits.max_connections else by_fds


def server_options(limits: Limits, nofile: int) -> list[tuple[str, Any]]:
    """grpc core options of a node's server."""

    def ms(seconds: float) -> int:
        return max(1, int(seconds * 1000))

    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        ("grpc.max_send_message_length", MAX_REPLY_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", limits.max_streams_per_connection),
        # No bandwidth-delay probing: the flow-control windows stay small, so grpc core buffers
        # little of a message nobody asked for (with it, 160 concurrent 15 MiB requests made grpc
        # buffer over 300 MB before refusing them). A message being read still gets its window.
        ("grpc.http2.bdp_probe", 0),
        ("grpc.max_allowed_incoming_connections", connection_limit(limits, nofile)),
        ("grpc.server_handshake_timeout_ms", ms(limits.connect_timeout_s)),
        ("grpc.keepalive_time_ms", ms(limits.keepalive_s)),
        ("grpc.keepalive_timeout_ms", ms(limits.keepalive_timeout_s)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        # Client pings: at most one per 5 minutes without calls, else GOAWAY after 2 strikes (grpc's defaults, pinned).
        ("grpc.http2.min_ping_interval_without_data_ms", 300_000),
        ("grpc.http2.max_ping_strikes", 2),
    ]
    if limits.connection_idle_s:
        options.append(("grpc.max_connection_idle_ms", ms(limits.connection_idle_s)))
    if limits.connection_age_s:
        options.append(("grpc.max_connection_age_ms", ms(limits.connection_age_s)))
        options.append(("grpc.max_connection_age_grace_ms", ms(limits.connection_age_s)))
    return options


def peer_key(peer: str) -> str:
    """What limits are kept per: the address of a gRPC peer string, an IPv6 address's /64, one key for unix sockets.

    ``ipv4:10.0.0.7:5123`` -> ``ipv4:10.0.0.7``; ``ipv6:[2001:db8::1]:5123`` ->
    ``ipv6:2001:db8::/64``; an IPv4-mapped IPv6 address counts as its IPv4
    address; anything else (``unix:...``) by its scheme.
    """
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return "ipv4:" + rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        host = rest.rsplit(":", 1)[0] if rest.startswith("[") else rest
        host = host.strip("[]").split("%", 1)[0]
        try:
            addr = ipaddress.IPv6Address(host)
        except ValueError:
            return "ipv6:" + host
        if addr.ipv4_mapped is not None:
            return f"ipv4:{addr.ipv4_mapped}"
        return f"ipv6:{ipaddress.IPv6Network((addr, 64), strict=False)}"
    return kind or peer
