"""Transparency over gRPC against a real node: every proof it serves verifies with the pure verifier."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Iterator

from dataclasses import replace

import pytest

from didnode import errors
from didnode.client import AsyncClient, Client, verify_resolution
from didnode.core.keystate import DidState
from didnode.core.transparency_verify import verify_bundle, verify_checkpoint, verify_inclusion_at
from didnode.client.proofs import signer_key_from_did_document
from tests.conftest import RunningNode
from tests.factory import new_create


@pytest.fixture(scope="module")
def client(shared_node: RunningNode) -> Iterator[Client]:
    with Client(shared_node.address) as c:
        yield c


@pytest.fixture(scope="module")
def anchor(client: Client) -> tuple[str, bytes]:
    """(node DID, checkpoint key) from the node's DID document."""
    node_did = client.node_info().node_did
    return node_did, signer_key_from_did_document(client.resolve(node_did), f"{node_did}#key-1")


def test_checkpoints_are_signed_by_the_node_did_key_and_signed_lazily(client: Client, anchor: tuple[str, bytes]) -> None:
    node_did, key = anchor
    client.submit(new_create()[1])
    first = client.checkpoint()
    cp = verify_checkpoint(first, key, node_did)
    assert cp.network == "local" and cp.tree_size == client.node_info().log_size
    assert client.checkpoint() == first  # the log did not grow: the same checkpoint
    client.submit(new_create()[1])
    second = client.checkpoint()
    assert second.tree_size == first.tree_size + 1
    assert client.checkpoint(first.tree_size) == first  # kept in the node's store
    with pytest.raises(errors.NoCheckpoint):
        client.checkpoint(10**9)


def test_inclusion_by_position_and_by_hash(client: Client, anchor: tuple[str, bytes]) -> None:
    node_did, key = anchor
    receipts = [client.submit(new_create()[1]) for _ in range(5)]
    for r in receipts:
        by_hash = client.inclusion_proof(op_hash=r.op_hash)
        assert by_hash.index == r.position
        v = verify_bundle(by_hash, key, node_did)
        assert r.op_hash.hex() in v.summary
        verify_bundle(client.inclusion_proof(position=r.position), key, node_did)
    # At an older size with a stored checkpoint, and at a size without one (checked against a root we hold).
    old = client.checkpoint(client.checkpoint().tree_size)
    client.submit(new_create()[1])
    p = client.inclusion_proof(position=receipts[0].position, tree_size=old.tree_size)
    assert p.checkpoint == old
    verify_bundle(p, key, node_did)
    bare = client.inclusion_proof(position=receipts[0].position, tree_size=receipts[2].position + 1)
    assert bare.checkpoint is None  # nobody asked for a checkpoint at that size
    with pytest.raises(errors.MalformedProof):
        verify_bundle(bare, key)


def test_consistency_between_two_checkpoints(client: Client, anchor: tuple[str, bytes]) -> None:
    node_did, key = anchor
    old = client.checkpoint()
    for _ in range(3):
        client.submit(new_create()[1])
    proof = client.consistency_proof(old.tree_size)
    assert proof.checkpoint1 == old and proof.checkpoint2 is not None
    assert proof.checkpoint2.tree_size == old.tree_size + 3
    v = verify_bundle(proof, key, node_did)
    assert v.kind == "consistency"
    same = client.consistency_proof(old.tree_size, old.tree_size)
    assert same.hashes == () and verify_bundle(same, key).kind == "consistency"


def _flip_seq(record: bytes) -> bytes:
    """The record with the low bit of its seq (u32 at offset 2) flipped: still a record, of another state."""
    out = bytearray(record)
    out[5] ^= 1
    assert DidState.from_record(bytes(out)).seq == DidState.from_record(record).seq ^ 1
    return bytes(out)


def test_state_proofs_present_and_absent(client: Client, anchor: tuple[str, bytes]) -> None:
    node_did, key = anchor
    ident, op = new_create()
    client.submit(op)
    present = client.state_proof(ident.did)
    assert present.present and DidState.from_record(present.state_record).did == ident.did
    verify_bundle(present, key, node_did)
    absent = client.state_proof(new_create()[0].did)
    assert not absent.present and absent.state_record == b""
    assert verify_bundle(absent, key, node_did).summary.endswith(f"does not exist at tree size {absent.checkpoint.tree_size}")
    # The absence proof does not pass for the existing DID, nor the presence proof with another record.
    with pytest.raises(errors.InvalidProof):
        verify_bundle(replace(absent, did=ident.did), key)
    with pytest.raises(errors.InvalidProof):
        verify_bundle(replace(present, state_record=_flip_seq(present.state_record)), key)


def test_resolution_with_proof_matches_plain_resolution(client: Client, anchor: tuple[str, bytes]) -> None:
    node_did, key = anchor
    ident, op = new_create()
    client.submit(op)
    proven = client.resolve_with_proof(ident.did)
    result = verify_resolution(proven, key, node_did, max_age_ms=60_000)
    assert result == client.resolve(ident.did)
    assert result["didDocument"]["id"] == ident.did
    with pytest.raises(errors.ProofClaimMismatch):
        verify_resolution(type(proven)({**proven.result, "didDocument": {"id": ident.did}}, proven.proof), key)
    with pytest.raises(errors.UnknownDid):
        client.resolve_with_proof(new_create()[0].did)


def test_bad_requests_are_typed(client: Client) -> None:
    size = client.node_info().log_size
    with pytest.raises(errors.UnknownOperation):
        client.inclusion_proof(position=size + 100)
    with pytest.raises(errors.UnknownOperation):
        client.inclusion_proof(op_hash=bytes(32))
    with pytest.raises(errors.InvalidArgument):
        client.inclusion_proof()
    with pytest.raises(errors.InvalidArgument):
        client.inclusion_proof(position=0, tree_size=size + 100)
    with pytest.raises(errors.InvalidArgument):
        client.consistency_proof(5, 3)
    with pytest.raises(errors.InvalidDid):
        client.state_proof("did:web:example.com")


def test_state_proofs_stay_consistent_with_their_checkpoint_under_concurrent_writes(
    shared_node: RunningNode, anchor: tuple[str, bytes]
) -> None:
    node_did, key = anchor
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        with Client(shared_node.address) as w:
            try:
                while not stop.is_set():
                    list(w.submit_batch([new_create()[1] for _ in range(20)], chunk_size=10))
            except errors.DidnodeError as exc:  # surfaced below
                failures.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    ident, op = new_create()
    sizes = set()
    try:
        with Client(shared_node.address) as c:
            c.submit(op)
            deadline = time.monotonic() + 10
            while len(sizes) < 5 and time.monotonic() < deadline:
                proof = c.state_proof(ident.did)
                verify_bundle(proof, key, node_did)  # root and proof from one snapshot
                sizes.add(proof.checkpoint.tree_size)
    finally:
        stop.set()
        t.join(30)
    assert not failures
    assert len(sizes) > 1  # the log really moved while proofs were served


def test_async_client(shared_node: RunningNode, anchor: tuple[str, bytes]) -> None:
    node_did, key = anchor

    async def run() -> None:
        async with AsyncClient(shared_node.address) as c:
            ident, op = new_create()
            receipt = await c.submit(op)
            verify_bundle(await c.inclusion_proof(op_hash=receipt.op_hash), key, node_did)
            verify_bundle(await c.state_proof(ident.did), key, node_did)
            cp = await c.checkpoint()
            assert (await c.consistency_proof(cp.tree_size)).checkpoint1 == cp
            verify_resolution(await c.resolve_with_proof(ident.did), key, node_did)
            assert (await c.node_signer_key())[1] == key
            p = await c.inclusion_proof(position=receipt.position)
            verify_inclusion_at(verify_checkpoint(p.checkpoint, key), p.entry, p.index, p.hashes)  # type: ignore[arg-type]

    asyncio.run(run())
