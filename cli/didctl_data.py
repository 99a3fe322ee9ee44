"""``didctl data``: device data integrity (issue #19, docs/data.md).

This module holds the ``data`` group and the receipt commands
(``didctl data receipt``, ``didctl data verify``); the device side
(``record``, ``gateway``, ``anchor``) lives in :mod:`cli.didctl_data_device`,
which adds its commands to :data:`data_group`.

A receipt (:mod:`didnode.core.data.receipt`) is written only after it
verified against the trust policy of the node it came from, and verifies
later from the file and a trust policy alone: ``didctl data verify`` asks
no node.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.didctl_common import Ctl, checked_did, command, iso_ms, kv_lines, safe_text
from didnode.clock import wall_ms
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.data import receipt as receipts
from didnode.core.data.records import check_stream, decode_record
from didnode.core.encoding import b64url
from didnode.core.trust import TrustPolicy
from didnode.errors import InvalidArgument, ReceiptInvalid, UnknownNode
from didnode.fileio import write_atomic


@click.group("data")
def data_group() -> None:
    """Device data: readings signed at the source, anchored in batches, receipts verifiable offline."""


def _policy(ctl: Ctl, trust: Path | None, *, contact: bool = False) -> TrustPolicy | None:
    """The trust policy to verify a receipt against: ``--trust FILE`` (here or global), else the trust store's
    entry for ``--node``; None with ``--insecure-no-verify``. Without an entry, ``contact`` makes first contact
    with the node (the user compares and accepts, as for every other command), else :class:`UnknownNode`."""
    from cli.trust_store import first_contact, read_policy

    path = trust or ctl.trust_file
    if path is not None:
        return read_policy(path)
    if ctl.insecure_no_verify:
        return None
    source = ctl.trust_source()
    known = source.known()
    if known is None and contact:
        return first_contact(ctl.client(), ctl.node, source.store)
    if known is None:
        raise UnknownNode(
            f"no trust policy for {ctl.node} in {ctl.trust_dir}: pass --trust FILE (the network's trust policy, "
            "didnode trust-policy), or accept the node first (didctl trust add)",
            address=ctl.node,
        )
    return known


def _extends_latest(ctl: Ctl, checkpoint: SignedCheckpoint) -> None:
    """The receipt's checkpoint must also extend the latest one this client verified from the node
    (a consistency proof, as every verified read asks): the historical check alone would pass a
    checkpoint of another history signed by the same keys. Advances the trust store's latest."""
    log = getattr(ctl.verified(), "log", None)
    if log is None:  # --insecure-no-verify: nothing to extend
        return
    size, proof_from = checkpoint.tree_size, log.known_size
    hashes = ctl.client().consistency_proof(proof_from, size).hashes if 0 < proof_from < size else ()
    log.accept(checkpoint, hashes, proof_from, wall_ms())


def _describe_payload(payload: bytes | None, commit: bytes) -> str:
    if payload is None:
        return f"withheld (commitment {b64url(commit)})"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(payload)} bytes, base64url {b64url(payload)}"
    return safe_text(text)


def proven_text(proven: receipts.Proven, source: str) -> str:
    """What a verified receipt proved, as ``didctl data verify`` prints it."""
    if proven.key_ended < 0:
        key_life = f"valid at position {proven.position} (added at {proven.key_added}, still current)"
    else:
        key_life = f"valid at position {proven.position} (added at {proven.key_added}, {proven.key_fate} at {proven.key_ended})"
    witnesses = f", cosigned by {proven.cosigners} witness(es)" if proven.cosigners else ""
    return f"verified: {source}\n" + kv_lines({
        "device": proven.did,
        "key": f"{proven.did}#{proven.key_id}",
        "key validity": key_life,
        "reading": f"stream {proven.stream}, sequence number {proven.seq}",
        "device time": f"{iso_ms(proven.device_time)} (the device's clock)",
        "anchored": f"at position {proven.position}, ordered {iso_ms(proven.anchored_time)}",
        "no later than": f"{iso_ms(proven.checkpoint_time)} (checkpoint of {proven.checkpoint_size} entries, "
                         f"signed by {proven.signers} trusted key(s){witnesses})",
        "network": proven.network,
        "commitment": b64url(proven.commitment),
        "payload": _describe_payload(proven.payload, proven.commitment),
    })  # fmt: skip


@command(data_group, "receipt")
@click.argument("did")
@click.argument("stream")
@click.argument("seq", type=click.IntRange(min=0))
@click.option("--store", "store_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="The device's segment store (didctl data record).")
@click.option("--withhold-payload", is_flag=True, help="Prove the commitment only: the receipt carries neither payload nor salt.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Where to write the receipt (JSON, didnode/receipt/v1).")
def receipt_command(ctl: Ctl, did: str, stream: str, seq: int, store_dir: Path, withhold_payload: bool, out: Path) -> None:
    """Write the receipt of reading SEQ of DID's STREAM: the device's half from --store, the ledger's from the node.

    The receipt is verified against the node's trust policy before it is
    written; it then verifies offline (didctl data verify).
    """
    from didnode.data.store import SegmentStore

    did = checked_did(did)
    check_stream(stream)
    if not store_dir.is_dir():
        raise InvalidArgument(f"the segment store {store_dir} is not a directory", path=str(store_dir))
    reading = SegmentStore(store_dir).reading_proof(stream, seq, with_payload=not withhold_payload)
    record = decode_record(reading.record)
    if record.did != did:
        raise InvalidArgument(f"the store {store_dir} holds the readings of {record.did}, not of {did}", did=did)
    policy = _policy(ctl, None, contact=True)  # None only with --insecure-no-verify
    network = policy.network if policy is not None else ctl.client().node_info().network
    anchor = ctl.client().anchor(did, stream, seq)
    built = receipts.build(reading, anchor, network, withhold_payload=withhold_payload)
    proven = None
    if policy is not None:
        proven = receipts.verify(built, policy)
        _extends_latest(ctl, anchor.checkpoint)
    try:
        write_atomic(out, receipts.dumps(built).encode(), mode=0o644)
    except OSError as exc:
        raise InvalidArgument(f"cannot write the receipt {out}: {exc.strerror}", path=str(out)) from None
    data = {"file": str(out), "did": did, "stream": stream, "seq": seq, "position": anchor.position,
            "checkpointSize": anchor.checkpoint.tree_size, "payload": not (withhold_payload or reading.payload is None),
            "verified": proven is not None}  # fmt: skip
    what = "" if proven is not None else " (NOT verified: --insecure-no-verify)"
    ctl.emit(data, f"wrote the receipt of {did} stream {stream} sequence number {seq}, anchored at position "
                   f"{anchor.position}, to {out}{what}")  # fmt: skip


@command(data_group, "verify")
@click.argument("receipt_file", metavar="RECEIPT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trust", "trust", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="The trust policy to verify against (default: the global --trust, else the trust store's entry for --node).")
def verify_command(ctl: Ctl, receipt_file: Path, trust: Path | None) -> None:
    """Verify the receipt in RECEIPT offline, from the file and a trust policy alone, and say what it proves."""
    if ctl.insecure_no_verify and trust is None and ctl.trust_file is None:
        raise click.UsageError("verifying a receipt needs a trust policy: --insecure-no-verify has nothing to skip here")
    policy = _policy(ctl, trust)
    assert policy is not None
    try:
        data = receipt_file.read_bytes()
    except OSError as exc:
        raise ReceiptInvalid(f"cannot read the receipt {receipt_file}: {exc.strerror or exc}", path=str(receipt_file)) from None
    proven = receipts.verify(receipts.loads(data), policy)
    ctl.emit({"verified": True, "file": str(receipt_file), **proven.to_json()}, lambda: proven_text(proven, str(receipt_file)))


__all__ = ["data_group", "proven_text"]
