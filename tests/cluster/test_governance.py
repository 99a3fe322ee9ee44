"""A governed cluster: three nodes started with the same genesis file, every verdict the same on each.

Layout: node 0 ran ``didnode init`` (its DID is genesis DID #0, with two
governors: threshold 2 of 2, create policy ``registrars``); nodes 1 and 2 are
started with the same genesis file, at the same time, but their DIDs are not in it, so the
network's governance rejects their own creates (NOT_A_REGISTRAR): they warn
and serve on without AuthService. Node 0 publishes the genesis as the
stream's first messages (``Nats-Expected-Last-Sequence``; nodes 1 and 2 would
publish it just as well, whoever is first): the others find it there and
accept it (same payload hashes).

Then: the governors add a registrar (a change signed in Python with
:mod:`didnode.core.governance.build`); the registrar's creates are accepted
on every node until its quota is used; a create published straight into the
stream by a foreign writer (no node dry-runs it) is rejected by every node
alike: same log size and roots everywhere, its DID unknown everywhere.
"""

from __future__ import annotations

import hashlib
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from didnode.client import Client
from didnode.core import builder, opfile
from didnode.core.builder import SignedOperation
from didnode.core.governance import build as gov
from didnode.core.governance import proposal as proposals
from didnode.core.governance.policy import CreateQuota
from didnode.errors import NotARegistrar, QuotaExceeded, UnknownDid
from didnode.ledger import stream as st
from tests.cluster.conftest import publish_raw, start_cluster_node, wait_converged
from tests.conftest import BIN, ROOT, RunningNode
from tests.factory import Identity, new_create
from tools.cluster import NatsCluster

NET = "govclu"


@pytest.fixture(scope="module")
def governed(nats_cluster: NatsCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[RunningNode], list[Identity], Path]]:
    base = tmp_path_factory.mktemp("governed")
    govs, files = [], []
    for i in range(2):
        ident, op = new_create(network=NET)
        (base / f"gov{i}.json").write_text(opfile.dumps(op))
        govs.append(ident)
        files += ["--governor-op", str(base / f"gov{i}.json")]
    out = base / "genesis.json"
    r = subprocess.run(
        [str(BIN / "didnode"), "init", "--data", str(base / "n0"), "--network", NET, *files, "--threshold", "2", "--create", "registrars", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    for ident in govs:  # what didctl gov sign does
        p = proposals.loads(out.read_bytes())
        out.write_text(p.signed(ident.kid, ident.key.sign(p.message()).signature).dumps())
    urls = nats_cluster.urls
    extra = ["--genesis", str(out), "--log-level", "warning"]
    # All three at once: whichever publishes the genesis first, the others find it on the stream.
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(start_cluster_node, base / f"n{i}", urls[i:] + urls[:i], NET, extra) for i in range(3)]
    running = [f.result() for f in futures if f.exception() is None]
    try:
        assert len(running) == 3, [f.exception() for f in futures]
        yield running, govs, out
    finally:
        for n in running:
            n.stop()


def known_everywhere(nodes: list[RunningNode], did: str) -> list[bool]:
    out = []
    for n in nodes:
        with Client(n.address, timeout=10) as c:
            try:
                c.state(did)
                out.append(True)
            except UnknownDid:
                out.append(False)
    return out


def endorsed_create(endorser: Identity) -> tuple[Identity, SignedOperation]:
    """A new DID's create carrying an endorsement (an extra signature) by ``endorser``."""
    ident, _ = new_create(network=NET)
    unsigned = builder.create(NET, [builder.NewKey("key-1", bytes(ident.key.verify_key))], bytes(ident.next_key.verify_key))
    mine = Identity(unsigned.did, ident.keys, ident.current, ident.next_key)
    return mine, builder.sign(unsigned, [(mine.kid, mine.key), (endorser.kid, endorser.key)])


def test_governed_cluster(governed: tuple[list[RunningNode], list[Identity], Path], nats_cluster: NatsCluster) -> None:
    nodes, govs, out = governed
    genesis = proposals.loads(out.read_bytes())
    size, _, _ = wait_converged(nodes)
    assert size == 4  # the genesis alone: nodes 1 and 2 were refused
    with Client(nodes[2].address, timeout=10) as c:
        g = c.governance()
        assert g.policy.did == genesis.govern.did and g.policy.create == "registrars"

    # A registrar: created with a governor's endorsement, then added by both governors (2 of 2).
    registrar, op = endorsed_create(govs[0])
    with Client(nodes[0].address, timeout=10) as c:
        c.submit(op)
    wait_converged(nodes)  # the change goes through node 1: it must know the registrar
    prev = hashlib.sha256(genesis.govern.payload).hexdigest()
    change = gov.change(NET, genesis.govern.did, 1, prev, [gov.add_registrar(registrar.did, CreateQuota(total=3))])
    signed = builder.sign(change, [(g.kid, g.key) for g in govs])
    with Client(nodes[1].address, timeout=10) as c:
        c.submit(signed)

    # The registrar's creates, through each node in turn: accepted on every node, until its quota.
    made = []
    for i in range(3):
        ident, op = endorsed_create(registrar)
        wait_converged(nodes)  # each node judges the registrar's quota on the whole log
        with Client(nodes[i].address, timeout=10) as c:
            c.submit(op)
        made.append(ident.did)
    over, op = endorsed_create(registrar)
    wait_converged(nodes)
    with Client(nodes[2].address, timeout=10) as c:
        with pytest.raises(QuotaExceeded):
            c.submit(op)
        with pytest.raises(NotARegistrar):
            c.submit(new_create(network=NET)[1])

    # Straight into the stream, where no node's dry run sees them: a non-registrar's create, and the
    # registrar's create over its quota. Every node's writer rejects both alike.
    outsider, raw = new_create(network=NET)
    publish_raw(nats_cluster.urls, st.subject_for(NET, outsider.did), st.encode_body(raw.payload, raw.proofs))
    publish_raw(nats_cluster.urls, st.subject_for(NET, over.did), st.encode_body(op.payload, op.proofs))
    size, log_root, state_root = wait_converged(nodes)
    assert size == 4 + 1 + 1 + 3  # genesis, registrar, change, three creates
    for did in made:
        assert known_everywhere(nodes, did) == [True, True, True]
    assert known_everywhere(nodes, over.did) == [False, False, False]
    assert known_everywhere(nodes, outsider.did) == [False, False, False]
    for n in nodes:
        with Client(n.address, timeout=10) as c:
            used = c.governance(usage_of=[registrar.did])
            assert used.policy.registrars[registrar.did].total == 3
            assert used.usage[("creates", registrar.did)].total_count == 3


def test_genesis_mismatch_refused(governed: tuple[list[RunningNode], list[Identity], Path], nats_cluster: NatsCluster, tmp_path: Path) -> None:
    """A node started with another genesis file for the same stream refuses to serve, naming the mismatch."""
    nodes, govs, _ = governed
    ident, op = new_create(network=NET)
    (tmp_path / "g.json").write_text(opfile.dumps(op))
    other = tmp_path / "other.json"
    r = subprocess.run(
        [str(BIN / "didnode"), "init", "--data", str(tmp_path / "x"), "--network", NET, "--governor-op", str(tmp_path / "g.json"),
         "--threshold", "1", "--create", "open", "--out", str(other)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    p = proposals.loads(other.read_bytes())
    other.write_text(p.signed(ident.kid, ident.key.sign(p.message()).signature).dumps())
    with pytest.raises(RuntimeError, match="GENESIS_CONFLICT"):
        start_cluster_node(tmp_path / "x", nats_cluster.urls, NET, ["--genesis", str(other)])


def test_refused_nodes_warned_once_and_serve(governed: tuple[list[RunningNode], list[Identity], Path]) -> None:
    """Nodes 1 and 2 are not in the genesis: their creates were refused NOT_A_REGISTRAR; they said so once and serve."""
    nodes, _, _ = governed
    node = nodes[2]
    with Client(node.address, timeout=10) as c:
        info = c.node_info()
    assert info.network == NET
    assert known_everywhere(nodes, info.node_did) == [False, False, False]
    node.stop()  # last test of the module: its log tells the rest
    err = node.proc.stderr.read() if node.proc.stderr else ""
    warnings = [line for line in err.splitlines() if "governance rejects the node's own DID" in line]
    assert len(warnings) == 1 and "NOT_A_REGISTRAR" in warnings[0] and "endorses" in warnings[0], err
