"""A lying proxy: a real gRPC server on 127.0.0.1 in front of an honest node that rewrites chosen replies.

It is the attacker of issue #15: it sits between a client and an honest node,
forwards every call (unary and streaming, errors and their details included)
and rewrites the replies of the methods it is told to, re-signing nothing (it
holds no key the client trusts). Tests point a client at
:attr:`LyingProxy.address` and check that every forgery is refused.

    with LyingProxy(node.address, {KEY_STATE: forge_key_state(did, attacker_key)}) as proxy:
        ...  # a client of proxy.address

Rewriters take and return serialized protobuf bytes (``fn(request, reply) ->
reply``); the helpers below build the usual ones. :meth:`LyingProxy.set`
changes them while the proxy runs (e.g. record an honest reply first, replay
it later).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import threading
from typing import Callable, Sequence

import grpc
from nacl.signing import SigningKey

from didnode.api.v1 import ledger_pb2 as pb
from didnode.api.v1 import transparency_pb2 as tpb
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.document import resolution_result
from didnode.core.encoding import ED25519_PUB, multikey_encode
from didnode.core.keystate import DidState

Rewrite = Callable[[bytes, bytes], bytes]

KEY_STATE = "/didnode.v1.LedgerService/GetKeyState"
RESOLVE = "/didnode.v1.LedgerService/Resolve"
HISTORY = "/didnode.v1.LedgerService/History"
RESOURCE = "/didnode.v1.LedgerService/GetResource"
STATE_PROOF = "/didnode.v1.TransparencyService/GetStateProof"
RESOLVE_WITH_PROOF = "/didnode.v1.TransparencyService/ResolveWithProof"
INCLUSION = "/didnode.v1.TransparencyService/GetInclusionProof"
CHECKPOINT = "/didnode.v1.TransparencyService/GetCheckpoint"
ISSUER = "/didnode.v1.CredentialService/GetIssuer"
STREAMING = {"/didnode.v1.LedgerService/SubmitBatch", "/didnode.v1.AuthService/Handshake", "/didnode.v1.AuthService/HandshakeInHeaders"}


class LyingProxy:
    """The proxy (module docstring). Runs its own event loop on a thread; use as a context manager."""

    def __init__(self, upstream: str, rewrites: dict[str, Rewrite] | None = None) -> None:
        self.upstream = upstream
        self.rewrites: dict[str, Rewrite] = dict(rewrites or {})
        self.request_rewrites: dict[str, Callable[[bytes], bytes]] = {}
        self.calls: dict[str, int] = {}
        self.address = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None

    def set(self, method: str, rewrite: Rewrite | None) -> None:
        """Rewrite ``method``'s replies with ``rewrite`` from now on (None: forward them unchanged)."""
        if rewrite is None:
            self.rewrites.pop(method, None)
        else:
            self.rewrites[method] = rewrite

    def set_request(self, method: str, rewrite: Callable[[bytes], bytes] | None) -> None:
        """Rewrite ``method``'s requests before they go upstream (None: forward them unchanged); the node's
        answer to the rewritten request, or its error, goes back to the client."""
        if rewrite is None:
            self.request_rewrites.pop(method, None)
        else:
            self.request_rewrites[method] = rewrite

    def __enter__(self) -> "LyingProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.upstream, options=[("grpc.max_receive_message_length", 16 << 20)])
        self._server = grpc.aio.server(options=[("grpc.max_receive_message_length", 16 << 20)])
        self._server.add_generic_rpc_handlers((_Handler(self),))
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.address = f"127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
        if self._channel is not None:
            await self._channel.close()

    async def _unary(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        assert self._channel is not None
        self.calls[method] = self.calls.get(method, 0) + 1
        ask = self.request_rewrites.get(method)
        upstream_request = ask(request) if ask is not None else request
        call = self._channel.unary_unary(method)(upstream_request, metadata=_forwardable(context.invocation_metadata()), timeout=30)
        try:
            reply: bytes = await call
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), err.details() or "", tuple(err.trailing_metadata() or ()))
            raise
        rewrite = self.rewrites.get(method)
        return rewrite(request, reply) if rewrite is not None else reply

    async def _stream(self, method: str, requests: object, context: grpc.aio.ServicerContext) -> object:
        assert self._channel is not None
        self.calls[method] = self.calls.get(method, 0) + 1
        call = self._channel.stream_stream(method)(metadata=_forwardable(context.invocation_metadata()), timeout=60)

        async def pump() -> None:
            async for item in requests:  # type: ignore[attr-defined]
                await call.write(item)
            await call.done_writing()

        task = asyncio.ensure_future(pump())
        try:
            async for reply in call:
                yield reply
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), err.details() or "", tuple(err.trailing_metadata() or ()))
        finally:
            task.cancel()


def _forwardable(metadata: object) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((m.key, m.value) for m in (metadata or ()) if not m.key.startswith(":") and m.key not in ("user-agent", "grpc-accept-encoding"))  # type: ignore[attr-defined]


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: LyingProxy) -> None:
        self.proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method  # type: ignore[attr-defined]
        if method in STREAMING:
            return grpc.stream_stream_rpc_method_handler(functools.partial(self.proxy._stream, method))
        return grpc.unary_unary_rpc_method_handler(functools.partial(self.proxy._unary, method))


# -- forgeries -----------------------------------------------------------------------------------


def forged_state(state: DidState, key: bytes) -> DidState:
    """``state`` with the public key of its first current Ed25519 key replaced by ``key`` (32 raw bytes)."""
    keys = list(state.keys)
    current = [k.id for k in state.current_keys()]
    for i, k in enumerate(keys):
        if current and k.id == current[0]:
            keys[i] = dataclasses.replace(k, multibase=multikey_encode(key, ED25519_PUB))
            break
    return dataclasses.replace(state, keys=tuple(keys))


def attacker_key() -> SigningKey:
    """A fresh signing key the attacker holds."""
    return SigningKey.generate()


def forge_key_state(did: str, key: bytes) -> Rewrite:
    """GetKeyState: ``did``'s state record with its key replaced (other DIDs untouched)."""

    def rewrite(request: bytes, reply: bytes) -> bytes:
        m = pb.KeyStateResponse.FromString(reply)
        if m.did != did:
            return reply
        m.state_record = forged_state(DidState.from_record(m.state_record), key).to_record()
        return m.SerializeToString()

    return rewrite


def forge_state_proof(did: str, key: bytes) -> Rewrite:
    """GetStateProof: ``did``'s proven state record with its key replaced (the proof and checkpoint left as they were)."""

    def rewrite(request: bytes, reply: bytes) -> bytes:
        m = tpb.StateProof.FromString(reply)
        if m.did != did or not m.present:
            return reply
        m.state_record = forged_state(DidState.from_record(m.state_record), key).to_record()
        return m.SerializeToString()

    return rewrite


def forge_resolve(did: str, key: bytes) -> Rewrite:
    """Resolve: ``did``'s DID document with its first Ed25519 key replaced."""

    def rewrite(request: bytes, reply: bytes) -> bytes:
        r = pb.ResolveResponse.FromString(reply)
        result = json.loads(r.result_json)
        doc = result.get("didDocument", {})
        if doc.get("id") == did:
            for vm in doc.get("verificationMethod", []):
                if str(vm.get("publicKeyMultibase", "")).startswith("z6Mk"):
                    vm["publicKeyMultibase"] = multikey_encode(key, ED25519_PUB)
                    break
            r.result_json = json.dumps(result, separators=(",", ":"))
        return r.SerializeToString()

    return rewrite


def forge_resolve_with_proof(did: str, key: bytes) -> Rewrite:
    """ResolveWithProof: ``did``'s proven record and the resolution computed from it, with its key replaced."""

    def rewrite(request: bytes, reply: bytes) -> bytes:
        m = tpb.ResolveWithProofResponse.FromString(reply)
        if m.state_proof.did != did or not m.state_proof.present:
            return reply
        state = forged_state(DidState.from_record(m.state_proof.state_record), key)
        m.state_proof.state_record = state.to_record()
        m.result_json = json.dumps(resolution_result(state, state.created_time), separators=(",", ":"))
        return m.SerializeToString()

    return rewrite


def forge_checkpoint_with(signer: SigningKey, kid: str) -> Rewrite:
    """GetStateProof: the checkpoint re-signed by ``signer`` (a key the client does not trust) under ``kid``."""
    from didnode.core.checkpoint import sign
    from didnode.wire.transparency import checkpoint_from_pb, checkpoint_to_pb

    def rewrite(request: bytes, reply: bytes) -> bytes:
        m = tpb.StateProof.FromString(reply)
        signed = sign(checkpoint_from_pb(m.checkpoint).checkpoint, signer, kid)
        m.checkpoint.CopyFrom(checkpoint_to_pb(signed))
        return m.SerializeToString()

    return rewrite


class Recorder:
    """Records the replies of a method (forwarded unchanged), to replay one later with :meth:`replay`."""

    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def __call__(self, request: bytes, reply: bytes) -> bytes:
        self.replies.append(reply)
        return reply

    def replay(self, index: int = 0) -> Rewrite:
        """A rewrite answering every call with the recorded reply ``index`` (an old, honestly signed answer)."""
        old = self.replies[index]
        return lambda request, reply: old


def forge_resolution_json(did: str, key: bytes) -> Rewrite:
    """ResolveWithProof: only the node's rendered resolution of ``did`` carries ``key`` (its proven record left honest)."""

    def rewrite(request: bytes, reply: bytes) -> bytes:
        m = tpb.ResolveWithProofResponse.FromString(reply)
        if m.state_proof.did != did or not m.state_proof.present:
            return reply
        state = forged_state(DidState.from_record(m.state_proof.state_record), key)
        m.result_json = json.dumps(resolution_result(state, state.created_time), separators=(",", ":"))
        return m.SerializeToString()

    return rewrite


def swap_checkpoint(signed: SignedCheckpoint) -> Rewrite:
    """GetStateProof: the reply's checkpoint replaced by ``signed`` (e.g. one of another ledger, honestly signed by its node)."""
    from didnode.wire.transparency import checkpoint_to_pb

    def rewrite(request: bytes, reply: bytes) -> bytes:
        m = tpb.StateProof.FromString(reply)
        m.checkpoint.CopyFrom(checkpoint_to_pb(signed))
        return m.SerializeToString()

    return rewrite


# -- forged histories (History with prove_at_size) -----------------------------------------------

HistoryEdit = Callable[[list[pb.HistoryEntry]], list[pb.HistoryEntry]]


def forge_history(did: str, edit: HistoryEdit) -> Rewrite:
    """History: ``did``'s entries (one page) rewritten by ``edit``, then renumbered 0.. so that the page is
    well formed (what a careful attacker sends; only the ledger's proofs can tell)."""

    def rewrite(request: bytes, reply: bytes) -> bytes:
        req = pb.HistoryRequest.FromString(request)
        if req.did != did:
            return reply
        m = pb.HistoryResponse.FromString(reply)
        entries = edit([pb.HistoryEntry.FromString(e.SerializeToString()) for e in m.entries])
        first = req.after_seq + 1 if req.HasField("after_seq") else 0
        for i, e in enumerate(entries):
            e.seq = first + i
        del m.entries[:]
        m.entries.extend(entries)
        if m.HasField("next_after_seq") and entries:
            m.next_after_seq = entries[-1].seq
        return m.SerializeToString()

    return rewrite


def hide_entry(seq: int) -> HistoryEdit:
    """Drop the operation ``seq`` (e.g. a rotation away from a compromised key)."""
    return lambda entries: [e for e in entries if e.seq != seq]


def alter_entry(seq: int, old: bytes, new: bytes) -> HistoryEdit:
    """Replace ``old`` by ``new`` in the payload of operation ``seq`` (its hash recomputed to match)."""

    def edit(entries: list[pb.HistoryEntry]) -> list[pb.HistoryEntry]:
        for e in entries:
            if e.seq == seq:
                e.operation.payload = e.operation.payload.replace(old, new)
                e.op_hash = hashlib.sha256(e.operation.payload).digest()
        return entries

    return edit


def invent_entry(payload: bytes, proofs: Sequence[tuple[str, bytes]], replace_last: bool = False) -> HistoryEdit:
    """Add an operation the log never held (``payload`` signed as ``proofs``: (kid, signature)), after the
    last entry or in its place, with the last entry's inclusion proof."""

    def edit(entries: list[pb.HistoryEntry]) -> list[pb.HistoryEntry]:
        last = entries[-1]
        invented = pb.HistoryEntry.FromString(last.SerializeToString())
        invented.operation.payload = payload
        del invented.operation.proofs[:]
        invented.operation.proofs.extend(pb.Proof(kid=k, signature=s) for k, s in proofs)
        invented.op_hash = hashlib.sha256(payload).digest()
        invented.signers[:] = [k for k, _ in proofs]
        if not replace_last:
            invented.position = last.position + 1
            invented.time_ms = last.time_ms + 1
        return entries[:-1] + [invented] if replace_last else entries + [invented]

    return edit


# -- forged resources ------------------------------------------------------------------------------


def forge_resource(old: str, new: str) -> Rewrite:
    """GetResource (the unverified read): ``old`` replaced by ``new`` in the content."""

    def rewrite(request: bytes, reply: bytes) -> bytes:
        m = pb.ResourceResponse.FromString(reply)
        m.content = m.content.replace(old, new)
        return m.SerializeToString()

    return rewrite


def forge_entry(old: bytes = b"", new: bytes = b"", time_shift_ms: int = 0) -> Rewrite:
    """GetInclusionProof: the entry's operation payload with ``old`` replaced by ``new``, and/or its time shifted
    (the Merkle path left as it was)."""
    from didnode.core import entry as entry_codec

    def rewrite(request: bytes, reply: bytes) -> bytes:
        m = tpb.InclusionProof.FromString(reply)
        e = entry_codec.decode(m.entry)
        payload = e.payload.replace(old, new) if old else e.payload
        m.entry = entry_codec.encode(e.position, e.time + time_shift_ms, payload, e.proofs)
        return m.SerializeToString()

    return rewrite


def ask_about(did: str) -> Callable[[bytes], bytes]:
    """A request rewrite for GetStateProof / ResolveWithProof / GetKeyState / Resolve: ask about ``did`` instead
    (e.g. a DID that does not exist, to pass its NOT_FOUND off as the answer)."""

    def rewrite(request: bytes) -> bytes:
        m = tpb.ResolveWithProofRequest.FromString(request)
        m.did = did
        return m.SerializeToString()

    return rewrite


def ask_position(position: int) -> Callable[[bytes], bytes]:
    """A request rewrite for GetInclusionProof: ask for the entry at ``position`` instead (a real entry, honestly
    proven, that is not the one the client asked for)."""

    def rewrite(request: bytes) -> bytes:
        m = tpb.GetInclusionProofRequest.FromString(request)
        m.position = position
        return m.SerializeToString()

    return rewrite
