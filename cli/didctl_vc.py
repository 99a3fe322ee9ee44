"""``didctl vc ...``: issue, verify, revoke, suspend, reinstate and inspect verifiable credentials.

Issuers sign locally with their assertionMethod key from the keystore; the
private key never leaves this process. Status lists (W3C Bitstring Status
List v1.0) are read from the ledger, changed, signed here and published
with the ledger's ``publish`` operation (see docs/credentials.md).

Every ledger fact a verdict or a signature rests on (issuer key states and
their times, status lists, the issuer's state before a publish) is read
through :meth:`Ctl.verified`, so it is checked against the node's trust
policy; only ``vc verify --remote`` believes the node's own verdict.

Register on the main group with ``main.add_command(vc_group)``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from cli.didctl_common import Ctl, checked_did, command, iso_ms, note, receipt_json, safe_text
from cli.signing import issuer_for, network_of
from didnode.core.builder import SignedOperation
from didnode.core.credentials import DEVICE_ATTESTATION, Issuer, VerificationReport, Verifier
from didnode.core.credentials.jose import decode_json_object, parse_compact
from didnode.core.credentials.model import Credential, build_claims, format_time, parse_claims
from didnode.core.credentials.status_list import list_number, resource_id
from didnode.core.credentials.status_url import DEFAULT_STATUS_BASE_URL, validate_base_url
from didnode.core.credentials.verify import FAILED, PASSED, SKIPPED
from didnode.core.document import parse_iso8601
from didnode.client import OfflineVerifier, Receipt, StatusLists
from didnode.clock import wall_ms
from didnode.core.keystate import DidState
from didnode.core.results import Resource
from didnode.errors import InvalidArgument

STATUS_BASE_URL_ENV = "DIDCTL_STATUS_BASE_URL"
_DURATION_RE = re.compile(r"\+(\d+)([smhd])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@click.group("vc")
def vc_group() -> None:
    """Verifiable credentials (W3C VC 2.0 as vc+jwt) and their status lists.

    \b
      didctl vc issue --issuer $MFR --subject $DEV --type DeviceAttestationCredential \\
          --claims '{"model":"X1","serialNumber":"SN1","hardwareVersion":"1","firmwareVersion":"1.0",
                    "manufactureTime":"2025-01-31T12:00:00Z"}' --status > dev.jwt
      didctl vc verify dev.jwt --subject $DEV
      didctl vc suspend dev.jwt ; didctl vc reinstate dev.jwt ; didctl vc revoke dev.jwt
    """


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


class VerifiedLedger:
    """:class:`~didnode.client.status_lists.LedgerAccess` over the verified reads and the client's submit."""

    def __init__(self, ctl: Ctl) -> None:
        self.reads = ctl.verified()
        self.client = ctl.client()

    def state(self, did: str) -> DidState:
        return self.reads.state(did)

    def resource(self, did: str, resource_id: str) -> Resource:
        return self.reads.resource(did, resource_id)

    def submit(self, op: SignedOperation) -> Receipt:
        return self.client.submit(op)


def offline_verifier(ctl: Ctl) -> OfflineVerifier:
    """A local verifier fed by the verified reads (issuer key states and times, status lists), uncached."""
    reads = ctl.verified()
    return OfflineVerifier(reads.issuer_record, lambda did, rid: reads.resource(did, rid).content, cache_ttl_ms=0)


def read_token(source: str) -> str:
    """A token from FILE or '-' (stdin); also accepts the JSON that ``vc issue --json`` prints."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot read {source}: {exc.strerror or exc}", param_hint="TOKEN") from None
    text = text.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            raise click.BadParameter(f"{source} holds neither a token nor JSON with a 'token' member", param_hint="TOKEN") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("token"), str):
            raise click.BadParameter(f"{source}: JSON without a 'token' member", param_hint="TOKEN")
        text = doc["token"]
    if not text:
        raise click.BadParameter(f"{source} is empty", param_hint="TOKEN")
    return text


def parse_token(token: str) -> Credential:
    """The token's claims, parsed (not verified): enough to find its issuer and status entries."""
    return parse_claims(decode_json_object(parse_compact(token).payload, "payload"))


def parse_valid_until(value: str, now_ms: int) -> int:
    """``--valid-until``: an ISO 8601 date-time, or ``+N[smhd]`` from now."""
    m = _DURATION_RE.fullmatch(value.strip())
    if m:
        return now_ms + int(m.group(1)) * _UNIT_MS[m.group(2)]
    try:
        return parse_iso8601(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither an ISO 8601 date-time nor +N[smhd]", param_hint="--valid-until") from None


def parse_claims_option(value: str) -> dict[str, Any]:
    """``--claims``: a JSON object, or ``@FILE`` holding one."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror or exc}", param_hint="--claims") from None
    try:
        claims = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--claims") from None
    if not isinstance(claims, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--claims")
    if "id" in claims:
        raise click.BadParameter("must not contain 'id' (the subject is --subject)", param_hint="--claims")
    return claims


# --------------------------------------------------------------------------
# issue
# --------------------------------------------------------------------------


@command(vc_group, "issue")
@click.option("--issuer", required=True, metavar="DID", help="The issuing DID; its assertionMethod key must be in the keystore.")
@click.option("--subject", required=True, metavar="DID", help="The DID the credential is about.")
@click.option("--type", "cred_type", default=DEVICE_ATTESTATION, show_default=True, metavar="TYPE", help="Credential type (besides VerifiableCredential).")
@click.option("--claims", "claims_text", required=True, metavar="JSON|@FILE", help="credentialSubject members (without id).")
@click.option("--valid-until", metavar="ISO8601|+N[smhd]", help="Expiry (default: none).")
@click.option("--status", "with_status", is_flag=True, help="Allocate an index in the issuer's status lists (published on the ledger) so it can be revoked or suspended.")
@click.option(
    "--status-base-url",
    "status_base_url",
    default=DEFAULT_STATUS_BASE_URL,
    show_default=True,
    envvar=STATUS_BASE_URL_ENV,
    metavar="URL",
    help="With --status: where HTTP clients fetch the issuer's status lists; entries name {URL}/1.0/identifiers/{DID}?resource={ID} (a didnode --http listener or any DID resolver).",
)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the token to this file.")
def issue(
    ctl: Ctl,
    issuer: str,
    subject: str,
    cred_type: str,
    claims_text: str,
    valid_until: str | None,
    with_status: bool,
    status_base_url: str,
    out_path: Path | None,
) -> None:
    """Issue a credential signed locally by ISSUER; prints the vc+jwt token.

    With --status an index is allocated at random through the ledger
    (compare-and-set on the issuer's sealed allocation record, so several
    devices issuing for one DID never share an index); missing lists are
    created and published. Its status entries name the lists by HTTP(S) URL
    under --status-base-url; didnode verifiers read them from the ledger
    whatever host the URL names.
    """
    base = validate_base_url(status_base_url)
    issuer = checked_did(issuer)
    subject = checked_did(subject)
    claims = parse_claims_option(claims_text)
    now = wall_ms()
    until = parse_valid_until(valid_until, now) if valid_until is not None else None
    # Check the claims' shape before anything is allocated or signed (ClaimsInvalid).
    parse_claims(build_claims(issuer, subject, [cred_type], claims, now, until))
    ctl.verified().state(subject)  # the subject must exist on the ledger (UnknownDid otherwise)
    local, key = issuer_for(ctl, issuer)
    local = Issuer(local.did, local.key_id, key, base)
    status: tuple[Any, ...] = ()
    allocation = None
    if with_status:
        allocation = StatusLists(VerifiedLedger(ctl), local, key, network_of(ctl)).allocate(1)
        status = local.status_entries(allocation.number, allocation.indices[0])
        note(f"allocated status index {allocation.indices[0]} of list {allocation.number} (ledger position {allocation.receipt.position})")
    token = local.issue(subject, [cred_type], claims, now, until, status)
    # Check what we made against the ledger before handing it out.
    report = offline_verifier(ctl).verify(token, expected_subject=subject, now_ms=now)
    cred = report.raise_if_invalid()
    if out_path is not None:
        out_path.write_text(token + "\n", encoding="utf-8")
    data: dict[str, Any] = {
        "token": token,
        "id": cred.id,
        "issuer": issuer,
        "kid": local.kid,
        "subject": subject,
        "types": list(cred.types),
        "validFrom": format_time(cred.valid_from),
        "validUntil": format_time(cred.valid_until) if cred.valid_until is not None else None,
        "credentialStatus": [e.to_json() for e in status],
    }
    if allocation is not None:
        data["statusAllocation"] = receipt_json(allocation.receipt, list=allocation.number, index=allocation.indices[0])
    ctl.emit(data, token)


# --------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------


_MARK = {PASSED: "ok", FAILED: "FAIL", SKIPPED: "-"}


def report_text(report: VerificationReport) -> str:
    """Human form: verdict, facts, then one line per check.

    Claims and messages come from the token (anyone's input): each goes through
    :func:`safe_text` on its own, so none can break a line or add a fake one.
    """
    cred = report.credential
    s = safe_text
    lines = [f"{'VALID' if report.valid else 'INVALID'}" + (f"  [{s(report.reason)}] {s(report.message)}" if not report.valid else "")]
    if cred is not None:
        lines.append(f"  type      {s(', '.join(cred.types))}")
        lines.append(f"  id        {s(cred.id or '-')}")
        lines.append(f"  issuer    {s(cred.issuer)}")
        lines.append(f"  subject   {s(cred.subject or '-')}")
        until = format_time(cred.valid_until) if cred.valid_until is not None else "-"
        lines.append(f"  valid     {format_time(cred.valid_from)} .. {until}")
    if report.kid:
        lines.append(f"  kid       {s(report.kid)}")
    lines.append("")
    for c in report.checks:
        detail = f"[{s(c.reason)}] {s(c.message)}" if c.reason else s(c.message)
        lines.append(f"  {_MARK[c.outcome]:<5} {c.name:<10} {detail}".rstrip())
    return "\n".join(lines)


@command(vc_group, "verify")
@click.argument("source", metavar="FILE|-")
@click.option("--subject", "expected_subject", metavar="DID", help="Require credentialSubject.id to be this DID (holder binding).")
@click.option("--issuer", "expected_issuer", metavar="DID", help="Require this issuer.")
@click.option("--type", "expected_type", metavar="TYPE", help="Require this credential type.")
@click.option("--remote", is_flag=True, help="Believe the node's own verdict (default: verify here, on key states and status lists verified against the trust policy).")
@click.pass_context
def verify(
    click_ctx: click.Context, ctl: Ctl, source: str, expected_subject: str | None, expected_issuer: str | None, expected_type: str | None, remote: bool
) -> None:
    """Verify a credential and print every check; exit 1 when it is invalid."""
    token = read_token(source)
    if expected_subject is not None:
        expected_subject = checked_did(expected_subject)
    if expected_issuer is not None:
        expected_issuer = checked_did(expected_issuer)
    if remote:
        note(f"--remote: the verdict is the node's ({ctl.node}), not checked here")
        report = ctl.client().verify_credential(token, expected_subject, expected_issuer, expected_type)
    else:
        report = offline_verifier(ctl).verify(token, expected_subject, expected_issuer, expected_type)
    ctl.emit(report.to_json(), lambda: report_text(report))
    if report.error is not None:
        message = " ".join(report.error.message.split())
        click.echo(f"didctl: credential is invalid: {safe_text(message)} [{safe_text(report.error.reason)}]", err=True)
        click_ctx.exit(1)


# --------------------------------------------------------------------------
# revoke, suspend, reinstate, status
# --------------------------------------------------------------------------


def _target(ctl: Ctl, source: str | None, index: int | None, issuer: str | None, number: int, purpose: str) -> tuple[str, int, int]:
    """(issuer DID, list number, index) from a token, or from --index/--issuer/--list."""
    if source is not None:
        if index is not None or issuer is not None:
            raise click.UsageError("give either TOKEN_FILE or --index with --issuer, not both")
        cred = parse_token(read_token(source))
        for entry in cred.status:
            if entry.purpose == purpose:
                n = list_number(entry.resource_id, purpose)
                if n == 0:
                    raise InvalidArgument(f"the credential's {purpose} list {entry.resource_id!r} is not one didctl manages ({purpose}-N)")
                return cred.issuer, n, entry.index
        raise InvalidArgument(f"the credential has no {purpose} status entry (was it issued with --status?)")
    if index is None or issuer is None:
        raise click.UsageError("give TOKEN_FILE, or --index N with --issuer DID")
    return checked_did(issuer), number, index


def _change(ctl: Ctl, source: str | None, index: int | None, issuer: str | None, number: int, purpose: str, value: bool, verb: str) -> None:
    did, n, i = _target(ctl, source, index, issuer, number, purpose)
    local, key = issuer_for(ctl, did)
    receipt = StatusLists(VerifiedLedger(ctl), local, key, network_of(ctl)).set_status(purpose, n, i, value)
    url = f"{did}?resource={resource_id(purpose, n)}"
    ctl.emit(
        receipt_json(receipt, statusListCredential=url, index=i, purpose=purpose, set=value),
        f"{verb}: index {i} of {url} (seq {receipt.seq}, position {receipt.position}, {iso_ms(receipt.time_ms)})",
    )


def _status_options(f: Any) -> Any:
    f = click.option("--list", "number", type=click.IntRange(min=1), default=1, show_default=True, metavar="N", help="List number (with --index).")(f)
    f = click.option("--issuer", metavar="DID", help="The issuer whose list to change (with --index).")(f)
    f = click.option("--index", type=click.IntRange(min=0), metavar="N", help="The status index (instead of TOKEN_FILE).")(f)
    return click.argument("source", metavar="[TOKEN_FILE|-]", required=False)(f)


@command(vc_group, "revoke")
@_status_options
def revoke(ctl: Ctl, source: str | None, index: int | None, issuer: str | None, number: int) -> None:
    """Revoke a credential for good (sets its bit in the issuer's revocation list)."""
    _change(ctl, source, index, issuer, number, "revocation", True, "revoked")


@command(vc_group, "suspend")
@_status_options
def suspend(ctl: Ctl, source: str | None, index: int | None, issuer: str | None, number: int) -> None:
    """Suspend a credential (sets its bit in the issuer's suspension list)."""
    _change(ctl, source, index, issuer, number, "suspension", True, "suspended")


@command(vc_group, "reinstate")
@_status_options
def reinstate(ctl: Ctl, source: str | None, index: int | None, issuer: str | None, number: int) -> None:
    """Lift a suspension (clears the bit in the suspension list; revocations are final)."""
    _change(ctl, source, index, issuer, number, "suspension", False, "reinstated")


@command(vc_group, "status")
@click.argument("source", metavar="TOKEN_FILE|-")
def status(ctl: Ctl, source: str) -> None:
    """Show the credential's status entries as the issuer's latest lists on the ledger say.

    Each list is the one the issuer's verified state names, and its signature
    is checked here against the issuer's verified keys.
    """
    cred = parse_token(read_token(source))
    if not cred.status:
        raise InvalidArgument("the credential has no credentialStatus")
    reads = ctl.verified()
    verifier = Verifier(reads.issuer_record)
    rows = []
    for entry in cred.status:
        res = reads.resource(entry.list_did, entry.resource_id)
        lst = verifier.verify_status_list(res.content, entry.list_did, wall_ms())
        rows.append(
            {
                "purpose": lst.purpose,
                "index": entry.index,
                "set": lst.bits.get(entry.index),
                "statusListCredential": entry.list_url,
                "listValidFrom": format_time(lst.credential.valid_from),
                "position": res.position,
            }
        )
    text = "\n".join(f"{r['purpose']:<11} index {r['index']:<7} {'SET' if r['set'] else 'clear'}  (list of {r['listValidFrom']}, position {r['position']})" for r in rows)
    ctl.emit({"id": cred.id, "issuer": cred.issuer, "entries": rows}, text)
