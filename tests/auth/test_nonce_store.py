"""The nonce store: one contract, run against both backends (memory and real LMDB in a temp dir),
then what only the LMDB one does (restarts, sharing, recreation, schema versions, map growth)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Callable, Iterator

import lmdb
import pytest

from didnode import errors
from didnode.core.handshake import HandshakeLimits, MemoryNonceStore, Origin
from didnode.core.handshake import nonces as core_nonces
from didnode.core.handshake.nonces import NonceBook
from didnode.auth import lmdb_nonces as auth_store
from didnode.auth.lmdb_nonces import LmdbNonceStore

NOW = 1_700_000_000_000
LIMITS = HandshakeLimits(timeout_ms=1000, max_skew_ms=2000, max_pending_total=4, max_pending_per_peer=2, max_nonces=50)
BACKENDS = ["memory", "lmdb"]


def make_store(kind: str, path: Path, limits: HandshakeLimits = LIMITS) -> NonceBook[Any]:
    if kind == "memory":
        return MemoryNonceStore(limits)
    return LmdbNonceStore(path, NOW, limits)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NonceBook[Any]]:
    s = make_store(request.param, tmp_path / "auth")
    yield s
    s.close()


def n(i: int) -> bytes:
    return i.to_bytes(32, "big")


def count_writes(store: NonceBook[Any]) -> list[int]:
    """Count the backend's write transactions from now on (one element per write)."""
    writes: list[int] = []
    real = store.rows.write

    def counting(fn: Callable[[Any], Any]) -> Any:
        writes.append(1)
        return real(fn)

    store.rows.write = counting  # type: ignore[method-assign]
    return writes


# --------------------------------------------------------------------------
# The contract: both backends
# --------------------------------------------------------------------------


def test_claim_once_then_replay_then_expiry(store: NonceBook[Any]) -> None:
    store.claim(n(1), Origin.PEER, NOW)
    assert store.origin(n(1), NOW) is Origin.PEER
    with pytest.raises(errors.HandshakeReplay):
        store.claim(n(1), Origin.PEER, NOW + 10)
    later = NOW + LIMITS.retention_ms + 1
    assert store.origin(n(1), later) is Origin.ABSENT
    store.claim(n(1), Origin.PEER, later)  # an expired record no longer blocks


def test_a_peer_presenting_an_own_nonce_is_a_reflection(store: NonceBook[Any]) -> None:
    store.claim(n(2), Origin.OWN, NOW)
    with pytest.raises(errors.HandshakeReflection):
        store.claim(n(2), Origin.PEER, NOW)
    with pytest.raises(errors.HandshakeReplay):
        store.claim(n(2), Origin.OWN, NOW)  # our own nonce twice is a replay, not a reflection


def test_challenges_open_close_and_abandon(store: NonceBook[Any]) -> None:
    deadline = store.open_challenge(n(10), n(11), "ipv4:1.2.3.4", NOW)
    assert deadline == NOW + LIMITS.timeout_ms
    assert store.origin(n(11), NOW) is Origin.OWN and store.pending_count("ipv4:1.2.3.4") == 1
    assert store.origin(n(10), NOW) is Origin.PEER
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


def test_a_replayed_hello_opens_no_challenge(store: NonceBook[Any]) -> None:
    store.open_challenge(n(10), n(11), "a", NOW)
    with pytest.raises(errors.HandshakeReplay):
        store.open_challenge(n(10), n(12), "a", NOW + 1)
    assert store.pending_count() == 1 and store.origin(n(12), NOW + 1) is Origin.ABSENT
    with pytest.raises(errors.HandshakeReflection):
        store.open_challenge(n(11), n(13), "a", NOW + 1)  # our own challenge nonce sent back as a hello nonce


def test_a_reused_challenge_nonce_is_a_broken_random_generator(store: NonceBook[Any]) -> None:
    store.open_challenge(n(10), n(11), "a", NOW)
    with pytest.raises(errors.Internal):
        store.open_challenge(n(20), n(11), "a", NOW + 1)
    assert store.origin(n(20), NOW + 1) is Origin.ABSENT and store.pending_count() == 1


def test_the_challenge_nonce_is_recorded_when_the_challenge_is_issued(store: NonceBook[Any]) -> None:
    """Both backends record N_R as a used OWN nonce at open_challenge (with the hello nonce, in one
    write), never later at close: so a crash or a challenge nobody closes leaves nothing replayable,
    and its retention counts from when it was issued."""
    writes = count_writes(store)
    store.open_challenge(n(1), n(2), "a", NOW)
    assert len(writes) == 1 and len(store) == 2  # both rows, one write
    with pytest.raises(errors.HandshakeReflection):
        store.claim(n(2), Origin.PEER, NOW + 1)  # while pending: it is already a used OWN nonce
    store.close_challenge(n(2), NOW + 500)
    assert len(writes) == 2 and len(store) == 2  # the refused claim aborted; the close wrote nothing
    expires = NOW + LIMITS.retention_ms  # from the opening, not from the close
    assert store.origin(n(2), expires) is Origin.ABSENT
    assert store.origin(n(2), expires - 1) is Origin.OWN
    store.purge(expires)
    assert len(store) == 0


def test_an_abandoned_or_forgotten_challenge_keeps_its_nonce(store: NonceBook[Any]) -> None:
    store.open_challenge(n(1), n(2), "a", NOW)
    store.open_challenge(n(3), n(4), "a", NOW)
    store.abandon_challenge(n(2), NOW + 1)
    # Nobody closes n(4): the purge releases the slot a whole timeout after its deadline.
    assert store.purge(NOW + 2 * LIMITS.timeout_ms) == 1 and store.pending_count() == 0
    for nonce in (n(2), n(4)):
        assert store.origin(nonce, NOW + 2 * LIMITS.timeout_ms) is Origin.OWN
        with pytest.raises(errors.HandshakeReflection):
            store.claim(nonce, Origin.PEER, NOW + 2 * LIMITS.timeout_ms)


def test_transactions_per_operation(store: NonceBook[Any]) -> None:
    """The hot path's cost: one write per claim and per opened challenge, none to close or abandon."""
    writes = count_writes(store)
    store.claim(n(1), Origin.OWN, NOW)  # an initiator's hello
    store.claim(n(2), Origin.PEER, NOW)  # ... and the challenge it receives
    assert len(writes) == 2
    store.open_challenge(n(3), n(4), "a", NOW)
    store.close_challenge(n(4), NOW + 1)
    store.open_challenge(n(5), n(6), "a", NOW)
    store.abandon_challenge(n(6), NOW + 1)
    store.origin(n(7), NOW)
    assert len(writes) == 4


def test_pending_bounds_per_peer_and_total(store: NonceBook[Any]) -> None:
    store.open_challenge(n(20), n(21), "a", NOW)
    store.open_challenge(n(22), n(23), "a", NOW)
    writes = count_writes(store)
    with pytest.raises(errors.TooManyPending):
        store.open_challenge(n(24), n(25), "a", NOW)
    assert writes == []  # refused before any write
    store.open_challenge(n(26), n(27), "b", NOW)
    store.open_challenge(n(28), n(29), "c", NOW)
    # Full (4): a newcomer takes the place of the oldest challenge of the address holding the most.
    evicted: list[bytes] = []
    store.open_challenge(n(30), n(31), "d", NOW, on_evict=evicted.append)
    assert evicted == [n(21)] and store.pending_count("a") == 1 and store.pending_count() == 4
    # Its response is refused as such (not as a replay), and its nonce stays used.
    with pytest.raises(errors.TooManyPending):
        store.close_challenge(n(21), NOW + 1)
    assert store.origin(n(21), NOW + 1) is Origin.OWN
    # Everyone holds one now: an address that holds as many as anyone is refused, before any write ...
    writes.clear()
    with pytest.raises(errors.TooManyPending):
        store.open_challenge(n(32), n(33), "b", NOW)
    assert writes == [] and store.origin(n(32), NOW) is Origin.ABSENT
    # ... and a newcomer (holding none) takes the oldest place among those holding the most (a's n(23)).
    store.open_challenge(n(34), n(35), "e", NOW, on_evict=evicted.append)
    assert evicted == [n(21), n(23)] and store.pending_count("a") == 0
    store.close_challenge(n(27), NOW + 1)
    store.open_challenge(n(36), n(37), "a", NOW + 1)  # a freed slot is usable again, without evicting anyone
    assert evicted == [n(21), n(23)]


def test_a_full_table_never_evicts_an_address_that_holds_fewer_than_the_flood(store: NonceBook[Any]) -> None:
    """The fairness rule in numbers: while some address holds more than ``k``, an address holding
    ``k`` pending challenges keeps them, however many hellos come from the others."""
    store.open_challenge(n(1), n(2), "legit", NOW)
    evicted: list[bytes] = []
    for i in range(40):
        try:
            store.open_challenge(n(100 + 2 * i), n(101 + 2 * i), f"flood-{i % 2}", NOW, on_evict=evicted.append)
        except errors.TooManyPending:
            pass
    assert n(2) not in evicted and store.pending_count("legit") == 1
    assert store.pending_count() == LIMITS.max_pending_total


def test_cookies_are_required_from_the_threshold_on(tmp_path: Path) -> None:
    for kind in BACKENDS:
        s = make_store(kind, tmp_path / f"c-{kind}", HandshakeLimits(max_pending_total=8, max_pending_per_peer=8, cookie_threshold=3))
        for i in range(3):
            assert not s.cookie_required("a")
            s.open_challenge(n(10 + 2 * i), n(11 + 2 * i), "a", NOW)
        assert s.cookie_required("a")
        assert not s.cookie_required("b"), "an address holding none is admitted without a cookie"
        s.open_challenge(n(30), n(31), "b", NOW)
        assert s.cookie_required("a") and not s.cookie_required("b"), "b holds 1, less than its share (1 x 2 < 3)"
        s.open_challenge(n(32), n(33), "b", NOW)
        assert s.cookie_required("b"), "2 x 2 >= 3"
        for i in range(3):
            s.abandon_challenge(n(11 + 2 * i), NOW)
        s.abandon_challenge(n(31), NOW)
        assert not s.cookie_required("b"), "under the threshold again"
        s.close()
    # Threshold 0: cookies always, even from an address holding none.
    s = MemoryNonceStore(HandshakeLimits(cookie_threshold=0))
    assert s.cookie_required("a")
    # A threshold above the total bound means: from a full table on.
    s = MemoryNonceStore(HandshakeLimits(max_pending_total=2, max_pending_per_peer=2, cookie_threshold=256))
    s.open_challenge(n(1), n(2), "a", NOW)
    assert not s.cookie_required("a")
    s.open_challenge(n(3), n(4), "a", NOW)
    assert s.cookie_required("a")


def test_purge_forgets_expired_nonces_and_stale_challenges(store: NonceBook[Any]) -> None:
    for i in range(30):
        store.claim(n(100 + i), Origin.PEER, NOW)
    store.open_challenge(n(200), n(201), "a", NOW)
    later = NOW + LIMITS.retention_ms + 1
    assert store.purge(later) == 33  # 32 rows and one stale challenge
    assert store.pending_count() == 0 and len(store) == 0
    assert store.origin(n(100), later) is Origin.ABSENT


def test_purge_keeps_a_nonce_recorded_again_after_expiring(store: NonceBook[Any]) -> None:
    store.claim(n(1), Origin.PEER, NOW)
    again = NOW + LIMITS.retention_ms + 1
    store.claim(n(1), Origin.PEER, again)  # expired, not yet purged: recorded anew
    assert store.purge(again) == 1  # the old index entry only
    assert store.origin(n(1), again) is Origin.PEER and len(store) == 1


def test_full_table_refuses_until_entries_expire(store: NonceBook[Any]) -> None:
    for i in range(LIMITS.max_nonces - 1):
        store.claim(n(1000 + i), Origin.PEER, NOW)
    with pytest.raises(errors.TooManyPending):
        store.open_challenge(n(5000), n(5001), "a", NOW)  # needs two rows, one left
    store.claim(n(5002), Origin.PEER, NOW)
    with pytest.raises(errors.TooManyPending):
        store.claim(n(5000), Origin.PEER, NOW + 1)
    assert len(store) == LIMITS.max_nonces and store.pending_count() == 0
    # Expired rows make room without waiting for the next purge (unexpired ones never do).
    later = NOW + LIMITS.retention_ms + 1
    store.open_challenge(n(5000), n(5001), "a", later)
    assert len(store) == 2


def test_maintenance_schedule_and_backlog(store: NonceBook[Any]) -> None:
    """A busy responder records more nonces a second than one purge batch: while a batch comes back
    full, the next purge is due after BACKLOG_INTERVAL_MS, so the table cannot only grow."""
    for i in range(25):
        store.claim(n(i), Origin.PEER, NOW)
    later = NOW + LIMITS.retention_ms + 1
    assert store.maintenance_due(later)
    assert store.purge(later, limit=10) == 10
    assert store.maintenance_due(later + core_nonces.BACKLOG_INTERVAL_MS)  # backlog: due again soon
    # A durable store asks for a flush (the driver runs sync() on a thread); memory never does.
    assert store.maintain(later + core_nonces.BACKLOG_INTERVAL_MS) is store.rows.durable
    assert len(store) == 0
    assert not store.maintenance_due(later + 2 * core_nonces.BACKLOG_INTERVAL_MS)  # back to once a second
    assert store.maintenance_due(later + core_nonces.BACKLOG_INTERVAL_MS + core_nonces.PURGE_INTERVAL_MS)


@pytest.mark.parametrize("seed", range(6))
def test_both_backends_answer_every_sequence_alike(tmp_path: Path, seed: int) -> None:
    """Differential: the same random operations, with the clock moving, give the same results
    (values and error classes) on both backends."""
    rng = random.Random(seed)
    stores = [make_store(kind, tmp_path / f"auth-{kind}") for kind in BACKENDS]
    nonces = [n(i) for i in range(70)]  # more than max_nonces: the table fills up at times
    peers = ["a", "b", "c"]
    now = NOW
    try:
        for step in range(600):
            now += rng.choice((0, 0, 1, 7, 90, 400))
            op = rng.choice(("claim", "claim", "origin", "open", "open", "close", "abandon", "purge", "len", "pending"))
            args: tuple[Any, ...]
            if op == "claim":
                args = (rng.choice(nonces), rng.choice((Origin.PEER, Origin.OWN)), now)
            elif op == "origin":
                args = (rng.choice(nonces), now)
            elif op == "open":
                args = (rng.choice(nonces), rng.choice(nonces), rng.choice(peers), now, now - rng.choice((0, 5)))
            elif op in ("close", "abandon"):
                args = (rng.choice(nonces), now)
            elif op == "purge":
                args = (now, rng.choice((3, 2048)))
            elif op == "pending":
                args = (rng.choice((None, *peers)),)
            else:
                args = ()
            results = []
            for s in stores:
                call = {"len": s.__len__, "pending": s.pending_count, "open": s.open_challenge,
                        "close": s.close_challenge, "abandon": s.abandon_challenge}.get(op) or getattr(s, op)
                try:
                    results.append(("ok", call(*args)))
                except errors.DidnodeError as exc:
                    results.append(("error", type(exc).__name__))
            assert results[0] == results[1], f"step {step}: {op}{args}"
    finally:
        for s in stores:
            s.close()


# --------------------------------------------------------------------------
# LMDB only
# --------------------------------------------------------------------------


def test_lmdb_store_remembers_across_a_restart(tmp_path: Path) -> None:
    s = LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
    s.claim(n(1), Origin.PEER, NOW)
    s.open_challenge(n(2), n(3), "a", NOW)  # the process dies with this challenge pending
    s.open_challenge(n(4), n(5), "a", NOW)
    s.close_challenge(n(5), NOW + 1)
    s.close()
    later = NOW + LIMITS.timeout_ms + 1
    s2 = LmdbNonceStore(tmp_path / "auth", later, LIMITS)
    try:
        assert s2.not_before_ms == 0  # nothing was lost
        for nonce in (n(1), n(2), n(4)):
            with pytest.raises(errors.HandshakeReplay):
                s2.claim(nonce, Origin.PEER, later)
        # Challenge nonces, answered or pending at shutdown, stay used: they were recorded when issued.
        assert s2.pending_count() == 0
        for nonce in (n(3), n(5)):
            assert s2.origin(nonce, later) is Origin.OWN
            with pytest.raises(errors.HandshakeReflection):
                s2.claim(nonce, Origin.PEER, later)
        with pytest.raises(errors.HandshakeReplay):
            s2.close_challenge(n(3), later)  # a pending challenge does not survive its process
    finally:
        s2.close()


def test_opening_a_challenge_commits_one_transaction_and_closing_none(tmp_path: Path) -> None:
    """The same as test_transactions_per_operation, counted by LMDB itself."""
    s = LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
    try:
        before = s.rows.env.info()["last_txnid"]
        s.open_challenge(n(1), n(2), "a", NOW)
        assert s.rows.env.info()["last_txnid"] == before + 1
        s.close_challenge(n(2), NOW + 5)
        s.open_challenge(n(3), n(4), "a", NOW)
        s.abandon_challenge(n(4), NOW + 5)
        assert s.rows.env.info()["last_txnid"] == before + 2
    finally:
        s.close()


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
    assert other.origin(n(3), NOW + 5) is Origin.OWN  # the other process's challenge nonce, recorded when issued
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


def test_a_store_open_in_this_process_is_not_mistaken_for_a_damaged_one(tmp_path: Path) -> None:
    s = LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
    try:
        with pytest.raises(errors.Internal):
            LmdbNonceStore(tmp_path / "auth", NOW, LIMITS)
        assert not list(tmp_path.glob("auth.corrupt-*"))
    finally:
        s.close()


def _raw_env(path: Path) -> lmdb.Environment:
    return lmdb.open(str(path), max_dbs=8, map_size=1 << 20)


def test_a_new_store_records_its_own_schema_version_and_has_no_pending_table(tmp_path: Path) -> None:
    LmdbNonceStore(tmp_path / "auth", NOW, LIMITS).close()
    env = _raw_env(tmp_path / "auth")
    try:
        with env.begin() as txn:
            assert txn.get(auth_store.DB_LEGACY_PENDING) is None
            meta = env.open_db(auth_store.DB_META, txn=txn, create=False)
            assert txn.get(auth_store.META_SCHEMA, db=meta) == (4).to_bytes(8, "big") == auth_store.AUTH_SCHEMA_VERSION.to_bytes(8, "big")
    finally:
        env.close()


def _old_store(path: Path, version: int, pending: dict[bytes, int], used: dict[bytes, int]) -> None:
    """A store as didnode wrote it before the auth schema had its own version: the ledger's
    version number in ``meta``, and ``auth_pending`` (challenge nonce -> u64 deadline + peer)."""
    path.mkdir()
    env = _raw_env(path)
    try:
        with env.begin(write=True) as txn:
            meta = env.open_db(b"meta", txn=txn)
            nonces = env.open_db(b"auth_nonces", txn=txn)
            expiry = env.open_db(b"auth_expiry", txn=txn)
            legacy = env.open_db(b"auth_pending", txn=txn)
            txn.put(b"schema_version", version.to_bytes(8, "big"), db=meta)
            for k, deadline in pending.items():
                txn.put(k, deadline.to_bytes(8, "big") + b"ipv4:10.0.0.1", db=legacy)
            for k, expires in used.items():
                txn.put(k, expires.to_bytes(8, "big") + bytes([Origin.PEER]), db=nonces)
                txn.put(expires.to_bytes(8, "big") + k, b"", db=expiry)
    finally:
        env.close()


def test_an_older_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "auth"
    _old_store(path, 3, pending={n(1): NOW - 5, n(2): NOW + 500}, used={n(3): NOW + 60_000})
    s = LmdbNonceStore(path, NOW, LIMITS)
    try:
        assert s.not_before_ms == 0 and not list(tmp_path.glob("auth.corrupt-*"))  # nothing lost
        with pytest.raises(errors.HandshakeReplay):
            s.claim(n(3), Origin.PEER, NOW)  # its used nonces are kept
        # Its pending challenges, answered or not, can never be answered now: used OWN nonces.
        for nonce in (n(1), n(2)):
            assert s.origin(nonce, NOW + LIMITS.retention_ms - 1) is Origin.OWN
            with pytest.raises(errors.HandshakeReflection):
                s.claim(nonce, Origin.PEER, NOW)
        assert s.pending_count() == 0
        s.purge(NOW + LIMITS.retention_ms)  # they expire like any other record
        assert s.origin(n(1), NOW + LIMITS.retention_ms) is Origin.ABSENT
    finally:
        s.close()
    env = _raw_env(path)
    try:
        with env.begin() as txn:
            assert txn.get(b"auth_pending") is None  # the table is gone
            meta = env.open_db(b"meta", txn=txn, create=False)
            assert txn.get(b"schema_version", db=meta) == auth_store.AUTH_SCHEMA_VERSION.to_bytes(8, "big")
    finally:
        env.close()
    LmdbNonceStore(path, NOW + 1, LIMITS).close()  # and opens again as a current store


def test_a_store_of_an_unknown_schema_version_is_moved_aside_and_recreated(tmp_path: Path) -> None:
    """What a store that does not open gets (a newer didnode's store after a downgrade)."""
    path = tmp_path / "auth"
    _old_store(path, 99, pending={}, used={n(3): NOW + 60_000})
    s = LmdbNonceStore(path, NOW, LIMITS)
    try:
        assert s.not_before_ms == NOW and list(tmp_path.glob("auth.corrupt-*"))
        assert s.origin(n(3), NOW) is Origin.ABSENT
        with pytest.raises(errors.HandshakeStale):
            s.open_challenge(n(1), n(2), "a", NOW + 10, hello_time_ms=NOW - 1)
    finally:
        s.close()


def test_the_map_grows_when_full(tmp_path: Path) -> None:
    limits = HandshakeLimits(max_nonces=100_000)
    s = LmdbNonceStore(tmp_path / "auth", NOW, limits, map_size=64 << 10)
    try:
        for i in range(5000):
            s.claim(n(i), Origin.PEER, NOW)
        assert len(s) == 5000 and s.rows.env.info()["map_size"] > 64 << 10
        with pytest.raises(errors.HandshakeReplay):
            s.claim(n(0), Origin.PEER, NOW)
    finally:
        s.close()
