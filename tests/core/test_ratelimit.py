"""Token buckets (didnode.core.ratelimit): exact admission, exact retry hints, a bounded peer map."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from didnode.core.ratelimit import PeerBuckets, Rate, TokenBucket


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    b = TokenBucket(Rate(10, 5), now_ms=0)
    assert [b.take(1, 0) for _ in range(5)] == [0] * 5
    assert b.take(1, 0) == 100  # one token every 100 ms
    assert b.take(1, 99) == 1
    assert b.take(1, 100) == 0
    assert b.take(3, 100) == 300
    assert b.tokens(10_000) == 5  # never more than the burst


def test_a_cost_above_the_burst_empties_a_full_bucket_and_no_more() -> None:
    b = TokenBucket(Rate(1, 4), now_ms=0)
    assert b.take(100, 0) == 0
    assert b.take(100, 0) == 4000


def test_unlimited_and_free_requests_always_pass() -> None:
    b = TokenBucket(Rate(0, 0), now_ms=0)
    assert all(b.take(10**9, 0) == 0 for _ in range(10))
    limited = TokenBucket(Rate(1, 1), now_ms=0)
    assert limited.take(1, 0) == 0 and limited.take(0, 0) == 0


def test_a_clock_that_goes_back_mints_nothing() -> None:
    b = TokenBucket(Rate(1000, 10), now_ms=1_000_000)
    assert b.take(10, 1_000_000) == 0
    assert b.take(1, 0) > 0
    assert b.take(1, 999_999) > 0
    assert b.take(1, 1_000_001) == 0


@pytest.mark.parametrize("per_second, burst", [(5, 0), (-1, 1), (1, -1)])
def test_invalid_rates_are_refused(per_second: int, burst: int) -> None:
    with pytest.raises(ValueError):
        Rate(per_second, burst)


steps = st.lists(st.tuples(st.integers(0, 5_000), st.integers(0, 40)), min_size=1, max_size=200)


@settings(max_examples=300, deadline=None)
@given(per_second=st.integers(1, 5_000), burst=st.integers(1, 100), steps=steps)
def test_never_admits_more_than_burst_plus_rate_times_time(per_second: int, burst: int, steps: list[tuple[int, int]]) -> None:
    """Over any run from creation, the admitted cost is at most burst + rate * elapsed."""
    b = TokenBucket(Rate(per_second, burst), now_ms=0)
    now = admitted = 0
    for dt, cost in steps:
        now += dt
        if b.take(cost, now) == 0:
            admitted += min(cost, burst)
        assert admitted * 1000 <= burst * 1000 + per_second * now


@settings(max_examples=300, deadline=None)
@given(per_second=st.integers(1, 5_000), burst=st.integers(1, 100), steps=steps, cost=st.integers(1, 100))
def test_the_retry_hint_is_exact(per_second: int, burst: int, steps: list[tuple[int, int]], cost: int) -> None:
    """A refused request is admitted after exactly its hint (not a millisecond earlier, unless rounding to 1 ms)."""
    b = TokenBucket(Rate(per_second, burst), now_ms=0)
    now = 0
    for dt, c in steps:
        now += dt
        b.take(c, now)
    wait = b.take(cost, now)
    if wait == 0:
        return
    early = TokenBucket(Rate(per_second, burst), now_ms=0)
    early._milli, early._stamp = b._milli, b._stamp  # the same state, probed without disturbing b
    assert early.take(cost, now + wait - 1) > 0 or wait == 1
    assert b.take(cost, now + wait) == 0


@settings(max_examples=100, deadline=None)
@given(max_peers=st.integers(1, 50), peers=st.lists(st.integers(0, 200), min_size=1, max_size=400))
def test_the_peer_map_stays_bounded(max_peers: int, peers: list[int]) -> None:
    buckets = PeerBuckets(Rate(1, 3), max_peers=max_peers)
    for i, p in enumerate(peers):
        buckets.take(f"ipv4:10.0.0.{p}", 1, now_ms=i)
        assert len(buckets) <= max_peers


def test_peers_have_their_own_buckets_and_a_forgotten_one_restarts_full() -> None:
    buckets = PeerBuckets(Rate(1, 2), max_peers=2)
    assert buckets.take("a", 2, 0) == 0 and buckets.take("a", 1, 0) == 1000
    assert buckets.take("b", 2, 0) == 0
    # A third peer evicts the least recently used one (a is not full): a starts again full.
    assert buckets.take("c", 1, 0) == 0
    assert len(buckets) <= 2
    assert buckets.take("a", 2, 0) == 0


def test_full_buckets_are_forgotten_first() -> None:
    buckets = PeerBuckets(Rate(1000, 1), max_peers=8)
    for i in range(8):
        buckets.take(f"p{i}", 1, 0)
    # Everyone refilled by t=10: all full, all forgotten when a ninth peer comes.
    assert buckets.take("p8", 1, 10) == 0
    assert len(buckets) == 1


def test_a_charge_takes_tokens_into_a_bounded_debt() -> None:
    bucket = TokenBucket(Rate(10, 100), 0)
    bucket.charge(60, 0)
    assert bucket.tokens(0) == 40 and bucket.take(40, 0) == 0
    bucket.charge(1_000, 0)  # the debt stops at one burst
    assert bucket.tokens(0) == -100
    assert bucket.take(1, 0) == 10_100  # (100 + 1) tokens at 10/s
    assert bucket.take(1, 10_100) == 0


def test_peer_charges_fall_on_that_peer_only() -> None:
    peers = PeerBuckets(Rate(1, 10))
    peers.charge("a", 10, 0)
    assert peers.take("a", 1, 0) > 0 and peers.take("b", 1, 0) == 0
    PeerBuckets(Rate(0, 0)).charge("a", 10, 0)  # unlimited: nothing to charge


def test_a_charge_says_how_long_until_the_peer_is_out_of_debt() -> None:
    buckets = PeerBuckets(Rate(10, 100))
    assert buckets.charge("p", 50, 0) == 0  # 50 of 100 left: no debt
    assert buckets.charge("p", 80, 0) == 3000  # 30 tokens owed at 10/s
    assert buckets.charge("p", 80, 1000) == 10_000  # 30 - 10 + 80 = 100 owed (the bound: one burst)
    assert PeerBuckets(Rate(0, 0)).charge("p", 80, 0) == 0  # unlimited: never in debt
