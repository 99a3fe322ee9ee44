"""Mutual-authentication handshakes per second: didnode's handshake vs mutual TLS 1.3, measured in one run.

didnode: a real node (``didnode serve`` subprocess) is the responder; this
process runs --concurrency initiators (asyncio, one grpc.aio channel each,
reused across handshakes as a device would) that authenticate to it again
and again for --seconds. Each completed handshake is the full protocol:
hello, challenge, response, session; both sides check the other's key on
the ledger (the node reads its LMDB; the initiators ask the node, with
their cache of the node's own state bounded by --staleness), single-use
nonces in LMDB on both sides, and (unless --no-session-credential) the
node's session credential.

mTLS: a TLS 1.3 server with Ed25519 certificates (``ssl`` on asyncio, in
its own process, requiring and verifying a client certificate) and the
same number of concurrent asyncio clients, each doing a full handshake on
a fresh TCP connection (no resumption) and reading the one byte the server
sends once it has verified the client: a completed *mutual* handshake.
Certificates come from the ``cryptography`` package when installed, else
from the ``openssl`` command.

Last line: one JSON object with the figures (rates, p50/p99 latency in ms, ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, emit  # noqa: E402

from didnode.auth import Authenticator, LocalIdentity  # noqa: E402
from didnode.client import AsyncClient, Client  # noqa: E402
from didnode.service.auth import CachedKeyStates, ClientKeyStates, wall_clock_ms  # noqa: E402
from didnode.store.auth_store import LmdbNonceStore  # noqa: E402
from tests.factory import new_create  # noqa: E402

BIN = Path(sys.executable).parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def start_node(data: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [str(BIN / "didnode"), "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise SystemExit("the node did not start")
    return proc, line


async def loop_for(seconds: float, one: Any, conc: int) -> tuple[int, list[float], float]:
    """Run ``one(worker_index)`` back to back in ``conc`` tasks for ``seconds``; (count, latencies, elapsed)."""
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await one(i)
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(conc)))
    return len(lat), lat, time.perf_counter() - t0


# --------------------------------------------------------------------------
# didnode
# --------------------------------------------------------------------------


async def didnode_run(address: str, identities: list[LocalIdentity], state: Path, args: argparse.Namespace, node_pid: int) -> dict[str, Any]:
    async with AsyncClient(address) as client:
        network = (await client.node_info()).network
        keys = CachedKeyStates(ClientKeyStates(client), int(args.staleness * 1000))
        store = LmdbNonceStore(state, wall_clock_ms())
        auths = [Authenticator(i, network, keys, nonces=store) for i in identities]
        sc = not args.no_session_credential

        async def one(i: int) -> None:
            est = await auths[i].authenticate(address, session_credential=sc)
            if sc and not est.credential:
                raise SystemExit("the node issued no session credential")

        await loop_for(args.warmup, one, args.concurrency)
        c_node, c_self = cpu_seconds(node_pid), time.process_time()
        n, lat, elapsed = await loop_for(args.seconds, one, args.concurrency)
        cpu = ((cpu_seconds(node_pid) - c_node) / n * 1000, (time.process_time() - c_self) / n * 1000)
        for a in auths:
            await a.close()
        store.close()
    lat.sort()
    return {"rate": n / elapsed, "p50": percentile(lat, 0.5) * 1000, "p99": percentile(lat, 0.99) * 1000, "n": n, "cpu": cpu}


# --------------------------------------------------------------------------
# mutual TLS 1.3
# --------------------------------------------------------------------------


def make_certs(d: Path) -> str:
    """CA, server and client Ed25519 certificates in ``d``; returns which tool made them."""
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.x509.oid import NameOID
    except ImportError:
        return make_certs_openssl(d)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = Ed25519PrivateKey.generate()
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("bench CA"))
        .issuer_name(name("bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, None)
    )
    for who in ("server", "client"):
        key = Ed25519PrivateKey.generate()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(who))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if who == "server":
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(ca_key, None)
        (d / f"{who}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (d / f"{who}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return "cryptography"


def make_certs_openssl(d: Path) -> str:
    def run(*cmd: str) -> None:
        subprocess.run(["openssl", *cmd], check=True, capture_output=True, cwd=d)

    run("genpkey", "-algorithm", "ed25519", "-out", "ca.key")
    run("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=bench CA", "-days", "1", "-out", "ca.crt")
    for who in ("server", "client"):
        run("genpkey", "-algorithm", "ed25519", "-out", f"{who}.key")
        run("req", "-new", "-key", f"{who}.key", "-subj", f"/CN={who}", "-out", f"{who}.csr")
        ext = d / f"{who}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n" if who == "server" else "basicConstraints=CA:FALSE\n")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", f"{who}.crt")
    return "openssl"


def tls_context(d: Path, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    who = "server" if server else "client"
    ctx.load_cert_chain(d / f"{who}.crt", d / f"{who}.key")
    ctx.load_verify_locations(d / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    if server:
        ctx.num_tickets = 0  # no resumption: every handshake is a full one
    return ctx


def tls_server(d: str, q: "multiprocessing.Queue[int]") -> None:
    ctx = tls_context(Path(d), server=True)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The handshake (client certificate verified) completed before this runs.
        writer.write(b"k")
        try:
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx, backlog=1024)
        q.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


async def mtls_run(d: Path, port: int, args: argparse.Namespace, server_pid: int) -> dict[str, Any]:
    ctx = tls_context(d, server=False)

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1")
        got = await reader.read(1)
        if got != b"k":
            raise SystemExit("mTLS server did not confirm the handshake")
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass

    await loop_for(args.warmup, one, args.concurrency)
    c_srv, c_self = cpu_seconds(server_pid), time.process_time()
    n, lat, elapsed = await loop_for(args.seconds, one, args.concurrency)
    cpu = ((cpu_seconds(server_pid) - c_srv) / n * 1000, (time.process_time() - c_self) / n * 1000)
    lat.sort()
    return {"rate": n / elapsed, "p50": percentile(lat, 0.5) * 1000, "p99": percentile(lat, 0.99) * 1000, "n": n, "cpu": cpu}


# --------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--staleness", type=float, default=5.0, help="initiators' cache bound for the node's own key state, in seconds")
    ap.add_argument("--no-session-credential", action="store_true", help="do not ask the node for session credentials")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    node, address = start_node(tmp / "node")
    tls_proc: multiprocessing.Process | None = None
    try:
        with Client(address) as c:
            identities = []
            for _ in range(args.concurrency):
                ident, op = new_create()
                c.submit(op)
                identities.append(LocalIdentity.from_signing_key(ident.did, "key-1", ident.key))
        ours = asyncio.run(didnode_run(address, identities, tmp / "initiators", args, node.pid))
        print(
            f"didnode handshake: {ours['rate']:.0f}/s  p50 {ours['p50']:.2f} ms  p99 {ours['p99']:.2f} ms  ({ours['n']} handshakes; "
            f"CPU per handshake: node {ours['cpu'][0]:.2f} ms, initiators {ours['cpu'][1]:.2f} ms)",
            flush=True,
        )

        certs = tmp / "certs"
        certs.mkdir()
        tool = make_certs(certs)
        q: multiprocessing.Queue[int] = multiprocessing.Queue()
        tls_proc = multiprocessing.Process(target=tls_server, args=(str(certs), q), daemon=True)
        tls_proc.start()
        port = q.get(timeout=30)
        theirs = asyncio.run(mtls_run(certs, port, args, tls_proc.pid))
        print(
            f"mutual TLS 1.3:    {theirs['rate']:.0f}/s  p50 {theirs['p50']:.2f} ms  p99 {theirs['p99']:.2f} ms  ({theirs['n']} handshakes; "
            f"CPU per handshake: server {theirs['cpu'][0]:.2f} ms, clients {theirs['cpu'][1]:.2f} ms; certs by {tool})",
            flush=True,
        )
    finally:
        if tls_proc is not None:
            tls_proc.terminate()
        node.terminate()
        node.wait(15)
        shutil.rmtree(tmp, ignore_errors=True)
    emit(
        {
            "bench": "auth",
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "session_credential": not args.no_session_credential,
            "handshakes_per_s": ours["rate"],
            "p50_ms": ours["p50"],
            "p99_ms": ours["p99"],
            "mtls_handshakes_per_s": theirs["rate"],
            "mtls_p50_ms": theirs["p50"],
            "mtls_p99_ms": theirs["p99"],
            "ratio_vs_mtls": ours["rate"] / theirs["rate"],
            "cpu_ms_per_handshake_node": ours["cpu"][0],
            "cpu_ms_per_handshake_initiators": ours["cpu"][1],
            "mtls_cpu_ms_per_handshake_server": theirs["cpu"][0],
            "mtls_cpu_ms_per_handshake_clients": theirs["cpu"][1],
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        }
    )


if __name__ == "__main__":
    main()
