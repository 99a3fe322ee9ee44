"""``didctl``: the operator, manufacturer, admin and device CLI of didnode.

Thin over :class:`didnode.client.Client` (the only way it talks to a node)
and :class:`didnode.keystore.Keystore` (where its secrets live). Every
:class:`didnode.errors.DidnodeError` is caught in one place,
:meth:`DidctlGroup.invoke`, and becomes one line on stderr and an exit code.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

# grpc's C core writes its own lines to stderr (e.g. each failed TLS handshake); didctl reports
# every failure as one line of its own. GRPC_VERBOSITY set by the user still wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import click

from cli.didctl_common import (
    DEFAULT_KEYSTORE,
    DEFAULT_NODE,
    DEFAULT_TIMEOUT,
    KEYSTORE_ENV,
    NODE_ENV,
    PASSPHRASE_ENV,
    TLS_CA_ENV,
    TLS_CERT_ENV,
    TLS_KEY_ENV,
    TLS_SERVER_NAME_ENV,
    DEFAULT_TRUST_DIR,
    TRUST_DIR_ENV,
    TRUST_ENV,
    Ctl,
    command,
    iso_ms,
    kv_lines,
    note,
    read_passphrase,
    safe_text,
)
from cli.didctl_audit import audit
from cli.didctl_data import data_group
import cli.didctl_data_device  # noqa: F401  (registers `didctl data record`, `gateway` and `anchor`)
from cli.didctl_auth import auth_command, device_group
from cli.didctl_did import did_group
from cli.didctl_gov import error_hint, gov_group
from cli.didctl_log import log
import cli.didctl_compare  # noqa: F401  (registers `didctl log compare`)
import cli.didctl_opfile  # noqa: F401  (registers `didctl did endorse` and `didctl did submit`)
from cli.didctl_provision import provision_group
from cli.didctl_trust import trust_group
from cli.didctl_vc import vc_group
from didnode import __version__
from didnode.errors import DidnodeError, KeystoreError, TlsFailed, TlsFileInvalid, TrustChanged, TrustPolicyInvalid, Unavailable, UnknownNode
from didnode.keystore import Keystore, kdf_from_env

EVIDENCE_DIR_ENV = "DIDCTL_EVIDENCE_DIR"
EXIT_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_KEYSTORE = 4
EXIT_TLS = 5
EXIT_TRUST = 6

EPILOG = f"""\b
Exit codes:
  0  success
  1  the node rejected the operation, the DID, key or version was not found,
     or an answer failed verification against the trust policy
  2  usage error (unknown option, bad or conflicting values)
  3  the node is unreachable (or timed out)
  4  keystore problem: none there, wrong passphrase, key not in the keystore
  5  TLS: the node's certificate is untrusted, expired or for another name, the
     node requires (or refused) a client certificate, or a --tls-* file is unusable
  6  trust: the node is unknown (didctl trust add), presents another key,
     genesis or network than the one trusted, or a trust policy file is unusable

\b
Environment:
  {NODE_ENV:<18}  node address (--node)
  {KEYSTORE_ENV:<18}  keystore directory (--keystore)
  {PASSPHRASE_ENV:<18}  keystore passphrase (else it is asked for)
  {"DIDCTL_KDF":<18}  Argon2id cost for new keystores: interactive, moderate (default), sensitive
  {TLS_CA_ENV:<18}  CA certificates (PEM) the node's must chain to: TLS on (--tls-ca)
  {TLS_CERT_ENV:<18}  client certificate (PEM) for a node that requires one (--tls-cert)
  {TLS_KEY_ENV:<18}  its private key (--tls-key)
  {TLS_SERVER_NAME_ENV:<18}  name the node's certificate must carry, if not the address's host
  {TRUST_ENV:<18}  trust policy file to verify answers against (--trust)
  {TRUST_DIR_ENV:<18}  trust store directory (--trust-dir)
  {"DIDCTL_EVIDENCE_DIR":<18}  where LOG_FORK evidence is saved (default: evidence/ next to the trust store)

\b
Errors print one line on stderr: "didctl: <message> [<REASON>]"; with --json
also {{"error": {{"reason", "message", "details"}}}} on stdout.

\b
Shell completion (bash; use zsh_source / fish_source for zsh / fish):
  eval "$(_DIDCTL_COMPLETE=bash_source didctl)"
"""


def exit_code(err: DidnodeError) -> int:
    """The process exit code for a didnode error (see the epilog)."""
    if isinstance(err, (TlsFailed, TlsFileInvalid)):
        return EXIT_TLS
    if isinstance(err, (UnknownNode, TrustChanged, TrustPolicyInvalid)):
        return EXIT_TRUST
    if isinstance(err, Unavailable):
        return EXIT_UNREACHABLE
    if isinstance(err, KeystoreError):
        return EXIT_KEYSTORE
    return EXIT_FAILED


def report(ctx: click.Context, err: DidnodeError) -> None:
    """One line on stderr; with ``--json`` also the error object on stdout.

    The message may come from a node (or repeat ledger data): the line shows it
    on one line through :func:`safe_text`; the JSON object carries it exactly
    (``json.dumps`` escapes every control and non-ASCII character).
    """
    ctl = ctx.find_object(Ctl)
    line = " ".join(str(err).split())
    hint = error_hint(err)
    if hint:
        line += f"; {hint}"
    saved = save_evidence(ctl, err)
    if saved is not None:
        line += f" (evidence saved to {saved})"
    click.echo(f"didctl: {safe_text(line)} [{safe_text(err.reason)}]", err=True)
    if ctl is not None and ctl.json_output:
        click.echo(json.dumps({"error": {"reason": err.reason, "message": str(err), "details": dict(err.details)}}))


def evidence_dir(ctl: Ctl | None) -> Path:
    """Where LOG_FORK evidence goes: $DIDCTL_EVIDENCE_DIR, else ``evidence/`` next to the trust store directory."""
    if os.environ.get(EVIDENCE_DIR_ENV):
        return Path(os.environ[EVIDENCE_DIR_ENV]).expanduser()
    trust_dir = ctl.trust_dir if ctl is not None else Path(DEFAULT_TRUST_DIR).expanduser()
    return trust_dir.parent / "evidence"


def save_evidence(ctl: Ctl | None, err: DidnodeError) -> Path | None:
    """A LOG_FORK carrying both signed checkpoints (details ``held`` and ``offered``) is kept as one JSON
    file per incident (docs/trust.md, "Evidence"); its path, or None (nothing to keep, or not writable: said)."""
    if err.reason != "LOG_FORK" or not err.details.get("held") or not err.details.get("offered"):
        return None

    def parsed(text: str) -> object:
        try:
            return json.loads(text)
        except ValueError:
            return text

    record = {
        "reason": err.reason,
        "message": str(err),
        "time": iso_ms(int(time.time() * 1000)),
        "node": ctl.node if ctl is not None else None,
        "held": parsed(str(err.details["held"])),
        "offered": parsed(str(err.details["offered"])),
        "details": {k: v for k, v in err.details.items() if k not in ("held", "offered")},
    }
    directory = evidence_dir(ctl)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    digest = hashlib.sha256(f"{err.details['held']}\n{err.details['offered']}".encode()).hexdigest()[:12]
    path = directory / f"log-fork-{stamp}-{digest}.json"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        note(f"cannot save the fork evidence in {directory}: {exc.strerror}")
        return None
    return path


class DidctlGroup(click.Group):
    """The top-level group: turns every :class:`DidnodeError` into a line and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DidnodeError as err:
            report(ctx, err)
            ctx.exit(exit_code(err))


@click.group(cls=DidctlGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="didctl")
@click.option("--node", default=DEFAULT_NODE, show_default=True, envvar=NODE_ENV, metavar="HOST:PORT", help="Address of the didnode node.")
@click.option(
    "--keystore",
    "keystore_path",
    default=DEFAULT_KEYSTORE,
    show_default=True,
    envvar=KEYSTORE_ENV,
    type=click.Path(file_okay=False, path_type=Path),
    help="Keystore directory.",
)
@click.option("--json", "json_output", is_flag=True, help="Machine output: exactly one JSON document on stdout.")
@click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help="Deadline of each call to the node.")
@click.option("--tls-ca", envvar=TLS_CA_ENV, type=click.Path(dir_okay=False, path_type=Path), help="Connect with TLS: PEM CA certificates the node's certificate must chain to (docs/tls.md).")
@click.option("--tls-cert", envvar=TLS_CERT_ENV, type=click.Path(dir_okay=False, path_type=Path), help="With --tls-ca: PEM client certificate, for a node that requires one.")
@click.option("--tls-key", envvar=TLS_KEY_ENV, type=click.Path(dir_okay=False, path_type=Path), help="The PEM private key of --tls-cert.")
@click.option("--tls-server-name", envvar=TLS_SERVER_NAME_ENV, default="", metavar="NAME", help="With --tls-ca: the name the node's certificate must carry (default: the host of --node).")
@click.option("--trust", "trust_file", envvar=TRUST_ENV, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Verify answers against this trust policy file instead of the trust store's entry (never written; docs/trust.md).")
@click.option("--trust-dir", default=DEFAULT_TRUST_DIR, show_default=True, envvar=TRUST_DIR_ENV, type=click.Path(file_okay=False, path_type=Path), help="Trust store: one trust policy per node address.")
@click.option("--insecure-no-verify", is_flag=True, help="DANGER: believe the node's answers without checking them against any trust policy.")
@click.pass_context
def main(
    ctx: click.Context,
    node: str,
    keystore_path: Path,
    json_output: bool,
    timeout: float,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_server_name: str,
    trust_file: Path | None,
    trust_dir: Path,
    insecure_no_verify: bool,
) -> None:
    """didctl: manage did:dnode identities on a didnode ledger.

    \b
    A five-minute tour:
      didctl keystore init
      didctl node info
      didctl trust add                  # once per node: compare, then accept
      ADMIN=$(didctl did create)
      DEV=$(didctl did create --controller $ADMIN)
      didctl did resolve $DEV
      didctl did rotate $DEV
      didctl did keys $DEV
      didctl did revoke-key $DEV key-2 --as $ADMIN
      didctl did history $DEV
    """
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_ca is None and (tls_cert is not None or tls_server_name):
        raise click.UsageError("--tls-cert, --tls-key and --tls-server-name need --tls-ca")
    ctl = Ctl(
        node=node, keystore_path=keystore_path.expanduser(), json_output=json_output, timeout=timeout,
        tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, tls_server_name=tls_server_name,
    )  # fmt: skip
    if insecure_no_verify and trust_file is not None:
        raise click.UsageError("--insecure-no-verify and --trust exclude each other")
    ctl.trust_file, ctl.trust_dir, ctl.insecure_no_verify = trust_file, trust_dir.expanduser(), insecure_no_verify
    if insecure_no_verify and not ctx.resilient_parsing:
        note(f"WARNING: --insecure-no-verify: answers from {node} are not verified")
    ctx.obj = ctl
    ctx.call_on_close(ctl.close)


main.add_command(did_group)
main.add_command(vc_group)
main.add_command(log)
main.add_command(audit)
main.add_command(auth_command)
main.add_command(device_group)
main.add_command(provision_group)
main.add_command(trust_group)
main.add_command(gov_group)
main.add_command(data_group)


# --------------------------------------------------------------------------
# keystore
# --------------------------------------------------------------------------


@main.group("keystore")
def keystore_group() -> None:
    """The encrypted keystore (Argon2id + secretbox, files 0600)."""


@command(keystore_group, "init")
def keystore_init(ctl: Ctl) -> None:
    """Create a new keystore; refuses if one exists.

    The passphrase comes from DIDCTL_PASSPHRASE or is asked twice.
    """
    path = ctl.keystore_path
    if Keystore.exists(path):
        raise KeystoreError(f"a keystore already exists at {path}", path=str(path))
    passphrase = read_passphrase(path, confirm=True)
    Keystore.open(path, passphrase, create=True, kdf=kdf_from_env()).close()
    ctl.emit({"keystore": str(path), "created": True}, f"created keystore {path}")


@command(keystore_group, "list")
def keystore_list(ctl: Ctl) -> None:
    """List the DIDs whose secrets the keystore holds."""
    dids = ctl.keystore().list()
    if dids or ctl.json_output:
        ctl.emit({"keystore": str(ctl.keystore_path), "dids": dids}, "\n".join(dids))
    else:
        note(f"keystore {ctl.keystore_path} holds no DID")


# --------------------------------------------------------------------------
# node
# --------------------------------------------------------------------------


@main.group("node")
def node_group() -> None:
    """The node didctl talks to."""


@command(node_group, "info")
def node_info(ctl: Ctl) -> None:
    """Network, node DID, log size, DID count, version and mode of the node."""
    info = ctl.client().node_info()
    last = iso_ms(info.last_time_ms) if info.last_time_ms else None
    data = {
        "network": info.network,
        "nodeDid": info.node_did,
        "logSize": info.log_size,
        "didCount": info.did_count,
        "version": info.version,
        "mode": info.mode,
        "schemaVersion": info.schema_version,
        "lastTime": last,
        "address": ctl.node,
        "governance": info.governance or None,
        "createPolicy": info.create_policy,
    }
    text = {
        "node": ctl.node,
        "network": info.network,
        "node DID": info.node_did,
        "log size": info.log_size,
        "DIDs": info.did_count,
        "last op": last or "-",
        "version": info.version,
        "mode": info.mode,
        "governance": f"{info.governance} (creates: {info.create_policy})" if info.governance else "none (open network)",
    }
    if info.mode == "cluster":
        data["cluster"] = {
            "stream": info.stream,
            "appliedSeq": info.stream_seq,
            "streamLastSeq": info.stream_last_seq,
            "lag": info.lag,
            "writable": info.writable,
            "notWritableReason": info.not_writable_reason or None,
        }
        text["stream"] = f"{info.stream} (applied {info.stream_seq} of {info.stream_last_seq}, lag {info.lag})"
        text["writes"] = "accepted" if info.writable else f"refused: {info.not_writable_reason}"
    ctl.emit(data, kv_lines(text))


if __name__ == "__main__":
    main(prog_name="didctl")
