"""``didctl log ...``: signed checkpoints, proof bundles, offline proof verification.

* ``didctl log checkpoint`` -- the node's latest signed checkpoint (or the one
  it stored at ``--size``), checked against the checkpoint key of the node's
  trust policy (``--trust FILE`` or its trust store entry), else the key of the
  node's own DID document.
* ``didctl log prove inclusion --position N | --hash HEX [--size N]``,
  ``didctl log prove consistency --from N [--to M]``,
  ``didctl log prove state DID`` -- a proof bundle (JSON, docs/transparency.md)
  on stdout or in ``--out FILE``.
* ``didctl log verify-proof FILE`` -- offline: with ``--signer-key`` (the
  node's Multikey) or ``--node-did-document FILE`` no node is contacted;
  with neither, the checkpoint key of the trust policy of --node (no node
  contacted either), else the node's DID document fetched from the node
  (trust on first use, said on stderr).

Register on the main group with ``main.add_command(log)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cli.didctl_common import Ctl, checked_did, command, iso_ms, kv_lines, note
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.keystate import DidState
from didnode.core.proof_bundle import Bundle, ConsistencyProof, InclusionProof, StateProof
from didnode.core.tlog_checkpoint import note_origin
from didnode.core.transparency_verify import Verified, verify_bundle, verify_checkpoint
from didnode.errors import InvalidArgument, LocalError
from didnode.client.proofs import bundle_kid, load_bundle, signer_key_from_multibase, verify_offline

__all__ = ["log"]


@click.group("log")
def log() -> None:
    """The tamper-evident log: checkpoints and Merkle proofs.

    \b
      didctl log checkpoint
      didctl log prove inclusion --position 7 --out p.json
      didctl log prove state $DEV --out s.json
      didctl log verify-proof s.json --signer-key z6Mk...
    """


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def checkpoint_text(signed: SignedCheckpoint) -> dict[str, object]:
    c = signed.checkpoint
    return {
        "network": c.network,
        "tree size": c.tree_size,
        "log root": c.log_root.hex(),
        "state root": c.state_root.hex(),
        "time": iso_ms(c.time_ms),
        "signer": signed.kid,
        "signature": signed.signature.hex(),
        "origin": note_origin(signed) or "- (no note)",
    }


def _policy_key(ctl: Ctl, kid: str) -> tuple[str, bytes] | None:
    """(signer DID, key) of the trust policy's checkpoint key ``kid`` (its first key if it lists no such kid:
    the signature then fails naming the signer), or None when no policy is held for the node (nothing asked)."""
    policy = None if ctl.insecure_no_verify else ctl.trust_source().known()
    if policy is None:
        return None
    key = policy.key_for(kid) or policy.keys[0]
    return key.kid.partition("#")[0], key.public_key


def _node_key(ctl: Ctl, kid: str) -> tuple[str, bytes]:
    """(node DID, key) for a checkpoint signed by ``kid``: the trust policy's, else from the node's own
    DID document (trust on first use)."""
    trusted = _policy_key(ctl, kid)
    if trusted is not None:
        return trusted
    kid, key = ctl.client().node_signer_key()
    return kid.partition("#")[0], key


def _self_check(ctl: Ctl, bundle: Bundle) -> None:
    """Check a bundle the node just served against the node's own DID key (a sanity check)."""
    missing = (
        (isinstance(bundle, InclusionProof) and bundle.checkpoint is None)
        or (isinstance(bundle, ConsistencyProof) and (bundle.checkpoint1 is None or bundle.checkpoint2 is None))
    )
    if missing:
        note("the node holds no signed checkpoint at (one of) these sizes: the bundle needs a checkpoint you hold to be verified")
        return
    node_did, key = _node_key(ctl, bundle_kid(bundle))
    verify_bundle(bundle, key, node_did)


def _emit_bundle(ctl: Ctl, bundle: Bundle, out: Path | None, summary: str) -> None:
    data = bundle.to_json()
    if out is not None:
        out.write_text(json.dumps(data, indent=2) + "\n")
        ctl.emit({"file": str(out), "type": data["type"], "summary": summary}, f"wrote {out}: {summary}")
        return
    ctl.emit(data, lambda: json.dumps(data, indent=2))


OUT = click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the bundle to FILE (else stdout).")


# --------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------


@command(log, "checkpoint")
@click.option("--size", type=click.IntRange(min=1), help="The checkpoint the node stored at this tree size (default: the latest).")
def checkpoint_cmd(ctl: Ctl, size: int | None) -> None:
    """The node's latest signed checkpoint (signed on demand if the log grew).

    It is checked against the checkpoint key of the node's trust policy
    (--trust FILE or its trust store entry), else against the key in the
    node's own DID document.
    """
    signed = ctl.client().checkpoint(size)
    node_did, key = _node_key(ctl, signed.kid)
    verify_checkpoint(signed, key, node_did)
    ctl.emit({"checkpoint": signed.to_json(), "time": iso_ms(signed.checkpoint.time_ms)}, kv_lines(checkpoint_text(signed)))


# --------------------------------------------------------------------------
# prove
# --------------------------------------------------------------------------


@log.group("prove")
def prove() -> None:
    """Fetch a proof bundle (checkpoint + proof) for offline verification."""


@command(prove, "inclusion")
@click.option("--position", type=click.IntRange(min=0), help="Log position of the entry.")
@click.option("--hash", "op_hash", metavar="HEX", help="Operation hash (sha256 of the payload, hex).")
@click.option("--size", type=click.IntRange(min=1), help="Tree size to prove at (default: the latest checkpoint).")
@OUT
def prove_inclusion(ctl: Ctl, position: int | None, op_hash: str | None, size: int | None, out: Path | None) -> None:
    """That an operation is in the log (by --position or --hash)."""
    if (position is None) == (op_hash is None):
        raise InvalidArgument("give exactly one of --position or --hash")
    raw_hash = None
    if op_hash is not None:
        try:
            raw_hash = bytes.fromhex(op_hash)
        except ValueError:
            raise InvalidArgument(f"--hash {op_hash!r} is not hex") from None
        if len(raw_hash) != 32:
            raise InvalidArgument(f"--hash must be 32 bytes of hex, not {len(raw_hash)}")
    bundle = ctl.client().inclusion_proof(position=position, op_hash=raw_hash, tree_size=size)
    _self_check(ctl, bundle)
    _emit_bundle(ctl, bundle, out, f"entry {bundle.index} is in the log of {bundle.tree_size} entries")


@command(prove, "consistency")
@click.option("--from", "size1", required=True, type=click.IntRange(min=0), help="Older tree size.")
@click.option("--to", "size2", type=click.IntRange(min=0), help="Newer tree size (default: the latest checkpoint).")
@OUT
def prove_consistency(ctl: Ctl, size1: int, size2: int | None, out: Path | None) -> None:
    """That the log at --from is a prefix of the log at --to (nothing was rewritten)."""
    bundle = ctl.client().consistency_proof(size1, size2)
    _self_check(ctl, bundle)
    _emit_bundle(ctl, bundle, out, f"the log of {bundle.size1} entries is a prefix of the log of {bundle.size2}")


@command(prove, "state")
@click.argument("did")
@OUT
def prove_state(ctl: Ctl, did: str, out: Path | None) -> None:
    """A DID's current state record under the latest checkpoint (or proof that it does not exist)."""
    bundle = ctl.client().state_proof(checked_did(did))
    _self_check(ctl, bundle)
    what = "has the enclosed state" if bundle.present else "does not exist"
    _emit_bundle(ctl, bundle, out, f"{did} {what} at tree size {bundle.checkpoint.tree_size}")


# --------------------------------------------------------------------------
# verify-proof
# --------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror}") from None


def _document(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(_read(path))
    except ValueError as exc:
        raise InvalidArgument(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{path} is not a DID document (a JSON object)")
    return doc


def _verified_json(v: Verified) -> dict[str, Any]:
    c = v.checkpoint
    return {
        "ok": True,
        "kind": v.kind,
        "summary": v.summary,
        "treeSize": c.tree_size,
        "network": c.network,
        "logRoot": c.log_root.hex(),
        "stateRoot": c.state_root.hex(),
        "checkpointTime": iso_ms(c.time_ms),
    }


@command(log, "verify-proof")
@click.argument("file", metavar="FILE")
@click.option("--signer-key", metavar="MULTIBASE", help="The node's Ed25519 key as Multikey (z6Mk...); no node is contacted.")
@click.option("--node-did-document", "doc_file", metavar="FILE", help="The node's DID document (or resolution result); no node is contacted.")
@click.option("--max-age", type=click.FloatRange(min=0), metavar="SECONDS", help="Also require the checkpoint to be at most this old.")
def verify_proof(ctl: Ctl, file: str, signer_key: str | None, doc_file: str | None, max_age: float | None) -> None:
    """Verify a proof bundle FILE ('-' for stdin) offline.

    Trust comes from the signer key: --signer-key or --node-did-document. With
    neither, the checkpoint key of the trust policy of --node (--trust FILE or
    the trust store entry); without one, the node's DID document is fetched
    from the node, which only shows that the node agrees with itself.
    """
    if signer_key and doc_file:
        raise InvalidArgument("give at most one of --signer-key and --node-did-document")
    bundle = load_bundle(_read(file))
    max_age_ms = None if max_age is None else int(max_age * 1000)
    if signer_key:
        verified = verify_offline(bundle, public_key=signer_key_from_multibase(signer_key), max_age_ms=max_age_ms)
    elif doc_file:
        verified = verify_offline(bundle, did_document=_document(doc_file), max_age_ms=max_age_ms)
    elif (trusted := _policy_key(ctl, bundle_kid(bundle))) is not None:
        verified = verify_offline(bundle, public_key=trusted[1], max_age_ms=max_age_ms)
    else:
        note(f"no --signer-key, --node-did-document or trust policy: trusting the DID document the node at {ctl.node} serves for itself")
        node_did = ctl.client().node_info().node_did
        verified = verify_offline(bundle, did_document=ctl.client().resolve(node_did), max_age_ms=max_age_ms)
    out = _verified_json(verified)
    if isinstance(bundle, StateProof) and bundle.present:
        out["state"] = DidState.from_record(bundle.state_record).to_json()  # the proven record, decoded
    ctl.emit(out, f"ok: {verified.summary} (checkpoint of {iso_ms(verified.checkpoint.time_ms)})")
