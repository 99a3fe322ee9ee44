"""``didctl log compare``: are the checkpoints that nodes, witnesses and files hold of one log consistent?

Gathers the latest checkpoint (a signed note, or an old-format signed
checkpoint) from each ``--node ADDR`` (GetCheckpoint), each ``--witness URL``
(``GET /<sha256(origin) hex>/checkpoint`` for every origin the other sources
name) and each FILE (a proof bundle, a signed checkpoint's JSON, the output of
``didctl --json log checkpoint``, or a note), groups them by origin and checks
every pair of one origin: the same size needs the same root; else a node that
holds the larger (its own node first) is asked for a consistency proof from the
smaller size, verified against both roots. Signatures are checked against the
trust policy held (``--trust FILE``, the trust store entry of a node's address,
or a store entry whose origin is the checkpoint's), else reported unverified.

A pair that is not consistent fails the command with LOG_FORK naming both
sources (and the first such pair's two checkpoints are saved as evidence,
docs/trust.md "Evidence").
"""

from __future__ import annotations

import hashlib
import itertools
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cli.didctl_common import Ctl, command, note, table
from cli.didctl_log import log
from didnode.client import Client
from didnode.client.proofs import load_bundle
from didnode.core import note as note_codec
from didnode.core.checkpoint import Checkpoint, SignedCheckpoint
from didnode.core.checkpoint import from_json as checkpoint_from_json
from didnode.core.merkle import proof_verify
from didnode.core.proof_bundle import ConsistencyProof, InclusionProof, StateProof
from didnode.core.tlog_checkpoint import default_origin, parse_body, to_checkpoint
from didnode.core.transparency_verify import verify_checkpoint
from didnode.core.trust.policy import TrustPolicy
from didnode.core.trust.witnessed import verify_note
from didnode.clock import wall_ms
from didnode.errors import BadCheckpointSignature, CheckpointBelowThreshold, DidnodeError, InvalidArgument, LocalError, LogFork

__all__ = ["compare"]


@dataclass
class Seen:
    """One source's checkpoint."""

    source: str
    kind: str  # node | witness | file
    origin: str
    checkpoint: Checkpoint
    note: bytes = b""
    signed: SignedCheckpoint | None = None
    address: str | None = None  # a node's, to ask for consistency proofs
    signature: str = "unverified (no trust policy)"
    bad: bool = field(default=False)

    def evidence(self) -> str:
        if self.signed is not None:
            return json.dumps(self.signed.to_json(), separators=(",", ":"), sort_keys=True)
        return json.dumps({"note": self.note.decode("utf-8", "replace")}, separators=(",", ":"))


def _from_signed(source: str, kind: str, signed: SignedCheckpoint, address: str | None = None) -> Seen:
    origin = parse_body(note_codec.parse(signed.note).text).origin if signed.note else default_origin(signed.checkpoint.network)
    return Seen(source, kind, origin, signed.checkpoint, signed.note, signed, address)


def _from_note(source: str, kind: str, data: bytes) -> Seen:
    body = parse_body(note_codec.parse(data).text)
    return Seen(source, kind, body.origin, to_checkpoint(body), data)


def _load_file(path: str) -> Seen:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        return _from_note(path, "file", raw)  # not JSON: a signed note
    if isinstance(doc, dict) and "type" in doc:
        bundle = load_bundle(doc)
        signed = (
            bundle.checkpoint2 if isinstance(bundle, ConsistencyProof)
            else bundle.checkpoint if isinstance(bundle, (InclusionProof, StateProof))
            else None
        )  # fmt: skip
        if signed is None:
            raise InvalidArgument(f"{path}: the bundle carries no signed checkpoint")
        return _from_signed(path, "file", signed)
    if isinstance(doc, dict) and isinstance(doc.get("checkpoint"), dict):  # didctl --json log checkpoint
        doc = doc["checkpoint"]
    return _from_signed(path, "file", checkpoint_from_json(doc))


def _witness(ctl: Ctl, url: str, origin: str) -> Seen | None:
    where = f"{url.rstrip('/')}/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint"
    try:
        with urllib.request.urlopen(where, timeout=ctl.timeout) as resp:  # noqa: S310 (an operator's URL)
            data = resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            note(f"witness {url}: HTTP {exc.code} for {origin}")
        return None
    except (OSError, ValueError) as exc:
        raise LocalError(f"witness {url} is unreachable: {exc}") from None
    return _from_note(url, "witness", data)


def _policies(ctl: Ctl) -> list[TrustPolicy]:
    """Every trust policy held: --trust FILE, else every trust store entry."""
    from cli.trust_store import TrustStore, read_policy

    if ctl.trust_file is not None:
        policy = read_policy(ctl.trust_file)
        return [] if policy is None else [policy]
    store = TrustStore(ctl.trust_dir)
    out = []
    for address in store.addresses():
        try:
            policy = store.get(address)
        except DidnodeError:
            continue
        if policy is not None:
            out.append(policy)
    return out


def _check_signature(ctl: Ctl, seen: Seen, policies: list[TrustPolicy]) -> None:
    """Set ``seen.signature`` (and ``bad``) from the trust policy of its node, else one of its origin."""
    if ctl.insecure_no_verify:
        return
    policy = None
    if seen.address is not None and ctl.trust_file is None:
        from cli.trust_store import TrustStore

        try:
            policy = TrustStore(ctl.trust_dir).get(seen.address)
        except DidnodeError:
            policy = None
    if policy is None:
        policy = next((p for p in policies if p.log_origin == seen.origin and p.network == seen.checkpoint.network), None)
    if policy is None:
        return
    try:
        if seen.note:
            verify_note(policy, seen.note, wall_ms())
        else:
            assert seen.signed is not None
            key = policy.key_for(seen.signed.kid) or policy.keys[0]
            verify_checkpoint(seen.signed, key.public_key, key.kid.partition("#")[0])
        seen.signature = "verified"
    except CheckpointBelowThreshold as err:
        seen.signature = f"signed, below threshold ({err.details.get('valid', '?')} of {err.details.get('threshold', '?')})"
    except DidnodeError as err:
        seen.signature, seen.bad = f"BAD: {err.reason}", True


def _consistent(ctl: Ctl, small: Seen, large: Seen, nodes: list[Seen]) -> tuple[bool | None, str]:
    """(consistent?, why) for two checkpoints of one origin, ``small.size <= large.size``; None: not checkable."""
    s, lg = small.checkpoint, large.checkpoint
    if s.tree_size == lg.tree_size:
        return (s.log_root == lg.log_root, "same size" if s.log_root == lg.log_root else "same size, other roots")
    if s.tree_size == 0:
        return True, "empty prefix"
    askable = [large] if large.address else []
    askable += [n for n in nodes if n.origin == large.origin and n is not large and n.checkpoint.tree_size >= lg.tree_size]
    if not askable:
        return None, f"no node given holds size {lg.tree_size}"
    asked = askable[0]
    try:
        with Client(asked.address or "", timeout=ctl.timeout, tls=ctl.tls()) as c:
            proof = c.consistency_proof(s.tree_size, lg.tree_size)
    except DidnodeError as err:
        return False, f"{asked.source} gave no consistency proof: {err.reason}"
    try:
        proof_verify.verify_consistency(s.tree_size, lg.tree_size, s.log_root, lg.log_root, list(proof.hashes))
    except DidnodeError as err:
        return False, f"consistency proof from {asked.source} fails: {err.reason}"
    return True, f"consistency proof from {asked.source}"


@command(log, "compare")
@click.option("--node", "nodes", multiple=True, metavar="ADDR", help="A node to ask for its latest checkpoint (repeatable; default: the global --node when nothing else is given).")
@click.option("--witness", "witnesses", multiple=True, metavar="URL", help="A didnode witness (http://HOST:PORT) to ask for the checkpoint it cosigned of each origin seen (repeatable).")
@click.argument("files", nargs=-1, metavar="[FILE ...]")
def compare(ctl: Ctl, nodes: tuple[str, ...], witnesses: tuple[str, ...], files: tuple[str, ...]) -> None:
    """Compare the checkpoints of nodes, witnesses and files: one log, or a fork?

    Every pair of checkpoints of one origin must be consistent: the same size
    with the same root, or a consistency proof (asked of a node holding the
    larger) from the smaller to the larger. Exits 1 with LOG_FORK naming the
    pairs that are not.
    """
    if not nodes and not files:
        nodes = (ctl.node,)
    seen: list[Seen] = []
    for address in nodes:
        with Client(address, timeout=ctl.timeout, tls=ctl.tls()) as c:
            seen.append(_from_signed(address, "node", c.checkpoint(), address))
    seen += [_load_file(f) for f in files]
    origins = sorted({s.origin for s in seen})
    policies = _policies(ctl)
    if not origins:  # only witnesses: ask them of the logs the trust policies name
        origins = sorted({p.log_origin for p in policies})
    for url in witnesses:
        got = [w for origin in origins if (w := _witness(ctl, url, origin)) is not None]
        if not got:
            note(f"witness {url} holds no checkpoint of {', '.join(origins) or 'any origin given'}")
        seen += got
    for s in seen:
        _check_signature(ctl, s, policies)
    node_seen = [s for s in seen if s.address]
    pairs: list[dict[str, Any]] = []
    for origin in sorted({s.origin for s in seen}):
        group = [s for s in seen if s.origin == origin]
        for a, b in itertools.combinations(group, 2):
            small, large = (a, b) if a.checkpoint.tree_size <= b.checkpoint.tree_size else (b, a)
            ok, why = _consistent(ctl, small, large, node_seen)
            pairs.append({"origin": origin, "a": a.source, "b": b.source, "consistent": ok, "why": why, "_small": small, "_large": large})
    forks = [p for p in pairs if p["consistent"] is False]
    bad = [s for s in seen if s.bad]
    sources = [
        {"source": s.source, "kind": s.kind, "origin": s.origin, "network": s.checkpoint.network, "size": s.checkpoint.tree_size,
         "logRoot": s.checkpoint.log_root.hex(), "signature": s.signature}
        for s in seen
    ]  # fmt: skip
    public = [{k: v for k, v in p.items() if not k.startswith("_")} for p in pairs]

    def state(s: Seen) -> str:
        mine = [p for p in pairs if s in (p["_small"], p["_large"])]
        if any(p["consistent"] is False for p in mine):
            return "NOT consistent"
        if any(p["consistent"] is None for p in mine):
            return "unchecked"
        return "consistent"

    rows = [(s.source, s.origin, s.checkpoint.tree_size, s.checkpoint.log_root.hex()[:16], s.signature, state(s)) for s in seen]
    text = table(["SOURCE", "ORIGIN", "SIZE", "ROOT", "SIGNATURE", "STATE"], rows)
    if forks:
        text += "\n" + "\n".join(f"fork ({p['origin']}): {p['a']} and {p['b']}: {p['why']}" for p in forks)
    if not forks and not bad:
        ctl.emit({"consistent": True, "sources": sources, "pairs": public}, text)
        return
    if not ctl.json_output:
        click.echo(text)
    if not forks:
        raise BadCheckpointSignature(f"checkpoint signature refused by the trust policy: {', '.join(f'{s.source} ({s.signature})' for s in bad)}", sources=json.dumps(sources))
    first = forks[0]
    named = "; ".join(f"{p['a']} and {p['b']} ({p['origin']})" for p in forks)
    raise LogFork(
        f"not consistent: {named}",
        pairs=json.dumps([{k: v for k, v in p.items() if not k.startswith("_")} for p in forks]),
        sources=json.dumps(sources),
        held=first["_small"].evidence(),
        offered=first["_large"].evidence(),
    )
