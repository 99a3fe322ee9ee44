"""The device side's view of the ledger during a handshake: peers' key states and credentials, through a node.

A device does not hold the ledger: it asks its node (:class:`ClientKeyStates`,
optionally cached: :class:`CachedKeyStates`), or checks a state proof the peer
stapled (:class:`StapledStateVerifier`), and verifies presented credentials
locally with facts fetched from the node (:class:`ClientCredentials`). Its
own state proof, for stapling, comes from :class:`StateStapler`.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Callable, Mapping

from didnode.auth.driver import KeyStateSource, describe_credential
from didnode.clock import wall_ms
from didnode.core.credentials import Verifier, VerifyPolicy
from didnode.core.credentials.resolver import IssuerRecord
from didnode.core.handshake.messages import CredentialRequest
from didnode.core.keystate import DidState
from didnode.errors import (
    CredentialInvalid,
    DidnodeError,
    MalformedProof,
    PeerUnknown,
    PeerWrongNetwork,
    ProofClaimMismatch,
    UnknownDid,
    UnknownResource,
)

if TYPE_CHECKING:
    from didnode.client import AsyncClient


class ClientKeyStates:
    """Key states asked of a node through :class:`didnode.client.AsyncClient` (one RPC each).

    The re-check at the end of a handshake (:meth:`recheck`) asks the node again only when the
    first read is older than ``recheck_after_ms`` (default 1 s): a handshake takes milliseconds,
    so this costs no RPC unless the handshake was slow, and the state a device acts on is at most
    that old when it declares a session established (a node's own check is exact).
    """

    RECHECK_AFTER_MS = 1000

    def __init__(self, client: object, recheck_after_ms: int = RECHECK_AFTER_MS) -> None:
        self.client = client
        self.recheck_after_ms = recheck_after_ms

    async def key_state(self, did: str) -> DidState:
        return (await self.client.key_state(did)).state  # type: ignore[attr-defined,no-any-return]

    async def recheck(self, did: str, seen: DidState, read_at_ms: int, now_ms: int) -> DidState:
        """``seen`` while it is at most ``recheck_after_ms`` old, else the node's answer now."""
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
    """Checks a state proof a peer stapled to its challenge: the peer's key state without asking a node.

    ``trusted``: checkpoint signer DID -> its raw Ed25519 key (pinned, e.g.
    from ``Client.node_signer_key()``). The checkpoint must be signed by one
    of them, be of ``network``, and be at most ``max_staleness_ms`` old.
    """

    def __init__(self, trusted: Mapping[str, bytes], network: str, max_staleness_ms: int) -> None:
        self.trusted = dict(trusted)
        self.network = network
        self.max_staleness_ms = max_staleness_ms

    def verify(self, did: str, data: bytes, now_ms: int) -> DidState:
        """The state of ``did`` the proof proves. Raises an :class:`~didnode.errors.InvalidProof` subclass
        (:class:`MalformedProof`, :class:`~didnode.errors.BadCheckpointSignature`,
        :class:`~didnode.errors.StaleCheckpoint`, ...) or :class:`PeerUnknown` (proof of absence)."""
        return self.verify_until(did, data, now_ms)[0]

    def verify_until(self, did: str, data: bytes, now_ms: int) -> tuple[DidState, int]:
        """As :meth:`verify`, and until when the proof stays fresh enough: its checkpoint's time plus
        ``max_staleness_ms`` (past that, a handshake's re-check asks the node)."""
        from didnode.core import proof_bundle
        from didnode.core.transparency_verify import check_fresh, verify_checkpoint, verify_state_at
        from didnode.errors import BadCheckpointSignature

        bundle = proof_bundle.from_text(data)  # MalformedProof for any bytes
        if not isinstance(bundle, proof_bundle.StateProof):
            raise MalformedProof("the stapled proof is not a state proof")
        if bundle.did != did:
            raise ProofClaimMismatch(f"the stapled state proof is about {bundle.did}, not the peer {did}", did=did)
        signer = bundle.checkpoint.signer_did
        key = self.trusted.get(signer)
        if key is None:
            raise BadCheckpointSignature(f"the stapled proof's checkpoint is signed by {signer}, whom this verifier does not trust", kid=bundle.checkpoint.kid)
        checkpoint = verify_checkpoint(bundle.checkpoint, key, signer)
        if checkpoint.network != self.network:
            raise PeerWrongNetwork(f"the stapled checkpoint is of network {checkpoint.network!r}, not {self.network!r}", network=checkpoint.network)
        check_fresh(checkpoint, now_ms, self.max_staleness_ms)
        if not bundle.present:
            verify_state_at(checkpoint, did, None, bundle.proof)
            raise PeerUnknown(f"the stapled proof shows {did} does not exist on the ledger", did=did)
        verify_state_at(checkpoint, did, bundle.state_record, bundle.proof)
        return DidState.from_record(bundle.state_record), checkpoint.time_ms + self.max_staleness_ms



class ClientCredentials:
    """A :class:`CredentialChecker` for devices: the core verifier, fed by a node's RPCs.

    The issuer's key record and the status lists a credential names are
    fetched first (asynchronously), then the credential is verified locally
    by :class:`didnode.core.credentials.Verifier`: the node is only asked for
    ledger facts, never for the verdict.
    """

    def __init__(self, client: object, policy: VerifyPolicy = VerifyPolicy()) -> None:
        """``client``: a :class:`didnode.client.AsyncClient`."""
        self.client = client
        self.policy = policy

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
                records[cred.issuer] = await self.client.issuer_record(cred.issuer)  # type: ignore[attr-defined]
            except UnknownDid:
                pass  # the resolver below raises UnknownDid -> IssuerUnknown
            for entry in cred.status:
                try:
                    lists[(entry.list_did, entry.resource_id)] = (await self.client.resource(entry.list_did, entry.resource_id)).content  # type: ignore[attr-defined]
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

