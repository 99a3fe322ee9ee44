"""The asyncio client of one node: the twin of :class:`didnode.client.Client` for devices and services on grpc.aio.

Same calls, same results and errors as the blocking client; requests and
replies go through the same :mod:`didnode.wire` converters.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping, Sequence

import grpc
from nacl.signing import SigningKey

from didnode.api.v1 import credentials_pb2, credentials_pb2_grpc, data_pb2_grpc, ledger_pb2_grpc, node_pb2, node_pb2_grpc, transparency_pb2_grpc
from didnode.api.v1 import ledger_pb2 as pb
from didnode.api.v1 import transparency_pb2 as tpb
from didnode.client.channel import DEFAULT_ADDRESS, NODE_KEY_FRAGMENT, open_channel
from didnode.client.proofs import ProvenResolution, signer_key_from_did_document
from didnode.client.sync import proven_from_pb, translate
from didnode.clock import wall_ms
from didnode.core.builder import SignedOperation
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.data.anchor_proof import AnchorProof
from didnode.core.credentials import IssuerRecord, VerificationReport
from didnode.core.did import key_id_of
from didnode.core.keystate import DidState
from didnode.core.proof_bundle import ConsistencyProof, InclusionProof, StateProof
from didnode.core.results import (
    GovernanceInfo,
    HistoryEntry,
    HistoryPage,
    KeyState,
    NodeInfo,
    ProvenState,
    Receipt,
    Resource,
    SessionCredential,
    StatusInfo,
)
from didnode.errors import DidnodeError
from didnode.wire import credentials as cw
from didnode.wire import data as dw
from didnode.wire import ledger as lw
from didnode.wire import transparency as tw
from didnode.wire.limits import HISTORY_PAGE
from didnode.wire.tls import TlsClientConfig


class AsyncClient:
    """The asyncio twin of :class:`didnode.client.Client` (for devices and services built on grpc.aio).

    ``tls``: connect with TLS (docs/tls.md); None: plaintext.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0, *, tls: TlsClientConfig | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.tls = tls
        self._channel = open_channel(address, tls, aio=True)
        self._ledger = ledger_pb2_grpc.LedgerServiceStub(self._channel)
        self._node = node_pb2_grpc.NodeServiceStub(self._channel)
        self._credentials = credentials_pb2_grpc.CredentialServiceStub(self._channel)
        self._transparency = transparency_pb2_grpc.TransparencyServiceStub(self._channel)
        self._data = data_pb2_grpc.DataServiceStub(self._channel)

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
            raise translate(err, self.tls, self.address) from None

    # -- ledger -----------------------------------------------------------------

    async def submit(self, op: SignedOperation) -> Receipt:
        """See :meth:`didnode.client.Client.submit`."""
        resp = await self._call(self._ledger.Submit, pb.SubmitRequest(operation=lw.operation_to_pb(op.payload, op.proofs)))
        return lw.receipt_from_pb(resp.receipt)

    async def submit_batch(self, ops: Sequence[SignedOperation], chunk_size: int = 256) -> AsyncIterator[Receipt | DidnodeError]:
        """Stream ``ops``; yield one outcome per operation, in order (chunks as :meth:`didnode.client.Client.submit_batch` cuts them)."""

        async def chunks() -> AsyncIterator[pb.SubmitBatchRequest]:
            for buf in lw.batch_chunks(ops, chunk_size):
                yield pb.SubmitBatchRequest(operations=buf)

        try:
            async for resp in self._ledger.SubmitBatch(chunks()):
                for o in resp.outcomes:
                    yield lw.outcome_from_pb(o)
        except grpc.aio.AioRpcError as err:
            raise translate(err, self.tls, self.address) from None

    async def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        """See :meth:`didnode.client.Client.resolve`."""
        resp = await self._call(self._ledger.Resolve, lw.resolve_request_to_pb(did, version_id, version_time))
        return lw.resolution_from_json(resp.result_json)

    async def history(self, did: str) -> list[HistoryEntry]:
        """See :meth:`didnode.client.Client.history`."""
        return [e async for e in self.iter_history(did)]

    async def iter_history(self, did: str, after_seq: int | None = None, page_size: int = HISTORY_PAGE) -> AsyncIterator[HistoryEntry]:
        """See :meth:`didnode.client.Client.iter_history`."""
        while True:
            page = await self.history_page(did, after_seq, page_size)
            for e in page.entries:
                yield e
            if page.next_after_seq is None:
                return
            after_seq = page.next_after_seq

    async def history_page(
        self, did: str, after_seq: int | None = None, page_size: int = HISTORY_PAGE, prove_at_size: int | None = None
    ) -> HistoryPage:
        """See :meth:`didnode.client.Client.history_page`."""
        resp = await self._call(self._ledger.History, lw.history_request_to_pb(did, after_seq, page_size, prove_at_size))
        return lw.history_from_pb(resp, after_seq)

    async def key_state(self, did: str, at_position: int | None = None) -> KeyState:
        """See :meth:`didnode.client.Client.key_state`."""
        resp = await self._call(self._ledger.GetKeyState, lw.key_state_request_to_pb(did, at_position))
        return lw.key_state_from_pb(resp, at_position is not None)

    async def state(self, did: str) -> DidState:
        """The DID's current state."""
        return (await self.key_state(did)).state

    async def resource(self, did: str, resource_id: str) -> Resource:
        return lw.resource_from_pb(await self._call(self._ledger.GetResource, pb.ResourceRequest(did=did, id=resource_id)))

    async def node_info(self) -> NodeInfo:
        return lw.node_info_from_pb(await self._call(self._node.GetInfo, node_pb2.GetInfoRequest()))

    async def info(self) -> NodeInfo:
        """Same as :meth:`node_info`."""
        return await self.node_info()

    async def governance(self, at_position: int | None = None, usage_of: Sequence[str] = ()) -> GovernanceInfo:
        """See :meth:`didnode.client.Client.governance`."""
        resp = await self._call(self._ledger.GetGovernance, lw.governance_request_to_pb(at_position, usage_of))
        return lw.governance_from_pb(resp)

    # -- transparency -----------------------------------------------------------

    async def checkpoint(self, tree_size: int | None = None) -> SignedCheckpoint:
        """See :meth:`didnode.client.Client.checkpoint`."""
        return tw.checkpoint_from_pb(await self._call(self._transparency.GetCheckpoint, tw.checkpoint_request_to_pb(tree_size)))

    async def inclusion_proof(self, position: int | None = None, op_hash: bytes | None = None, tree_size: int | None = None) -> InclusionProof:
        """See :meth:`didnode.client.Client.inclusion_proof`."""
        req = tw.inclusion_request_to_pb(position, op_hash, tree_size)
        return tw.inclusion_from_pb(await self._call(self._transparency.GetInclusionProof, req))

    async def consistency_proof(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """See :meth:`didnode.client.Client.consistency_proof`."""
        return tw.consistency_from_pb(await self._call(self._transparency.GetConsistencyProof, tw.consistency_request_to_pb(size1, size2)))

    async def anchor(self, did: str, stream: str, seq: int) -> AnchorProof:
        """See :meth:`didnode.client.Client.anchor`."""
        return dw.anchor_from_pb(await self._call(self._data.GetAnchor, dw.anchor_request_to_pb(did, stream, seq)), did, stream)

    async def state_proof(self, did: str) -> StateProof:
        """See :meth:`didnode.client.Client.state_proof`."""
        return tw.state_proof_from_pb(await self._call(self._transparency.GetStateProof, tpb.GetStateProofRequest(did=did)))

    async def resolve_with_proof(self, did: str, known_size: int | None = None) -> ProvenResolution:
        """See :meth:`didnode.client.Client.resolve_with_proof`."""
        return proven_from_pb(await self._call(self._transparency.ResolveWithProof, tw.resolve_with_proof_request_to_pb(did, known_size)))

    async def proven_state(self, did: str, known_size: int | None = None) -> ProvenState:
        """See :meth:`didnode.client.Client.proven_state`."""
        return tw.proven_state_from_pb(await self._call(self._transparency.GetStateProof, tw.state_proof_request_to_pb(did, known_size)))

    async def node_signer_key(self) -> tuple[str, bytes]:
        """See :meth:`didnode.client.Client.node_signer_key` (trust on first use)."""
        node_did = (await self.node_info()).node_did
        kid = f"{node_did}#{NODE_KEY_FRAGMENT}"
        return kid, signer_key_from_did_document(await self.resolve(node_did), kid)

    # -- credentials ------------------------------------------------------------

    async def verify_credential(
        self, token: str, expected_subject: str | None = None, expected_issuer: str | None = None, expected_type: str | None = None
    ) -> VerificationReport:
        req = cw.verify_request_to_pb(token, expected_subject, expected_issuer, expected_type)
        return cw.report_from_pb(await self._call(self._credentials.Verify, req), token)

    async def issue_session_credential(
        self, subject: str, kid: str, key: SigningKey, claims: Mapping[str, Any] | None = None, lifetime_s: int = 0
    ) -> SessionCredential:
        """See :meth:`didnode.client.Client.issue_session_credential`."""
        kid = f"{subject}#{key_id_of(subject, kid)}"
        info = await self.node_info()
        req = cw.session_request_to_pb(info.network, info.node_did, subject, kid, key, claims, lifetime_s, wall_ms())
        return cw.session_credential_from_pb(await self._call(self._credentials.IssueSessionCredential, req))

    async def status(self, status_list_credential: str, index: int, include_credential: bool = False) -> StatusInfo:
        req = credentials_pb2.GetStatusRequest(status_list_credential=status_list_credential, index=index, include_credential=include_credential)
        return cw.status_info_from_pb(await self._call(self._credentials.GetStatus, req))

    async def issuer_record(self, did: str) -> IssuerRecord:
        return cw.issuer_record_from_pb(await self._call(self._credentials.GetIssuer, credentials_pb2.GetIssuerRequest(did=did)))
