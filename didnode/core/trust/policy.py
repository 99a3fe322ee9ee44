"""The trust policy: what a client believes about a ledger before it asks a node anything.

A policy names the network, the genesis (the RFC 6962 leaf hash of log entry
0, which is also the root of the log of size 1), the keys whose signatures on
a checkpoint count, how many of them must have signed (the threshold), how old
a checkpoint may be, and the latest checkpoint the client has verified. A
client checks every answer a decision depends on against it
(:mod:`didnode.core.trust.verifier`; docs/trust.md).

JSON form (strict: unknown, missing or ill-typed members are refused)::

    {
      "type": "didnode/trust/v1",
      "network": "local",
      "genesis": "<64 hex>",
      "checkpointKeys": [{"kid": "did:dnode:...#key-1", "publicKeyMultibase": "z6Mk..."}],
      "threshold": 1,
      "maxStalenessMs": 120000,
      "latestCheckpoint": null | {signed checkpoint, docs/transparency.md},
      "origin": "didnode.local/local",                       optional
      "witnesses": ["witness.example/w1+1a2b3c4d+BP…", …],   optional, with
      "witnessThreshold": 2                                   optional, with witnesses
    }

The three optional members (issue #17) keep the type ``didnode/trust/v1``:
a policy without them is the old policy, byte for byte, and means no
witnesses. ``origin`` is the log's C2SP checkpoint origin, which is also the
key name of the node's signature in a checkpoint note (default
``didnode.local/<network>``). ``witnesses`` are cosigner verifier keys
(c2sp.org/signed-note vkeys of type 0x04, cosignature/v1) and
``witnessThreshold`` (1..len) how many distinct ones must have cosigned a
checkpoint. A client that predates them refuses a policy that has them
(unknown members), so a witness requirement is never silently dropped.

Pure: no files, no clock. The CLI keeps one policy per node address
(``cli/didctl_trust.py``); provisioning bundles carry one for the device.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Final

from didnode.core import canonical
from didnode.core import checkpoint as cp_codec
from didnode.core import note as note_codec
from didnode.core.tlog_checkpoint import check_origin, default_origin
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.encoding import ED25519_PUB, multikey_decode, multikey_encode
from didnode.core.operations import NETWORK_RE
from didnode.errors import DidnodeError, TrustPolicyInvalid

TRUST_TYPE: Final = "didnode/trust/v1"
DEFAULT_MAX_STALENESS_MS: Final = 120_000  # twice the age at which a node re-signs its latest checkpoint
MAX_KEYS: Final = 64
MAX_POLICY_BYTES: Final = 64 * 1024
_MEMBERS: Final = {"type", "network", "genesis", "checkpointKeys", "threshold", "maxStalenessMs", "latestCheckpoint"}
_OPTIONAL: Final = {"origin", "witnesses", "witnessThreshold"}
MAX_WITNESSES: Final = 64


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A key whose signature on a checkpoint counts: its DID URL (``kid``) and raw Ed25519 public key."""

    kid: str
    public_key: bytes

    @property
    def fingerprint(self) -> str:
        """``SHA256:<base64>`` of the raw key, as ssh shows host keys (what an operator compares)."""
        return fingerprint(self.public_key)


def fingerprint(public_key: bytes) -> str:
    """``SHA256:`` and the unpadded standard base64 of SHA-256 over the raw key (ssh's form)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_key).digest()).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """A cosigner whose cosignature/v1 counts: its key name and raw Ed25519 public key."""

    name: str
    public_key: bytes

    @property
    def vkey(self) -> str:
        """The verifier key text (``name+hash+base64(0x04 || key)``)."""
        return note_codec.verifier_key(self.name, self.public_key, note_codec.COSIGNATURE_V1)

    @classmethod
    def from_vkey(cls, vkey: str) -> "WitnessKey":
        """Parse a cosignature/v1 vkey; :class:`TrustPolicyInvalid` if it is not one."""
        try:
            name, sig_type, public_key = note_codec.parse_verifier_key(vkey)
        except DidnodeError as exc:
            raise _fail(f"witness {str(vkey)[:80]!r}: {exc}") from None
        if sig_type != note_codec.COSIGNATURE_V1:
            raise _fail(f"witness {name[:80]!r} has signature type {sig_type}; cosignature/v1 (4) is required")
        return cls(name, public_key)


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """What a client trusts about one ledger (module docstring). Construct with :meth:`create` or :func:`from_json`."""

    network: str
    genesis: bytes
    keys: tuple[TrustedKey, ...]
    threshold: int = 1
    max_staleness_ms: int = DEFAULT_MAX_STALENESS_MS
    latest: SignedCheckpoint | None = None
    origin: str | None = None
    witnesses: tuple[WitnessKey, ...] = ()
    witness_threshold: int = 0

    @property
    def log_origin(self) -> str:
        """The checkpoint origin (and the node's note key name): ``origin`` or ``didnode.local/<network>``."""
        return self.origin if self.origin is not None else default_origin(self.network)

    @classmethod
    def create(
        cls,
        network: str,
        genesis: bytes,
        keys: tuple[TrustedKey, ...] | list[TrustedKey],
        threshold: int = 1,
        max_staleness_ms: int = DEFAULT_MAX_STALENESS_MS,
        latest: SignedCheckpoint | None = None,
        origin: str | None = None,
        witnesses: tuple[WitnessKey, ...] | list[WitnessKey] = (),
        witness_threshold: int = 0,
    ) -> "TrustPolicy":
        """A checked policy; raises :class:`TrustPolicyInvalid` on any impossible field."""
        policy = cls(network, bytes(genesis), tuple(keys), threshold, max_staleness_ms, latest, origin, tuple(witnesses), witness_threshold)
        _check(policy)
        return policy

    def key_for(self, kid: str) -> TrustedKey | None:
        """The trusted key named ``kid``, if the policy lists it."""
        for k in self.keys:
            if k.kid == kid:
                return k
        return None

    def with_latest(self, latest: SignedCheckpoint) -> "TrustPolicy":
        """The same policy remembering ``latest`` as the latest verified checkpoint."""
        return replace(self, latest=latest)

    def same_anchors(self, other: "TrustPolicy") -> bool:
        """Whether two policies trust the same ledger the same way (network, genesis, keys, thresholds, origin, witnesses)."""

        def anchors(p: TrustPolicy) -> tuple[object, ...]:
            return (p.network, p.genesis, set(p.keys), p.threshold, p.log_origin, set(p.witnesses), p.witness_threshold)

        return anchors(self) == anchors(other)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the module docstring."""
        out: dict[str, Any] = {
            "type": TRUST_TYPE,
            "network": self.network,
            "genesis": self.genesis.hex(),
            "checkpointKeys": [{"kid": k.kid, "publicKeyMultibase": multikey_encode(k.public_key, ED25519_PUB)} for k in self.keys],
            "threshold": self.threshold,
            "maxStalenessMs": self.max_staleness_ms,
            "latestCheckpoint": None if self.latest is None else self.latest.to_json(),
        }
        if self.origin is not None:
            out["origin"] = self.origin
        if self.witnesses:
            out["witnesses"] = [w.vkey for w in self.witnesses]
            out["witnessThreshold"] = self.witness_threshold
        return out

    def dumps(self) -> str:
        """The policy as indented JSON text with a final newline (what the CLI writes)."""
        return json.dumps(self.to_json(), indent=2) + "\n"


def _fail(message: str) -> TrustPolicyInvalid:
    return TrustPolicyInvalid(f"trust policy: {message}")


def _check(p: TrustPolicy) -> None:
    if not isinstance(p.network, str) or not NETWORK_RE.fullmatch(p.network):
        raise _fail(f"network {str(p.network)[:40]!r} is not a network id")
    if len(p.genesis) != 32:
        raise _fail(f"genesis is {len(p.genesis)} bytes; a SHA-256 leaf hash has 32")
    if not p.keys or len(p.keys) > MAX_KEYS:
        raise _fail(f"checkpointKeys lists {len(p.keys)} keys; 1..{MAX_KEYS} are allowed")
    kids = [k.kid for k in p.keys]
    if len(set(kids)) != len(kids) or len({k.public_key for k in p.keys}) != len(kids):
        raise _fail("checkpointKeys lists a kid or a key twice")
    for k in p.keys:
        if not isinstance(k.kid, str) or "#" not in k.kid or not k.kid.startswith("did:") or len(k.kid) > cp_codec.MAX_KID_BYTES:
            raise _fail(f"checkpoint key id {str(k.kid)[:80]!r} is not a DID URL")
        if len(k.public_key) != 32:
            raise _fail(f"{k.kid} is {len(k.public_key)} bytes; Ed25519 keys have 32")
    if isinstance(p.threshold, bool) or not isinstance(p.threshold, int) or not 1 <= p.threshold <= len(p.keys):
        raise _fail(f"threshold {p.threshold!r} must be 1..{len(p.keys)} (the number of keys)")
    if isinstance(p.max_staleness_ms, bool) or not isinstance(p.max_staleness_ms, int) or not 1_000 <= p.max_staleness_ms <= 366 * 86_400_000:
        raise _fail(f"maxStalenessMs {p.max_staleness_ms!r} must be 1000 ms .. 366 days")
    if p.origin is not None:
        try:
            check_origin(p.origin)
        except DidnodeError as exc:
            raise _fail(str(exc)) from None
    if len(p.witnesses) > MAX_WITNESSES or len({w.public_key for w in p.witnesses}) != len(p.witnesses):
        raise _fail(f"witnesses lists a key twice or more than {MAX_WITNESSES} keys")
    if len({w.name for w in p.witnesses}) != len(p.witnesses):
        raise _fail("witnesses lists a key name twice")
    for w in p.witnesses:
        WitnessKey.from_vkey(w.vkey)
    wt = p.witness_threshold
    if isinstance(wt, bool) or not isinstance(wt, int) or not (wt == 0 if not p.witnesses else 1 <= wt <= len(p.witnesses)):
        raise _fail(f"witnessThreshold {wt!r} must be 1..{len(p.witnesses)} (the number of witnesses), or absent without witnesses")
    if p.latest is not None and p.latest.checkpoint.network != p.network:
        raise _fail(f"latestCheckpoint is of network {p.latest.checkpoint.network!r}, the policy of {p.network!r}")


def from_json(d: Any) -> TrustPolicy:
    """Parse the JSON object of the module docstring; raises :class:`TrustPolicyInvalid`."""
    if not isinstance(d, dict):
        raise _fail("not a JSON object")
    if not _MEMBERS <= set(d) <= _MEMBERS | _OPTIONAL or (("witnesses" in d) != ("witnessThreshold" in d)):
        missing, extra = sorted(_MEMBERS - set(d)), sorted(str(k)[:40] for k in set(d) - _MEMBERS - _OPTIONAL)
        if not missing and not extra:
            raise _fail("witnesses and witnessThreshold come together")
        raise _fail(f"members missing {missing}, unknown {extra}")
    if d["type"] != TRUST_TYPE:
        raise _fail(f"type {str(d['type'])[:40]!r} is not {TRUST_TYPE!r}")
    genesis = d["genesis"]
    if not isinstance(genesis, str) or len(genesis) != 64 or genesis != genesis.lower():
        raise _fail("genesis must be 64 lowercase hex digits")
    try:
        genesis_bytes = bytes.fromhex(genesis)
    except ValueError:
        raise _fail("genesis must be 64 lowercase hex digits") from None
    raw_keys = d["checkpointKeys"]
    if not isinstance(raw_keys, list) or len(raw_keys) > MAX_KEYS:
        raise _fail(f"checkpointKeys must be a list of at most {MAX_KEYS} keys")
    keys = []
    for item in raw_keys:
        if not isinstance(item, dict) or set(item) != {"kid", "publicKeyMultibase"}:
            raise _fail('each checkpoint key is {"kid", "publicKeyMultibase"}')
        if not isinstance(item["kid"], str) or not isinstance(item["publicKeyMultibase"], str):
            raise _fail("a checkpoint key's kid and publicKeyMultibase are strings")
        try:
            raw = multikey_decode(item["publicKeyMultibase"], ED25519_PUB)
        except DidnodeError as exc:
            raise _fail(f"{item['kid'][:80]}: {exc}") from None
        keys.append(TrustedKey(item["kid"], raw))
    latest = None
    if d["latestCheckpoint"] is not None:
        try:
            latest = cp_codec.from_json(d["latestCheckpoint"])
        except DidnodeError as exc:
            raise _fail(f"latestCheckpoint: {exc}") from None
    origin = d.get("origin")
    if origin is not None and not isinstance(origin, str):
        raise _fail("origin must be a string")
    raw_witnesses = d.get("witnesses", [])
    if not isinstance(raw_witnesses, list) or not 0 < len(raw_witnesses) <= MAX_WITNESSES and "witnesses" in d:
        raise _fail(f"witnesses must be a list of 1..{MAX_WITNESSES} verifier keys")
    witnesses = [WitnessKey.from_vkey(v) for v in raw_witnesses]
    return TrustPolicy.create(
        d["network"], genesis_bytes, keys, d["threshold"], d["maxStalenessMs"], latest, origin, witnesses, d.get("witnessThreshold", 0)
    )


_decoder = canonical.unique_members_decoder(_fail)


def loads(text: str | bytes) -> TrustPolicy:
    """Parse a policy file's text (a member named twice is refused, never read as its last value);
    raises :class:`TrustPolicyInvalid` (never a JSON or Unicode error)."""
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)
    if size > MAX_POLICY_BYTES:
        raise _fail(f"the file is {size} bytes; at most {MAX_POLICY_BYTES}")
    return from_json(canonical.loads(text, _fail, "the file", _decoder))
