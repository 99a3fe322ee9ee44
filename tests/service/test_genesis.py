"""``didnode init``: a governed network's genesis in two steps, written whole or not at all.

Real processes (``didnode init``, ``didnode serve``), real LMDB, loopback gRPC.
The governors' creates are written as ``didctl did create --offline`` writes
them (:mod:`didnode.core.opfile`); their signatures on the inception are made
here as ``didctl gov sign`` makes them (the proposal's signing bytes).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from didnode.client import Client
from didnode.core import builder, opfile
from didnode.core.governance import proposal as proposals
from didnode.errors import GenesisConflict, NotARegistrar
from didnode.service import genesis as genesis_mod
from didnode.store import layout
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
from tests.conftest import BIN, ROOT, start_node
from tests.factory import Identity, new_create
from tests.ledger.governed_ledger import GovLedger

NET = "gov-test"


def didnode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "didnode"), *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def sign(path: Path, ident: Identity) -> None:
    """What ``didctl gov sign FILE --as DID`` does: one more signature on the inception."""
    p = proposals.loads(path.read_bytes())
    path.write_text(p.signed(ident.kid, ident.key.sign(p.message()).signature).dumps())


def governors(tmp_path: Path, n: int = 2) -> tuple[list[Identity], list[Path]]:
    idents, files = [], []
    for i in range(n):
        ident, op = new_create(network=NET)
        f = tmp_path / f"gov{i}.json"
        f.write_text(opfile.dumps(op))
        idents.append(ident)
        files.append(f)
    return idents, files


def step1(tmp_path: Path, data: Path, files: list[Path], *extra: str) -> Path:
    out = tmp_path / "genesis.json"
    args = ["init", "--data", str(data), "--network", NET, "--threshold", "2", "--create", "registrars", "--out", str(out), *extra]
    for f in files:
        args += ["--governor-op", str(f)]
    r = didnode(*args)
    assert r.returncode == 0, r.stderr
    assert "didctl gov sign" in r.stdout and "--genesis" in r.stdout
    return out


def ledger_size(data: Path) -> int:
    store = Store(str(data / "ledger"))
    try:
        with store.read() as txn:
            return LedgerTables(store).log_size(txn)
    finally:
        store.close()


def test_init_two_steps_then_serve_governed(tmp_path: Path) -> None:
    data = tmp_path / "node"
    govs, files = governors(tmp_path)
    out = step1(tmp_path, data, files, "--publish-quota", "window=60,count=100")
    g = proposals.loads(out.read_bytes())
    assert [op.type for op in g.operations] == ["create", "create", "create", "govern"]
    assert len(g.govern.proofs) == 1  # the node's
    for ident in govs:
        sign(out, ident)

    r = didnode("init", "--data", str(data), "--genesis", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote the genesis" in r.stdout and "governed by" in r.stdout
    assert ledger_size(data) == 4
    again = didnode("init", "--data", str(data), "--genesis", str(out))
    assert again.returncode == 0, again.stderr
    assert "already" in again.stdout
    assert ledger_size(data) == 4

    node = start_node(data, network=NET, extra=["--log-level", "info", "--genesis", str(out)])
    try:
        outsider, op = new_create(network=NET)
        with Client(node.address, timeout=10) as c:
            with pytest.raises(NotARegistrar):
                c.submit(op)
            # A governor endorses a create (an extra signature): admitted without a registrar.
            unsigned = builder.create(NET, [builder.NewKey("key-1", bytes(outsider.key.verify_key))], bytes(outsider.next_key.verify_key))
            endorsed = builder.sign(unsigned, [(f"{unsigned.did}#key-1", outsider.key), (govs[0].kid, govs[0].key)])
            assert c.submit(endorsed).position == 4
    finally:
        node.stop()
    err = node.proc.stderr.read() if node.proc.stderr else ""
    assert "governed by" in err and "create policy registrars, 0 registrars, governors 2 of 2" in err


def test_missing_signature_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "node"
    govs, files = governors(tmp_path)
    out = step1(tmp_path, data, files)
    sign(out, govs[0])  # the second governor never signs
    r = didnode("init", "--data", str(data), "--genesis", str(out))
    assert r.returncode == 1
    assert "GOVERNANCE_THRESHOLD" in r.stderr and govs[1].did in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert ledger_size(data) == 0
    # Signed in full later, the same directory takes it.
    sign(out, govs[1])
    assert didnode("init", "--data", str(data), "--genesis", str(out)).returncode == 0
    assert ledger_size(data) == 4


def test_genesis_refused_on_an_open_ledger(tmp_path: Path) -> None:
    open_data = tmp_path / "open"
    node = start_node(open_data, network=NET, extra=["--log-level", "info"])
    node.stop()
    assert "is open: anyone may create and publish" in (node.proc.stderr.read() if node.proc.stderr else "")

    govs, files = governors(tmp_path)
    out = step1(tmp_path, tmp_path / "gov", files)
    for ident in govs:
        sign(out, ident)
    r = didnode("init", "--data", str(open_data), "--genesis", str(out))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "GENESIS_CONFLICT" in r.stderr and "open network" in r.stderr
    # An embedded serve of the open ledger with the genesis is refused as well, the ledger unchanged.
    size = ledger_size(open_data)
    r = didnode("serve", "--data", str(open_data), "--network", NET, "--listen", "127.0.0.1:0", "--genesis", str(out))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert ledger_size(open_data) == size


def test_another_genesis_refused(tmp_path: Path) -> None:
    govs, files = governors(tmp_path)
    data = tmp_path / "node"
    out = step1(tmp_path, data, files)
    for ident in govs:
        sign(out, ident)
    assert didnode("init", "--data", str(data), "--genesis", str(out)).returncode == 0
    (tmp_path / "b").mkdir()
    govs2, files2 = governors(tmp_path / "b", 1)
    out2 = tmp_path / "b" / "genesis.json"
    r = didnode("init", "--data", str(tmp_path / "other"), "--network", NET, "--threshold", "1", "--create", "open", "--out", str(out2),
                "--governor-op", str(files2[0]))
    assert r.returncode == 0, r.stderr
    r = didnode("init", "--data", str(data), "--genesis", str(out2))
    assert r.returncode == 1 and "GENESIS_CONFLICT" in r.stderr and "is governed by" in r.stderr and "Traceback" not in r.stderr
    assert ledger_size(data) == 4


def test_check_ledger_names_the_conflict(tmp_path: Path) -> None:
    """The checks behind every refusal: an open ledger, another governance, another beginning."""
    govs, files = governors(tmp_path)
    out = step1(tmp_path, tmp_path / "node", files)
    for ident in govs:
        sign(out, ident)
    g = genesis_mod.load(out)
    ledger = GovLedger(tmp_path / "open", NET)
    try:
        for _ in range(5):
            assert not isinstance(ledger.one(new_create(network=NET)[1]), Exception)
        with ledger.store.read() as txn:
            with pytest.raises(GenesisConflict, match="open network"):
                genesis_mod.check_ledger(ledger.tables, txn, g, "here")
    finally:
        ledger.close()
    ledger = GovLedger(tmp_path / "gov", NET)
    try:
        assert all(not isinstance(o, Exception) for o in ledger.submit(list(g.operations)))
        with ledger.store.read() as txn:
            assert genesis_mod.check_ledger(ledger.tables, txn, g, "here")
    finally:
        ledger.close()


def test_init_refuses_bad_input(tmp_path: Path) -> None:
    govs, files = governors(tmp_path)
    data = tmp_path / "node"
    r = didnode("init", "--data", str(data), "--network", "other-net", "--threshold", "1", "--create", "open", "--out", str(tmp_path / "g.json"),
                "--governor-op", str(files[0]))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "other-net" in r.stderr
    assert not (data / "node.key").exists()
    r = didnode("init", "--data", str(data), "--network", NET, "--threshold", "3", "--create", "open", "--out", str(tmp_path / "g.json"),
                "--governor-op", str(files[0]), "--governor-op", str(files[1]))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (tmp_path / "junk.json").write_text("{}")
    r = didnode("init", "--data", str(data), "--network", NET, "--threshold", "1", "--create", "open", "--out", str(tmp_path / "g.json"),
                "--governor-op", str(tmp_path / "junk.json"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert not (data / "node.key").exists()
    # A step-1 directory without its genesis does not serve (it tells how to write the genesis).
    step1(tmp_path, data, files)
    r = didnode("serve", "--data", str(data), "--network", NET, "--listen", "127.0.0.1:0")
    assert r.returncode == 1 and "--genesis" in r.stderr and "Traceback" not in r.stderr


def test_meta_binding_after_step1(tmp_path: Path) -> None:
    govs, files = governors(tmp_path)
    data = tmp_path / "node"
    out = step1(tmp_path, data, files)
    store = Store(str(data / "ledger"))
    try:
        with store.read() as txn:
            t = LedgerTables(store)
            assert t.meta_text(txn, layout.META_NETWORK) == NET
            assert t.meta_text(txn, layout.META_NODE_DID) == proposals.loads(out.read_bytes()).operations[0].did
    finally:
        store.close()


def test_didctl_offline_creates_and_gov_sign(tmp_path: Path) -> None:
    """The operator's flow end to end: didctl did create --offline, didnode init, didctl gov sign, didnode init --genesis."""
    env = {**os.environ, "DIDCTL_PASSPHRASE": "pw", "DIDCTL_KDF": "interactive"}
    dids = []
    for name in ("a", "b"):
        r = subprocess.run(
            [str(BIN / "didctl"), "--json", "did", "create", "--offline", "--network", NET, "--out", str(tmp_path / f"{name}.json")],
            capture_output=True, text=True, cwd=ROOT, timeout=60, env={**env, "DIDCTL_KEYSTORE": str(tmp_path / f"ks-{name}")},
        )
        assert r.returncode == 0, r.stderr
        dids.append(json.loads(r.stdout)["did"])
    out = step1(tmp_path, tmp_path / "node", [tmp_path / "a.json", tmp_path / "b.json"])
    for name, did in zip(("a", "b"), dids):
        r = subprocess.run(
            [str(BIN / "didctl"), "gov", "sign", str(out), "--as", did],
            capture_output=True, text=True, cwd=ROOT, timeout=60, env={**env, "DIDCTL_KEYSTORE": str(tmp_path / f"ks-{name}")},
        )
        assert r.returncode == 0, r.stderr
    r = didnode("init", "--data", str(tmp_path / "node"), "--genesis", str(out))
    assert r.returncode == 0, r.stderr
    assert ledger_size(tmp_path / "node") == 4
    # An offline create refuses what needs a node, in one line.
    r = subprocess.run(
        [str(BIN / "didctl"), "did", "create", "--offline", "--network", NET, "--out", str(tmp_path / "a.json")],
        capture_output=True, text=True, cwd=ROOT, timeout=60, env={**env, "DIDCTL_KEYSTORE": str(tmp_path / "ks-a")},
    )
    assert r.returncode != 0 and "exists" in r.stderr and "Traceback" not in r.stderr
