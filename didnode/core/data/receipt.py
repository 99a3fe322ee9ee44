"""Data receipts: a reading's proof, self-contained, verifiable offline years later (docs/data.md, "Receipts").

A receipt puts together the device's half (:class:`ReadingProof`: the
reading, its Merkle proof to the segment root, the signed segment head) and
the ledger's half (:class:`AnchorProof`: the anchor entry, its inclusion
proof, the checkpoint note, the device's state record and its state proof
under the same checkpoint). :func:`verify` checks all of it against a trust
policy and nothing else, and says what was proven (:class:`Proven`).

File format (JSON, UTF-8; every byte string unpadded base64url; members
exactly these, none twice; at most :data:`MAX_RECEIPT_BYTES`)::

    {
      "format": "didnode/receipt/v1",
      "network": "<network id>",
      "reading": {
        "record":  "<record bytes: DID, stream, seq, device time, commitment>",
        "payload": "<payload bytes>" | null,      null: withheld (the commitment alone is proven)
        "salt":    "<salt bytes>" | null,         null exactly when the payload is
        "index":   <seq - first: the leaf index in the segment>,
        "proof":   ["<32-byte hash>", ...]        RFC 9162 PATH(index, D[count]) to the head's root
      },
      "head": "<signed segment head bytes>",
      "anchor": {
        "position":  <log position of the anchor entry>,
        "headIndex": <index of the head in the anchor's heads>,
        "first":     <first sequence number of the segment>,
        "count":     <readings in the segment>,
        "entry":     "<log entry bytes>",
        "inclusion": ["<32-byte hash>", ...]      RFC 9162 PATH(position, D[checkpoint size])
      },
      "checkpoint": {
        "note": "<the C2SP signed checkpoint note, with its cosignatures>",
        "genesisConsistency": ["<32-byte hash>", ...]   RFC 9162 PROOF(1, D[checkpoint size])
      },
      "state": {
        "record": "<the device DID's state record (docs/storage.md)>",
        "proof":  "<its sparse proof: bitmap || siblings || [other key || other value]>"
      }
    }

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from didnode.core import canonical
from didnode.core.data.anchor_proof import AnchorProof
from didnode.core.data.heads import SignedHead, decode_signed_head, verify_head
from didnode.core.data.reading import ReadingProof
from didnode.core.data.records import Record, commitment, decode_record
from didnode.core.encoding import b64url, b64url_decode
from didnode.core.keystate import ED25519, DidState, KeyRecord
from didnode.core.merkle import proof_verify
from didnode.core.merkle.encoding import parse_sparse_proof, serialize_sparse_proof
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.operations import NETWORK_RE, parse
from didnode.core.transparency_verify import verify_inclusion_at, verify_state_at
from didnode.core.trust.historical import verify_historical
from didnode.core.trust.policy import TrustPolicy
from didnode.errors import DidnodeError, ReceiptInvalid, UnknownKey

FORMAT: Final = "didnode/receipt/v1"
MAX_RECEIPT_BYTES: Final = 4 * 1024 * 1024
MAX_PAYLOAD_BYTES: Final = 1024 * 1024
MAX_PROOF_HASHES: Final = 64
_MAX_BLOB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Receipt:
    """A receipt's contents (module docstring); nothing in it is trusted until :func:`verify`."""

    network: str
    record: bytes
    payload: bytes | None
    salt: bytes | None
    index: int
    proof: tuple[bytes, ...]
    signed_head: bytes
    position: int
    head_index: int
    first: int
    count: int
    entry: bytes
    inclusion: tuple[bytes, ...]
    note: bytes
    genesis_consistency: tuple[bytes, ...]
    state_record: bytes
    state_proof: bytes


@dataclass(frozen=True, slots=True)
class Proven:
    """What a verified receipt proves.

    The reading ``seq`` of ``did``'s ``stream``, committed to as
    ``commitment`` (its ``payload`` too, unless withheld: ``payload`` None),
    at ``device_time`` by the device's clock, in a segment signed by
    ``key_id``, an Ed25519 authentication key of ``did`` valid at the ledger
    position ``position`` of the anchor (added at ``key_added``, ended at
    ``key_ended``, -1 while current, with its fate at the checkpoint), ordered
    by the ledger at ``anchored_time`` and covered by the checkpoint of
    ``checkpoint_size`` entries signed at ``checkpoint_time`` (so anchored no
    later than then) by ``signers`` trusted keys, cosigned by ``cosigners``
    trusted witnesses.
    """

    network: str
    did: str
    key_id: str
    key_added: int
    key_ended: int
    key_fate: str
    stream: str
    seq: int
    device_time: int
    commitment: bytes
    payload: bytes | None
    position: int
    anchored_time: int
    checkpoint_size: int
    checkpoint_time: int
    signers: int
    cosigners: int

    @property
    def payload_present(self) -> bool:
        return self.payload is not None

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``didctl data verify --json`` prints (bytes in base64url)."""
        return {
            "network": self.network,
            "did": self.did,
            "key": f"{self.did}#{self.key_id}",
            "keyValidFrom": self.key_added,
            "keyValidUntil": None if self.key_ended < 0 else self.key_ended,
            "keyFate": self.key_fate,
            "stream": self.stream,
            "seq": self.seq,
            "deviceTime": self.device_time,
            "commitment": b64url(self.commitment),
            "payload": None if self.payload is None else b64url(self.payload),
            "payloadPresent": self.payload_present,
            "position": self.position,
            "anchoredTime": self.anchored_time,
            "checkpointSize": self.checkpoint_size,
            "checkpointTime": self.checkpoint_time,
            "signers": self.signers,
            "cosigners": self.cosigners,
        }


def _fail(message: str, **details: Any) -> ReceiptInvalid:
    return ReceiptInvalid(f"receipt: {message}", **details)


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def build(reading: ReadingProof, anchor: AnchorProof, network: str, *, withhold_payload: bool = False) -> Receipt:
    """A receipt from the device's half and the ledger's half (neither is checked here: :func:`verify`).

    Preconditions: ``anchor`` is the node's answer for the reading's DID, stream
    and sequence number on ``network``, and its checkpoint carries a note
    (every node since 0.2 signs one; :class:`ReceiptInvalid` otherwise). With
    ``withhold_payload`` (or a reading kept without its payload) the receipt
    carries neither payload nor salt.
    """
    if not anchor.checkpoint.note:
        raise _fail("the node's checkpoint carries no signed note; a receipt needs one (a node of 0.2 or later)")
    withheld = withhold_payload or reading.payload is None
    return Receipt(
        network=network,
        record=reading.record,
        payload=None if withheld else reading.payload,
        salt=None if withheld else reading.salt,
        index=reading.index,
        proof=tuple(reading.proof),
        signed_head=reading.signed_head,
        position=anchor.position,
        head_index=anchor.head_index,
        first=anchor.first,
        count=anchor.count,
        entry=anchor.entry,
        inclusion=tuple(anchor.inclusion),
        note=anchor.checkpoint.note,
        genesis_consistency=tuple(anchor.genesis_consistency),
        state_record=anchor.state_record,
        state_proof=serialize_sparse_proof(anchor.state_proof),
    )


def withheld(receipt: Receipt) -> Receipt:
    """The same receipt without its payload and salt (what a holder hands out to prove the commitment only)."""
    return _replace(receipt, payload=None, salt=None)


def _replace(receipt: Receipt, **changes: Any) -> Receipt:
    fields = {name: getattr(receipt, name) for name in Receipt.__slots__}  # type: ignore[attr-defined]
    fields.update(changes)
    return Receipt(**fields)


# --------------------------------------------------------------------------
# The file format
# --------------------------------------------------------------------------


def to_json(r: Receipt) -> dict[str, Any]:
    """The file's JSON object (module docstring)."""
    return {
        "format": FORMAT,
        "network": r.network,
        "reading": {
            "record": b64url(r.record),
            "payload": None if r.payload is None else b64url(r.payload),
            "salt": None if r.salt is None else b64url(r.salt),
            "index": r.index,
            "proof": [b64url(h) for h in r.proof],
        },
        "head": b64url(r.signed_head),
        "anchor": {
            "position": r.position,
            "headIndex": r.head_index,
            "first": r.first,
            "count": r.count,
            "entry": b64url(r.entry),
            "inclusion": [b64url(h) for h in r.inclusion],
        },
        "checkpoint": {"note": b64url(r.note), "genesisConsistency": [b64url(h) for h in r.genesis_consistency]},
        "state": {"record": b64url(r.state_record), "proof": b64url(r.state_proof)},
    }


def dumps(r: Receipt) -> str:
    """The file's text: indented JSON with one trailing newline."""
    return json.dumps(to_json(r), indent=2) + "\n"


_decoder = canonical.unique_members_decoder(_fail)


def _object(value: Any, where: str, members: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != members:
        raise _fail(f"{where} must be an object with exactly the members {sorted(members)}")
    return value


def _bytes(value: Any, where: str, limit: int = _MAX_BLOB) -> bytes:
    raw = b64url_decode(value, where, _fail)
    if len(raw) > limit:
        raise _fail(f"{where} is {len(raw)} bytes; at most {limit}")
    return raw


def _opt_bytes(value: Any, where: str, limit: int) -> bytes | None:
    return None if value is None else _bytes(value, where, limit)


def _uint(value: Any, where: str, limit: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise _fail(f"{where} must be an integer 0..{limit}")
    return value


def _hashes(value: Any, where: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise _fail(f"{where} must be a list of at most {MAX_PROOF_HASHES} hashes")
    out = tuple(_bytes(h, f"{where}[{i}]", 32) for i, h in enumerate(value))
    if any(len(h) != 32 for h in out):
        raise _fail(f"{where} holds a hash that is not 32 bytes")
    return out


def from_json(d: Any) -> Receipt:
    """Parse the file's JSON object; raises :class:`ReceiptInvalid` (shape only: :func:`verify` checks the rest)."""
    top = _object(d, "the receipt", {"format", "network", "reading", "head", "anchor", "checkpoint", "state"})
    if top["format"] != FORMAT:
        raise _fail(f"format {str(top['format'])[:40]!r} is not {FORMAT!r}")
    network = top["network"]
    if not isinstance(network, str) or not NETWORK_RE.fullmatch(network):
        raise _fail(f"network {str(network)[:40]!r} is not a network id")
    reading = _object(top["reading"], "reading", {"record", "payload", "salt", "index", "proof"})
    anchor = _object(top["anchor"], "anchor", {"position", "headIndex", "first", "count", "entry", "inclusion"})
    checkpoint = _object(top["checkpoint"], "checkpoint", {"note", "genesisConsistency"})
    state = _object(top["state"], "state", {"record", "proof"})
    payload = _opt_bytes(reading["payload"], "reading.payload", MAX_PAYLOAD_BYTES)
    salt = _opt_bytes(reading["salt"], "reading.salt", 255)
    if (payload is None) != (salt is None):
        raise _fail("reading.payload and reading.salt are both present or both withheld (null)")
    return Receipt(
        network=network,
        record=_bytes(reading["record"], "reading.record", 64 * 1024),
        payload=payload,
        salt=salt,
        index=_uint(reading["index"], "reading.index", 2**32),
        proof=_hashes(reading["proof"], "reading.proof"),
        signed_head=_bytes(top["head"], "head", 64 * 1024),
        position=_uint(anchor["position"], "anchor.position"),
        head_index=_uint(anchor["headIndex"], "anchor.headIndex", 2**32),
        first=_uint(anchor["first"], "anchor.first"),
        count=_uint(anchor["count"], "anchor.count", 2**32),
        entry=_bytes(anchor["entry"], "anchor.entry"),
        inclusion=_hashes(anchor["inclusion"], "anchor.inclusion"),
        note=_bytes(checkpoint["note"], "checkpoint.note", 64 * 1024),
        genesis_consistency=_hashes(checkpoint["genesisConsistency"], "checkpoint.genesisConsistency"),
        state_record=_bytes(state["record"], "state.record"),
        state_proof=_bytes(state["proof"], "state.proof", 64 * 1024),
    )


def loads(data: bytes | str) -> Receipt:
    """Parse a receipt file's text (untrusted bytes); raises :class:`ReceiptInvalid` and nothing else."""
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > MAX_RECEIPT_BYTES:
        raise _fail(f"the file is {size} bytes; at most {MAX_RECEIPT_BYTES}")
    return from_json(canonical.loads(data, _fail, "the file", _decoder))


# --------------------------------------------------------------------------
# Verifying
# --------------------------------------------------------------------------


def verify(receipt: Receipt, policy: TrustPolicy) -> Proven:
    """Check everything a receipt claims against ``policy`` alone; return what it proves.

    In order: the network is the policy's; the checkpoint note (signatures
    k of n, cosignatures, origin, network) and the genesis consistency
    proof, historically (:func:`~didnode.core.trust.historical.verify_historical`:
    its trust errors as they are); the anchor entry's inclusion at its
    position; the entry parses as an anchor holding exactly this signed head
    at ``head_index``, of the segment ``first``/``count``; the device's state
    record under the checkpoint's state root; the head's key is an Ed25519
    authentication key of the DID valid at the entry's position; the head's
    signature; the record is of the head's DID and stream, within its range,
    at leaf ``seq - first`` of the head's root; the payload matches the
    record's commitment under the salt. Any other failure is
    :class:`ReceiptInvalid` naming what failed.
    """
    if receipt.network != policy.network:
        raise _fail(f"the receipt is of network {receipt.network!r}; the trust policy is for {policy.network!r}", what="network")
    signers = verify_historical(policy, receipt.note, receipt.genesis_consistency)
    cp = signers.checkpoint
    if receipt.position >= cp.tree_size:
        raise _fail(f"the anchor position {receipt.position} is not below the checkpoint's size {cp.tree_size}", what="inclusion")
    try:
        entry = verify_inclusion_at(cp, receipt.entry, receipt.position, receipt.inclusion)
    except DidnodeError as exc:
        raise _fail(f"the anchor entry is not in the checkpoint's log at position {receipt.position}: {exc}", what="inclusion") from None
    signed = _anchored_head(receipt, entry.payload, entry.proofs)
    head = signed.head
    state = _state(receipt, cp, head.did)
    key = _key_at(state, head.key_id, receipt.position, head.kid)
    try:
        verify_head(signed, policy.network, key.raw)
    except DidnodeError as exc:
        raise _fail(f"the segment head's signature does not verify under {head.kid}: {exc}", what="head signature") from None
    record = _record(receipt, signed)
    if receipt.payload is not None:
        assert receipt.salt is not None
        if not 1 <= len(receipt.salt) <= 255:
            raise _fail(f"the salt is {len(receipt.salt)} bytes; 1..255", what="salt")
        if commitment(receipt.salt, receipt.payload) != record.commitment:
            raise _fail("the payload and salt do not match the record's commitment", what="payload")
    return Proven(
        network=policy.network,
        did=head.did,
        key_id=head.key_id,
        key_added=key.added_pos,
        key_ended=key.ended_pos,
        key_fate=key.fate,
        stream=head.stream,
        seq=record.seq,
        device_time=record.device_time,
        commitment=record.commitment,
        payload=receipt.payload,
        position=receipt.position,
        anchored_time=entry.time,
        checkpoint_size=cp.tree_size,
        checkpoint_time=cp.time_ms,
        signers=signers.signers,
        cosigners=signers.cosigners,
    )


def _anchored_head(receipt: Receipt, payload: bytes, proofs: tuple[Any, ...]) -> SignedHead:
    """The receipt's signed head, after checking the entry is an anchor holding exactly it at ``head_index``."""
    try:
        op = parse(payload, proofs, receipt.network)
    except DidnodeError as exc:
        raise _fail(f"the anchor entry does not parse as an operation: {exc}", what="entry") from None
    if op.type != "anchor":
        raise _fail(f"the entry at position {receipt.position} is a {op.type}, not an anchor", what="entry")
    if receipt.head_index >= len(op.heads):
        raise _fail(f"the anchor holds {len(op.heads)} heads; the receipt names head {receipt.head_index}", what="entry")
    anchored = op.heads[receipt.head_index]
    if anchored.raw != receipt.signed_head:
        raise _fail(f"head {receipt.head_index} of the anchor is not the receipt's segment head", what="head")
    try:
        signed = decode_signed_head(receipt.signed_head)
    except DidnodeError as exc:  # cannot fail once equal to a parsed head; kept for a typed answer
        raise _fail(f"the segment head does not decode: {exc}", what="head") from None
    if (signed.head.first, signed.head.count) != (receipt.first, receipt.count):
        raise _fail(
            f"the receipt says the segment is {receipt.count} readings from {receipt.first}; the head says {signed.head.count} from {signed.head.first}",
            what="head",
        )
    return signed


def _state(receipt: Receipt, cp: Any, did: str) -> DidState:
    try:
        proof = parse_sparse_proof(receipt.state_proof)
        state = verify_state_at(cp, did, receipt.state_record, proof)
    except DidnodeError as exc:
        raise _fail(f"the state proof of {did} does not verify under the checkpoint: {exc}", what="state proof") from None
    assert state is not None
    return state


def _key_at(state: DidState, key_id: str, position: int, kid: str) -> KeyRecord:
    try:
        key = state.key(key_id)
    except UnknownKey:
        raise _fail(f"{kid} is not a key of {state.did}", what="key") from None
    if key.kind != ED25519 or "authentication" not in key.purposes:
        raise _fail(f"{kid} is not an Ed25519 authentication key", what="key")
    if not key.valid_at(position):
        ended = "" if key.ended_pos < 0 else f" until {key.ended_pos}"
        raise _fail(f"{kid} was not valid at the anchor's position {position} (valid from {key.added_pos}{ended})", what="key")
    return key


def _record(receipt: Receipt, signed: SignedHead) -> Record:
    head = signed.head
    try:
        record = decode_record(receipt.record)
    except DidnodeError as exc:
        raise _fail(f"the reading record does not decode: {exc}", what="record") from None
    if (record.did, record.stream) != (head.did, head.stream):
        raise _fail(f"the record is of {record.did} stream {record.stream}; the head of {head.did} stream {head.stream}", what="record")
    if not head.first <= record.seq < head.end:
        raise _fail(f"the record's sequence number {record.seq} is not in the segment {head.first}..{head.end - 1}", what="record")
    if receipt.index != record.seq - head.first:
        raise _fail(f"the reading's leaf index {receipt.index} is not its sequence number {record.seq} minus the segment's first {head.first}", what="merkle proof")
    try:
        proof_verify.verify_inclusion(leaf_hash(receipt.record), receipt.index, head.count, list(receipt.proof), head.root)
    except DidnodeError as exc:
        raise _fail(f"the reading's Merkle proof does not reach the segment root: {exc}", what="merkle proof") from None
    return record
