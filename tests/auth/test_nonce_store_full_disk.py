"""The handshake's LMDB nonce store on a full disk: STORAGE_FULL, never SIGBUS (issue #14).

A memory-mapped (``writemap``) LMDB store whose disk fills up kills its process
with SIGBUS when it touches an unallocated page; the store writes with write
calls instead, whose ENOSPC becomes :class:`~didnode.errors.StorageFull`. The
test fills a real 2 MiB tmpfs in a private mount namespace (skipped where
mounting is not permitted), in a child process, so a signal would show as the
child's exit status.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.store.test_storage_errors import _MOUNT, _in_namespace, private_mounts  # noqa: F401  (a fixture)


def test_a_full_disk_is_storage_full_for_the_nonce_store_and_never_a_signal(private_mounts: None, tmp_path: Path) -> None:  # noqa: F811
    out = _in_namespace(
        _MOUNT
        + """
from didnode import errors
from didnode.auth.lmdb_nonces import LmdbNonceStore
from didnode.core.handshake.nonces import HandshakeLimits, Origin
mnt = sys.argv[1]
mount_tmpfs(mnt, "2m")
store = LmdbNonceStore(os.path.join(mnt, "auth"), 1_000, HandshakeLimits(max_nonces=10_000_000))
fill(mnt, 32 * 1024)
claimed, failure = 0, None
for i in range(200_000):
    try:
        store.claim(os.urandom(32), Origin.PEER, 1_000)
        claimed += 1
    except errors.DidnodeError as exc:
        failure = exc
        break
print(json.dumps({"claimed": claimed, "type": type(failure).__name__, "reason": failure.reason if failure else None}))
""",
        str(tmp_path / "mnt"),
    )
    assert out["type"] == "StorageFull" and out["reason"] == "STORAGE_FULL", out
    assert isinstance(out["claimed"], int) and out["claimed"] > 0
    assert os.path.exists(tmp_path)  # the parent is alive; _in_namespace asserted the child exited 0 (no signal)
