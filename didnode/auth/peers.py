"""The device side's view of the ledger during a handshake: peers' key states and credentials, verified.

A device does not hold the ledger: it asks its node, and believes an answer
only once it is proven under a checkpoint its trust policy accepts
(docs/trust.md, "Devices"): :class:`ClientKeyStates` reads a peer's key state
through :class:`~didnode.client.verified.AsyncVerifiedClient` (state proof,
checkpoint signatures and threshold, network, staleness, consistency with the
last verified checkpoint), optionally cached (:class:`CachedKeyStates`);
:class:`StapledStateVerifier` checks a state proof the peer stapled against
the same policy; :class:`ClientCredentials` verifies presented credentials
locally with an issuer's verified key record and verified status lists. Its
own state proof, for stapling, comes from :class:`StateStapler`.

The trust policy is a required argument of every source here. Give all of a
device's sources the same :class:`~didnode.core.trust.TrustedLog`
(:func:`trusted_log`): each checkpoint's signatures are then verified once,
however many peers the device checks. Reading unverified answers takes the
loudly named ``insecure_no_verify=True`` instead of a policy (tests and
tools; never a device in the field).
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from didnode.auth.driver import KeyStateSource, describe_credential
from didnode.client.verified import AsyncVerifiedClient
from didnode.clock import wall_ms
from didnode.core.credentials import Verifier, VerifyPolicy
from didnode.core.credentials.resolver import IssuerRecord
from didnode.core.handshake.messages import CredentialRequest
from didnode.core.keystate import DidState
from didnode.core.trust import TrustedLog, TrustPolicy
from didnode.errors import (
    CredentialInvalid,
    DidnodeError,
    InvalidArgument,
    MalformedProof,
    PeerUnknown,
    PeerWrongNetwork,
    ProofClaimMismatch,
    UnknownDid,
    UnknownResource,
)

if TYPE_CHECKING:
    from didnode.client import AsyncClient
    from didnode.core.checkpoint import Checkpoint, SignedCheckpoint

Trust = TrustedLog | TrustPolicy


def trusted_log(trust: Trust) -> TrustedLog:
    """``trust`` as the :class:`TrustedLog` to share among a device's sources (a policy gets a new one)."""
    return trust if isinstance(trust, TrustedLog) else TrustedLog(trust)


def _verified_reader(client: Any, trust: Trust | None, insecure_no_verify: bool, clock_ms: Callable[[], int], who: str) -> AsyncVerifiedClient | None:
    """The verified reader over ``client`` (None: the caller asked, loudly, for unverified reads)."""
    if trust is None:
        if not insecure_no_verify:
            raise TypeError(
                f"{who} needs a trust policy (a TrustPolicy or a TrustedLog: docs/trust.md) to verify what the node answers; "
                "insecure_no_verify=True reads unverified answers (never for a device in the field)"
            )
        return None
    if insecure_no_verify:
        raise TypeError(f"{who}: give a trust policy or insecure_no_verify=True, not both")
    if isinstance(client, AsyncVerifiedClient):
        return client
    return AsyncVerifiedClient(client, trusted_log(trust), clock_ms)


class ClientKeyStates:
    """Key states asked of a node, each verified against the trust policy (one ``GetStateProof`` RPC each).

    ``client``: a :class:`didnode.client.AsyncClient` (or an
    :class:`~didnode.client.verified.AsyncVerifiedClient`, used as it is);
    ``trust``: the device's :class:`~didnode.core.trust.TrustPolicy` or shared
    :class:`~didnode.core.trust.TrustedLog`. A forged, stale, rolled-back or
    untrusted answer raises its :class:`~didnode.errors.InvalidProof` subclass
    (``ROOT_MISMATCH``, ``STALE_CHECKPOINT``, ``LOG_ROLLBACK``,
    ``UNTRUSTED_CHECKPOINT_SIGNER``, ...), which fails the handshake with
    that reason. ``trust=None, insecure_no_verify=True``: the node's
    ``GetKeyState`` answer, believed as it is (module docstring).

    The re-check at the end of a handshake (:meth:`recheck`) asks the node again only when the
    first read is older than ``recheck_after_ms`` (default 1 s): a handshake takes milliseconds,
    so this costs no RPC unless the handshake was slow, and the state a device acts on is at most
    that old when it declares a session established (a node's own check is exact). A re-read is
    verified like the first.
    """

    RECHECK_AFTER_MS = 1000

    def __init__(
        self,
        client: Any,
        trust: Trust | None,
        *,
        insecure_no_verify: bool = False,
        recheck_after_ms: int = RECHECK_AFTER_MS,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.client = client
        self.verified = _verified_reader(client, trust, insecure_no_verify, clock_ms, "ClientKeyStates")
        self.recheck_after_ms = recheck_after_ms

    @property
    def log(self) -> TrustedLog | None:
        """The verified view of the log these reads share (None: unverified)."""
        return None if self.verified is None else self.verified.log

    async def key_state(self, did: str) -> DidState:
        """``did``'s current state, verified (:class:`UnknownDid` when proven absent)."""
        if self.verified is None:
            return (await self.client.key_state(did)).state  # type: ignore[no-any-return]
        return await self.verified.state(did)

    async def recheck(self, did: str, seen: DidState, read_at_ms: int, now_ms: int) -> DidState:
        """``seen`` while it is at most ``recheck_after_ms`` old, else the node's answer now (verified)."""
        if 0 <= now_ms - read_at_ms <= self.recheck_after_ms:
            return seen
        return await self.key_state(did)


class CachedKeyStates:
    """Caches another source's answers for at most ``max_staleness_ms`` (the verifier's choice).

    0 disables caching. A revocation reaches this verifier at most
    ``max_staleness_ms`` late: the price of not asking the node every time.
    Bounded (oldest first evicted).
    """

    def __init__(self, inner: KeyStateSource, max_staleness_ms: int, clock_ms: Callable[[], int] = wall_ms, limit: int = 4096) -> None:
        self.inner = inner
        self.max_staleness_ms = max_staleness_ms
        self.clock_ms = clock_ms
        self.limit = limit
        self._items: dict[str, tuple[int, DidState]] = {}

    async def key_state(self, did: str) -> DidState:
        now = self.clock_ms()
        hit = self._items.get(did)
        if hit is not None and 0 <= now - hit[0] < self.max_staleness_ms:
            return hit[1]
        state = await self.inner.key_state(did)
        if self.max_staleness_ms > 0:
            self._items.pop(did, None)
            if len(self._items) >= self.limit:
                del self._items[next(iter(self._items))]
            self._items[did] = (now, state)
        return state

    async def recheck(self, did: str, seen: DidState, read_at_ms: int, now_ms: int) -> DidState:
        """The cache's answer (at most ``max_staleness_ms`` old, the bound this verifier chose);
        without a cache, the inner source's re-check."""
        if self.max_staleness_ms > 0:
            return await self.key_state(did)
        inner = getattr(self.inner, "recheck", None)
        if inner is None:
            return await self.inner.key_state(did)
        return await inner(did, seen, read_at_ms, now_ms)  # type: ignore[no-any-return]


class StapledStateVerifier:
    """Checks a state proof a peer stapled to its challenge against the trust policy: the peer's key state without asking a node.

    ``trust``: the device's policy or (better) the :class:`TrustedLog` its
    other sources share. ``max_staleness_ms``: how old a stapled checkpoint
    may be (default and upper bound: the policy's maximum staleness).

    A stapled proof carries no consistency proof, so its checkpoint is
    checked as far as it can be without asking anyone:

    * of the policy's network (:class:`PeerWrongNetwork`), signed by keys the
      policy lists (:class:`~didnode.errors.UntrustedCheckpointSigner`,
      :class:`~didnode.errors.BadCheckpointSignature`), as many as its
      threshold (:class:`~didnode.errors.CheckpointBelowThreshold`: a stapled
      checkpoint carries one signature), at most ``max_staleness_ms`` old
      (:class:`~didnode.errors.StaleCheckpoint`);
    * it must not contradict the latest checkpoint the device verified: of
      the same size, it goes through :meth:`TrustedLog.accept` (a different
      root is :class:`~didnode.errors.LogFork`; the signature check is then
      the shared cache's). Of another size, smaller or larger, it is accepted
      on its signatures and freshness alone and never moves the device's
      latest verified checkpoint (only a consistency proof from a node does):
      a fresh checkpoint signed by the trusted keys is the bound stapling
      promises, and a key that signs two views of the log is caught by the
      consistency proofs of the device's direct reads, not here.

    Signatures of such checkpoints are verified once each (a bounded cache
    of their signed bytes; ``signatures_checked`` counts verifications).
    """

    CACHE_SIZE = 64

    def __init__(self, trust: Trust, max_staleness_ms: int | None = None) -> None:
        self.log = trusted_log(trust)
        bound = self.log.policy.max_staleness_ms
        self.max_staleness_ms = bound if max_staleness_ms is None or max_staleness_ms <= 0 else min(max_staleness_ms, bound)
        self.signatures_checked = 0
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    @property
    def network(self) -> str:
        return self.log.policy.network

    def verify(self, did: str, data: bytes, now_ms: int) -> DidState:
        """The state of ``did`` the proof proves. Raises an :class:`~didnode.errors.InvalidProof` subclass
        (class docstring; :class:`MalformedProof`, :class:`~didnode.errors.RootMismatch`, ...),
        :class:`PeerWrongNetwork`, or :class:`PeerUnknown` (a proof of absence)."""
        return self.verify_until(did, data, now_ms)[0]

    def verify_until(self, did: str, data: bytes, now_ms: int) -> tuple[DidState, int]:
        """As :meth:`verify`, and until when the proof stays fresh enough: its checkpoint's time plus
        ``max_staleness_ms`` (past that, a handshake's re-check asks the node)."""
        from didnode.core import proof_bundle
        from didnode.core.transparency_verify import check_fresh, verify_state_at

        bundle = proof_bundle.from_text(data)  # MalformedProof for any bytes
        if not isinstance(bundle, proof_bundle.StateProof):
            raise MalformedProof("the stapled proof is not a state proof")
        if bundle.did != did:
            raise ProofClaimMismatch(f"the stapled state proof is about {bundle.did}, not the peer {did}", did=did)
        checkpoint = self._checkpoint(bundle.checkpoint, now_ms)
        check_fresh(checkpoint, now_ms, self.max_staleness_ms)
        if not bundle.present:
            verify_state_at(checkpoint, did, None, bundle.proof)
            raise PeerUnknown(f"the stapled proof shows {did} does not exist on the ledger", did=did)
        verify_state_at(checkpoint, did, bundle.state_record, bundle.proof)
        return DidState.from_record(bundle.state_record), checkpoint.time_ms + self.max_staleness_ms

    def _checkpoint(self, signed: "SignedCheckpoint", now_ms: int) -> "Checkpoint":
        """The stapled checkpoint, checked as the class docstring says (freshness aside)."""
        from didnode.core.transparency_verify import verify_checkpoint
        from didnode.errors import CheckpointBelowThreshold, UntrustedCheckpointSigner

        checkpoint = signed.checkpoint
        policy = self.log.policy
        if checkpoint.network != policy.network:
            raise PeerWrongNetwork(f"the stapled checkpoint is of network {checkpoint.network!r}, not {policy.network!r}", network=checkpoint.network)
        latest = policy.latest
        if latest is not None and checkpoint.tree_size == latest.tree_size:
            return self.log.accept(signed, (), latest.tree_size, now_ms)
        try:
            cache_key = signed.encode()
        except DidnodeError as exc:
            raise MalformedProof(f"the stapled checkpoint is malformed: {exc}") from None
        if cache_key in self._seen:
            self._seen.move_to_end(cache_key)
            return checkpoint
        key = policy.key_for(signed.kid)
        if key is None:
            raise UntrustedCheckpointSigner(
                f"the stapled proof's checkpoint is signed by {signed.kid[:120]}, a key this trust policy does not list", kid=signed.kid[:200]
            )
        self.signatures_checked += 1
        verify_checkpoint(signed, key.public_key)
        if policy.threshold > 1:
            raise CheckpointBelowThreshold(
                f"the stapled checkpoint carries one signature; the trust policy needs {policy.threshold}", valid=1, threshold=policy.threshold
            )
        self._seen[cache_key] = None
        if len(self._seen) > self.CACHE_SIZE:
            self._seen.popitem(last=False)
        return checkpoint


class ClientCredentials:
    """A :class:`CredentialChecker` for devices: the core verifier, fed with verified ledger facts.

    The issuer's key record (its verified state and key times from its
    verified history: :meth:`AsyncVerifiedClient.issuer_record`) and the
    status lists a credential names (each the publish operation its DID's
    proven state names: :meth:`AsyncVerifiedClient.resource`) are fetched
    first, then the credential is verified locally by
    :class:`didnode.core.credentials.Verifier`: the node is only asked for
    ledger facts, never for the verdict, and a forged fact fails the check
    with its proof error's reason. ``trust`` as for :class:`ClientKeyStates`
    (``trust=None, insecure_no_verify=True``: unverified facts).
    """

    def __init__(
        self,
        client: Any,
        trust: Trust | None,
        policy: VerifyPolicy = VerifyPolicy(),
        *,
        insecure_no_verify: bool = False,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        """``client``: a :class:`didnode.client.AsyncClient` (or an :class:`AsyncVerifiedClient`)."""
        self.client = client
        self.verified = _verified_reader(client, trust, insecure_no_verify, clock_ms, "ClientCredentials")
        self.policy = policy

    @property
    def _source(self) -> Any:
        """Where ledger facts come from: the verified reader, or (insecure) the bare client."""
        return self.client if self.verified is None else self.verified

    async def check(self, token: str, now_ms: int, subject: str, request: CredentialRequest) -> str:
        from didnode.core.credentials.jose import decode_json_object, parse_compact
        from didnode.core.credentials.model import parse_claims

        records: dict[str, IssuerRecord] = {}
        lists: dict[tuple[str, str], str] = {}
        try:
            cred = parse_claims(decode_json_object(parse_compact(token).payload, "payload"))
        except CredentialInvalid:
            cred = None  # the verifier below reports exactly what is wrong
        if cred is not None:
            try:
                records[cred.issuer] = await self._source.issuer_record(cred.issuer)
            except UnknownDid:
                pass  # the resolver below raises UnknownDid -> IssuerUnknown
            for entry in cred.status:
                try:
                    lists[(entry.list_did, entry.resource_id)] = (await self._source.resource(entry.list_did, entry.resource_id)).content
                except (UnknownResource, UnknownDid):
                    pass  # -> StatusListNotFound

        def resolve(did: str) -> IssuerRecord:
            try:
                return records[did]
            except KeyError:
                raise UnknownDid(f"{did} does not exist on the ledger") from None

        def fetch(did: str, rid: str) -> str:
            try:
                return lists[(did, rid)]
            except KeyError:
                raise UnknownResource(f"{did} has published no resource {rid!r}") from None

        verifier = Verifier(resolve, fetch, self.policy, cache_ttl_ms=0)
        return describe_credential(verifier.verify(token, now_ms, subject, request.issuer, request.type).raise_if_invalid())


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What a device checks peers with, all over one node client and one :class:`TrustedLog` (see :func:`device_view`)."""

    network: str
    keys: ClientKeyStates
    credentials: ClientCredentials
    log: TrustedLog | None  # None: unverified (insecure_no_verify)

    def stapled(self, max_staleness_ms: int) -> StapledStateVerifier | None:
        """A verifier of peers' stapled state proofs at most ``max_staleness_ms`` old (0: none, ask the node)."""
        if max_staleness_ms <= 0:
            return None
        if self.log is None:
            raise TypeError("stapled state proofs are checked against a trust policy; insecure_no_verify=True has none (give max_staleness_ms=0)")
        return StapledStateVerifier(self.log, max_staleness_ms)


async def device_view(
    client: Any,
    trust: Trust | None,
    *,
    network: str | None = None,
    insecure_no_verify: bool = False,
    clock_ms: Callable[[], int] = wall_ms,
) -> DeviceView:
    """A device's key-state source and credential checker over ``client``, verified against ``trust``
    and sharing one :class:`TrustedLog` (so each checkpoint's signatures are verified once).

    The network is the policy's (``network``, if given, must equal it:
    :class:`~didnode.errors.InvalidArgument`); unverified
    (``trust=None, insecure_no_verify=True``), ``network`` or the node's own.
    """
    if trust is None:
        keys = ClientKeyStates(client, None, insecure_no_verify=insecure_no_verify, clock_ms=clock_ms)
        net = network or (await client.node_info()).network
        return DeviceView(net, keys, ClientCredentials(client, None, insecure_no_verify=True, clock_ms=clock_ms), None)
    log = trusted_log(trust)
    if network is not None and network != log.policy.network:
        raise InvalidArgument(f"network {network!r} is not the trust policy's ({log.policy.network!r})", network=network)
    keys = ClientKeyStates(client, log, insecure_no_verify=insecure_no_verify, clock_ms=clock_ms)
    assert keys.verified is not None
    return DeviceView(log.policy.network, keys, ClientCredentials(keys.verified, log, clock_ms=clock_ms), log)


class StateStapler:
    """This device's own state proof, fetched from the node and refreshed every ``refresh_ms``.

    Attached to every challenge, it lets initiators that trust the node's
    checkpoint key verify this device's key without asking a node. A fetch
    failure leaves the challenge without a proof (the initiator asks its
    node instead) rather than failing the handshake.
    """

    def __init__(self, client: "AsyncClient", did: str, refresh_ms: int = 5000, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.client = client
        self.did = did
        self.refresh_ms = refresh_ms
        self.clock_ms = clock_ms
        self._proof = b""
        self._at = -refresh_ms
        self._lock = asyncio.Lock()

    async def __call__(self) -> bytes:
        now = self.clock_ms()
        if now - self._at < self.refresh_ms:
            return self._proof
        async with self._lock:
            if self.clock_ms() - self._at >= self.refresh_ms:
                try:
                    proof = await self.client.state_proof(self.did)
                    self._proof = json.dumps(proof.to_json(), separators=(",", ":")).encode()
                except DidnodeError:
                    self._proof = b""
                self._at = self.clock_ms()
        return self._proof

