"""A node's key, its ledger and the checkpoints it signed belong together (issue #14).

* A key without its ledger (``ledger/`` deleted, ``data.mdb`` emptied, an empty
  LMDB put in its place), a ledger without its key, or another node's key:
  the node refuses to start (``NODE_KEY_MISMATCH``), naming the data directory,
  and writes nothing. ``didnode serve --new-identity`` is the explicit way to
  start afresh: the old key (and its checkpoint record) move aside to dated
  files, never over a ledger that exists.
* The latest checkpoint the node signed is kept beside the key, outside LMDB
  (``node.checkpoint``, the checkpoint's JSON form, 0600). A ledger that does
  not extend it (rolled back to an older copy, replaced by another one) is
  refused at start (``CHECKPOINT_ROLLBACK``), and the signer itself refuses
  to sign anything inconsistent with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from didnode import errors
from didnode.client import Client
from didnode.core.checkpoint import SignedCheckpoint, from_json
from didnode.ledger.checkpoints import CHECKPOINT_FILE
from didnode.service.node import NODE_KEY_FILE, Node, NodeConfig
from didnode.service.transparency import TransparencyService
from didnode.store.env import Store
from tests.conftest import BIN, ROOT, start_node
from tests.factory import new_create


def _serve_refused(data: Path, *extra: str, timeout: float = 60) -> str:
    """Start ``didnode serve`` on ``data``; it must exit 1 with one line on stderr (returned)."""
    cmd = [str(BIN / "didnode"), "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the node started serving instead of refusing: {out!r} {err!r}")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 1 and out == "", (proc.returncode, out, err)
    assert len(lines) == 1 and lines[0].startswith("didnode: ") and "Traceback" not in err, err
    return lines[0]


def _grow(data: Path, n: int) -> SignedCheckpoint:
    """Start the node on ``data``, add ``n`` DIDs, take a checkpoint, stop; the checkpoint."""
    node = start_node(data)
    try:
        with Client(node.address) as c:
            list(c.submit_batch([new_create()[1] for _ in range(n)]))
            cp = c.checkpoint()
    finally:
        assert node.stop() == 0
    return cp


def _info(data: Path, *extra: str) -> tuple[str, int]:
    node = start_node(data, extra=list(extra))
    try:
        with Client(node.address) as c:
            info = c.node_info()
    finally:
        assert node.stop() == 0
    return info.node_did, info.log_size


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SignedCheckpoint]:
    """A stopped node with 40 DIDs and a checkpoint of its 41 entries."""
    data = tmp_path_factory.mktemp("identity") / "node"
    return data, _grow(data, 40)


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


# -- a key without its ledger ----------------------------------------------------------


def test_a_node_whose_ledger_was_deleted_refuses_to_start_and_writes_nothing(grown: tuple[Path, SignedCheckpoint], tmp_path: Path) -> None:
    data = _copy(grown[0], tmp_path / "node")
    shutil.rmtree(data / "ledger")
    line = _serve_refused(data)
    assert line.endswith("[NODE_KEY_MISMATCH]") and str(data) in line and "--new-identity" in line, line
    assert not (data / "ledger").exists(), "refusing must not create a new ledger"


@pytest.mark.parametrize("how", ["data.mdb emptied", "empty environment"])
def test_a_node_whose_ledger_was_emptied_refuses_to_start(grown: tuple[Path, SignedCheckpoint], tmp_path: Path, how: str) -> None:
    data = _copy(grown[0], tmp_path / "node")
    if how == "data.mdb emptied":
        os.truncate(data / "ledger" / "data.mdb", 0)
    else:
        shutil.rmtree(data / "ledger")
        Store(str(data / "ledger")).close()  # a valid, empty LMDB store of this schema
    line = _serve_refused(data)
    assert line.endswith("[NODE_KEY_MISMATCH]") and str(data) in line, line


def test_new_identity_retires_the_old_key_and_starts_a_new_ledger(grown: tuple[Path, SignedCheckpoint], tmp_path: Path) -> None:
    data = _copy(grown[0], tmp_path / "node")
    old_key = (data / NODE_KEY_FILE).read_bytes()
    old_record = (data / CHECKPOINT_FILE).read_bytes()
    old_did = grown[1].signer_did
    shutil.rmtree(data / "ledger")
    did, size = _info(data, "--new-identity")
    assert did != old_did and size == 1
    retired = sorted(p.name for p in data.iterdir() if p.name.startswith(f"{NODE_KEY_FILE}.retired-"))
    assert len(retired) == 1, list(data.iterdir())
    assert (data / retired[0]).read_bytes() == old_key
    assert stat.S_IMODE((data / retired[0]).stat().st_mode) == 0o600
    assert (data / f"{CHECKPOINT_FILE}{retired[0][len(NODE_KEY_FILE):]}").read_bytes() == old_record
    assert (data / NODE_KEY_FILE).read_bytes() != old_key
    # The new identity is the node's from now on: a plain restart keeps it.
    assert _info(data) == (did, 1)


def test_new_identity_never_retires_the_key_of_a_ledger_that_exists(grown: tuple[Path, SignedCheckpoint], tmp_path: Path) -> None:
    data = _copy(grown[0], tmp_path / "node")
    key = (data / NODE_KEY_FILE).read_bytes()
    line = _serve_refused(data, "--new-identity")
    assert "--new-identity" in line and str(data) in line and "41 entries" in line, line
    assert (data / NODE_KEY_FILE).read_bytes() == key
    assert not [p for p in data.iterdir() if ".retired-" in p.name]


# -- a ledger without its key, or with another node's ------------------------------------


def test_a_ledger_without_its_key_is_refused(grown: tuple[Path, SignedCheckpoint], tmp_path: Path) -> None:
    data = _copy(grown[0], tmp_path / "node")
    (data / NODE_KEY_FILE).unlink()
    line = _serve_refused(data)
    assert line.endswith("[NODE_KEY_MISMATCH]") and grown[1].signer_did in line and str(data) in line, line
    assert not (data / NODE_KEY_FILE).exists(), "no key may be made up for an existing node DID"


def test_another_nodes_key_is_refused(grown: tuple[Path, SignedCheckpoint], tmp_path: Path) -> None:
    data = _copy(grown[0], tmp_path / "node")
    other = tmp_path / "other"
    _info(other)
    shutil.copy(other / NODE_KEY_FILE, data / NODE_KEY_FILE)
    line = _serve_refused(data)
    assert line.endswith("[NODE_KEY_MISMATCH]") and grown[1].signer_did in line, line


# -- the checkpoint record --------------------------------------------------------------


def test_the_latest_signed_checkpoint_is_kept_beside_the_key(tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = start_node(data)
    try:
        with Client(node.address) as c:
            c.submit(new_create()[1])
            first = c.checkpoint()
            record = data / CHECKPOINT_FILE
            assert stat.S_IMODE(record.stat().st_mode) == 0o600
            assert from_json(json.loads(record.read_text())) == first
            c.submit(new_create()[1])
            second = c.checkpoint()
            assert second.tree_size == first.tree_size + 1
            assert from_json(json.loads(record.read_text())) == second
    finally:
        assert node.stop() == 0
    # A clean restart accepts its own record.
    assert _info(data)[1] == second.tree_size


def test_a_ledger_rolled_back_to_an_older_copy_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "node"
    _grow(data, 10)
    older = _copy(data / "ledger", tmp_path / "older-ledger")
    signed = _grow(data, 10)
    shutil.rmtree(data / "ledger")
    shutil.copytree(older, data / "ledger")
    line = _serve_refused(data)
    assert line.endswith("[CHECKPOINT_ROLLBACK]"), line
    assert str(data) in line and f"{signed.tree_size} entries" in line and "11" in line, line


def test_a_ledger_replaced_by_another_one_under_the_same_key_is_refused(tmp_path: Path) -> None:
    """Same key, same node DID, as many entries or more: but other entries, so another log root."""
    a = tmp_path / "a"
    _info(a)  # key and genesis only
    b = _copy(a, tmp_path / "b")
    signed = _grow(a, 10)
    _grow(b, 15)  # b's genesis is a's; its later entries are other DIDs
    shutil.rmtree(a / "ledger")
    shutil.copytree(b / "ledger", a / "ledger")
    line = _serve_refused(a)
    assert line.endswith("[CHECKPOINT_ROLLBACK]") and f"size {signed.tree_size}" in line, line


def test_a_store_from_before_the_record_adopts_its_latest_checkpoint(grown: tuple[Path, SignedCheckpoint], tmp_path: Path) -> None:
    """Upgrading: a data directory without node.checkpoint records the store's latest checkpoint at start."""
    data = _copy(grown[0], tmp_path / "node")
    (data / CHECKPOINT_FILE).unlink()
    node = Node(NodeConfig(data_dir=str(data), prepare_processes=0))
    node.close()
    assert from_json(json.loads((data / CHECKPOINT_FILE).read_text())) == grown[1]


def test_the_signer_refuses_a_checkpoint_inconsistent_with_the_record(grown: tuple[Path, SignedCheckpoint], tmp_path: Path) -> None:
    """Before signing: the size never goes backwards, and the log root at the recorded size must match."""
    data = _copy(grown[0], tmp_path / "node")
    cp = grown[1]

    async def sign_one(svc: TransparencyService) -> SignedCheckpoint:
        return await svc.checkpoint()

    node = Node(NodeConfig(data_dir=str(data), prepare_processes=0))
    try:
        svc = TransparencyService(node, max_age_ms=0)  # always sign anew
        record = node.checkpoint_record
        # A record ahead of the log (as if the ledger had lost entries since it was signed).
        record.latest = replace(cp, checkpoint=replace(cp.checkpoint, tree_size=cp.tree_size + 5))
        with pytest.raises(errors.CheckpointRollback, match="never goes backwards|holds"):
            asyncio.run(sign_one(svc))
        # A record at the same size with another log root.
        record.latest = replace(cp, checkpoint=replace(cp.checkpoint, log_root=bytes(32)))
        with pytest.raises(errors.CheckpointRollback, match=f"size {cp.tree_size}"):
            asyncio.run(sign_one(svc))
        # The true record: signing goes on, and the new checkpoint is recorded.
        record.latest = cp
        again = asyncio.run(sign_one(svc))
        assert again.tree_size == cp.tree_size and again.checkpoint.log_root == cp.checkpoint.log_root
        assert from_json(json.loads((data / CHECKPOINT_FILE).read_text())) == again
    finally:
        node.close()


def test_a_checkpoint_record_of_another_key_is_refused(grown: tuple[Path, SignedCheckpoint], tmp_path: Path) -> None:
    data = _copy(grown[0], tmp_path / "node")
    other = tmp_path / "other"
    _grow(other, 1)
    shutil.copy(other / CHECKPOINT_FILE, data / CHECKPOINT_FILE)
    line = _serve_refused(data)
    assert CHECKPOINT_FILE in line and str(data) in line, line


def test_the_flag_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    storage = (ROOT / "docs" / "storage.md").read_text()
    assert "--new-identity" in readme and "--new-identity" in storage
    assert "node.checkpoint" in storage
