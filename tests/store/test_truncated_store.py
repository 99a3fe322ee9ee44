"""A truncated ``data.mdb`` is refused with one clear line, never a SIGBUS (issue #14).

LMDB maps ``data.mdb``; a page beyond the end of a truncated file kills the
process with SIGBUS on first touch. Every opener (the node's ``Store``, the
read-only ``ReadOnlyStore`` of the audit and of the prepare workers,
``snapshot``) checks the file against its meta pages first
(``didnode.store.datafile``). A healthy file may legitimately end before its
last page number when the pages past its end are free (LMDB does not write a
page allocated and freed in the same transaction): that must never be taken
for truncation.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
from pathlib import Path

import lmdb
import pytest

from didnode.client import Client
from didnode.errors import StoreCorrupted
from didnode.store import datafile
from didnode.store.env import Store
from didnode.store.readonly import ReadOnlyStore, snapshot
from tests.conftest import BIN, ROOT, start_node
from tests.factory import new_create


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped node's data directory: a few hundred entries and a checkpoint."""
    data = tmp_path_factory.mktemp("trunc") / "node"
    node = start_node(data)
    try:
        with Client(node.address) as c:
            for _ in range(3):
                list(c.submit_batch([new_create()[1] for _ in range(100)]))
                c.checkpoint()
    finally:
        assert node.stop() == 0
    return data


def _copy(ledger: Path, dest: Path) -> Path:
    shutil.copytree(ledger, dest)
    return dest


def _page_size(path: Path) -> int:
    env = lmdb.open(str(path.parent), readonly=True, lock=False)
    try:
        return int(env.stat()["psize"])
    finally:
        env.close()


def _cut(ledger: Path, which: str) -> int:
    data = ledger / "ledger" / "data.mdb"
    size, psize = data.stat().st_size, _page_size(data)
    return {
        "empty": 0,
        "inside-meta-0": 100,
        "inside-meta-1": psize + 100,
        "metas-only": 2 * psize,
        "three-pages": 3 * psize,
        "half": (size // psize // 2) * psize,
        "half-and-a-bit": (size // psize // 2) * psize + 1000,
    }[which]


CUTS = ["empty", "inside-meta-0", "inside-meta-1", "metas-only", "three-pages", "half", "half-and-a-bit"]


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to its end; one that is still running after ``timeout`` (a node that
    started serving) is killed and reported as such."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{cmd[0]} is still running after {timeout} s (it started on the damaged store): {out!r} {err!r}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _one_clear_line(res: subprocess.CompletedProcess[str], prog: str, reasons: set[str]) -> str:
    assert res.returncode > 0, f"{prog} exited {res.returncode} (negative: killed by signal {signal.Signals(-res.returncode).name if res.returncode < 0 else '-'}); stderr={res.stderr!r}"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{prog} should say one line, said: {res.stderr!r}"
    line = lines[0]
    assert line.startswith(f"{prog}: ") and "Traceback" not in res.stderr
    assert any(line.endswith(f"[{r}]") for r in reasons), line
    return line


@pytest.mark.parametrize("which", CUTS)
def test_a_truncated_data_file_stops_the_node_and_the_audit_with_one_line(ledger: Path, tmp_path: Path, which: str) -> None:
    copy = _copy(ledger, tmp_path / "copy")
    data = copy / "ledger" / "data.mdb"
    length = _cut(copy, which)
    os.truncate(data, length)

    node = _run([str(BIN / "didnode"), "serve", "--data", str(copy), "--listen", "127.0.0.1:0", "--log-level", "warning", "--prepare-processes", "1"])
    # An empty data.mdb beside an existing node.key is the "ledger lost" case of the identity check.
    line = _one_clear_line(node, "didnode", {"STORE_CORRUPTED", "NODE_KEY_MISMATCH"})
    assert str(copy) in line
    assert node.stdout == "", "the node must not have started serving"
    assert data.stat().st_size == length, "nothing may have been written to the damaged file"

    audit = _run([str(BIN / "didctl"), "audit", "--data", str(copy)])
    line = _one_clear_line(audit, "didctl", {"STORE_CORRUPTED"})
    assert "data.mdb" in line


def test_truncation_messages_say_what_is_missing(ledger: Path, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path / "copy")
    data = copy / "ledger" / "data.mdb"
    psize = _page_size(data)
    os.truncate(data, 2 * psize)
    with pytest.raises(StoreCorrupted) as caught:
        ReadOnlyStore(str(copy / "ledger"))
    msg = str(caught.value)
    assert "truncated" in msg and str(data) in msg and f"{2 * psize} bytes" in msg
    os.truncate(data, 0)
    with pytest.raises(StoreCorrupted, match="empty"):
        ReadOnlyStore(str(copy / "ledger"))
    data.write_bytes(b"\0" * (3 * psize))
    with pytest.raises(StoreCorrupted, match="not an LMDB data file"):
        ReadOnlyStore(str(copy / "ledger"))


def test_every_opener_checks_the_file(ledger: Path, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path / "copy")
    data = copy / "ledger" / "data.mdb"
    os.truncate(data, _cut(copy, "half"))
    for open_it in (
        lambda: Store(str(copy / "ledger")),
        lambda: ReadOnlyStore(str(copy / "ledger")),
        lambda: ReadOnlyStore(str(copy / "ledger"), live=True),  # the prepare workers' opener
        lambda: snapshot(str(copy), str(tmp_path / "snap")),
    ):
        with pytest.raises(StoreCorrupted, match="truncated"):
            open_it()


def test_a_healthy_file_shorter_than_its_last_page_is_not_truncated(tmp_path: Path) -> None:
    """LMDB leaves pages allocated and freed in one transaction unwritten: the file
    may end before (last_pgno + 1) * psize although nothing is missing. The check
    must tell that apart (the pages past the end are in the free list) from a cut."""
    path = tmp_path / "env"
    env = lmdb.open(str(path), map_size=1 << 30, max_dbs=4, sync=False, metasync=False)
    dbs = [env.open_db(n) for n in (b"a", b"b")]
    rnd = random.Random(7)
    keys: list[bytes] = []
    short = 0
    for _ in range(400):
        with env.begin(write=True) as txn:
            for _ in range(rnd.randint(1, 150)):
                if keys and rnd.random() < 0.5:
                    k = keys.pop(rnd.randrange(len(keys)))
                    txn.delete(k, db=dbs[0])
                    txn.delete(k, db=dbs[1])
                else:
                    k = rnd.randbytes(rnd.choice((8, 32, 300)))
                    keys.append(k)
                    txn.put(k, rnd.randbytes(rnd.choice((10, 100, 2000, 9000))), db=rnd.choice(dbs))
        info = env.info()
        psize = env.stat()["psize"]
        size = os.path.getsize(path / "data.mdb")
        if size < (info["last_pgno"] + 1) * psize:
            short += 1
        datafile.check_data_file(str(path))  # never raises on a healthy file
    env.close()
    assert short > 0, "the scenario must produce files shorter than their last page (else it tests nothing)"


def test_cutting_a_page_in_use_is_found_wherever_it_is(tmp_path: Path) -> None:
    """Cut a healthy file just before each page the tree uses: always truncation."""
    path = tmp_path / "env"
    env = lmdb.open(str(path), map_size=1 << 28, sync=False, metasync=False)
    with env.begin(write=True) as txn:
        for i in range(3000):
            txn.put(b"%08d" % i, b"v" * 200)
    env.close()
    size = os.path.getsize(path / "data.mdb")
    psize = 4096
    full = (path / "data.mdb").read_bytes()
    cut_points = sorted({2 * psize, size // 2 // psize * psize, size - psize, size - 1})
    for cut in cut_points:
        (path / "data.mdb").write_bytes(full[:cut])
        try:
            datafile.check_data_file(str(path))
        except StoreCorrupted:
            continue
        # Not refused: then every page past the cut must be free, and LMDB must read it all without a signal.
        res = subprocess.run(
            [str(BIN / "python"), "-c", f"import lmdb; e = lmdb.open({str(path)!r}, readonly=True, lock=False); t = e.begin(); print(sum(1 for _ in t.cursor()))"],
            capture_output=True, text=True, timeout=60,
        )
        assert res.returncode == 0 and res.stdout.strip() == "3000", f"cut at {cut} passed the check but LMDB fails: {res}"
    (path / "data.mdb").write_bytes(full)
    datafile.check_data_file(str(path))
