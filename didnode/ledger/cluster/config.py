"""How a node joins a cluster (:class:`ClusterConfig`, :class:`NatsAuth`), what it may do there
(:func:`node_permissions`) and where it stands (:class:`ClusterStatus`)."""

from __future__ import annotations

import logging
import os
import ssl
import stat
from dataclasses import dataclass, field
from typing import Any, Iterable

from didnode.errors import InvalidArgument
from didnode.ledger import stream as st

log = logging.getLogger("didnode.cluster")


def node_permissions(ledgers: Iterable[tuple[str, str]]) -> dict[str, dict[str, list[str]]]:
    """The NATS permissions of the didnodes' user on ``(network, stream)`` ledgers, and no more.

    Publish: the network's operation subjects, the stream's ticks, and the
    JetStream API of that stream only: its info, its creation (the first node
    creates it; leave ``STREAM.CREATE`` out when an operator creates it),
    direct gets, and the ephemeral pull consumer a node uses on a stream
    without direct gets. Never ``STREAM.DELETE``, ``STREAM.PURGE``,
    ``STREAM.UPDATE`` or ``STREAM.MSG.DELETE`` (denied explicitly too, so that
    a wider allow added later cannot grant them). Subscribe: replies
    (``_INBOX.>``), the ticks, and the stream's advisories (deleted, created,
    updated). In nats-server config syntax this is the user's ``permissions``.
    """
    pub: list[str] = []
    sub: list[str] = ["_INBOX.>"]
    for network, stream in ledgers:
        api = "$JS.API."
        pub += [
            st.subject_filter(network),
            f"didnode-tick.{stream}",
            f"{api}STREAM.INFO.{stream}",
            f"{api}STREAM.CREATE.{stream}",
            f"{api}DIRECT.GET.{stream}",
            f"{api}CONSUMER.CREATE.{stream}",
            f"{api}CONSUMER.CREATE.{stream}.>",
            f"{api}CONSUMER.MSG.NEXT.{stream}.*",
            f"{api}CONSUMER.DELETE.{stream}.*",
        ]
        sub += [f"didnode-tick.{stream}", f"$JS.EVENT.ADVISORY.STREAM.*.{stream}"]
    deny = ["$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.MSG.DELETE.>"]
    return {"publish": {"allow": pub, "deny": deny}, "subscribe": {"allow": sub}}


def _read_secret(path: str, what: str) -> str:
    """The first line of a secret file; warns when others than its owner may read it."""
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as f:
            text = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read the {what} file {path}: {exc}", field=what) from None
    if not text:
        raise InvalidArgument(f"the {what} file {path} is empty", field=what)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the %s file %s is readable by others than its owner (mode %o): chmod 600 it", what, path, stat.S_IMODE(mode))
    return text


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """How a node proves who it is to NATS and checks the servers (``didnode serve --nats-*``).

    ``user``/``password``: a user of the servers' ``accounts``/``authorization``
    (the password is read from a file, never from the command line). TLS:
    ``tls_ca`` verifies the servers' certificates (use ``tls://`` URLs or a
    server with ``tls {}``); ``tls_cert``/``tls_key`` present a client
    certificate (servers with ``verify: true``, or ``verify_and_map: true``,
    which maps the certificate to a user and needs no password).
    Credentials in the URLs (``nats://user:pass@host``) still work too.
    """

    user: str = ""
    password: str = field(default="", repr=False)
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @classmethod
    def from_files(cls, user: str = "", password_file: str = "", tls_ca: str = "", tls_cert: str = "", tls_key: str = "") -> "NatsAuth":
        """Read the password file; check the options go together. Raises :class:`InvalidArgument`."""
        if password_file and not user:
            raise InvalidArgument("a NATS password file needs a NATS user", field="nats-user")
        if user and not password_file:
            raise InvalidArgument("a NATS user needs a password file", field="nats-password-file")
        if bool(tls_cert) != bool(tls_key):
            raise InvalidArgument("a NATS TLS client certificate and its key go together", field="nats-tls-cert")
        for path, what in ((tls_ca, "nats-tls-ca"), (tls_cert, "nats-tls-cert"), (tls_key, "nats-tls-key")):
            if path and not os.path.isfile(path):
                raise InvalidArgument(f"no {what} file {path}", field=what)
        if tls_key:
            _read_secret(tls_key, "nats-tls-key")  # readable, not empty; warns on loose permissions
        password = _read_secret(password_file, "nats-password") if password_file else ""
        return cls(user, password, tls_ca, tls_cert, tls_key)

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        opts: dict[str, Any] = {}
        if self.user:
            opts["user"], opts["password"] = self.user, self.password
        if self.tls:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca or None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
            opts["tls"] = ctx
        return opts


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How a node joins a cluster (``didnode serve --nats ... --stream ...``)."""

    servers: tuple[str, ...]
    network: str
    stream: str = ""  # default: DIDNODE_<NETWORK>
    replicas: int = 0  # 0: 3, or 1 on a single server
    duplicate_window_s: float = 120.0
    publish_timeout_s: float = 2.0  # one publish attempt (nats-py futures never time out alone)
    # An atomic batch waits this long for its acknowledgement while the stream makes no
    # progress (this node receives nothing): then it is sent again. While the stream
    # stores other messages the batch is only queued behind them (each message is
    # fsync'd on every replica) and the wait goes on, up to batch_max_wait_s.
    batch_timeout_s: float = 3.0
    batch_max_wait_s: float = 10.0
    # Atomic batches of this node awaiting their acknowledgement at once. More only
    # lengthen the queue at the stream leader (and so every batch's wait) without
    # storing anything sooner; two keep the leader busy while one is acknowledged.
    max_inflight_batches: int = 2
    api_timeout_s: float = 3.0
    # While following, the stream's identity (name, creation time, last sequence) is
    # checked this often: the backstop when a deletion's advisory was missed.
    stream_check_s: float = 1.0
    # A stream that looks shorter than what this node applied (it lost messages) is refused
    # once it has looked so this long: a single answer can describe an older state.
    short_stream_grace_s: float = 10.0
    catch_up_s: float = 5.0  # longest wait for this node to catch up before judging a submission
    submit_deadline_s: float = 20.0  # all attempts of one submission, publish to local apply
    pull_batch: int = 1000  # messages per read (a direct get batch, or a consumer pull)
    pull_max_bytes: int = 4 << 20  # bytes per direct get batch
    pull_expires_s: float = 5.0
    heartbeat_s: float = 1.0
    # With direct gets, a node reads the stream when told that it grew (its own acks,
    # the other nodes' ticks) and, for writes from elsewhere, at least this often.
    poll_interval_s: float = 0.1
    max_buffered: int = 20_000  # delivered but not yet applied messages
    commit_interval_s: float = 0.2  # under load, at most one follower commit per interval (group commit)
    busy_commit: int = 32  # a commit of this many messages means "under load"
    flush_interval_s: float = 0.005  # under load, delivered messages reach the follow thread at most this often
    atomic_batch_max: int = 1000  # the server's default limit of messages per atomic batch
    client_name: str = "didnode"
    auth: NatsAuth = NatsAuth()  # credentials and TLS (none: the servers need no authentication)

    @property
    def stream_name(self) -> str:
        return self.stream or st.default_stream_name(self.network)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Where a cluster node stands (NodeInfo and health report it)."""

    stream: str
    writable: bool
    applied_seq: int
    stream_last_seq: int
    lag: int
    reason: str  # why the node is not writable; empty when it is

