"""``didctl auth`` and ``didctl device serve``: mutual authentication between devices (docs/authentication.md).

``didctl auth --as DID PEER_ADDRESS`` runs one handshake as DID against the
responder at PEER_ADDRESS (a device, or a node), checking the peer's key
through the node (``--node``), verified against the node's trust policy (the
trust store's entry or ``--trust FILE``; ``--insecure-no-verify`` skips the
checks), and prints the peer's DID, every check that
passed and the session id; any failure is one line with its reason and a
non-zero exit code.

``didctl device serve --as DID --listen HOST:PORT`` runs a responder: it
prints the address it listens on as the first line of stdout (like
``didnode serve``), one line per handshake on stderr, and stops gracefully
on SIGTERM or SIGINT.

Both are registered on the main group in ``cli/didctl.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import click

from cli.didctl_common import Ctl, checked_did, iso_ms, json_option, note, pass_ctl, safe_text
from cli.signing import auth_signer, current_state, network_of, secrets_of
from didnode.auth import Authenticator, device_responder, serve
from didnode.client import AsyncClient
from didnode.core.handshake import ACCEPT_ANYONE, Established, HandshakeLimits, LocalIdentity, Policy, load_policy, require_credentials
from didnode.core.handshake.messages import CredentialRequest
from didnode.core.keystate import DidState
from didnode.errors import DidnodeError, InsecureListen, InvalidArgument
from didnode.auth.peers import device_view
from didnode.client.verified import VerifiedClient
from didnode.clock import wall_ms
from didnode.wire.tls import TlsClientConfig, TlsServerConfig, listens_on_loopback, serving_mode

if TYPE_CHECKING:
    from didnode.auth.lmdb_nonces import LmdbNonceStore
    from didnode.core.trust import TrustedLog

STATE_ENV = "DIDCTL_AUTH_STATE"


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


def auth_state_dir(ctl: Ctl, did: str, given: Path | None) -> Path:
    """Where DID's handshake state (used nonces, pending challenges) lives.

    Default: ``<keystore's parent>/auth/<DID id>``, or ``$DIDCTL_AUTH_STATE/<DID id>``.
    """
    if given is not None:
        return given
    base = Path(os.environ[STATE_ENV]) if os.environ.get(STATE_ENV) else ctl.keystore_path.parent / "auth"
    return base / did.rpartition(":")[2]


def identity_of(ctl: Ctl, did: str) -> tuple[LocalIdentity, DidState, str]:
    """(identity, current state, network) of DID: its newest current authentication key held in the keystore."""
    secrets = secrets_of(ctl, did, "the authenticating DID")
    state = current_state(ctl, did)
    kid, key = auth_signer(state, secrets)
    network = network_of(ctl)
    return LocalIdentity.from_signing_key(did, kid.partition("#")[2], key), state, network


def device_trust(ctl: Ctl) -> TrustedLog | None:
    """What the SDK verifies the node's answers against: this run's trusted log (the one didctl's own
    verified reads use, so a checkpoint is verified once and the latest verified is kept in the trust
    store), or None with ``--insecure-no-verify``. At first contact with a node the user is asked, as
    for any didctl command (docs/trust.md, "The CLI")."""
    reads = ctl.verified()
    return reads.log if isinstance(reads, VerifiedClient) else None


def read_credentials(paths: Sequence[Path]) -> list[str]:
    """vc+jwt tokens from files (one token per file, surrounding whitespace ignored)."""
    out = []
    for p in paths:
        try:
            token = p.read_text().strip()
        except OSError as exc:
            raise InvalidArgument(f"cannot read credential file {p}: {exc.strerror or exc}", path=str(p)) from None
        if not token:
            raise InvalidArgument(f"credential file {p} is empty", path=str(p))
        out.append(token)
    return out


def requirements(types: Sequence[str], issuers: Sequence[str]) -> list[CredentialRequest]:
    """Pairs of ``--require-credential TYPE`` and ``--from ISSUER_DID`` (same count, in order)."""
    if len(types) != len(issuers):
        raise click.UsageError("each --require-credential TYPE needs one --from ISSUER_DID (give them in pairs)")
    return [CredentialRequest(t, checked_did(i)) for t, i in zip(types, issuers)]


def limits(timeout: float) -> HandshakeLimits:
    return HandshakeLimits(timeout_ms=int(timeout * 1000))


# --------------------------------------------------------------------------
# didctl auth
# --------------------------------------------------------------------------


async def _authenticate(
    ctl: Ctl,
    identity: LocalIdentity,
    network: str,
    peer: str,
    store: LmdbNonceStore,
    policy: Policy | None,
    present: list[str],
    expect: str,
    max_staleness: float,
    timeout: float,
    peer_tls: TlsClientConfig | None,
) -> Established:
    trust = device_trust(ctl)
    if trust is None and max_staleness > 0:
        raise click.UsageError("--max-staleness checks stapled proofs against the trust policy; it does not go with --insecure-no-verify")
    async with AsyncClient(ctl.node, timeout=ctl.timeout, tls=ctl.tls()) as client:
        view = await device_view(client, trust, network=network, insecure_no_verify=trust is None)
        auth = Authenticator(
            identity,
            view.network,
            view.keys,
            nonces=store,
            credentials=view.credentials,
            present=present,
            stapled=view.stapled(int(max_staleness * 1000)),
            tls=peer_tls,
        )
        try:
            return await auth.authenticate(peer, expect_peer=expect, policy=policy, session_credential=True, timeout=timeout)
        finally:
            await auth.close()


@click.command("auth")
@click.argument("peer", metavar="PEER_ADDRESS")
@click.option("--as", "as_did", required=True, metavar="DID", help="Authenticate as this DID (its current authentication key must be in the keystore).")
@click.option("--require-credential", "cred_types", multiple=True, metavar="TYPE", help="The peer must present a valid credential of TYPE (pair with --from).")
@click.option("--from", "cred_issuers", multiple=True, metavar="ISSUER_DID", help="Issuer of the preceding --require-credential.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), help="Policy file (JSON or TOML) the peer must satisfy.")
@click.option("--expect", "expect", metavar="DID", default="", help="The peer must be this DID (else the handshake fails with MISBINDING).")
@click.option("--present", "present_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path), help="A vc+jwt credential file to present when the peer asks for its type.")
@click.option("--save-credential", type=click.Path(dir_okay=False, path_type=Path), help="Write the session credential a node issues to this file (0600).")
@click.option("--max-staleness", default=0.0, type=click.FloatRange(min=0), metavar="SECONDS", help="Accept a state proof the peer stapled if its checkpoint (checked against the trust policy) is at most this old (0: always ask the node).")
@click.option("--handshake-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1), metavar="SECONDS", help="Time limit of the handshake.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help=f"Handshake state directory (default: <keystore>/../auth/<DID id>, or ${STATE_ENV}).")
@click.option("--peer-tls-ca", type=click.Path(dir_okay=False, path_type=Path), help="Connect to the peer with TLS: PEM CA certificates its certificate must chain to (presents --tls-cert, if given).")
@json_option
@pass_ctl
def auth_command(
    ctl: Ctl,
    peer: str,
    as_did: str,
    cred_types: tuple[str, ...],
    cred_issuers: tuple[str, ...],
    policy_file: Path | None,
    expect: str,
    present_files: tuple[Path, ...],
    save_credential: Path | None,
    max_staleness: float,
    handshake_timeout: float,
    state_dir: Path | None,
    peer_tls_ca: Path | None,
) -> None:
    """Authenticate the peer at PEER_ADDRESS, and to it, as --as DID.

    Prints the peer's DID, each check that passed and the session id. Exits
    1 with the reason (e.g. [KEY_REVOKED], [CREDENTIAL_REQUIRED], [REPLAY])
    when the handshake fails on either side, 3 when the peer or the node is
    unreachable.
    """
    did = checked_did(as_did)
    if expect:
        expect = checked_did(expect)
    required = requirements(cred_types, cred_issuers)
    if policy_file is not None and required:
        raise click.UsageError("give --policy or --require-credential/--from, not both")
    policy = load_policy(policy_file) if policy_file is not None else (require_credentials(required) if required else None)
    present = read_credentials(present_files)
    peer_tls = TlsClientConfig.from_files(peer_tls_ca, ctl.tls_cert, ctl.tls_key) if peer_tls_ca is not None else None
    identity, _, network = identity_of(ctl, did)
    from didnode.auth.lmdb_nonces import LmdbNonceStore  # loads LMDB: only for the commands that keep handshake state

    store = LmdbNonceStore(auth_state_dir(ctl, did, state_dir), wall_ms(), limits(handshake_timeout))
    try:
        est = asyncio.run(_authenticate(ctl, identity, network, peer, store, policy, present, expect, max_staleness, handshake_timeout, peer_tls))
    finally:
        store.close()
    if save_credential is not None:
        if not est.credential:
            raise InvalidArgument(f"{peer} issued no session credential (only nodes do); nothing written to {save_credential}")
        fd = os.open(save_credential, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(est.credential + "\n")
    data = {
        "peer": est.peer_did,
        "peerKey": f"{est.peer_did}#{est.peer_key_id}",
        "sessionId": est.session_id.hex(),
        "checks": list(est.checks),
        "credential": est.credential or None,
        "credentialExpires": iso_ms(est.expires_ms) if est.expires_ms else None,
    }

    def text() -> str:
        lines = [f"peer     {est.peer_did}", f"key      #{est.peer_key_id}"]
        lines += [f"  ok     {c}" for c in est.checks]
        lines.append(f"session  {est.session_id.hex()}")
        if est.credential:
            where = f" (saved to {save_credential})" if save_credential else ""
            lines.append(f"credential  NodeSessionCredential until {iso_ms(est.expires_ms)}{where}")
        return "\n".join(lines)

    ctl.emit(data, text)


# --------------------------------------------------------------------------
# didctl device serve
# --------------------------------------------------------------------------


@click.group("device")
def device_group() -> None:
    """Run this machine as a device: answer authentication handshakes as one of its DIDs."""


def _report(line: str) -> None:
    click.echo(f"didctl: {safe_text(line)}", err=True)


async def _serve(
    ctl: Ctl,
    identity: LocalIdentity,
    network: str,
    listen: str,
    store: LmdbNonceStore,
    policy: Policy,
    present: list[str],
    staple: bool,
    tls: TlsServerConfig | None,
) -> None:
    async with AsyncClient(ctl.node, timeout=ctl.timeout, tls=ctl.tls()) as client:
        trust = device_trust(ctl)
        responder = await device_responder(
            identity, client, nonces=store, trust=trust, insecure_no_verify=trust is None, network=network, policy=policy, present=present, staple=staple
        )

        def done(outcome: Established | DidnodeError, peer: str) -> None:
            if isinstance(outcome, DidnodeError):
                _report(f"handshake from {peer} failed: {' '.join(outcome.message.split())} [{outcome.reason}]")
            else:
                _report(f"authenticated {outcome.peer_did}#{outcome.peer_key_id} from {peer}, session {outcome.session_id.hex()}")

        server = await serve(responder, listen, on_done=done, tls=tls)
        host = listen.rsplit(":", 1)[0]
        print(f"{host}:{server.port}", flush=True)
        _report(f"{identity.did}#{identity.key_id} answers handshakes on {host}:{server.port}, {serving_mode(tls)} (network {network})")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(grace=2.0)


@device_group.command("serve")
@click.option("--as", "as_did", required=True, metavar="DID", help="Answer as this DID (its current authentication key must be in the keystore).")
@click.option("--listen", default="127.0.0.1:7000", show_default=True, metavar="HOST:PORT", help="Where to serve; port 0 picks a free port.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), help="Which peers to accept (JSON or TOML; default: any peer whose key checks out).")
@click.option("--present", "present_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path), help="A vc+jwt credential file to present when an initiator asks for its type.")
@click.option("--staple", is_flag=True, help="Attach this DID's state proof (from the node) to every challenge.")
@click.option("--handshake-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1), metavar="SECONDS", help="Half-open handshakes are dropped after this.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help=f"Handshake state directory (default: <keystore>/../auth/<DID id>, or ${STATE_ENV}).")
@click.option("--log-level", default="warning", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--tls-cert", "serve_tls_cert", type=click.Path(dir_okay=False, path_type=Path), help="Serve TLS: this device's PEM certificate (with --tls-key; docs/tls.md).")
@click.option("--tls-key", "serve_tls_key", type=click.Path(dir_okay=False, path_type=Path), help="The PEM private key of --tls-cert (keep it mode 0600).")
@click.option("--tls-client-ca", "serve_tls_client_ca", type=click.Path(dir_okay=False, path_type=Path), help="With TLS: require initiators' client certificates chaining to these PEM CA certificates.")
@click.option("--insecure-plaintext", is_flag=True, help="Serve plaintext on a non-loopback address (else refused: INSECURE_LISTEN; docs/tls.md).")
@pass_ctl
def device_serve(
    ctl: Ctl,
    as_did: str,
    listen: str,
    policy_file: Path | None,
    present_files: tuple[Path, ...],
    staple: bool,
    handshake_timeout: float,
    state_dir: Path | None,
    log_level: str,
    serve_tls_cert: Path | None,
    serve_tls_key: Path | None,
    serve_tls_client_ca: Path | None,
    insecure_plaintext: bool,
) -> None:
    """Answer authentication handshakes as --as DID until SIGTERM or SIGINT.

    Prints the listening address as the first line of stdout, then one line
    per handshake on stderr. Peers' keys (and credentials the policy
    requires) are checked through the node on every handshake, so a
    revocation applies to the very next one.
    """
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (serve_tls_cert is None) != (serve_tls_key is None) or (serve_tls_client_ca is not None and serve_tls_cert is None):
        raise click.UsageError("device serve: --tls-cert and --tls-key go together; --tls-client-ca needs them")
    tls = TlsServerConfig.from_files(serve_tls_cert, serve_tls_key, serve_tls_client_ca) if serve_tls_cert and serve_tls_key else None
    if tls is None and not insecure_plaintext and not listens_on_loopback(listen):
        # The node's rule (docs/tls.md): plaintext only where nobody else can listen in.
        raise InsecureListen(
            f"refusing to serve plaintext on {listen}, which is not a loopback address: give --tls-cert and --tls-key, "
            "or --insecure-plaintext if something else secures the network",
            listen=listen,
        )
    did = checked_did(as_did)
    policy = load_policy(policy_file) if policy_file is not None else ACCEPT_ANYONE
    present = read_credentials(present_files)
    identity, _, network = identity_of(ctl, did)
    ctl.close()  # the blocking client is done; the server uses its own asyncio client
    from didnode.auth.lmdb_nonces import LmdbNonceStore  # loads LMDB: only for the commands that keep handshake state

    store = LmdbNonceStore(auth_state_dir(ctl, did, state_dir), wall_ms(), limits(handshake_timeout))
    try:
        asyncio.run(_serve(ctl, identity, network, listen, store, policy, present, staple, tls))
    except OSError as exc:
        raise InvalidArgument(f"cannot serve on {listen}: {exc}") from None
    finally:
        store.close()
    note("stopped")
