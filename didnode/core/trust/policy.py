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
      "latestCheckpoint": null | {signed checkpoint, docs/transparency.md}
    }

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
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.encoding import ED25519_PUB, multikey_decode, multikey_encode
from didnode.core.operations import NETWORK_RE
from didnode.errors import DidnodeError, TrustPolicyInvalid

TRUST_TYPE: Final = "didnode/trust/v1"
DEFAULT_MAX_STALENESS_MS: Final = 120_000  # twice the age at which a node re-signs its latest checkpoint
MAX_KEYS: Final = 64
MAX_POLICY_BYTES: Final = 64 * 1024
_MEMBERS: Final = {"type", "network", "genesis", "checkpointKeys", "threshold", "maxStalenessMs", "latestCheckpoint"}


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
class TrustPolicy:
    """What a client trusts about one ledger (module docstring). Construct with :meth:`create` or :func:`from_json`."""

    network: str
    genesis: bytes
    keys: tuple[TrustedKey, ...]
    threshold: int = 1
    max_staleness_ms: int = DEFAULT_MAX_STALENESS_MS
    latest: SignedCheckpoint | None = None

    @classmethod
    def create(
        cls,
        network: str,
        genesis: bytes,
        keys: tuple[TrustedKey, ...] | list[TrustedKey],
        threshold: int = 1,
        max_staleness_ms: int = DEFAULT_MAX_STALENESS_MS,
        latest: SignedCheckpoint | None = None,
    ) -> "TrustPolicy":
        """A checked policy; raises :class:`TrustPolicyInvalid` on any impossible field."""
        policy = cls(network, bytes(genesis), tuple(keys), threshold, max_staleness_ms, latest)
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
        """Whether two policies trust the same ledger the same way (network, genesis, keys, threshold)."""
        return (self.network, self.genesis, set(self.keys), self.threshold) == (other.network, other.genesis, set(other.keys), other.threshold)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the module docstring."""
        return {
            "type": TRUST_TYPE,
            "network": self.network,
            "genesis": self.genesis.hex(),
            "checkpointKeys": [{"kid": k.kid, "publicKeyMultibase": multikey_encode(k.public_key, ED25519_PUB)} for k in self.keys],
            "threshold": self.threshold,
            "maxStalenessMs": self.max_staleness_ms,
            "latestCheckpoint": None if self.latest is None else self.latest.to_json(),
        }

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
    if p.latest is not None and p.latest.checkpoint.network != p.network:
        raise _fail(f"latestCheckpoint is of network {p.latest.checkpoint.network!r}, the policy of {p.network!r}")


def from_json(d: Any) -> TrustPolicy:
    """Parse the JSON object of the module docstring; raises :class:`TrustPolicyInvalid`."""
    if not isinstance(d, dict):
        raise _fail("not a JSON object")
    if set(d) != _MEMBERS:
        missing, extra = sorted(_MEMBERS - set(d)), sorted(str(k)[:40] for k in set(d) - _MEMBERS)
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
    return TrustPolicy.create(d["network"], genesis_bytes, keys, d["threshold"], d["maxStalenessMs"], latest)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _fail(f"member {k[:40]!r} appears twice")
        out[k] = v
    return out


_decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def loads(text: str | bytes) -> TrustPolicy:
    """Parse a policy file's text (a member named twice is refused, never read as its last value);
    raises :class:`TrustPolicyInvalid` (never a JSON or Unicode error)."""
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)
    if size > MAX_POLICY_BYTES:
        raise _fail(f"the file is {size} bytes; at most {MAX_POLICY_BYTES}")
    return from_json(canonical.loads(text, _fail, "the file", _decoder))
