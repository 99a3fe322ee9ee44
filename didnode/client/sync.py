"""The blocking client of one node: ledger, transparency and credential calls (docs: README, "Client library").

Every reply is converted by :mod:`didnode.wire` into the result types of
:mod:`didnode.core.results`; every failure is the didnode error the node raised
(rebuilt from its reason by :func:`didnode.wire.status.from_rpc_error`), or
:class:`~didnode.errors.NodeUnavailable` when the node could not be reached.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Iterator, Mapping, Sequence

import grpc
from nacl.signing import SigningKey

from didnode.api.v1 import credentials_pb2, credentials_pb2_grpc, data_pb2_grpc, ledger_pb2_grpc, node_pb2, node_pb2_grpc, transparency_pb2_grpc
from didnode.api.v1 import ledger_pb2 as pb
from didnode.api.v1 import transparency_pb2 as tpb
from didnode.client.channel import DEFAULT_ADDRESS, NODE_KEY_FRAGMENT, open_channel
from didnode.client.credentials import OfflineVerifier
from didnode.client.proofs import ProvenResolution, signer_key_from_did_document
from didnode.clock import wall_ms
from didnode.core.builder import SignedOperation
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.data.anchor_proof import AnchorProof
from didnode.core.credentials import IssuerRecord, VerificationReport, VerifyPolicy
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
from didnode.wire.status import from_rpc_error
from didnode.wire.tls import TlsClientConfig, tls_failure


def translate(err: grpc.RpcError, tls: TlsClientConfig | None = None, target: str = "") -> DidnodeError:
    """The didnode error a failed call to ``target`` carries (both grpc stacks' errors are also ``grpc.Call``);
    a connection that failed during TLS set-up is the TLS error it is (:func:`didnode.wire.tls.tls_failure`)."""
    rebuilt = from_rpc_error(err.code(), err.details() or "", err.trailing_metadata())  # type: ignore[attr-defined]
    return tls_failure(rebuilt, tls, target)


def proven_from_pb(resp: tpb.ResolveWithProofResponse) -> ProvenResolution:
    proven = tw.proven_state_from_pb(resp.state_proof)
    return ProvenResolution(lw.resolution_from_json(resp.result_json), proven.proof, proven.consistency)


class Client:
    """A blocking client for one node. Use as a context manager or call :meth:`close`.

    ``tls``: connect with TLS (docs/tls.md); None: plaintext.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0, *, tls: TlsClientConfig | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.tls = tls
        self._channel = open_channel(address, tls, aio=False)
        self._ledger = ledger_pb2_grpc.LedgerServiceStub(self._channel)
        self._node = node_pb2_grpc.NodeServiceStub(self._channel)
        self._credentials = credentials_pb2_grpc.CredentialServiceStub(self._channel)
        self._transparency = transparency_pb2_grpc.TransparencyServiceStub(self._channel)
        self._data = data_pb2_grpc.DataServiceStub(self._channel)

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
            raise translate(err, self.tls, self.address) from None

    # -- ledger -----------------------------------------------------------------

    def submit(self, op: SignedOperation) -> Receipt:
        """Submit one operation; returns after it is durable, or raises its rejection."""
        return lw.receipt_from_pb(self._call(self._ledger.Submit, pb.SubmitRequest(operation=lw.operation_to_pb(op.payload, op.proofs))).receipt)

    def submit_batch(self, ops: Iterable[SignedOperation], chunk_size: int = 256, window: int = 4) -> Iterator[Receipt | DidnodeError]:
        """Stream ``ops`` in chunks; yield one outcome per operation, in order.

        At most ``window`` chunks are unacknowledged at a time, so memory
        stays bounded for any number of operations (backpressure). A chunk
        holds at most ``chunk_size`` operations and at most the node's chunk
        limit in bytes (:data:`didnode.wire.limits.MAX_BATCH_CHUNK_BYTES`).
        """
        credit = threading.Semaphore(window)
        failed = threading.Event()

        def send(buf: list[pb.Operation]) -> Iterator[pb.SubmitBatchRequest]:
            while not credit.acquire(timeout=0.5):
                if failed.is_set():
                    return
            yield pb.SubmitBatchRequest(operations=buf)

        def chunks() -> Iterator[pb.SubmitBatchRequest]:
            for buf in lw.batch_chunks(ops, chunk_size):
                yield from send(buf)

        try:
            for resp in self._ledger.SubmitBatch(chunks()):
                credit.release()
                for o in resp.outcomes:
                    yield lw.outcome_from_pb(o)
        except grpc.RpcError as err:
            failed.set()
            raise translate(err, self.tls, self.address) from None

    def resolve(self, did: str, version_id: int | None = None, version_time: str | None = None) -> dict[str, Any]:
        """The W3C DID Resolution result (document, document metadata, resolution metadata)."""
        resp = self._call(self._ledger.Resolve, lw.resolve_request_to_pb(did, version_id, version_time))
        return lw.resolution_from_json(resp.result_json)

    def history(self, did: str) -> list[HistoryEntry]:
        """Every operation of ``did`` in seq order (read page by page: see :meth:`iter_history`)."""
        return list(self.iter_history(did))

    def iter_history(self, did: str, after_seq: int | None = None, page_size: int = HISTORY_PAGE) -> Iterator[HistoryEntry]:
        """``did``'s operations with seq > ``after_seq`` (None: all), in seq order, one page of ``page_size`` at a time."""
        while True:
            page = self.history_page(did, after_seq, page_size)
            yield from page.entries
            if page.next_after_seq is None:
                return
            after_seq = page.next_after_seq

    def history_page(
        self, did: str, after_seq: int | None = None, page_size: int = HISTORY_PAGE, prove_at_size: int | None = None
    ) -> HistoryPage:
        """One page: at most ``page_size`` operations (fewer if the node's page is smaller) after ``after_seq``.

        ``next_after_seq`` is the ``after_seq`` of the next page, None on the last. With
        ``prove_at_size``: the history as of the log of that size, each entry with its
        inclusion proof there (not verified here: :mod:`didnode.client.verified` does).
        """
        resp = self._call(self._ledger.History, lw.history_request_to_pb(did, after_seq, page_size, prove_at_size))
        return lw.history_from_pb(resp, after_seq)

    def key_state(self, did: str, at_position: int | None = None) -> KeyState:
        """The DID's key state and network; with ``at_position``, also the keys that could sign there."""
        resp = self._call(self._ledger.GetKeyState, lw.key_state_request_to_pb(did, at_position))
        return lw.key_state_from_pb(resp, at_position is not None)

    def state(self, did: str) -> DidState:
        """The DID's current state (seq, last operation hash, keys and fates, controllers)."""
        return self.key_state(did).state

    def resource(self, did: str, resource_id: str) -> Resource:
        """The latest content of a resource the DID published."""
        return lw.resource_from_pb(self._call(self._ledger.GetResource, pb.ResourceRequest(did=did, id=resource_id)))

    def node_info(self) -> NodeInfo:
        """What the node says about itself, its network's governance identifier and create policy among it."""
        return lw.node_info_from_pb(self._call(self._node.GetInfo, node_pb2.GetInfoRequest()))

    def info(self) -> NodeInfo:
        """Same as :meth:`node_info`."""
        return self.node_info()

    def governance(self, at_position: int | None = None, usage_of: Sequence[str] = ()) -> GovernanceInfo:
        """The network's governance record, current or in effect once the log holds ``at_position``, with the
        usage counts of ``usage_of`` (at most 64 DIDs). Not verified: the record is proven by
        :meth:`didnode.client.verified.VerifiedClient.governance`; the counts are the node's advice.
        Raises :class:`~didnode.errors.NoGovernance` on a network without governance."""
        resp = self._call(self._ledger.GetGovernance, lw.governance_request_to_pb(at_position, usage_of))
        return lw.governance_from_pb(resp)

    # -- transparency -----------------------------------------------------------

    def checkpoint(self, tree_size: int | None = None) -> SignedCheckpoint:
        """The node's latest signed checkpoint (signed on demand), or the one it stored at ``tree_size``.

        Not verified: use :func:`didnode.core.transparency_verify.verify_checkpoint`.
        """
        return tw.checkpoint_from_pb(self._call(self._transparency.GetCheckpoint, tw.checkpoint_request_to_pb(tree_size)))

    def inclusion_proof(self, position: int | None = None, op_hash: bytes | None = None, tree_size: int | None = None) -> InclusionProof:
        """Inclusion of the entry at ``position`` or of operation ``op_hash`` (exactly one) at
        ``tree_size`` (default: the latest checkpoint's size)."""
        req = tw.inclusion_request_to_pb(position, op_hash, tree_size)
        return tw.inclusion_from_pb(self._call(self._transparency.GetInclusionProof, req))

    def consistency_proof(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """That the log of ``size1`` entries is a prefix of that of ``size2`` (default: latest checkpoint)."""
        return tw.consistency_from_pb(self._call(self._transparency.GetConsistencyProof, tw.consistency_request_to_pb(size1, size2)))

    def anchor(self, did: str, stream: str, seq: int) -> AnchorProof:
        """The anchor of reading ``seq`` of ``did``'s ``stream`` with the ledger's half of its receipt
        (:func:`didnode.core.data.receipt.build`), not verified; :class:`UnknownAnchor` if none covers it."""
        return dw.anchor_from_pb(self._call(self._data.GetAnchor, dw.anchor_request_to_pb(did, stream, seq)), did, stream)

    def state_proof(self, did: str) -> StateProof:
        """``did``'s state record under the latest checkpoint, or the proof that it does not exist."""
        return tw.state_proof_from_pb(self._call(self._transparency.GetStateProof, tpb.GetStateProofRequest(did=did)))

    def resolve_with_proof(self, did: str, known_size: int | None = None) -> ProvenResolution:
        """The current resolution result with its state proof (check it with :func:`didnode.client.verify_resolution`);
        with ``known_size``, also the consistency proof from that size."""
        return proven_from_pb(self._call(self._transparency.ResolveWithProof, tw.resolve_with_proof_request_to_pb(did, known_size)))

    def proven_state(self, did: str, known_size: int | None = None) -> ProvenState:
        """``did``'s state proof and the consistency proof from ``known_size`` (not verified here:
        :class:`didnode.client.verified.VerifiedClient` does)."""
        return tw.proven_state_from_pb(self._call(self._transparency.GetStateProof, tw.state_proof_request_to_pb(did, known_size)))

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
        req = cw.verify_request_to_pb(token, expected_subject, expected_issuer, expected_type)
        return cw.report_from_pb(self._call(self._credentials.Verify, req), token)

    def issue_session_credential(
        self, subject: str, kid: str, key: SigningKey, claims: Mapping[str, Any] | None = None, lifetime_s: int = 0
    ) -> SessionCredential:
        """A node session credential about ``subject``, proving control with its current authentication key ``kid``.

        ``kid`` in any form a user copies (``key-1``, ``#key-1``, the DID URL, the ``-jwk`` form;
        :func:`didnode.core.did.key_id_of`). Precondition: ``key`` is the private key of ``kid``.
        ``lifetime_s`` 0 takes the node's default.
        """
        kid = f"{subject}#{key_id_of(subject, kid)}"
        info = self.node_info()
        req = cw.session_request_to_pb(info.network, info.node_did, subject, kid, key, claims, lifetime_s, wall_ms())
        return cw.session_credential_from_pb(self._call(self._credentials.IssueSessionCredential, req))

    def status(self, status_list_credential: str, index: int, include_credential: bool = False) -> StatusInfo:
        """Entry ``index`` of the latest published status list at ``status_list_credential`` (DID?resource=ID)."""
        req = credentials_pb2.GetStatusRequest(status_list_credential=status_list_credential, index=index, include_credential=include_credential)
        return cw.status_info_from_pb(self._call(self._credentials.GetStatus, req))

    def issuer_record(self, did: str) -> IssuerRecord:
        """``did``'s key state and the ledger times of its keys (what an offline verifier resolves)."""
        return cw.issuer_record_from_pb(self._call(self._credentials.GetIssuer, credentials_pb2.GetIssuerRequest(did=did)))

    def offline_verifier(self, policy: VerifyPolicy = VerifyPolicy(), cache_ttl_ms: int = 60_000) -> OfflineVerifier:
        """A local verifier whose issuer states and status lists come from this node, cached for ``cache_ttl_ms``."""
        return OfflineVerifier(self.issuer_record, lambda did, rid: self.resource(did, rid).content, policy, cache_ttl_ms)
