"""NATS authentication and permissions, as ``make cluster`` sets them up (tools.cluster.ClusterAuth):
the nodes' user orders its ledger and may not delete, purge or reconfigure the stream nor
touch another network's subjects; a client without valid credentials cannot connect; the
secrets live in files only their owner may read; a node given wrong credentials says so."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import nats
import pytest

from didnode.client import Client, Receipt
from didnode.ledger import stream as st
from tests.cluster.conftest import health, info, js_request, start_cluster_node, stream_info, wait_until
from tests.conftest import BIN
from tests.factory import new_create
from tools.cluster import ClusterAuth, NatsCluster

NET = "authz"
STREAM = st.default_stream_name(NET)


async def _as_user(urls: list[str], actions: list[tuple[str, bytes]]) -> tuple[list[str], list[Any]]:
    """Connect with ``urls`` (credentials in them), make each request; (errors the server sent, replies or exceptions)."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(servers=urls, connect_timeout=2, allow_reconnect=False, error_cb=on_error)
    out: list[Any] = []
    try:
        for subject, body in actions:
            try:
                out.append(json.loads((await nc.request(subject, body, timeout=2)).data))
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                out.append(exc)
        await nc.flush(2)
        await asyncio.sleep(0.2)  # the server's -ERR for the last one
    finally:
        await nc.close()
    return errors, out


def cannot_connect(urls: list[str]) -> str:
    """The error a client gets connecting with ``urls``; fails the test if it connects."""

    async def go() -> str:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc) or type(exc).__name__)

        try:
            nc = await nats.connect(servers=urls, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0, error_cb=on_error)
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            return "; ".join(errors + [str(exc) or type(exc).__name__])
        await nc.close()
        raise AssertionError(f"connected with {urls[0].split('@')[0]}…")

    return asyncio.run(go())


def test_node_user_orders_its_ledger_and_nothing_more(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    auth = nats_cluster.auth
    assert auth is not None
    node = start_cluster_node(tmp_path / "n0", nats_cluster.urls, NET)
    try:
        with Client(node.address) as c:
            assert isinstance(c.submit(new_create(network=NET)[1]), Receipt)
        assert info(node).writable
    finally:
        node.stop()

    node_urls = nats_cluster.user_urls(auth.node_user)
    stream_cfg = {**st.stream_config(STREAM, NET, 3, 120.0, True), "deny_delete": False, "deny_purge": False}
    errors, replies = asyncio.run(
        _as_user(
            node_urls,
            [
                (f"$JS.API.STREAM.INFO.{STREAM}", b""),
                (f"$JS.API.STREAM.DELETE.{STREAM}", b""),
                (f"$JS.API.STREAM.PURGE.{STREAM}", b""),
                (f"$JS.API.STREAM.UPDATE.{STREAM}", json.dumps(stream_cfg).encode()),
                (f"$JS.API.STREAM.MSG.DELETE.{STREAM}", json.dumps({"seq": 1}).encode()),
                ("$JS.API.STREAM.DELETE.SOMEONE_ELSES", b""),
                ("$JS.API.STREAM.LIST", b""),
                (st.subject_for("othernet", "did:dnode:QmX"), b"{}"),
            ],
        )
    )
    assert isinstance(replies[0], dict) and replies[0]["config"]["name"] == STREAM, "the node user reads its stream"
    assert all(isinstance(r, Exception) for r in replies[1:]), replies  # no answer: the server dropped them
    violations = " | ".join(errors).lower()  # nats-py lowercases the server's -ERR text
    for subject in ("STREAM.DELETE", "STREAM.PURGE", "STREAM.UPDATE", "STREAM.MSG.DELETE", "STREAM.LIST", "didnode.othernet.op"):
        assert f"permissions violation for publish to \"{'$JS.API.' if subject.startswith('STREAM') else ''}{subject}".lower() in violations, (subject, errors)
    state = stream_info(nats_cluster.urls, NET)
    assert "error" not in state and state["state"]["messages"] >= 2, state  # type: ignore[index]

    # Nor may it listen to what is not its own.
    errors, _ = asyncio.run(_sub_as(node_urls, ["didnode.>", "$JS.API.>", "_INBOX_other.>"]))
    assert sum("permissions violation for subscription" in e.lower() for e in errors) == 3, errors


async def _sub_as(urls: list[str], subjects: list[str]) -> tuple[list[str], None]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(servers=urls, connect_timeout=2, allow_reconnect=False, error_cb=on_error)
    try:
        for s in subjects:
            await nc.subscribe(s)
        await nc.flush(2)
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return errors, None


def test_clients_without_valid_credentials_cannot_connect(nats_cluster: NatsCluster) -> None:
    auth = nats_cluster.auth
    assert auth is not None
    assert "authorization violation" in cannot_connect(nats_cluster.urls).lower()
    assert "authorization violation" in cannot_connect([u.replace("://", "://didnode:wrong@") for u in nats_cluster.urls]).lower()
    assert "authorization violation" in cannot_connect([u.replace("://", f"://{auth.route_user}:{auth.password(auth.route_user)}@") for u in nats_cluster.urls]).lower()
    # The admin may do what operators do (tests/cluster/test_stream_loss.py deletes a stream as admin).
    assert "error" not in js_request(nats_cluster.urls, "INFO")


def test_secrets_are_private_and_kept(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    auth = nats_cluster.auth
    assert auth is not None
    assert stat.S_IMODE(auth.dir.stat().st_mode) == 0o700
    for user in (auth.node_user, auth.admin_user, auth.route_user):
        assert stat.S_IMODE(auth.password_file(user).stat().st_mode) == 0o600
        assert len(auth.password(user)) >= 40
    for s in nats_cluster.servers:
        assert stat.S_IMODE(s.conf.stat().st_mode) == 0o600, "a server config holds the passwords"
    # Generated once per cluster, then kept: a restarted cluster's nodes still log in.
    again = ClusterAuth.load_or_create(auth.dir, auth.networks)
    assert [again.password(u) for u in (auth.node_user, auth.admin_user)] == [auth.password(u) for u in (auth.node_user, auth.admin_user)]
    other = ClusterAuth.load_or_create(tmp_path / "auth", auth.networks)
    assert other.password(auth.node_user) != auth.password(auth.node_user), "each cluster its own"


def test_a_node_with_wrong_credentials_says_so(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    node = start_cluster_node(tmp_path / "n1", nats_cluster.urls, NET)
    node.stop()
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    # Restarted with a wrong password, it serves its store's reads and says why it cannot write.
    node = start_cluster_node(node.data_dir, nats_cluster.urls, NET, extra=["--nats-password-file", str(wrong)])
    try:
        wait_until("the reason", lambda: "authorization violation" in info(node).not_writable_reason.lower(), timeout=15)
        assert not info(node).writable and health(node) == "NOT_SERVING"
        assert "wrong" not in info(node).not_writable_reason and "@" not in info(node).not_writable_reason
    finally:
        node.stop()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nats-user", "didnode"], "need --nats"),
        (["--nats", "nats://127.0.0.1:1", "--nats-user", "didnode"], "needs a password file"),
        (["--nats", "nats://127.0.0.1:1", "--nats-password-file", "/nonexistent"], "needs a NATS user"),
        (["--nats", "nats://127.0.0.1:1", "--nats-user", "u", "--nats-password-file", "/nonexistent"], "cannot read"),
        (["--nats", "nats://127.0.0.1:1", "--nats-tls-cert", "/nonexistent"], "go together"),
    ],
)
def test_serve_checks_its_nats_options(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run([str(BIN / "didnode"), "serve", "--data", str(tmp_path / "d"), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
