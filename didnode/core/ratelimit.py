"""Token buckets, one per peer: pure code, the caller passes the time (docs/security.md, "Limits").

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second;
a request of cost ``c`` is admitted when the bucket holds at least ``c`` tokens
(which it then loses), else it is told how many milliseconds to wait until it
would be. Arithmetic is in integers (milli-tokens and milliseconds), so what a
bucket admits is exact: over any span of ``t`` ms from its creation it admits
at most ``burst + rate * t / 1000`` tokens.

:class:`PeerBuckets` keeps one bucket per peer key (the transport decides what
a key is: an IPv4 address, an IPv6 /64). A bucket that has refilled to
``burst`` is the same as a fresh one, so it can be forgotten; the map keeps at
most ``max_peers`` buckets: when it is full it forgets the full ones, then the
least recently used (which only ever lets such a peer start again from a full
bucket: a leniency, never a wrong rejection).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MILLI = 1000


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` tokens per second, at most ``burst`` at once; ``per_second`` 0 means unlimited."""

    per_second: int
    burst: int

    def __post_init__(self) -> None:
        if self.per_second < 0 or self.burst < 0:
            raise ValueError(f"a rate and its burst are non-negative, not {self.per_second}/s, burst {self.burst}")
        if self.per_second and self.burst < 1:
            raise ValueError("a limited rate needs a burst of at least 1")

    @property
    def unlimited(self) -> bool:
        return self.per_second == 0


class TokenBucket:
    """One bucket; starts full at ``now_ms``."""

    __slots__ = ("rate", "_milli", "_stamp")

    def __init__(self, rate: Rate, now_ms: int) -> None:
        self.rate = rate
        self._milli = rate.burst * MILLI
        self._stamp = now_ms

    def _refill(self, now_ms: int) -> None:
        # A clock that goes backwards mints nothing (the stamp stays where it was).
        if now_ms > self._stamp:
            cap = self.rate.burst * MILLI
            self._milli = min(cap, self._milli + (now_ms - self._stamp) * self.rate.per_second)
            self._stamp = now_ms

    def tokens(self, now_ms: int) -> float:
        """Tokens held at ``now_ms`` (for tests and logs)."""
        self._refill(now_ms)
        return self._milli / MILLI

    def full(self, now_ms: int) -> bool:
        self._refill(now_ms)
        return self._milli >= self.rate.burst * MILLI

    def take(self, cost: int, now_ms: int) -> int:
        """Take ``cost`` tokens: 0 when admitted, else the milliseconds until they would be (nothing taken).

        A cost above ``burst`` is charged as ``burst`` (one request may empty a
        full bucket, never more), so every request is admitted eventually.
        """
        if self.rate.unlimited or cost <= 0:
            return 0
        self._refill(now_ms)
        need = min(cost, self.rate.burst) * MILLI
        if self._milli >= need:
            self._milli -= need
            return 0
        missing = need - self._milli
        return max(1, -(-missing // self.rate.per_second))  # ceil, in ms


    def charge(self, cost: int, now_ms: int) -> None:
        """Take ``cost`` tokens whatever the bucket holds, down to a debt of at most one ``burst``.

        For work found to be worthless after it was admitted (an operation that
        does not verify): the peer pays for it with the tokens of later
        requests. The debt bound means a peer is never shut out for longer than
        ``2 * burst / rate`` seconds by charges alone.
        """
        if self.rate.unlimited or cost <= 0:
            return
        self._refill(now_ms)
        self._milli = max(-self.rate.burst * MILLI, self._milli - cost * MILLI)


    def debt_ms(self) -> int:
        """Milliseconds until the bucket holds no debt, as of its last refill (0 when it holds none)."""
        if self._milli >= 0:
            return 0
        return max(1, -(self._milli // self.rate.per_second))


class PeerBuckets:
    """One :class:`TokenBucket` per peer key, at most ``max_peers`` of them."""

    def __init__(self, rate: Rate, max_peers: int = 100_000) -> None:
        if max_peers < 1:
            raise ValueError("max_peers must be at least 1")
        self.rate = rate
        self.max_peers = max_peers
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, peer: str, cost: int, now_ms: int) -> int:
        """:meth:`TokenBucket.take` on ``peer``'s bucket (created full on first use)."""
        if self.rate.unlimited:
            return 0
        bucket = self._buckets.get(peer)
        if bucket is None:
            if len(self._buckets) >= self.max_peers:
                self._evict(now_ms)
            bucket = self._buckets[peer] = TokenBucket(self.rate, now_ms)
        else:
            self._buckets.move_to_end(peer)
        return bucket.take(cost, now_ms)

    def charge(self, peer: str, cost: int, now_ms: int) -> int:
        """:meth:`TokenBucket.charge` on ``peer``'s bucket (created full on first use); then the milliseconds
        until it is out of debt (0 when it is not in debt)."""
        if self.rate.unlimited:
            return 0
        self.take(peer, 0, now_ms)  # creates or refreshes the bucket (a zero cost takes nothing)
        bucket = self._buckets[peer]
        bucket.charge(cost, now_ms)
        return bucket.debt_ms()

    def in_debt(self, peer: str, now_ms: int) -> bool:
        """Whether ``peer``'s bucket holds a debt (see :meth:`TokenBucket.charge`) at ``now_ms``."""
        bucket = self._buckets.get(peer)
        return bucket is not None and bucket.tokens(now_ms) < 0

    def _evict(self, now_ms: int) -> None:
        """Make room: forget every full bucket, then the least recently used ones down to 7/8 of ``max_peers``.

        Sweeping costs one pass over the map, and is followed by at least
        ``max_peers // 8`` insertions before the next one (amortised O(1)).
        """
        for key in [k for k, b in self._buckets.items() if b.full(now_ms)]:
            del self._buckets[key]
        keep = self.max_peers - max(1, self.max_peers // 8)
        while len(self._buckets) > keep:
            self._buckets.popitem(last=False)
