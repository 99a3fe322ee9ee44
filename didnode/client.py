"""The didnode client library (sync :class:`Client` and asyncio :class:`AsyncClient`).

Every failed call raises the same :mod:`didnode.errors` exception the node
raised (rebuilt from the ErrorInfo reason), or :class:`NodeUnavailable` when
the node cannot be reached. Nothing here returns protobuf objects.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable, Iterator, Mapping, Sequence

import grpc
from nacl.signing import SigningKey

from didnode.api.v1 import ledger_pb2 as pb
from didnode.api.v1 import ledger_pb2_grpc
from didnode.api.v1 import credentials_pb2, credentials_pb2_grpc
from didnode.api.v1 import node_pb2, node_pb2_grpc
from didnode.core.builder import SignedOperation
from didnode.core.credentials import IssuerRecord, VerificationReport, VerifyPolicy
from didnode.credentials_client import (
    OfflineVerifier,
    SessionCredentialInfo,
    StatusInfo,
    issuer_in,
    report_in,
    session_in,
    session_request_pb,
    status_in,
    wall_ms,
)
from didnode.core.keystate import DidState
from didnode.core.operations import Proof
from didnode.errors import DidnodeError, error_for_reason
from didnode.transport.status import from_rpc_error
from didnode.api.v1 import transparency_pb2 as tpb
from didnode.api.v1 import transparency_pb2_grpc
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.document import resolution_result
from didnode.core.proof_bundle import ConsistencyProof, InclusionProof, StateProof
from didnode.core.transparency_verify import check_fresh, verify_bundle
from didnode.errors import ProofClaimMismatch
from didnode.proofcheck import signer_key_from_did_document
from didnode.transport.transparency_convert import checkpoint_in, consistency_in, inclusion_in, state_in

DEFAULT_ADDRESS = "127.0.0.1:50051"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of acceptance: the operation is durable on the node at ``position``."""

    position: int
    time_ms: int
    op_hash: bytes
    did: str
    type: str
    seq: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    position: int
    time_ms: int
    type: str
    seq: int
    op_hash: bytes
    signers: tuple[str, ...]
    payload: bytes
    proofs: tuple[Proof, ...]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    network: str
    node_did: str
    log_size: int
    version: str
    did_count: int
    last_time_ms: int
    schema_version: int
    mode: str
    # Cluster mode only: stream followed, applied and last known stream sequence, lag, writability.
    stream: str = ""
    stream_seq: int = 0
    stream_last_seq: int = 0
    lag: int = 0
    writable: bool = True
    not_writable_reason: str = ""


@dataclass(frozen=True, slots=True)
class Resource:
    """The latest published content of a DID's resource (e.g. a status list credential)."""

    did: str
    id: str
    media_type: str
    content: str
    position: int
    seq: int
    time_ms: int
    op_hash: bytes


def _resource(r: pb.ResourceResponse) -> Resource:
    return Resource(r.did, r.id, r.media_type, r.content, r.position, r.seq, r.time_ms, r.op_hash)


@dataclass(frozen=True, slots=True)
class KeyState:
    """A DID's key state as the node holds it, plus the keys valid at a position if asked."""

    state: DidState
    valid_at: tuple[str, ...] | None


def _op_pb(op: SignedOperation) -> pb.Operation:
    return pb.Operation(payload=op.payload, proofs=[pb.Proof(kid=p.kid, signature=p.signature) for p in op.proofs])


def _receipt(r: pb.Receipt) -> Receipt:
    return Receipt(r.position, r.time_ms, r.op_hash, r.did, r.type, r.seq)


def _outcome(o: pb.BatchOutcome) -> Receipt | DidnodeError:
    if o.HasField("receipt"):
        return _receipt(o.receipt)
    rej = o.rejection
    return error_for_reason(rej.reason, rej.message, dict(rej.details))


def _history(resp: pb.HistoryResponse) -> list[HistoryEntry]:
    return [
        HistoryEntry(
            e.position,
            e.time_ms,
            e.type,
            e.seq,
            e.op_hash,
            tuple(e.signers),
            e.operation.payload,
            tuple(Proof(p.kid, p.signature) for p in e.operation.proofs),
        )
        for e in resp.entries
    ]


def _resolve_req(did: str, version_id: int | None, version_time: str | None) -> pb.ResolveRequest:
    req = pb.ResolveRequest(did=did)
    if version_id is not None:
        req.version_id = version_id
    elif version_time is not None:
        req.version_time = version_time
    return req


def _key_state(resp: pb.KeyStateResponse, asked: bool) -> KeyState:
    return KeyState(DidState.from_json_text(resp.state_json), tuple(k.id for k in resp.valid_at) if asked else None)


def _info(i: node_pb2.NodeInfo) -> NodeInfo:
    return NodeInfo(
        i.network,
        i.node_did,
        i.log_size,
        i.version,
        i.did_count,
        i.last_time_ms,
        i.schema_version,
        i.mode,
        i.stream,
        i.stream_seq,
        i.stream_last_seq,
        i.lag,
        # An embedded node leaves the field unset (false): it always accepts writes.
        i.writable or i.mode != "cluster",
        i.not_writable_reason,
    )


def _translate(err: grpc.RpcError) -> DidnodeError:
    call = err  # grpc.RpcError raised by the sync stack is also a grpc.Call
    return from_rpc_error(call.code(), call.details() or "", call.trailing_metadata())  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ProvenResolution:
    """A DID Resolution result with the state proof of the record it was computed from (not yet verified)."""

    result: dict[str, Any]
    proof: StateProof


NODE_KEY_FRAGMENT = "key-1"


def _checkpoint_req(tree_size: int | None) -> tpb.GetCheckpointRequest:
    req = tpb.GetCheckpointRequest()
    if tree_size is not None:
        req.tree_size = tree_size
    return req


def _inclusion_req(position: int | None, op_hash: bytes | None, tree_size: int | None) -> tpb.GetInclusionProofRequest:
    req = tpb.GetInclusionProofRequest()
    if position is not None:
        req.position = position
    if op_hash is not None:
        req.op_hash = op_hash
    if tree_size is not None:
        req.tree_size = tree_size
    return req


def _consistency_req(size1: int, size2: int | None) -> tpb.GetConsistencyProofRequest:
    req = tpb.GetConsistencyProofRequest(size1=size1)
    if size2 is not None:
        req.size2 = size2
    return req


def _proven(resp: tpb.ResolveWithProofResponse) -> ProvenResolution:
    return ProvenResolution(json.loads(resp.result_json), state_in(resp.state_proof))


def verify_resolution(
    proven: ProvenResolution, public_key: bytes, signer_did: str | None = None, max_age_ms: int | None = None, now_ms: int | None = None
) -> dict[str, Any]:
    """Check a :class:`ProvenResolution` offline and return the resolution result
    recomputed from the proven state record (never the node's own rendering).

    Raises :class:`~didnode.errors.InvalidProof` subclasses: a bad checkpoint
    or state proof, a stale checkpoint (with ``max_age_ms``), or a node result
    that differs from the one the proven record gives
    (:class:`~didnode.errors.ProofClaimMismatch`).
    """
    verified = verify_bundle(proven.proof, public_key, signer_did)
    if max_age_ms is not None:
        check_fresh(verified.checkpoint, time.time_ns() // 1_000_000 if now_ms is None else now_ms, max_age_ms)
    if not proven.proof.present:
        raise ProofClaimMismatch(f"the node proved that {proven.proof.did} does not exist, yet sent a document")
    state = DidState.from_record(proven.proof.state_record)
    result = resolution_result(state, state.created_time)
    if result != proven.result:
        raise ProofClaimMismatch(f"the node's resolution of {proven.proof.did} differs from its proven state record")
    return result


class Client:
    """A blocking client for one node. Use as a context manager or call :meth:`close`."""

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._ledger = ledger_pb2_grpc.LedgerServiceStub(self._channel)
        self._node = node_pb2_grpc.NodeServiceStub(self._channel)
        self._credentials = credentials_pb2_grpc.CredentialServiceStub(self._channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise _translate(err) from None

    def submit(self, op: SignedOperation) -> Receipt:
        """Submit one operation; returns after it is durable, or raises its rejection."""
        return _receipt(self._call(self._ledger.Submit, pb.SubmitRequest(operation=_op_pb(op))).receipt)

    def submit_batch(
        self, ops: Iterable[SignedOperation], chunk_size: int = 256, window: int = 4
    ) -> Iterator[Receipt | DidnodeError]:
        """Stream ``ops`` in chunks; yield one outcome per operation, in order.

        At most ``window`` chunks are unacknowledged at a time, so memory
        stays bounded for any number of operations (backpressure).
        """
        credit = threading.Semaphore(window)
        failed = threading.Event()

        def chunks() -> Iterator[pb.SubmitBatchRequest]:
            buf: list[pb.Operation] = []
            for op in ops:
                buf.append(_op_pb(op))
                if len(buf) >= chunk_size:
                    while not credit.acquire(timeout=0.5):
                        if failed.is_set():
                            return
                    yield pb.SubmitBatchRequest(operations=buf)
                    buf = []
            if buf:
                while not credit.acquire(timeout=0.5):
                    if failed.is_set():
                        return
                yield pb.SubmitBatchRequest(operations=buf)

        try:
            for resp in self._ledger.SubmitBatch(chunks()):
                credit.release()
                for o in resp.outcomes:
                    yield _outcome(o)
        except grpc.RpcError as err:
            failed.set()
            raise _translate(err) from None

    def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        """The W3C DID Resolution result (document, document metadata, resolution metadata)."""
        resp = self._call(self._ledger.Resolve, _resolve_req(did, version_id, version_time))
        return json.loads(resp.result_json)

    def history(self, did: str) -> list[HistoryEntry]:
        return _history(self._call(self._ledger.History, pb.HistoryRequest(did=did)))

    def key_state(self, did: str, at_position: int | None = None) -> KeyState:
        req = pb.KeyStateRequest(did=did)
        if at_position is not None:
            req.at_position = at_position
        return _key_state(self._call(self._ledger.GetKeyState, req), at_position is not None)

    def state(self, did: str) -> DidState:
        """The DID's current state (seq, last operation hash, keys and fates, controllers)."""
        return self.key_state(did).state

    def resource(self, did: str, resource_id: str) -> Resource:
        """The latest content of a resource the DID published."""
        return _resource(self._call(self._ledger.GetResource, pb.ResourceRequest(did=did, id=resource_id)))

    def node_info(self) -> NodeInfo:
        return _info(self._call(self._node.GetInfo, node_pb2.GetInfoRequest()))

    # -- transparency -----------------------------------------------------------

    def _transparency(self) -> transparency_pb2_grpc.TransparencyServiceStub:
        stub = self.__dict__.get("_transparency_stub")
        if stub is None:
            stub = self.__dict__["_transparency_stub"] = transparency_pb2_grpc.TransparencyServiceStub(self._channel)
        return stub

    def checkpoint(self, tree_size: int | None = None) -> SignedCheckpoint:
        """The node's latest signed checkpoint (signed on demand), or the one it stored at ``tree_size``.

        Not verified: use :func:`didnode.core.transparency_verify.verify_checkpoint`.
        """
        return checkpoint_in(self._call(self._transparency().GetCheckpoint, _checkpoint_req(tree_size)))

    def inclusion_proof(
        self, position: int | None = None, op_hash: bytes | None = None, tree_size: int | None = None
    ) -> InclusionProof:
        """Inclusion of the entry at ``position`` or of operation ``op_hash`` (exactly one) at
        ``tree_size`` (default: the latest checkpoint's size)."""
        return inclusion_in(self._call(self._transparency().GetInclusionProof, _inclusion_req(position, op_hash, tree_size)))

    def consistency_proof(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """That the log of ``size1`` entries is a prefix of that of ``size2`` (default: latest checkpoint)."""
        return consistency_in(self._call(self._transparency().GetConsistencyProof, _consistency_req(size1, size2)))

    def state_proof(self, did: str) -> StateProof:
        """``did``'s state record under the latest checkpoint, or the proof that it does not exist."""
        return state_in(self._call(self._transparency().GetStateProof, tpb.GetStateProofRequest(did=did)))

    def resolve_with_proof(self, did: str) -> ProvenResolution:
        """The current resolution result with its state proof (check it with :func:`verify_resolution`)."""
        return _proven(self._call(self._transparency().ResolveWithProof, tpb.ResolveWithProofRequest(did=did)))

    def node_signer_key(self) -> tuple[str, bytes]:
        """(kid, raw Ed25519 key) of the node's checkpoint key, read from the node's own DID document.

        Trust on first use: the node vouches for itself here. Pin the key (or
        take the node DID document from elsewhere) to detect a lying node.
        """
        node_did = self.node_info().node_did
        kid = f"{node_did}#{NODE_KEY_FRAGMENT}"
        return kid, signer_key_from_did_document(self.resolve(node_did), kid)

    # -- credentials (docs/credentials.md) ------------------------------------

    def verify_credential(
        self, token: str, expected_subject: str | None = None, expected_issuer: str | None = None, expected_type: str | None = None
    ) -> VerificationReport:
        """Ask the node to verify ``token`` against its ledger; an invalid credential is a report, not an error."""
        req = credentials_pb2.VerifyCredentialRequest(
            token=token, expected_subject=expected_subject or "", expected_issuer=expected_issuer or "", expected_type=expected_type or ""
        )
        return report_in(self._call(self._credentials.Verify, req), token)

    def issue_session_credential(
        self, subject: str, kid: str, key: SigningKey, claims: Mapping[str, Any] | None = None, lifetime_s: int = 0
    ) -> SessionCredentialInfo:
        """A node session credential about ``subject``, proving control with its current authentication key ``kid``.

        Precondition: ``key`` is the private key of ``kid``. ``lifetime_s`` 0 takes the node's default.
        """
        info = self.node_info()
        req = session_request_pb(info.network, info.node_did, subject, kid, key, claims, lifetime_s, wall_ms())
        return session_in(self._call(self._credentials.IssueSessionCredential, req))

    def status(self, status_list_credential: str, index: int, include_credential: bool = False) -> StatusInfo:
        """Entry ``index`` of the latest published status list at ``status_list_credential`` (DID?resource=ID)."""
        req = credentials_pb2.GetStatusRequest(status_list_credential=status_list_credential, index=index, include_credential=include_credential)
        return status_in(self._call(self._credentials.GetStatus, req))

    def issuer_record(self, did: str) -> IssuerRecord:
        """``did``'s key state and the ledger times of its keys (what an offline verifier resolves)."""
        return issuer_in(self._call(self._credentials.GetIssuer, credentials_pb2.GetIssuerRequest(did=did)))

    def offline_verifier(self, policy: VerifyPolicy = VerifyPolicy(), cache_ttl_ms: int = 60_000) -> OfflineVerifier:
        """A local verifier whose issuer states and status lists come from this node, cached for ``cache_ttl_ms``."""
        return OfflineVerifier(self.issuer_record, lambda did, rid: self.resource(did, rid).content, policy, cache_ttl_ms)


class AsyncClient:
    """The asyncio twin of :class:`Client` (for devices and services built on grpc.aio)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._ledger = ledger_pb2_grpc.LedgerServiceStub(self._channel)
        self._node = node_pb2_grpc.NodeServiceStub(self._channel)
        self._credentials = credentials_pb2_grpc.CredentialServiceStub(self._channel)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err.code(), err.details() or "", err.trailing_metadata()) from None

    async def submit(self, op: SignedOperation) -> Receipt:
        return _receipt((await self._call(self._ledger.Submit, pb.SubmitRequest(operation=_op_pb(op)))).receipt)

    async def submit_batch(self, ops: Sequence[SignedOperation], chunk_size: int = 256) -> AsyncIterator[Receipt | DidnodeError]:
        """Stream ``ops``; yield one outcome per operation, in order."""

        async def chunks() -> AsyncIterator[pb.SubmitBatchRequest]:
            for i in range(0, len(ops), chunk_size):
                yield pb.SubmitBatchRequest(operations=[_op_pb(o) for o in ops[i : i + chunk_size]])

        try:
            async for resp in self._ledger.SubmitBatch(chunks()):
                for o in resp.outcomes:
                    yield _outcome(o)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err.code(), err.details() or "", err.trailing_metadata()) from None

    async def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        resp = await self._call(self._ledger.Resolve, _resolve_req(did, version_id, version_time))
        return json.loads(resp.result_json)

    async def history(self, did: str) -> list[HistoryEntry]:
        return _history(await self._call(self._ledger.History, pb.HistoryRequest(did=did)))

    async def key_state(self, did: str, at_position: int | None = None) -> KeyState:
        req = pb.KeyStateRequest(did=did)
        if at_position is not None:
            req.at_position = at_position
        return _key_state(await self._call(self._ledger.GetKeyState, req), at_position is not None)

    async def resource(self, did: str, resource_id: str) -> Resource:
        return _resource(await self._call(self._ledger.GetResource, pb.ResourceRequest(did=did, id=resource_id)))

    async def node_info(self) -> NodeInfo:
        return _info(await self._call(self._node.GetInfo, node_pb2.GetInfoRequest()))

    # -- transparency -----------------------------------------------------------

    def _transparency(self) -> transparency_pb2_grpc.TransparencyServiceStub:
        stub = self.__dict__.get("_transparency_stub")
        if stub is None:
            stub = self.__dict__["_transparency_stub"] = transparency_pb2_grpc.TransparencyServiceStub(self._channel)
        return stub

    async def checkpoint(self, tree_size: int | None = None) -> SignedCheckpoint:
        """See :meth:`Client.checkpoint`."""
        return checkpoint_in(await self._call(self._transparency().GetCheckpoint, _checkpoint_req(tree_size)))

    async def inclusion_proof(
        self, position: int | None = None, op_hash: bytes | None = None, tree_size: int | None = None
    ) -> InclusionProof:
        """See :meth:`Client.inclusion_proof`."""
        return inclusion_in(await self._call(self._transparency().GetInclusionProof, _inclusion_req(position, op_hash, tree_size)))

    async def consistency_proof(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """See :meth:`Client.consistency_proof`."""
        return consistency_in(await self._call(self._transparency().GetConsistencyProof, _consistency_req(size1, size2)))

    async def state_proof(self, did: str) -> StateProof:
        """See :meth:`Client.state_proof`."""
        return state_in(await self._call(self._transparency().GetStateProof, tpb.GetStateProofRequest(did=did)))

    async def resolve_with_proof(self, did: str) -> ProvenResolution:
        """See :meth:`Client.resolve_with_proof`."""
        return _proven(await self._call(self._transparency().ResolveWithProof, tpb.ResolveWithProofRequest(did=did)))

    async def node_signer_key(self) -> tuple[str, bytes]:
        """See :meth:`Client.node_signer_key` (trust on first use)."""
        node_did = (await self.node_info()).node_did
        kid = f"{node_did}#{NODE_KEY_FRAGMENT}"
        return kid, signer_key_from_did_document(await self.resolve(node_did), kid)

    # -- credentials ------------------------------------------------------------

    async def verify_credential(
        self, token: str, expected_subject: str | None = None, expected_issuer: str | None = None, expected_type: str | None = None
    ) -> VerificationReport:
        req = credentials_pb2.VerifyCredentialRequest(
            token=token, expected_subject=expected_subject or "", expected_issuer=expected_issuer or "", expected_type=expected_type or ""
        )
        return report_in(await self._call(self._credentials.Verify, req), token)

    async def issue_session_credential(
        self, subject: str, kid: str, key: SigningKey, claims: Mapping[str, Any] | None = None, lifetime_s: int = 0
    ) -> SessionCredentialInfo:
        info = await self.node_info()
        req = session_request_pb(info.network, info.node_did, subject, kid, key, claims, lifetime_s, wall_ms())
        return session_in(await self._call(self._credentials.IssueSessionCredential, req))

    async def status(self, status_list_credential: str, index: int, include_credential: bool = False) -> StatusInfo:
        req = credentials_pb2.GetStatusRequest(status_list_credential=status_list_credential, index=index, include_credential=include_credential)
        return status_in(await self._call(self._credentials.GetStatus, req))

    async def issuer_record(self, did: str) -> IssuerRecord:
        return issuer_in(await self._call(self._credentials.GetIssuer, credentials_pb2.GetIssuerRequest(did=did)))
