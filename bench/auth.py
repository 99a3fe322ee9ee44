"""Mutual-authentication handshakes per second: didnode's handshake vs mutual TLS 1.3 and the bare protocol, in one run.

didnode: a real node (``didnode serve`` subprocess) is the responder; this
process runs --concurrency initiators (asyncio, one grpc.aio channel each,
reused across handshakes as a device would) that authenticate to it again
and again for --seconds. Each completed handshake is the full protocol:
hello, challenge, response, session; both sides check the other's key on
the ledger (the node reads its LMDB; the initiators ask the node, with
their cache of the node's own state bounded by --staleness), single-use
nonces in LMDB on both sides. Measured twice: the mutual handshake alone
(the headline figure, compared with mTLS, which issues no credential
either), and with the initiator asking the node for a session credential
(one more Ed25519 signature and a ~700-byte token on the node).

didnode over TLS: a second node, serving TLS with a certificate from
:mod:`didnode.tlsgen` (ECDSA P-256, ``didnode serve --tls-cert``), and the
same initiators over TLS channels (reused across handshakes, as a device
would: the TLS connection set-up is paid once per channel, then every
handshake message is encrypted). Its rate is reported beside the plaintext
node's, measured in the same alternating rounds (``tls_handshakes_per_s``,
``plaintext_handshakes_per_s``, ``tls_ratio``).

Verified key state (issue #15): the same initiators with the node's answers
checked against a trust policy (taken from the node at the start, as
provisioning would hand it to a device): each read of the node's key state is
a state proof under a checkpoint whose signature is verified once (one
TrustedLog shared by all initiators), and must extend the last one verified.
Reported beside the unverified handshakes of today's configuration, in the
same alternating rounds (``verified_handshakes_per_s``,
``unverified_handshakes_per_s``, ``verified_ratio``), and with no cache
(``--staleness`` 0: every handshake reads, and verifies, the node's key state
once more: ``uncached_*``).

mTLS: a TLS 1.3 server with Ed25519 certificates (``ssl`` on asyncio, in
its own process, requiring and verifying a client certificate) and the
same number of concurrent asyncio clients, each doing a full handshake on
a fresh TCP connection (no resumption) and reading the one byte the server
sends once it has verified the client: a completed *mutual* handshake.
Certificates come from the ``cryptography`` package when installed, else
from the ``openssl`` command.

The bare protocol (bench/ref_bare_handshake.py): the same four messages and
the same cryptography per side over grpc.aio, with nothing else (no
protobuf, ledger, nonce stores or policy), its server in its own process:
the floor under didnode's handshake on this machine, with every message a
stream message (``bare``: the prototype issue #5 speaks of) and with
didnode's header carriage (``bare_headers``: the same gRPC operations as
didnode's handshake, so the difference is what didnode adds). Issue #5 puts
its absolute target (1,500/s) next to such a prototype's 1,750/s on the
machine it was set on; ``ratio_vs_bare`` carries that target to any machine
(0.86).

All are measured in alternating rounds (--rounds) inside one run, so
that a change in the machine's background load affects all alike; CPU
time per handshake of each side is reported too (it does not depend on
what else the machine is doing as much as rates do).

Last line: one JSON object with the figures (rates, p50/p99 latency in ms, ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, emit  # noqa: E402
from ref_bare_handshake import bare_figures, bare_initiators, start_bare_server  # noqa: E402
from serving import Tally, load_loop, stop_process  # noqa: E402

from nacl.public import PrivateKey  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from didnode.auth import Authenticator, LocalIdentity  # noqa: E402
from didnode.client import AsyncClient, Client  # noqa: E402
from didnode.core import builder  # noqa: E402
from didnode.core.builder import SignedOperation  # noqa: E402
from didnode.auth.peers import CachedKeyStates, ClientKeyStates  # noqa: E402
from didnode.client.trust import policy_from_node  # noqa: E402
from didnode.core.trust import TrustedLog  # noqa: E402
from didnode.clock import wall_ms  # noqa: E402
from didnode.auth.lmdb_nonces import LmdbNonceStore  # noqa: E402
from didnode.tlsgen import write_dev_pki  # noqa: E402
from didnode.wire.tls import TlsClientConfig  # noqa: E402

BIN = Path(sys.executable).parent
NET = "local"  # the network of a node started without --network


def device_create(network: str = NET) -> tuple[SigningKey, SignedOperation]:
    """A device's authentication key and the signed create of its DID.

    The DID document a device has: ``key-1`` (Ed25519, the key it
    authenticates with), a pre-committed next key and an X25519 key-agreement
    key ``ka-1``; self-signed by ``key-1``.
    """
    auth, nxt, ka = SigningKey.generate(), SigningKey.generate(), PrivateKey.generate()
    unsigned = builder.create(
        network,
        [builder.NewKey("key-1", bytes(auth.verify_key))],
        bytes(nxt.verify_key),
        key_agreement=builder.NewAgreementKey("ka-1", bytes(ka.public_key)),
    )
    return auth, builder.sign(unsigned, [(f"{unsigned.did}#key-1", auth)])


def start_node(data: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [str(BIN / "didnode"), "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--log-level", "warning", *extra],
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


# --------------------------------------------------------------------------
# didnode
# --------------------------------------------------------------------------


async def didnode_client(
    address: str,
    identities: list[LocalIdentity],
    state: Path,
    args: argparse.Namespace,
    tls: TlsClientConfig | None = None,
    trust: TrustedLog | None = None,
    staleness_s: float | None = None,
) -> tuple[Any, Any, Any]:
    """(one(i), one_with_session_credential(i), close()) for the didnode initiators (over TLS with ``tls``).

    ``trust``: the node's answers are verified against it (None: believed unverified, as before issue #15);
    ``staleness_s``: the cache bound of the node's key state (default --staleness; 0: no cache)."""
    client = AsyncClient(address, tls=tls)
    network = (await client.node_info()).network
    source = ClientKeyStates(client, trust) if trust is not None else ClientKeyStates(client, None, insecure_no_verify=True)
    keys = CachedKeyStates(source, int((args.staleness if staleness_s is None else staleness_s) * 1000))
    store = LmdbNonceStore(state, wall_ms())
    auths = [Authenticator(i, network, keys, nonces=store, tls=tls) for i in identities]

    async def one(i: int) -> None:
        await auths[i].authenticate(address, session_credential=False)

    async def one_sc(i: int) -> None:
        est = await auths[i].authenticate(address, session_credential=True)
        if not est.credential:
            raise SystemExit("the node issued no session credential")

    async def close() -> None:
        for a in auths:
            await a.close()
        store.close()
        await client.close()

    return one, one_sc, close


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


def mtls_client(d: Path, port: int) -> Any:
    """one(i): a full mutual TLS 1.3 handshake on a fresh connection, confirmed by the server's byte."""
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

    return one


async def compare(
    address: str,
    tls_address: str,
    tls: TlsClientConfig,
    identities: list[LocalIdentity],
    tmp: Path,
    certs: Path,
    port: int,
    bare_address: str,
    pids: tuple[int, int, int, int],
    args: argparse.Namespace,
    trust: TrustedLog,
) -> dict[str, dict[str, Any]]:
    """Alternate rounds of the workloads (so that a change in background load hits all alike).

    ``pids``: the node's, the mTLS server's, the bare server's and the TLS node's processes (their CPU is tallied).
    Returns each workload's :meth:`Tally.result` by name.
    """
    ours_one, ours_sc, ours_close = await didnode_client(address, identities, tmp / "initiators", args)
    ver_one, _, ver_close = await didnode_client(address, identities, tmp / "initiators-verified", args, trust=trust)
    raw_one, _, raw_close = await didnode_client(address, identities, tmp / "initiators-uncached", args, staleness_s=0)
    raw_ver_one, _, raw_ver_close = await didnode_client(address, identities, tmp / "initiators-uncached-verified", args, trust=trust, staleness_s=0)
    tls_one, _, tls_close = await didnode_client(tls_address, identities, tmp / "initiators-tls", args, tls)
    theirs_one = mtls_client(certs, port)
    bare_one, bare_close = bare_initiators(bare_address, args.concurrency, "stream")
    bare_h_one, bare_h_close = bare_initiators(bare_address, args.concurrency, "headers")
    loads = {
        "ours": (ours_one, Tally(pids[0])),
        "ours_verified": (ver_one, Tally(pids[0])),
        "ours_uncached": (raw_one, Tally(pids[0])),
        "ours_uncached_verified": (raw_ver_one, Tally(pids[0])),
        "ours_with_sc": (ours_sc, Tally(pids[0])),
        "ours_tls": (tls_one, Tally(pids[3])),
        "mtls": (theirs_one, Tally(pids[1])),
        "bare": (bare_one, Tally(pids[2])),
        "bare_headers": (bare_h_one, Tally(pids[2])),
    }
    try:
        for fn, _ in loads.values():
            await load_loop(fn, args.warmup, args.concurrency)  # warm-up: its figures are thrown away
        per_round = args.seconds / args.rounds
        for _ in range(args.rounds):
            for fn, tally in loads.values():
                await tally.round(per_round, fn, args.concurrency)
    finally:
        await ours_close()
        for close in (ver_close, raw_close, raw_ver_close):
            await close()
        await tls_close()
        await bare_close()
        await bare_h_close()
    return {name: tally.result() for name, (_, tally) in loads.items()}


# --------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per protocol, split into --rounds alternating rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--staleness", type=float, default=5.0, help="initiators' cache bound for the node's own key state, in seconds")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    node, address = start_node(tmp / "node")
    node_pki = tmp / "node-tls"
    write_dev_pki(node_pki, ["127.0.0.1"], [], datetime.datetime.now(datetime.timezone.utc), days=1)
    tls = TlsClientConfig.from_files(node_pki / "ca.pem")
    tls_node: subprocess.Popen[str] | None = None
    tls_proc: multiprocessing.Process | None = None
    bare_proc: subprocess.Popen[str] | None = None
    try:
        tls_node, tls_address = start_node(tmp / "node-with-tls", ("--tls-cert", str(node_pki / "node.pem"), "--tls-key", str(node_pki / "node.key")))
        with Client(address) as c, Client(tls_address, tls=tls) as c_tls:
            identities = []
            for _ in range(args.concurrency):
                key, op = device_create()
                c.submit(op)
                c_tls.submit(op)  # the same device on both ledgers
                identities.append(LocalIdentity.from_signing_key(op.did, "key-1", key))
            trust = TrustedLog(policy_from_node(c))  # what provisioning hands a device; shared by all verified initiators
        certs = tmp / "certs"
        certs.mkdir()
        tool = make_certs(certs)
        q: multiprocessing.Queue[int] = multiprocessing.Queue()
        tls_proc = multiprocessing.Process(target=tls_server, args=(str(certs), q), daemon=True)
        tls_proc.start()
        port = q.get(timeout=30)
        assert tls_proc.pid is not None
        bare_proc, bare_address = start_bare_server(args.concurrency)
        results = asyncio.run(
            compare(address, tls_address, tls, identities, tmp, certs, port, bare_address, (node.pid, tls_proc.pid, bare_proc.pid, tls_node.pid), args, trust)
        )
        ours, with_sc, over_tls, theirs = results["ours"], results["ours_with_sc"], results["ours_tls"], results["mtls"]
        bare, bare_h = results["bare"], results["bare_headers"]
        verified, uncached, uncached_verified = results["ours_verified"], results["ours_uncached"], results["ours_uncached_verified"]
        for label, r in (
            ("didnode handshake:", ours),
            ("  verified:       ", verified),
            ("  no cache:       ", uncached),
            ("  no cache, verif:", uncached_verified),
            ("  + session cred.:", with_sc),
            ("  over TLS:       ", over_tls),
        ):
            print(
                f"{label} {r['rate']:.0f}/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  ({r['n']} handshakes; "
                f"CPU per handshake: node {r['cpu'][0]:.2f} ms, initiators {r['cpu'][1]:.2f} ms)",
                flush=True,
            )
        print(
            f"mutual TLS 1.3:    {theirs['rate']:.0f}/s  p50 {theirs['p50']:.2f} ms  p99 {theirs['p99']:.2f} ms  ({theirs['n']} handshakes; "
            f"CPU per handshake: server {theirs['cpu'][0]:.2f} ms, clients {theirs['cpu'][1]:.2f} ms; certs by {tool})",
            flush=True,
        )
        for label, r in (("bare, stream msgs:", bare), ("bare, in headers: ", bare_h)):
            print(
                f"{label} {r['rate']:.0f}/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  ({r['n']} handshakes; "
                f"CPU per handshake: server {r['cpu'][0]:.2f} ms, initiators {r['cpu'][1]:.2f} ms)",
                flush=True,
            )
    finally:
        if bare_proc is not None:
            stop_process(bare_proc)
        if tls_proc is not None:
            tls_proc.terminate()
        for n in (node, tls_node):
            if n is not None:
                n.terminate()
                n.wait(15)
        shutil.rmtree(tmp, ignore_errors=True)
    emit(
        {
            "bench": "auth",
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "handshakes_per_s": ours["rate"],
            "p50_ms": ours["p50"],
            "p99_ms": ours["p99"],
            "with_session_credential_per_s": with_sc["rate"],
            "with_session_credential_p50_ms": with_sc["p50"],
            "with_session_credential_p99_ms": with_sc["p99"],
            "mtls_handshakes_per_s": theirs["rate"],
            "mtls_p50_ms": theirs["p50"],
            "mtls_p99_ms": theirs["p99"],
            "ratio_vs_mtls": ours["rate"] / theirs["rate"],
            "cpu_ms_per_handshake_node": ours["cpu"][0],
            "cpu_ms_per_handshake_initiators": ours["cpu"][1],
            "with_session_credential_cpu_ms_node": with_sc["cpu"][0],
            "unverified_handshakes_per_s": ours["rate"],
            "verified_handshakes_per_s": verified["rate"],
            "verified_ratio": verified["rate"] / ours["rate"],
            "verified_p50_ms": verified["p50"],
            "verified_p99_ms": verified["p99"],
            "verified_cpu_ms_per_handshake_node": verified["cpu"][0],
            "verified_cpu_ms_per_handshake_initiators": verified["cpu"][1],
            "uncached_unverified_handshakes_per_s": uncached["rate"],
            "uncached_verified_handshakes_per_s": uncached_verified["rate"],
            "uncached_verified_ratio": uncached_verified["rate"] / uncached["rate"],
            "uncached_cpu_ms_per_handshake": [uncached["cpu"][0], uncached["cpu"][1]],
            "uncached_verified_cpu_ms_per_handshake": [uncached_verified["cpu"][0], uncached_verified["cpu"][1]],
            "verified_checkpoint_signatures_checked": trust.signatures_checked,
            "plaintext_handshakes_per_s": ours["rate"],
            **bare_figures("tls", over_tls),  # tls_handshakes_per_s, p50, p99, CPU of the node ("server") and initiators
            "tls_ratio": over_tls["rate"] / ours["rate"],
            "mtls_cpu_ms_per_handshake_server": theirs["cpu"][0],
            "mtls_cpu_ms_per_handshake_clients": theirs["cpu"][1],
            **bare_figures("bare", bare),
            **bare_figures("bare_headers", bare_h),
            "ratio_vs_bare": ours["rate"] / bare["rate"],
            "ratio_vs_bare_headers": ours["rate"] / bare_h["rate"],
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        }
    )


if __name__ == "__main__":
    main()
