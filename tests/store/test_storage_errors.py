"""Storage failures have their own reasons: a full disk is STORAGE_FULL, a read-only
data directory STORE_READ_ONLY (issue #14), not INTERNAL or STORE_CORRUPTED.

What these tests exercise, for real (no mock):

* disk full: a 4 MiB tmpfs mounted in a private mount namespace (``unshare -m``,
  so nothing outlives the test), nearly filled by a filler file; a real node
  (``didnode serve``) on it, real clients submitting until the disk is full, then
  the filler removed and the node writing again; the same at the ``Store`` level;
* read-only file system: a read-only bind mount of a stopped node's data
  directory in such a namespace; the node started on it;
* permission refused: a process that dropped root (setuid to ``nobody``, since
  root writes through any mode bits) opening a root-owned store;
* the mapping itself with the real error objects py-lmdb raises (``DiskError``
  for ENOSPC, ``ReadonlyError``, an ``Error`` whose code is EROFS).

The tests that need a mount namespace skip where ``unshare``/``mount`` are not
permitted. A file system turning read-only under a *running* node (a remount
after an I/O error) is not reproduced: Linux refuses to remount read-only a
file system with files open for writing; its error goes through the same
mapping as the open's (``storage_error``), which the last tests check.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import lmdb
import pytest

from didnode import errors
from didnode.store import layout
from didnode.store.env import Store, storage_error
from didnode.wire.status import code_for
from tests.conftest import BIN, ROOT, start_node

UNSHARE = ["unshare", "-m", "--propagation", "private"]


def _namespaces_work(tmp_path: Path) -> str | None:
    """None when this process may mount a tmpfs in a private mount namespace, else why not."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare or mount is not installed"
    probe = tmp_path / "probe"
    probe.mkdir()
    res = subprocess.run([*UNSHARE, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True, text=True)
    return None if res.returncode == 0 else f"cannot mount in a private namespace: {res.stderr.strip()}"


@pytest.fixture
def private_mounts(tmp_path: Path) -> None:
    why = _namespaces_work(tmp_path)
    if why:
        pytest.skip(why)


def _in_namespace(script: str, *args: str, timeout: float = 180) -> dict[str, object]:
    """Run ``script`` (Python) in a private mount namespace; it prints one JSON object last."""
    res = subprocess.run(
        [*UNSHARE, sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
    )
    assert res.returncode == 0, f"child failed ({res.returncode}): {res.stdout}\n{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


_MOUNT = """
import json, os, subprocess, sys
sys.path.insert(0, os.getcwd())
def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=True)
def fill(mnt, leave):
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(os.path.join(mnt, "filler"), "wb") as f:
        f.write(b"\\0" * max(0, free - leave))
"""


def test_a_full_disk_is_storage_full_at_the_store_and_the_store_goes_on_after_space_is_freed(private_mounts: None, tmp_path: Path) -> None:
    out = _in_namespace(
        _MOUNT
        + """
from didnode import errors
from didnode.store import layout
from didnode.store.env import Store
mnt = sys.argv[1]
mount_tmpfs(mnt, "4m")
store = Store(os.path.join(mnt, "ledger"), map_size=1 << 26)
fill(mnt, 256 * 1024)
db = store.dbs[layout.DB_LOG]
written, failure = 0, None
for i in range(10_000):
    try:
        store.write(lambda txn: txn.put(layout.u64(i), os.urandom(6000), db=db))
        written += 1
    except errors.DidnodeError as exc:
        failure = exc
        break
os.remove(os.path.join(mnt, "filler"))
store.write(lambda txn: txn.put(layout.u64(written), b"after", db=db))
with store.read() as txn:
    kept = sum(1 for _ in txn.cursor(db=db))
print(json.dumps({"written": written, "type": type(failure).__name__, "reason": failure.reason if failure else None,
                  "message": str(failure), "kept": kept}))
""",
        str(tmp_path / "mnt"),
    )
    assert out["type"] == "StorageFull" and out["reason"] == "STORAGE_FULL", out
    assert "No space left on device" in str(out["message"]) and str(tmp_path / "mnt" / "ledger") in str(out["message"])
    assert out["written"] > 0 and out["kept"] == out["written"] + 1, "every committed write survives, the failed one left nothing"


def test_a_node_on_a_full_disk_answers_storage_full_and_recovers_when_space_is_freed(private_mounts: None, tmp_path: Path) -> None:
    out = _in_namespace(
        _MOUNT
        + """
import subprocess
from didnode.client import Client
from didnode import errors
from tests.conftest import start_node
from tests.factory import new_create
mnt = sys.argv[1]
mount_tmpfs(mnt, "6m")
node = start_node(__import__("pathlib").Path(mnt) / "node", extra=["--prepare-processes", "0"])
try:
    with Client(node.address) as c:
        c.submit(new_create()[1])
        fill(mnt, 64 * 1024)
        accepted, failure = 0, None
        for _ in range(2000):
            try:
                for outcome in c.submit_batch([new_create()[1] for _ in range(20)]):
                    if isinstance(outcome, errors.DidnodeError):
                        raise outcome
                    accepted += 1
            except errors.DidnodeError as exc:
                failure = exc
                break
        os.remove(os.path.join(mnt, "filler"))
        after = c.submit(new_create()[1])
        info = c.node_info()
finally:
    code = node.stop()
print(json.dumps({"accepted": accepted, "type": type(failure).__name__, "reason": failure.reason if failure else None,
                  "message": str(failure), "after": after.position, "log": info.log_size, "exit": code}))
""",
        str(tmp_path / "mnt"),
    )
    assert out["type"] == "StorageFull" and out["reason"] == "STORAGE_FULL", out
    assert "No space left on device" in str(out["message"])
    # The node kept running: once space was freed the next operation was accepted, after every accepted one.
    # Genesis at 0, the first create at 1, then every accepted one: nothing of a failed batch was logged.
    assert out["accepted"] > 0 and out["after"] == 2 + out["accepted"]  # type: ignore[operator]
    assert out["log"] == out["after"] + 1 and out["exit"] == 0  # type: ignore[operator]


def test_a_node_on_a_read_only_file_system_refuses_to_start_with_store_read_only(private_mounts: None, tmp_path: Path) -> None:
    node = start_node(tmp_path / "node")
    assert node.stop() == 0
    out = _in_namespace(
        """
import json, os, subprocess, sys
src, ro, didnode, didctl = sys.argv[1:5]
os.makedirs(ro)
subprocess.run(["mount", "--bind", src, ro], check=True)
subprocess.run(["mount", "-o", "remount,ro,bind", ro], check=True)
res = subprocess.run([didnode, "serve", "--data", ro, "--listen", "127.0.0.1:0", "--log-level", "warning"],
                     capture_output=True, text=True, timeout=60)
audit = subprocess.run([didctl, "audit", "--data", ro], capture_output=True, text=True, timeout=120)
print(json.dumps({"code": res.returncode, "stderr": res.stderr, "stdout": res.stdout,
                  "audit": audit.returncode, "audit_out": audit.stdout}))
""",
        str(tmp_path / "node"), str(tmp_path / "ro"), str(BIN / "didnode"), str(BIN / "didctl"),
    )
    lines = [ln for ln in str(out["stderr"]).splitlines() if ln.strip()]
    assert out["code"] == 1 and out["stdout"] == "", out
    assert len(lines) == 1 and lines[0].startswith("didnode: ") and lines[0].endswith("[STORE_READ_ONLY]"), out
    assert "Read-only file system" in lines[0] and str(tmp_path / "ro") in lines[0]
    # Reading needs no write: the audit of the read-only directory passes.
    assert out["audit"] == 0 and str(out["audit_out"]).startswith("ok: "), out


def test_a_store_the_process_may_not_write_is_store_read_only(tmp_path: Path) -> None:
    """Permission refused (EACCES), for real: root writes through mode bits, so the
    opening process first drops to ``nobody``."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    base = Path("/tmp") / f"didnode-ro-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(mode=0o755)
    try:
        Store(str(base / "ledger")).close()
        os.chmod(base / "ledger", 0o755)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: no pytest, no grpc; only the store
            try:
                os.setgid(65534)
                os.setuid(65534)
                try:
                    Store(str(base / "ledger"))
                    msg = "opened"
                except errors.DidnodeError as exc:
                    msg = f"{exc.reason} {exc}"
                os.write(write, msg.encode())
            finally:
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read) as f:
            said = f.read()
        assert os.WIFEXITED(status), status
        assert said.startswith("STORE_READ_ONLY ") and "Permission denied" in said, said
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- the mapping, with the error objects py-lmdb really raises ----------------------


def test_lmdb_disk_error_is_storage_full_and_maps_to_resource_exhausted() -> None:
    err = storage_error(lmdb.DiskError("mdb_txn_commit: No space left on device"), "commit to /d/ledger")
    assert isinstance(err, errors.StorageFull) and isinstance(err, errors.ResourceExhausted)
    assert err.reason == "STORAGE_FULL" and code_for(err) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(err).startswith("cannot commit to /d/ledger: No space left on device")
    quota = storage_error(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), "write x")
    assert isinstance(quota, errors.StorageFull)


def test_read_only_errors_are_store_read_only_and_map_to_failed_precondition(tmp_path: Path) -> None:
    # The exact object LMDB raises when a write transaction is begun on a read-only environment.
    Store(str(tmp_path / "s")).close()
    env = lmdb.open(str(tmp_path / "s"), readonly=True, max_dbs=16)
    with pytest.raises(lmdb.ReadonlyError) as caught:
        env.begin(write=True)
    env.close()
    for exc in (caught.value, OSError(errno.EROFS, os.strerror(errno.EROFS)), OSError(errno.EACCES, "Permission denied")):
        err = storage_error(exc, "open the store")
        assert isinstance(err, errors.StoreReadOnly), exc
        assert err.reason == "STORE_READ_ONLY" and code_for(err) == grpc.StatusCode.FAILED_PRECONDITION
    # py-lmdb raises a plain Error for EROFS; without its ``code`` the message still tells.
    assert isinstance(storage_error(lmdb.Error("/x: Read-only file system"), "open /x"), errors.StoreReadOnly)


def test_other_storage_failures_stay_internal(tmp_path: Path) -> None:
    err = storage_error(lmdb.Error("/x: Input/output error"), "commit")
    assert type(err) is errors.Internal
    assert type(storage_error(OSError(errno.EIO, "Input/output error"), "commit")) is errors.Internal
    # LMDB's EIO for a short write is taken for a full disk only where the file system is full.
    assert type(storage_error(OSError(errno.EIO, "Input/output error"), "commit", str(tmp_path))) is errors.Internal


def test_the_new_reasons_are_documented() -> None:
    text = (ROOT / "docs" / "errors.md").read_text()
    for reason, status in (("STORAGE_FULL", "RESOURCE_EXHAUSTED"), ("STORE_READ_ONLY", "FAILED_PRECONDITION")):
        assert f"| `{reason}` |" in text and status in text.split(f"| `{reason}` |")[1].split("\n")[0]


def test_a_write_failure_reaches_the_orderer_typed(tmp_path: Path) -> None:
    """Store.write raises the typed error; the orderer answers every waiter with it (not INTERNAL)."""
    store = Store(str(tmp_path / "ledger"))
    try:
        def boom(txn: lmdb.Transaction) -> None:
            txn.put(b"k", b"v", db=store.dbs[layout.DB_META])
            raise lmdb.DiskError("mdb_txn_commit: No space left on device")

        with pytest.raises(errors.StorageFull):
            store.write(boom)
        with store.read() as txn:
            assert txn.get(b"k", db=store.dbs[layout.DB_META]) is None
    finally:
        store.close()
