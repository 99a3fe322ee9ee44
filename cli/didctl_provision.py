"""``didctl provision``: factory provisioning of device identities, and fleet transfer.

\b
    didctl provision --manufacturer DID --model NAME --count N --out DIR [options]
    didctl provision transfer --manifest FILE --to OWNER_DID [--export OFFER]
    didctl provision accept --offer OFFER

Thin over :mod:`didnode.provisioning` (the formats, the journal, the
resumable run); this module turns options into a :class:`RunSpec`, finds
the manufacturer's keys in the keystore, and draws the progress bar.
docs/provisioning.md describes the workflow and every file.

Registered on the main group in ``cli/didctl.py``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, cast

import click
from click.core import ParameterSource

from cli.didctl_common import Ctl, checked_did, command, json_option, note
from cli.signing import auth_signer_of, issuer_for
from didnode.client import Client
from didnode.client.verified import VerifiedClient
from didnode.core.keystate import DidState
from didnode.core.results import HistoryEntry
from didnode.core.credentials.model import MAX_CLAIM_STRING
from didnode.clock import wall_ms
from didnode.core.governance.policy import CREATES, Policy, Usage
from didnode.core.results import USAGE_KINDS
from didnode.errors import InvalidArgument, NoGovernance, NotARegistrar, QuotaExceeded
from didnode.keystore import kdf_from_env
from didnode.provisioning.bundle import Sealer, parse_recipient
from didnode.provisioning.devices import SERIAL_RE, read_public_keys
from didnode.provisioning.admission import RunAdmission, check_run, devices_done
from didnode.provisioning.run import DEFAULT_CHUNK, DEFAULT_WINDOW, JOURNAL_NAME, Manufacturer, ProvisionRun, RunResult, RunSpec, serial_for
from didnode.provisioning.transfer import FleetTransfer, TransferResult, read_manifest, read_offer, write_offer

# Options of a run; none of them may be given together with a subcommand.
RUN_OPTIONS = (
    "manufacturer",
    "model",
    "count",
    "out",
    "from_public_keys",
    "hardware_version",
    "firmware_version",
    "serial_prefix",
    "no_key_agreement",
    "plain_keys",
    "bundle_passphrase_env",
    "bundle_recipient",
    "chunk_size",
    "window",
    "helper",
    "allow_spread",
)


# --------------------------------------------------------------------------
# Progress bar
# --------------------------------------------------------------------------


class ProgressBar:
    """A one-line progress bar with rate and ETA on stderr (redrawn at most 10 times a second).

    Disabled (draws nothing) with ``--json`` or when stdout is not a terminal,
    so scripts and logs never see control characters.
    """

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self._t0 = time.monotonic()
        self._start: int | None = None
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._start is None:
            self._start, self._t0 = done, now
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        elapsed = now - self._t0
        rate = (done - self._start) / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        pct = done * 100 // total if total else 100
        w = len(f"{total:,}")
        stats = f" {done:>{w},}/{total:,} {pct:3d}%  {rate:>7,.0f}/s  ETA {_clock(eta):>7}"  # fixed width: the bar does not jump
        width = max(10, min(40, shutil.get_terminal_size((80, 24)).columns - len(self.label) - len(stats) - 4))
        filled = width * done // total if total else width
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}]{stats}")
        sys.stderr.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._drawn = False


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_enabled(ctl: Ctl) -> bool:
    """Progress is for humans: off with --json or when stdout is not a terminal."""
    return not ctl.json_output and sys.stdout.isatty()


# --------------------------------------------------------------------------
# provision (the run)
# --------------------------------------------------------------------------


def _text(value: str, option: str) -> str:
    if not value or len(value) > MAX_CLAIM_STRING or value != value.strip():
        raise click.BadParameter(f"must be 1 to {MAX_CLAIM_STRING} characters without surrounding spaces", param_hint=option)
    return value


@click.group("provision", invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--manufacturer", metavar="DID", help="The manufacturer DID: controller of every device; its keys must be in the keystore.")
@click.option("--model", metavar="NAME", help="Device model (in every attestation credential).")
@click.option("--count", type=click.IntRange(min=1), metavar="N", help="Number of devices (default with --from-public-keys: one per line).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), metavar="DIR", help="Output directory: journal, manifests, bundles/.")
@click.option(
    "--from-public-keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="FILE",
    help="Device-generated public keys and create signatures (JSON lines or CSV; docs/provisioning.md).",
)
@click.option("--hardware-version", default="unspecified", show_default=True, metavar="V", help="Hardware version claimed in the credentials.")
@click.option("--firmware-version", default="unspecified", show_default=True, metavar="V", help="Firmware version claimed in the credentials.")
@click.option("--serial-prefix", default="SN-", show_default=True, metavar="P", help="Serials are P + a zero-padded number (when the tool numbers devices).")
@click.option("--no-key-agreement", is_flag=True, help="Do not give devices an X25519 key-agreement key (ka-1).")
@click.option("--bundle-passphrase-env", metavar="VAR", help="Seal bundle keys with the passphrase in environment variable VAR (one Argon2id per run).")
@click.option("--bundle-recipient", metavar="MULTIKEY|@FILE", help="Seal bundle keys to this X25519 public key (z6LS...), e.g. the flashing station's.")
@click.option("--plain-keys", is_flag=True, help="DANGER: write device private keys into the bundles UNENCRYPTED.")
@click.option("--chunk-size", type=click.IntRange(1, 65536), default=DEFAULT_CHUNK, show_default=True, metavar="N", help="Devices per journaled chunk.")
@click.option("--window", type=click.IntRange(1, 64), default=DEFAULT_WINDOW, show_default=True, metavar="N", help="Batches in flight to the node.")
@click.option("--helper/--no-helper", default=None, hidden=True, help="Force the key/signature helper process on or off (default: on for big runs).")
@click.option(
    "--allow-spread",
    is_flag=True,
    help="On a governed network, when the run does not fit in what is left of the manufacturer's quota window: "
    "create what fits, wait for each window to end, go on (without it the run is refused at once).",
)
@json_option
@click.pass_context
def provision_group(click_ctx: click.Context, **opts: Any) -> None:
    """Provision a production run of devices: DIDs, attestation credentials, bundles, manifest.

    \b
      didctl provision --manufacturer $MFR --model X1 --count 5000 --out run-42 \\
          --hardware-version rev-b --firmware-version 1.4.2 --bundle-passphrase-env BUNDLE_PASS
      didctl provision --manufacturer $MFR --model X1 --from-public-keys devices.jsonl --out run-43
      didctl provision transfer --manifest run-42/manifest.jsonl --to $BUYER
      didctl provision transfer --manifest run-42/manifest.jsonl --to $BUYER --export offer.jsonl
      didctl provision accept --offer offer.jsonl        # by the buyer, with its own keystore

    Every device DID is controlled by the manufacturer (whose signature on each
    create vouches for it), gets a DeviceAttestationCredential with a status
    list entry, and a bundle in DIR/bundles/ (its DID, its keys sealed for the
    device, the credential, the node address, the latest signed checkpoint,
    and the trust policy this run verified the ledger with).
    Each device's next (recovery) key stays in this keystore. DIR/manifest.csv
    and DIR/manifest.jsonl list serial, DID and ledger position.

    Killed at any point, the same command resumes from DIR/provision.journal and
    ends with exactly N devices: none twice, none lost.

    On a governed network (docs/governance.md) the run is checked against the
    network's verified policy before anything is written: the manufacturer
    must be a registrar on a `registrars` network (a governor on a `governors`
    one), else NOT_A_REGISTRAR; the devices still to create must fit in its
    total quota, else QUOTA_EXCEEDED. When they do not fit in what is left of
    its current quota window (a run bigger than the quota per window never
    does), the run is refused with QUOTA_EXCEEDED saying when the window ends
    and how many windows and how long the run would take, unless
    --allow-spread: then it creates what fits, waits for the window to end
    and goes on, as many times as needed. A run stopped by the network (the
    manufacturer removed as registrar, a quota lowered) keeps every finished
    device; the same command resumes it once the governors allow it again.
    """
    ctl = click_ctx.find_object(Ctl)
    assert ctl is not None, "provision runs under the didctl main group"
    if click_ctx.invoked_subcommand is not None:
        given = [n for n in RUN_OPTIONS if click_ctx.get_parameter_source(n) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} belongs to a provisioning run, not to `provision {click_ctx.invoked_subcommand}`")
        return
    _run(ctl, **opts)


def _run(
    ctl: Ctl,
    manufacturer: str | None,
    model: str | None,
    count: int | None,
    out: Path | None,
    from_public_keys: Path | None,
    hardware_version: str,
    firmware_version: str,
    serial_prefix: str,
    no_key_agreement: bool,
    plain_keys: bool,
    bundle_passphrase_env: str | None,
    bundle_recipient: str | None,
    chunk_size: int,
    window: int,
    helper: bool | None,
    allow_spread: bool,
) -> None:
    missing = [o for o, v in (("--manufacturer", manufacturer), ("--model", model), ("--out", out)) if v is None]
    if count is None and from_public_keys is None:
        missing.append("--count")
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (see `didctl provision --help`)")
    assert manufacturer is not None and model is not None and out is not None
    mfr = checked_did(manufacturer)
    model = _text(model, "--model")
    hardware_version = _text(hardware_version, "--hardware-version")
    firmware_version = _text(firmware_version, "--firmware-version")
    modes = [m for m, on in (("--bundle-passphrase-env", bundle_passphrase_env), ("--bundle-recipient", bundle_recipient), ("--plain-keys", plain_keys)) if on]
    if from_public_keys is not None:
        if modes:
            raise click.UsageError(f"{modes[0]} does not apply with --from-public-keys: the devices hold their own private keys")
        if no_key_agreement:
            raise click.UsageError("--no-key-agreement does not apply with --from-public-keys: the file says which devices have ka-1")
    elif len(modes) != 1:
        raise click.UsageError(
            "say how bundle keys are protected: exactly one of --bundle-passphrase-env VAR, --bundle-recipient KEY, --plain-keys"
        )
    passphrase = None
    if bundle_passphrase_env is not None:
        passphrase = os.environ.get(bundle_passphrase_env)
        if not passphrase:
            raise click.BadParameter(f"environment variable {bundle_passphrase_env} is unset or empty", param_hint="--bundle-passphrase-env")
    recipient = parse_recipient(bundle_recipient) if bundle_recipient is not None else None

    client = ctl.client()
    network = client.node_info().network
    ks = ctl.keystore()
    auth_kid, auth_key = auth_signer_of(ctl, mfr, "manufacturer")
    issuer, assertion_key = issuer_for(ctl, mfr)
    trust = _trust_for_devices(ctl)

    device_keys = None
    input_sha = None
    if from_public_keys is not None:
        device_keys = read_public_keys(from_public_keys, network, mfr)
        input_sha = _sha256(from_public_keys)
        if count is not None and count != len(device_keys):
            raise click.BadParameter(f"is {count} but {from_public_keys} lists {len(device_keys)} devices", param_hint="--count")
        count = len(device_keys)
    assert count is not None
    if device_keys is None or any(d.serial is None for d in device_keys):
        last = serial_for(serial_prefix, count - 1, count)
        if not SERIAL_RE.fullmatch(last):
            raise click.BadParameter(f"gives serials like {last!r}; a serial is [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}", param_hint="--serial-prefix")

    # Before anything is written (no journal, no bundle): would the network admit the run's creates?
    admission = _check_admission(ctl, client, mfr, count - devices_done(out / JOURNAL_NAME), allow_spread)
    if admission.note:
        note(admission.note)

    keys = "device" if device_keys is not None else "generated"
    protection = "device" if device_keys is not None else "passphrase" if passphrase else "recipient" if recipient else "none"
    spec = RunSpec(
        manufacturer=mfr,
        model=model,
        count=count,
        hardware_version=hardware_version,
        firmware_version=firmware_version,
        serial_prefix=serial_prefix,
        key_agreement=not no_key_agreement if device_keys is None else any(d.ka_public is not None for d in device_keys),
        network=network,
        keys=keys,
        input_sha256=input_sha,
        protection=protection,
        recipient=recipient,
        kdf=kdf_from_env() if passphrase else None,
    )
    sealer = None
    if protection == "recipient":
        assert recipient is not None
        sealer = Sealer.recipient(recipient)
    elif protection == "none":
        sealer = Sealer.plain()
        _warn_plain(out)
    bar = ProgressBar(f"provisioning {model}", progress_enabled(ctl))

    def attempt() -> RunResult:
        return ProvisionRun(
            client=client,
            keystore=ks,
            spec=spec,
            manufacturer=Manufacturer(mfr, auth_kid, auth_key, issuer, assertion_key),
            out=out,
            node_address=ctl.node,
            device_keys=device_keys,
            sealer=sealer,
            bundle_passphrase=passphrase,
            chunk=chunk_size,
            window=window,
            helper=helper,
            progress=bar,
            notify=note,
            trust=trust,
        ).run()

    try:
        result = _run_governed(attempt, out, count, allow_spread)
    finally:
        bar.close()
    if protection == "none":
        _warn_plain(out)
    data = {**result.to_json(), "manufacturer": mfr, "model": model, "keys": keys, "protection": protection, "network": network}
    ctl.emit(
        data,
        lambda: "\n".join(
            [
                f"provisioned {result.devices:,} {model} devices for {mfr}: {result.created:,} new, "
                f"{result.existing:,} already on the ledger, in {result.seconds:.1f}s ({result.rate:,.0f} devices/s)",
                f"manifest  {out / 'manifest.csv'}  {out / 'manifest.jsonl'}",
                f"bundles   {out / 'bundles'}/  (keys: {_protection_text(protection)})",
                f"positions {result.first_position}..{result.last_position}",
            ]
        ),
    )


def _check_admission(ctl: Ctl, client: Client, mfr: str, needed: int, allow_spread: bool) -> RunAdmission:
    """The network's verified policy (the node's usage counts as advice) against a run of ``needed`` creates
    by ``mfr`` (:func:`didnode.provisioning.admission.check_run`); raises its refusal."""
    reads = ctl.verified()
    try:
        policy: Policy | None = reads.governance() if isinstance(reads, VerifiedClient) else client.governance().policy
    except NoGovernance:
        return RunAdmission()  # an open network without governance: anyone may create
    assert policy is not None
    usage, now = Usage(), wall_ms()
    if mfr in policy.registrars:
        info = client.governance(usage_of=[mfr])
        usage = info.usage.get((USAGE_KINDS[CREATES], mfr), Usage())
        now = max(now, info.last_time_ms)  # ordering time never goes back
    return check_run(policy, mfr, needed, usage, now, allow_spread=allow_spread)


# How long past a quota window's end the run waits before it goes on (clocks of tool and node differ).
SPREAD_MARGIN_MS = 2000


def _run_governed(attempt: Any, out: Path, count: int, spread: bool) -> RunResult:
    """Run ``attempt`` (one :class:`ProvisionRun`); when the network stops the run, say how far it got and how to
    go on. With ``spread``, a quota window used up is waited out and the run resumed (from its journal)."""
    while True:
        try:
            return cast(RunResult, attempt())
        except QuotaExceeded as exc:
            reset = exc.reset_time_ms
            done = devices_done(out / JOURNAL_NAME)
            if not spread or reset is None:
                raise type(exc)(
                    f"{exc.message}; the run stopped with {done:,} of {count:,} devices done; re-run the same command "
                    "to resume once the quota allows (or with --allow-spread to wait for the windows)", **exc.details
                ) from None
            wait_ms = reset + SPREAD_MARGIN_MS - wall_ms()
            note(f"{done:,} of {count:,} devices done; the registrar's quota window is used up: waiting {max(0, wait_ms) / 1000:.0f} s for the next one")
            if wait_ms > 0:
                time.sleep(wait_ms / 1000)
        except NotARegistrar as exc:
            done = devices_done(out / JOURNAL_NAME)
            raise NotARegistrar(
                f"{exc.message}; the network no longer admits this manufacturer's creates: the run stopped with {done:,} of "
                f"{count:,} devices done (the rest not created or kept for the resume); re-run the same command once the "
                "governors make it a registrar again", **exc.details
            ) from None


def _trust_for_devices(ctl: Ctl) -> dict[str, Any] | None:
    """The trust policy this run verified the ledger with (with its latest verified checkpoint), for
    every bundle; None with --insecure-no-verify (said on stderr: the devices must get one otherwise)."""
    reads = ctl.verified()
    if isinstance(reads, VerifiedClient):
        return reads.log.policy.to_json()
    note("--insecure-no-verify: the bundles carry no trust policy; give the devices one (didctl trust export) before they use the ledger")
    return None


def _protection_text(protection: str) -> str:
    return {
        "passphrase": "sealed with the bundle passphrase",
        "recipient": "sealed to the installer's X25519 key",
        "none": "UNENCRYPTED",
        "device": "none, the devices hold their own",
    }[protection]


def _warn_plain(out: Path) -> None:
    note(
        f"WARNING: --plain-keys: the bundles in {out / 'bundles'} hold device PRIVATE KEYS UNENCRYPTED; "
        "anyone who reads them can impersonate the devices"
    )


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------
# provision transfer
# --------------------------------------------------------------------------


class VerifiedStates:
    """The client, with the reads a transfer is signed on (each device's state and history) verified
    against the node's trust policy (:meth:`Ctl.verified`); submits and the rest go to the client."""

    def __init__(self, ctl: Ctl) -> None:
        self._client = ctl.client()
        self._reads = ctl.verified()

    def state(self, did: str) -> DidState:
        return self._reads.state(did)

    def history(self, did: str) -> list[HistoryEntry]:
        return self._reads.history(did)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _transfer_client(ctl: Ctl) -> Client:
    return cast(Client, VerifiedStates(ctl))


@command(provision_group, "transfer")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path), metavar="FILE", help="A run's manifest.jsonl or manifest.csv.")
@click.option("--to", "owner", required=True, metavar="OWNER_DID", help="The new owner: sole controller of every device afterwards.")
@click.option("--as", "controller", metavar="DID", help="The current controller that signs (default: the manifest's manufacturer).")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Journal (default: FILE.transfer.journal).")
@click.option("--export", "offer_path", type=click.Path(dir_okay=False, path_type=Path), metavar="OFFER", help="Do not submit: write an offer signed by the controller only, for the owner to accept.")
@click.option("--chunk-size", type=click.IntRange(1, 65536), default=1024, show_default=True, metavar="N", help="Devices per journaled chunk.")
def transfer(ctl: Ctl, manifest: Path, owner: str, controller: str | None, journal_path: Path | None, offer_path: Path | None, chunk_size: int) -> None:
    """Transfer control of every device in a manifest to OWNER_DID.

    Signed by the current controller and by the new owner, both from this
    keystore; afterwards the owner controls the devices (revoke, recover,
    deactivate, transfer) and the manufacturer no longer does. Resumable:
    re-run the same command after a crash.

    When the owner's key is elsewhere, --export OFFER writes the transfers
    signed by the controller only, and the owner runs
    `didctl provision accept --offer OFFER` with its own keystore.
    """
    owner = checked_did(owner)
    rows, sha = read_manifest(manifest)
    if controller is None:
        makers = {r.manufacturer for r in rows}
        if len(makers) != 1 or None in makers:
            raise click.UsageError("the manifest does not name one manufacturer for every device: give --as CONTROLLER_DID")
        controller = next(iter(makers))
        assert controller is not None
    controller = checked_did(controller)
    if controller == owner:
        raise click.BadParameter("the new owner is the current controller", param_hint="--to")
    client = _transfer_client(ctl)
    network = client.node_info().network
    if offer_path is not None:
        if journal_path is not None:
            raise click.UsageError("--journal does not apply with --export: nothing is submitted")
        bar = ProgressBar("signing offer", progress_enabled(ctl))
        try:
            n = write_offer(offer_path, client, network, rows, owner, controller, auth_signer_of(ctl, controller, "controller"), bar)
        finally:
            bar.close()
        ctl.emit(
            {"offer": str(offer_path), "devices": n, "from": controller, "to": owner, "network": network},
            f"wrote an offer of {n:,} devices from {controller} to {owner}: {offer_path}\n"
            f"the owner accepts it with: didctl provision accept --offer {offer_path.name}",
        )
        return
    bar = ProgressBar("transferring", progress_enabled(ctl))
    try:
        result = FleetTransfer(
            client=client,
            network=network,
            rows=rows,
            manifest_sha256=sha,
            owner=owner,
            controller=controller,
            controller_signer=auth_signer_of(ctl, controller, "controller"),
            owner_signer=auth_signer_of(ctl, owner, "new owner"),
            journal_path=journal_path or manifest.with_name(manifest.name + ".transfer.journal"),
            chunk=chunk_size,
            progress=bar,
        ).run()
    finally:
        bar.close()
    _transfer_done(ctl, result, controller, owner)


@command(provision_group, "accept")
@click.option("--offer", "offer_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path), metavar="FILE", help="An offer written by `provision transfer --export`.")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Journal (default: FILE.transfer.journal).")
@click.option("--chunk-size", type=click.IntRange(1, 65536), default=1024, show_default=True, metavar="N", help="Devices per journaled chunk.")
def accept(ctl: Ctl, offer_path: Path, journal_path: Path | None, chunk_size: int) -> None:
    """Accept a fleet transfer offer: countersign each transfer as its new owner and submit.

    The owner named in the offer must have its current authentication key in
    this keystore; the controller's key is not needed (it signed the offer).
    Resumable: re-run the same command after a crash.
    """
    client = _transfer_client(ctl)
    network = client.node_info().network
    offer = read_offer(offer_path, network)
    bar = ProgressBar("accepting", progress_enabled(ctl))
    try:
        result = FleetTransfer(
            client=client,
            network=network,
            rows=offer.rows,
            manifest_sha256=offer.sha256,
            owner=offer.owner,
            controller=offer.controller,
            controller_signer=None,
            owner_signer=auth_signer_of(ctl, offer.owner, "new owner"),
            journal_path=journal_path or offer_path.with_name(offer_path.name + ".transfer.journal"),
            offer=offer,
            chunk=chunk_size,
            progress=bar,
        ).run()
    finally:
        bar.close()
    _transfer_done(ctl, result, offer.controller, offer.owner)


def _transfer_done(ctl: Ctl, result: TransferResult, controller: str, owner: str) -> None:
    ctl.emit(
        result.to_json(),
        f"transferred {result.devices:,} devices from {controller} to {owner}: {result.transferred:,} now, "
        f"{result.already:,} already, in {result.seconds:.1f}s",
    )
