"""did:dnode operations: schema, size limits, canonical bytes, signing bytes.

An operation is a canonical JSON *payload* plus detached *proofs* (key id +
Ed25519 signature). The payload's sha256 is the operation hash; for a create
it is also the DID's multihash, so identifiers are self-certifying.

Signatures are over :func:`signing_bytes`: a fixed context string, the
network id and the operation type, then the payload. The context makes a
signature meaningless to every other protocol of didnode (handshakes,
checkpoints, credentials use other contexts), and network and type in the
prefix make a signature unusable on another network or as another type even
if a payload parser were lenient.

Parsing is stateless and pure: it checks encoding, schema and limits only.
Whether the signers are authorized is :mod:`didnode.core.keystate`'s job.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


from didnode.core import canonical
from didnode.core.did import KEY_ID_RE, did_for_create_hash, split_did_url, validate_did, validate_key_id
from didnode.core.data.heads import SignedHead, decode_signed_head
from didnode.core.ed25519 import verify_raw  # noqa: F401  (re-exported: what operations are verified with)
from didnode.core.encoding import ED25519_PUB, X25519_PUB, b64url_decode, multikey_decode
from didnode.core.governance.policy import Change, Inception, parse_changes, parse_inception
from didnode.core.service_rules import MAX_SERVICE_ENDPOINT, MAX_SERVICE_TYPE, check_service  # noqa: F401  (limits re-exported)
from didnode.errors import (
    InvalidKey,
    MalformedHead,
    MalformedOperation,
    MissingSignature,
    TooLarge,
    WrongNetwork,
)

SIGNING_CONTEXT = b"didnode/operation/v1\x00"

# Limits are part of the method: an operation over any of them is rejected,
# never truncated. docs/did-method.md lists the same table.
MAX_PAYLOAD_BYTES = 8192
MAX_PUBLISH_PAYLOAD_BYTES = 65536
MAX_RESOURCE_CONTENT = 60000
MAX_MEDIA_TYPE = 64
MAX_KEYS = 8
MAX_CONTROLLERS = 8
MAX_SERVICES = 16
MAX_PROOFS = 16
MAX_HEADS = 256  # segment heads per anchor operation
MAX_REASON = 128
MAX_NETWORK = 32
MAX_SEQ = 2**53 - 1

NETWORK_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
HASH_RE = re.compile(r"[0-9a-f]{64}")
PURPOSES = ("assertionMethod", "authentication")
RESERVED_KEY_IDS = frozenset({"next"})
NEXT_FRAGMENT = "next"

OP_TYPES = ("create", "rotate", "update", "revoke", "recover", "transfer", "deactivate", "publish", "govern", "anchor")

_COMMON = {"type", "network", "did", "seq", "prev"}
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # type: (required members, optional members)
    "create": (frozenset({"type", "network", "seq", "keys", "next", "controllers", "services"}), frozenset({"keyAgreement"})),
    "rotate": (frozenset(_COMMON | {"nextKey", "keys", "next"}), frozenset()),
    "update": (frozenset(_COMMON | {"services"}), frozenset({"keyAgreement"})),
    "revoke": (frozenset(_COMMON | {"keyId", "reason"}), frozenset({"nextKey"})),
    "recover": (frozenset(_COMMON | {"keys", "next"}), frozenset({"keyAgreement"})),
    "transfer": (frozenset(_COMMON | {"controllers"}), frozenset()),
    "deactivate": (frozenset(_COMMON | {"reason"}), frozenset({"nextKey"})),
    "publish": (frozenset(_COMMON | {"resource"}), frozenset()),
    "anchor": (frozenset(_COMMON | {"heads"}), frozenset()),
    # A governance inception (seq 0) names no did and no prev (its hash is the governance
    # identifier, as a create's is its DID); a change has both: _parse_govern checks which.
    "govern": (frozenset({"type", "network", "seq"}), frozenset({"did", "prev", "changes", "genesis", "governors", "threshold", "policy"})),
}
_GOVERN_INCEPTION = frozenset({"type", "network", "seq", "genesis", "governors", "threshold", "policy"})
_GOVERN_CHANGE = frozenset(_COMMON | {"changes"})


@dataclass(frozen=True, slots=True)
class Proof:
    """One detached signature: ``kid`` is a DID URL (``did#key-id`` or ``did#next``)."""

    kid: str
    signature: bytes

    def __repr__(self) -> str:
        return f"Proof(kid={self.kid!r}, signature={self.signature[:4].hex()}…)"


@dataclass(frozen=True, slots=True)
class KeySpec:
    """An Ed25519 verification key as named in an operation."""

    id: str
    multibase: str
    raw: bytes
    purposes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgreementKey:
    """An X25519 key-agreement key as named in an operation."""

    id: str
    multibase: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class Service:
    """A DID Core service entry (``id`` is a fragment)."""

    id: str
    type: str
    endpoint: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "type": self.type, "serviceEndpoint": self.endpoint}


@dataclass(slots=True, eq=False)
class Operation:
    """A parsed, schema-valid operation. Not yet authorized against any state.

    ``verified`` caches the (public key, signature) pairs that already verified, so a
    pipeline can check signatures in parallel before the (serial) apply.
    The parsed members are kept as typed fields, not as the decoded JSON
    object: an operation is pickled from the prepare worker to the node, and
    a dict of the whole body would cost more to pickle than what apply uses.
    """

    type: str
    network: str
    did: str
    seq: int
    prev: str
    payload: bytes
    hash: bytes
    proofs: tuple[Proof, ...]
    keys: tuple[KeySpec, ...] = ()
    next: str = ""
    next_key: bytes = b""
    controllers: tuple[str, ...] = ()
    services: tuple[Service, ...] = ()
    key_agreement: AgreementKey | None = None
    key_id: str = ""  # revoke: the key revoked
    reason: str = ""  # revoke, deactivate
    resource: dict[str, str] | None = None  # publish: {"id", "mediaType", "content"}
    governance: Inception | tuple[Change, ...] | None = None  # govern: the inception (seq 0) or the changes
    heads: tuple[SignedHead, ...] = ()  # anchor: the devices' signed segment heads
    verified: set[tuple[bytes, bytes]] = field(default_factory=set)

    def check_signature(self, proof: Proof, public_key: bytes) -> None:
        """Verify ``proof`` over this operation's signing bytes with ``public_key`` (raw Ed25519).

        Raises :class:`InvalidSignature`. Results are cached per key.
        """
        # Keyed by key *and* signature: a second proof under another kid with
        # the same key must still carry a valid signature of its own.
        if (public_key, proof.signature) in self.verified:
            return
        verify_raw(public_key, proof.signature, signing_bytes(self.network, self.type, self.payload), proof.kid)
        self.verified.add((public_key, proof.signature))


def signing_bytes(network: str, op_type: str, payload: bytes) -> bytes:
    """The exact bytes an operation's signers sign (see module docstring)."""
    return SIGNING_CONTEXT + network.encode() + b"\x00" + op_type.encode() + b"\x00" + payload


def next_commitment(next_public_key: bytes) -> str:
    """The pre-rotation commitment to an Ed25519 public key: hex sha256 of its multicodec form."""
    return hashlib.sha256(ED25519_PUB + next_public_key).hexdigest()


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


def parse(payload: bytes, proofs: Sequence[Proof], network: str) -> Operation:
    """Parse and schema-check an operation submitted to ``network``.

    Raises :class:`TooLarge`, :class:`MalformedOperation` (and its
    :class:`NonCanonicalEncoding` / :class:`DuplicateJsonKey` subclasses),
    :class:`WrongNetwork`, :class:`InvalidDid` or :class:`InvalidKey`.
    """
    # Only a publish (which carries a resource such as a status list) may use
    # the larger limit; the cheap byte test runs before any parsing, and
    # parsing then confirms the type.
    if len(payload) > MAX_PAYLOAD_BYTES and (len(payload) > MAX_PUBLISH_PAYLOAD_BYTES or not _large_type(payload)):
        limit = MAX_PUBLISH_PAYLOAD_BYTES if len(payload) > MAX_PUBLISH_PAYLOAD_BYTES else MAX_PAYLOAD_BYTES
        raise TooLarge(f"operation payload is {len(payload)} bytes; the limit is {limit}", field="payload")
    if not proofs:
        raise MissingSignature("operation carries no signatures")
    if len(proofs) > MAX_PROOFS:
        raise TooLarge(f"operation carries {len(proofs)} signatures; the limit is {MAX_PROOFS}", field="proofs")
    body = canonical.decode_canonical(payload)
    if not isinstance(body, dict):
        raise MalformedOperation("operation payload must be a JSON object")
    op_type = body.get("type")
    if len(payload) > MAX_PAYLOAD_BYTES and op_type not in LARGE_TYPES:
        raise TooLarge(f"operation payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}", field="payload")
    if op_type not in _FIELDS:
        raise MalformedOperation(f"unknown operation type {str(op_type)[:40]!r}; expected one of {', '.join(OP_TYPES)}")
    required, optional = _FIELDS[op_type]
    members = body.keys()
    missing = required - members
    if missing:
        raise MalformedOperation(f"{op_type} lacks member(s) {', '.join(sorted(missing))}")
    extra = members - required - optional
    if extra:
        raise MalformedOperation(f"{op_type} has unknown member(s) {', '.join(sorted(extra))}")
    op_network = _str(body, "network", MAX_NETWORK)
    if not NETWORK_RE.fullmatch(op_network):
        raise MalformedOperation(f"network id {op_network!r} must match [a-z0-9][a-z0-9-]{{0,31}}")
    if op_network != network:
        raise WrongNetwork(f"operation is for network {op_network!r}; this node serves {network!r}", network=op_network)
    seq = _int(body, "seq")
    op_hash = hashlib.sha256(payload).digest()
    op = Operation(op_type, op_network, "", seq, "", payload, op_hash, tuple(proofs))
    if op_type == "create" or (op_type == "govern" and seq == 0):
        if seq != 0:
            raise MalformedOperation(f"a create has seq 0, not {seq}")
        op.did = did_for_create_hash(op_hash)  # = did_from_create_payload(payload), hashing once
    else:
        if "did" not in body or "prev" not in body:
            raise MalformedOperation(f"{op_type} lacks member(s) did, prev")
        op.did = validate_did(body["did"])
        if seq < 1:
            raise MalformedOperation(f"{op_type} must have seq >= 1, not {seq}")
        op.prev = _hash(body, "prev")
    _PARSERS[op_type](op, body)
    _check_kids(op)
    return op


# Types that may use the larger payload limit: a publish carries a resource (a status list), an
# anchor up to MAX_HEADS segment heads.
LARGE_TYPES = ("publish", "anchor")


def _large_type(payload: bytes) -> bool:
    return b'"type":"publish"' in payload or b'"type":"anchor"' in payload


def _check_kids(op: Operation) -> None:
    """Proof key ids are DID URLs, each at most once; the subject's own DID was validated already."""
    kids = set()
    own = op.did + "#"
    for p in op.proofs:
        if p.kid in kids:
            raise MalformedOperation(f"two signatures carry the same key id {p.kid}")
        kids.add(p.kid)
        if p.kid.startswith(own):
            validate_key_id(p.kid[len(own) :])
        else:
            split_did_url(p.kid)


def _parse_create(op: Operation, body: dict[str, Any]) -> None:
    op.keys = _keys(body["keys"])
    op.next = _hash(body, "next")
    op.controllers = _controllers(body["controllers"], op.did)
    op.services = _services(body["services"])
    op.key_agreement = _agreement(body.get("keyAgreement"))
    _unique_ids(op)


def _parse_rotate(op: Operation, body: dict[str, Any]) -> None:
    op.next_key = _ed_key(body["nextKey"], "nextKey")
    op.keys = _keys(body["keys"])
    op.next = _hash(body, "next")
    _unique_ids(op)


def _parse_update(op: Operation, body: dict[str, Any]) -> None:
    op.services = _services(body["services"])
    op.key_agreement = _agreement(body.get("keyAgreement"))


def _parse_revoke(op: Operation, body: dict[str, Any]) -> None:
    key_id = _str(body, "keyId", 32)
    if not KEY_ID_RE.fullmatch(key_id):
        raise MalformedOperation(f"keyId {key_id!r} is not a key id")
    op.key_id = key_id
    op.reason = _str(body, "reason", MAX_REASON)
    if "nextKey" in body:
        op.next_key = _ed_key(body["nextKey"], "nextKey")


def _parse_recover(op: Operation, body: dict[str, Any]) -> None:
    op.keys = _keys(body["keys"])
    op.next = _hash(body, "next")
    op.key_agreement = _agreement(body.get("keyAgreement"))
    _unique_ids(op)


def _parse_transfer(op: Operation, body: dict[str, Any]) -> None:
    op.controllers = _controllers(body["controllers"], op.did)


def _parse_deactivate(op: Operation, body: dict[str, Any]) -> None:
    op.reason = _str(body, "reason", MAX_REASON)
    if "nextKey" in body:
        op.next_key = _ed_key(body["nextKey"], "nextKey")


def _parse_publish(op: Operation, body: dict[str, Any]) -> None:
    res = body["resource"]
    if not isinstance(res, dict) or set(res) != {"id", "mediaType", "content"}:
        raise MalformedOperation("resource must be an object with exactly id, mediaType, content")
    _key_id(res["id"], "resource")
    media = _str(res, "mediaType", MAX_MEDIA_TYPE)
    if "/" not in media:
        raise MalformedOperation(f"resource mediaType {media!r} is not a media type")
    _str(res, "content", MAX_RESOURCE_CONTENT)
    op.resource = res


def _parse_govern(op: Operation, body: dict[str, Any]) -> None:
    members = body.keys()
    expected = _GOVERN_INCEPTION if op.seq == 0 else _GOVERN_CHANGE
    if members != expected:
        what = "a governance inception (seq 0)" if op.seq == 0 else "a governance change"
        wrong = sorted((members - expected) | (expected - members))
        raise MalformedOperation(f"{what} has exactly the members {', '.join(sorted(expected))}; not so: {', '.join(wrong)}")
    op.governance = parse_inception(body) if op.seq == 0 else parse_changes(body["changes"])


def _parse_anchor(op: Operation, body: dict[str, Any]) -> None:
    heads = body["heads"]
    if not isinstance(heads, list) or not heads:
        raise MalformedOperation("heads must be a non-empty list of base64url signed segment heads")
    if len(heads) > MAX_HEADS:
        raise TooLarge(f"an anchor carries {len(heads)} heads; the limit is {MAX_HEADS}", field="heads")
    out = []
    for i, item in enumerate(heads):
        raw = b64url_decode(item, f"head {i}", MalformedOperation)
        try:
            out.append(decode_signed_head(raw))
        except MalformedHead as exc:
            raise MalformedHead(f"head {i} of the anchor: {exc}", head=i) from None
    op.heads = tuple(out)


_PARSERS = {
    "create": _parse_create,
    "rotate": _parse_rotate,
    "update": _parse_update,
    "revoke": _parse_revoke,
    "recover": _parse_recover,
    "transfer": _parse_transfer,
    "deactivate": _parse_deactivate,
    "publish": _parse_publish,
    "govern": _parse_govern,
    "anchor": _parse_anchor,
}


def _str(body: Mapping[str, Any], name: str, limit: int) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise MalformedOperation(f"member {name} must be a string")
    if len(value) > limit:
        raise TooLarge(f"member {name} is {len(value)} characters; the limit is {limit}", field=name)
    return value


def _int(body: Mapping[str, Any], name: str) -> int:
    value = body[name]
    if type(value) is not int:
        raise MalformedOperation(f"member {name} must be an integer")
    if not 0 <= value <= MAX_SEQ:
        raise MalformedOperation(f"member {name} must be in [0, 2^53-1]")
    return value


def _hash(body: Mapping[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str) or not HASH_RE.fullmatch(value):
        raise MalformedOperation(f"member {name} must be 64 lowercase hex characters (a sha256)")
    return value


def _ed_key(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedOperation(f"{where} must be a Multikey string")
    if len(value) > 64:
        raise TooLarge(f"{where} is {len(value)} characters; a Multikey is at most 64", field=where)
    return multikey_decode(value, ED25519_PUB)


def _key_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not KEY_ID_RE.fullmatch(value):
        raise MalformedOperation(f"{where} id {str(value)[:40]!r} must be 1-32 characters of [A-Za-z0-9_-]")
    if value in RESERVED_KEY_IDS or value.endswith("-jwk"):
        raise MalformedOperation(f"{where} id {value!r} is reserved ('next' and '*-jwk' name derived entries)")
    return value


def _keys(value: Any) -> tuple[KeySpec, ...]:
    if not isinstance(value, list) or not value:
        raise MalformedOperation("keys must be a non-empty list")
    if len(value) > MAX_KEYS:
        raise TooLarge(f"operation names {len(value)} keys; the limit is {MAX_KEYS}", field="keys")
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"id", "publicKeyMultibase", "purposes"}:
            raise MalformedOperation("each key must be an object with exactly id, publicKeyMultibase, purposes")
        kid = _key_id(item["id"], "key")
        purposes = item["purposes"]
        if (
            not isinstance(purposes, list)
            or not purposes
            or any(p not in PURPOSES for p in purposes)
            or purposes != sorted(set(purposes))
        ):
            raise MalformedOperation(f"key {kid} purposes must be a sorted, duplicate-free, non-empty subset of {list(PURPOSES)}")
        raw = _ed_key(item["publicKeyMultibase"], f"key {kid}")
        out.append(KeySpec(kid, item["publicKeyMultibase"], raw, tuple(purposes)))
    if len({k.raw for k in out}) != len(out):
        raise MalformedOperation("the same public key is listed twice")
    return tuple(out)


def _agreement(value: Any) -> AgreementKey | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"id", "publicKeyMultibase"}:
        raise MalformedOperation("keyAgreement must be an object with exactly id and publicKeyMultibase")
    kid = _key_id(value["id"], "keyAgreement")
    mb = value["publicKeyMultibase"]
    if not isinstance(mb, str) or len(mb) > 64:
        raise MalformedOperation("keyAgreement publicKeyMultibase must be a Multikey string")
    try:
        raw = multikey_decode(mb, X25519_PUB)
    except InvalidKey as exc:
        raise InvalidKey(f"keyAgreement: {exc}") from None
    return AgreementKey(kid, mb, raw)


def _controllers(value: Any, own: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise MalformedOperation("controllers must be a list")
    if len(value) > MAX_CONTROLLERS:
        raise TooLarge(f"operation names {len(value)} controllers; the limit is {MAX_CONTROLLERS}", field="controllers")
    for c in value:
        validate_did(c)
    if value != sorted(set(value)):
        raise MalformedOperation("controllers must be sorted and free of duplicates")
    if own in value:
        raise MalformedOperation("a DID cannot name itself as its controller")
    return tuple(value)


def _services(value: Any) -> tuple[Service, ...]:
    if not isinstance(value, list):
        raise MalformedOperation("services must be a list")
    if len(value) > MAX_SERVICES:
        raise TooLarge(f"operation names {len(value)} services; the limit is {MAX_SERVICES}", field="services")
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"id", "type", "serviceEndpoint"}:
            raise MalformedOperation("each service must be an object with exactly id, type, serviceEndpoint")
        # The service rules (id, type, endpoint URI and scheme policy) live in core.service_rules.
        out.append(Service(*check_service(item["id"], item["type"], item["serviceEndpoint"])))
    if len({s.id for s in out}) != len(out):
        raise MalformedOperation("two services share an id")
    return tuple(out)


def _unique_ids(op: Operation) -> None:
    ids = [k.id for k in op.keys]
    if op.key_agreement is not None:
        ids.append(op.key_agreement.id)
    if len(set(ids)) != len(ids):
        raise MalformedOperation("two keys in the operation share an id")


# --------------------------------------------------------------------------
# Building (clients): canonical payloads and signatures
# --------------------------------------------------------------------------


def build_payload(body: Mapping[str, Any]) -> bytes:
    """Canonical payload bytes for ``body`` (a client-side helper; also validates values)."""
    canonical.check_value(dict(body))
    return canonical.encode(dict(body))

