"""Which authenticated peers a party accepts: the policy file and its evaluation.

A policy is a list of *rules*; a peer is accepted when any rule accepts it,
and a rule accepts it when *all* of its conditions hold:

``dids``          the peer's DID is one of these;
``controllers``   one of the peer's controllers (on the ledger) is one of these;
``credentials``   for every ``{type, issuer}`` the peer presented a valid
                  credential of that type, issued by that issuer, about
                  itself (signature, issuer key state, validity, status list);
``anyone``        ``true``: no condition (any peer whose key checks out).

A rule must name at least one condition. Files are JSON or TOML (by
extension; docs/authentication.md has examples)::

    {"accept": [{"dids": ["did:dnode:Qm..."]},
                {"controllers": ["did:dnode:QmAdmin..."],
                 "credentials": [{"type": "DeviceAttestationCredential", "issuer": "did:dnode:QmMaker..."}]}]}

Evaluation is pure (:func:`evaluate`): the driver verifies the presented
credentials first (that needs the ledger) and passes the findings in.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from didnode.core.credentials.jose import decode_json_object, parse_compact
from didnode.core.credentials.model import parse_claims
from didnode.core.did import validate_did
from didnode.core.handshake.messages import MAX_TYPE_CHARS, MAX_WANT, CredentialRequest
from didnode.core.keystate import DidState
from didnode.errors import CredentialInvalid, CredentialRequired, DidnodeError, InvalidArgument, InvalidDid, PolicyRejected

MAX_RULES = 64
MAX_LIST = 1024
_RULE_MEMBERS = frozenset({"dids", "controllers", "credentials", "anyone", "name"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One way to be accepted (every condition must hold)."""

    dids: frozenset[str] = frozenset()
    controllers: frozenset[str] = frozenset()
    credentials: tuple[CredentialRequest, ...] = ()
    anyone: bool = False
    name: str = ""

    def describe(self, index: int) -> str:
        parts = []
        if self.anyone:
            parts.append("any authenticated peer")
        if self.dids:
            parts.append(f"DID in a list of {len(self.dids)}" if len(self.dids) > 1 else f"DID {next(iter(self.dids))}")
        if self.controllers:
            parts.append(f"controller in {', '.join(sorted(self.controllers))}")
        if self.credentials:
            parts.append("credentials " + "; ".join(str(c) for c in self.credentials))
        label = self.name or f"rule {index + 1}"
        return f"{label} ({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Policy:
    """An ordered list of rules (see the module docstring)."""

    rules: tuple[Rule, ...]

    def requests(self) -> tuple[CredentialRequest, ...]:
        """Every credential some rule asks for, in rule order, without duplicates.

        A handshake's ``want`` carries the first :data:`MAX_WANT` of them.
        """
        out: list[CredentialRequest] = []
        for r in self.rules:
            for c in r.credentials:
                if c not in out:
                    out.append(c)
        return tuple(out)


ACCEPT_ANYONE = Policy((Rule(anyone=True, name="default"),))


def require_credentials(requests: Sequence[CredentialRequest]) -> Policy:
    """A policy that accepts any peer presenting all of ``requests`` (``didctl auth --require-credential``)."""
    if not requests:
        return ACCEPT_ANYONE
    return Policy((Rule(credentials=tuple(requests), name="required credentials"),))


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


def _dids(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not value or len(value) > MAX_LIST:
        raise InvalidArgument(f"{where} must be a non-empty list of at most {MAX_LIST} DIDs")
    out = set()
    for d in value:
        try:
            out.add(validate_did(d))
        except InvalidDid as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
    return frozenset(out)


def _requests(value: Any, where: str) -> tuple[CredentialRequest, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_WANT:
        raise InvalidArgument(f"{where} must be a non-empty list of at most {MAX_WANT} {{type, issuer}} objects")
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"type", "issuer"}:
            raise InvalidArgument(f"{where}: each credential requirement has exactly the members type and issuer")
        ctype = item["type"]
        if not isinstance(ctype, str) or not ctype or len(ctype) > MAX_TYPE_CHARS:
            raise InvalidArgument(f"{where}: credential type must be 1-{MAX_TYPE_CHARS} characters")
        try:
            issuer = validate_did(item["issuer"])
        except InvalidDid as exc:
            raise InvalidArgument(f"{where}: issuer: {exc}") from None
        out.append(CredentialRequest(ctype, issuer))
    return tuple(out)


def parse_policy(data: Mapping[str, Any]) -> Policy:
    """A policy from its decoded JSON/TOML form; raises :class:`InvalidArgument` naming the problem."""
    if not isinstance(data, Mapping) or set(data) - {"accept", "version"}:
        raise InvalidArgument("a policy is an object with the member accept (a list of rules) and optionally version")
    if data.get("version", 1) != 1:
        raise InvalidArgument(f"policy version {data.get('version')!r} is not supported (1 is)")
    rules_in = data.get("accept")
    if not isinstance(rules_in, list) or not rules_in or len(rules_in) > MAX_RULES:
        raise InvalidArgument(f"accept must be a non-empty list of at most {MAX_RULES} rules")
    rules = []
    for i, r in enumerate(rules_in):
        where = f"rule {i + 1}"
        if not isinstance(r, dict):
            raise InvalidArgument(f"{where} must be an object")
        extra = set(r) - _RULE_MEMBERS
        if extra:
            raise InvalidArgument(f"{where} has unknown member(s) {', '.join(sorted(extra))}; known: {', '.join(sorted(_RULE_MEMBERS))}")
        anyone = r.get("anyone", False)
        if not isinstance(anyone, bool):
            raise InvalidArgument(f"{where}: anyone must be true or false")
        name = r.get("name", "")
        if not isinstance(name, str) or len(name) > 64:
            raise InvalidArgument(f"{where}: name must be a string of at most 64 characters")
        rule = Rule(
            _dids(r["dids"], f"{where}.dids") if "dids" in r else frozenset(),
            _dids(r["controllers"], f"{where}.controllers") if "controllers" in r else frozenset(),
            _requests(r["credentials"], f"{where}.credentials") if "credentials" in r else (),
            anyone,
            name,
        )
        if not (rule.anyone or rule.dids or rule.controllers or rule.credentials):
            raise InvalidArgument(f"{where} names no condition; write anyone = true to accept every authenticated peer")
        rules.append(rule)
    return Policy(tuple(rules))


def load_policy(path: str | Path) -> Policy:
    """Read a policy file: TOML if it ends in ``.toml``, else JSON. Raises :class:`InvalidArgument`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read policy file {p}: {exc.strerror or exc}", path=str(p)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8")) if p.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"policy file {p} does not parse: {exc}", path=str(p)) from None
    try:
        return parse_policy(data)
    except InvalidArgument as exc:
        raise InvalidArgument(f"policy file {p}: {exc}", path=str(p)) from None


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a presented token *says* about itself before verification (issuer and types)."""

    token: str
    issuer: str
    types: tuple[str, ...]

    def matches(self, request: CredentialRequest) -> bool:
        return self.issuer == request.issuer and request.type in self.types


def peek(tokens: Sequence[str]) -> list[Claimed]:
    """Issuer and types of each token that parses (unverified; only to pick what to verify).

    Tokens that do not parse are skipped: they cannot satisfy any request,
    and a request nobody satisfies is reported as :class:`CredentialRequired`.
    """
    out = []
    for token in tokens:
        try:
            cred = parse_claims(decode_json_object(parse_compact(token).payload, "payload"))
        except CredentialInvalid:
            continue
        out.append(Claimed(token, cred.issuer, cred.types))
    return out


@dataclass(slots=True)
class Findings:
    """Verified credentials per request (a description) and the failure of each presented but invalid one."""

    satisfied: dict[CredentialRequest, str] = field(default_factory=dict)
    failed: dict[CredentialRequest, DidnodeError] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """An accepted peer: which rule accepted it and the checks that passed."""

    rule: str
    checks: tuple[str, ...]


def evaluate(policy: Policy, peer: DidState, findings: Findings) -> Decision:
    """Accept ``peer`` by the first rule that holds, or raise why not.

    Precondition: ``peer`` is the peer's verified current state and
    ``findings`` hold the verification of the credentials it presented for
    ``policy.requests()``. Raises, for the first rule whose DID and
    controller conditions hold but whose credentials do not: the failure of
    the presented credential (e.g. :class:`~didnode.errors.CredentialRevoked`)
    or :class:`CredentialRequired`; when no rule's identity conditions hold,
    :class:`PolicyRejected`.
    """
    first_failure: DidnodeError | None = None
    for i, rule in enumerate(policy.rules):
        if rule.dids and peer.did not in rule.dids:
            continue
        if rule.controllers and not rule.controllers.intersection(peer.controllers):
            continue
        missing = [c for c in rule.credentials if c not in findings.satisfied]
        if not missing:
            checks = [f"policy: accepted by {rule.describe(i)}"]
            checks += [f"credential {c} verified ({findings.satisfied[c]})" for c in rule.credentials]
            return Decision(rule.describe(i), tuple(checks))
        if first_failure is None:
            c = missing[0]
            first_failure = findings.failed.get(c) or CredentialRequired(
                f"{peer.did} presented no valid {c.type} issued by {c.issuer}", type=c.type, issuer=c.issuer
            )
    if first_failure is not None:
        raise first_failure
    raise PolicyRejected(f"no rule of the policy accepts {peer.did} (not a listed DID, and no listed controller)", did=peer.did)
