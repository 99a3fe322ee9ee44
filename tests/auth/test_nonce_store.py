"""The LMDB nonce store (real LMDB in a temp dir): same contract as the memory store, plus restarts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from didnode import errors
from didnode.core.handshake import HandshakeLimits, MemoryNonceStore, Origin
from didnode.store.auth_store import LmdbNonceStore

NOW = 1_700_000_000_000
LIMITS = HandshakeLimits(timeout_ms=1000, max_skew_ms=2000, max_pending_total=4, max_pending_per_peer=2, max_nonces=50)


@pytest.fixture(params=["lmdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "memory":
        yield MemoryNonceStore(LIMITS)
        return
    s = LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
    yield s
    s.close()


def n(i: int) -> bytes:
    return i.to_bytes(32, "big")


def test_claim_once_then_replay_then_expiry(store) -> None:  # type: ignore[no-untyped-def]
    store.claim(n(1), Origin.PEER, NOW)
    assert store.origin(n(1), NOW) is Origin.PEER
    with pytest.raises(errors.HandshakeReplay):
        store.claim(n(1), Origin.PEER, NOW + 10)
    later = NOW + LIMITS.retention_ms + 1
    assert store.origin(n(1), later) is Origin.ABSENT
    store.claim(n(1), Origin.PEER, later)  # an expired record no longer blocks


def test_a_peer_presenting_an_own_nonce_is_a_reflection(store) -> None:  # type: ignore[no-untyped-def]
    store.claim(n(2), Origin.OWN, NOW)
    with pytest.raises(errors.HandshakeReflection):
        store.claim(n(2), Origin.PEER, NOW)


def test_challenges_open_close_and_abandon(store) -> None:  # type: ignore[no-untyped-def]
    deadline = store.open_challenge(n(10), n(11), "ipv4:1.2.3.4", NOW)
    assert deadline == NOW + LIMITS.timeout_ms
    assert store.origin(n(11), NOW) is Origin.OWN and store.pending_count("ipv4:1.2.3.4") == 1
    store.close_challenge(n(11), NOW + 5)
    assert store.pending_count() == 0
    with pytest.raises(errors.HandshakeReplay):
        store.close_challenge(n(11), NOW + 6)
    store.open_challenge(n(12), n(13), "ipv4:1.2.3.4", NOW)
    with pytest.raises(errors.HandshakeTimeout):
        store.close_challenge(n(13), NOW + LIMITS.timeout_ms + 1)
    assert store.pending_count() == 0
    store.open_challenge(n(14), n(15), "ipv4:1.2.3.4", NOW)
    store.abandon_challenge(n(15), NOW)
    store.abandon_challenge(n(15), NOW)  # idempotent
    assert store.pending_count() == 0 and store.origin(n(15), NOW) is Origin.OWN


def test_pending_bounds_per_peer_and_total(store) -> None:  # type: ignore[no-untyped-def]
    store.open_challenge(n(20), n(21), "a", NOW)
    store.open_challenge(n(22), n(23), "a", NOW)
    with pytest.raises(errors.TooManyPending):
        store.open_challenge(n(24), n(25), "a", NOW)
    store.open_challenge(n(26), n(27), "b", NOW)
    store.open_challenge(n(28), n(29), "c", NOW)
    with pytest.raises(errors.TooManyPending):
        store.open_challenge(n(30), n(31), "d", NOW)
    # A refused hello claimed nothing: its nonce is still unused.
    assert store.origin(n(30), NOW) is Origin.ABSENT


def test_purge_forgets_expired_nonces_and_stale_challenges(store) -> None:  # type: ignore[no-untyped-def]
    for i in range(30):
        store.claim(n(100 + i), Origin.PEER, NOW)
    store.open_challenge(n(200), n(201), "a", NOW)
    later = NOW + LIMITS.retention_ms + 1
    assert store.purge(later) >= 30
    assert store.pending_count() == 0
    assert store.origin(n(100), later) is Origin.ABSENT


def test_full_table_refuses_until_purged(store) -> None:  # type: ignore[no-untyped-def]
    for i in range(LIMITS.max_nonces):
        store.claim(n(1000 + i), Origin.PEER, NOW)
    with pytest.raises(errors.TooManyPending):
        store.claim(n(5000), Origin.PEER, NOW + 1)
    later = NOW + LIMITS.retention_ms + 1
    store.purge(later)
    store.claim(n(5000), Origin.PEER, later)


def test_lmdb_store_remembers_across_a_restart(tmp_path: Path) -> None:
    s = LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
    s.claim(n(1), Origin.PEER, NOW)
    s.open_challenge(n(2), n(3), "a", NOW)  # the process dies with this challenge pending
    s.close()
    later = NOW + LIMITS.timeout_ms + 1
    s2 = LmdbNonceStore(tmp_path / "auth", later, LIMITS)
    try:
        with pytest.raises(errors.HandshakeReplay):
            s2.claim(n(1), Origin.PEER, later)
        # The challenge pending at shutdown can never be answered, but stays used.
        assert s2.pending_count() == 0 and s2.origin(n(3), later) is Origin.OWN
        with pytest.raises(errors.HandshakeReplay):
            s2.claim(n(3), Origin.OWN, later)
    finally:
        s2.close()


def test_two_processes_may_share_a_store_without_disturbing_each_other(tmp_path: Path) -> None:
    """``didctl auth --as X`` opening X's store while ``device serve --as X`` waits for a response."""
    import multiprocessing

    s = LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
    try:
        s.open_challenge(n(2), n(3), "a", NOW)
        ctx = multiprocessing.get_context("spawn")
        p = ctx.Process(target=_other_process, args=(str(tmp_path / "auth"),))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        s.close_challenge(n(3), NOW + 10)  # still pending here: the other process left it alone
        assert s.pending_count() == 0
        with pytest.raises(errors.HandshakeReplay):
            s.claim(n(77), Origin.PEER, NOW + 10)  # what the other process recorded is seen here
    finally:
        s.close()


def _other_process(path: str) -> None:
    other = LmdbNonceStore(path, NOW + 5, LIMITS)
    other.claim(n(77), Origin.PEER, NOW + 5)
    assert other.origin(n(3), NOW + 5) is Origin.OWN
    other.close()


def test_lmdb_store_that_does_not_open_is_recreated_and_refuses_older_hellos(tmp_path: Path) -> None:
    path = tmp_path / "auth"
    path.mkdir()
    (path / "data.mdb").write_bytes(os.urandom(8192))  # not an LMDB file
    s = LmdbNonceStore(path, NOW, LIMITS)
    try:
        assert s.not_before_ms == NOW
        assert list(tmp_path.glob("auth.corrupt-*")), "the broken store is kept aside for inspection"
        with pytest.raises(errors.HandshakeStale):
            s.open_challenge(n(1), n(2), "a", NOW + 10, hello_time_ms=NOW - 1)
        s.open_challenge(n(1), n(2), "a", NOW + 10, hello_time_ms=NOW + 5)
    finally:
        s.close()


def test_maintenance_purges_and_asks_for_a_sync(tmp_path: Path) -> None:
    s = LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
    try:
        s.claim(n(1), Origin.PEER, NOW)
        later = NOW + LIMITS.retention_ms + 1
        assert s.maintenance_due(later)
        assert s.maintain(later) is True  # dirty: a flush is due
        s.sync()
        assert len(s) == 0
    finally:
        s.close()


def test_a_store_open_in_this_process_is_not_mistaken_for_a_damaged_one(tmp_path: Path) -> None:
    s = LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
    try:
        with pytest.raises(errors.Internal):
            LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
        assert not list(tmp_path.glob("auth.corrupt-*"))
    finally:
        s.close()


def test_a_purge_backlog_is_worked_off_sooner_than_once_a_second(tmp_path: Path) -> None:
    """A busy responder records more nonces a second than one purge batch: while a batch comes back
    full, the next purge is due after BACKLOG_INTERVAL_MS, so the table cannot only grow."""
    from didnode.store import auth_store

    limits = HandshakeLimits(timeout_ms=1000, max_skew_ms=2000, max_nonces=10_000)
    s = LmdbNonceStore(tmp_path / "auth", NOW, limits)
    try:
        for i in range(25):
            s.claim(n(i), Origin.PEER, NOW)
        later = NOW + limits.retention_ms + 1
        assert s.purge(later, limit=10) == 10
        assert s.maintenance_due(later + auth_store.BACKLOG_INTERVAL_MS)  # backlog: due again soon
        s.maintain(later + auth_store.BACKLOG_INTERVAL_MS)  # full batch (PURGE_BATCH > 15 left): clears the backlog
        assert len(s) == 0
        assert not s.maintenance_due(later + 2 * auth_store.BACKLOG_INTERVAL_MS)  # back to once a second
    finally:
        s.close()


def test_opening_a_challenge_records_its_nonce_at_once_and_closing_writes_nothing(tmp_path: Path) -> None:
    """One write transaction per responder handshake: the challenge nonce is a used OWN nonce from the
    moment the challenge is opened (so a crash leaves nothing replayable); pending state is in memory."""
    s = LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
    try:
        s.open_challenge(n(1), n(2), "a", NOW)
        with s.store.read() as txn:
            assert txn.get(n(2), db=s._nonces) is not None  # recorded, OWN
        writes_before = s.store.env.info()["last_txnid"]
        s.close_challenge(n(2), NOW + 5)
        assert s.store.env.info()["last_txnid"] == writes_before
        with pytest.raises(errors.HandshakeReplay):
            s.close_challenge(n(2), NOW + 6)  # already answered
        assert s.origin(n(2), NOW + 6) is Origin.OWN
    finally:
        s.close()
