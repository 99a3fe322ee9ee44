"""``didctl did endorse FILE`` and ``didctl did submit FILE``: operation files carried between parties.

An operation file (:mod:`didnode.core.opfile`) holds one signed operation.
On a governed network a create that no registrar controls (a device that
made its own DID, a cluster node's DID: ``didnode identity``) needs a
registrar's endorsement: an extra signature by the registrar's current
authentication key ([governance.md](../docs/governance.md)).
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.didctl_common import Ctl, checked_did, command, receipt_json
from cli.didctl_did import did_group
from cli.signing import auth_signer_of
from didnode.core import opfile
from didnode.core.builder import SignedOperation
from didnode.core.operations import MAX_PROOFS, Proof, signing_bytes
from didnode.errors import InvalidArgument
from didnode.fileio import write_atomic


def _read(path: Path) -> SignedOperation:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the operation file {path}: {exc.strerror}", path=str(path)) from None
    return opfile.loads(data, str(path))


@command(did_group, "endorse")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "endorser", required=True, metavar="DID", help="The endorsing DID (a registrar or governor), from the keystore.")
def endorse(ctl: Ctl, file: Path, endorser: str) -> None:
    """Add ENDORSER's signature to the create in FILE (rewritten in place, atomically)."""
    op = _read(file)
    did = checked_did(endorser)
    if op.type != "create":
        raise InvalidArgument(f"{file} holds a {op.type}; only a create is endorsed", did=op.did)
    if did == op.did:
        raise InvalidArgument(f"{did} is the DID this create makes; an endorser is another DID", did=did)
    kid, key = auth_signer_of(ctl, did, "endorser")
    proofs = tuple(p for p in op.proofs if p.kid.partition("#")[0] != did)
    if len(proofs) >= MAX_PROOFS:
        raise InvalidArgument(f"the create in {file} carries {len(proofs)} signatures already; the limit is {MAX_PROOFS}")
    signature = key.sign(signing_bytes(op.network, op.type, op.payload)).signature
    out = SignedOperation(op.type, op.network, op.did, op.payload, proofs + (Proof(kid, signature),))
    write_atomic(file, opfile.dumps(out).encode(), mode=0o644)
    ctl.emit({"file": str(file), "did": op.did, "endorser": kid}, f"endorsed the create of {op.did} as {kid} in {file}")


@command(did_group, "submit")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def submit(ctl: Ctl, file: Path) -> None:
    """Submit the operation in FILE (an operation file, didnode/operation/v1)."""
    op = _read(file)
    receipt = ctl.client().submit(op)
    info = receipt_json(receipt)
    ctl.emit(info, f"accepted: {op.type} of {op.did} at position {info['position']} ({info['time']})")
