"""Stateless cookies (didnode.core.handshake.cookies) and the machines' steps around them, in memory.

A cookie fits one hello (H1) from one address for 10 s; a responder under load answers a hello
without one with a Retry and keeps nothing; the initiator sends the same hello (same transcript)
with the cookie; a responder not under load ignores cookies (an initiator that never sends one works).
"""

from __future__ import annotations

import dataclasses

import pytest

from didnode import errors
from didnode.auth.responder import peer_host
from didnode.core.handshake import CookieJar, Fresh, HandshakeLimits, Initiator, MemoryNonceStore, Responder, Retry
from didnode.core.handshake import transcript as tr
from didnode.core.handshake.cookies import COOKIE_BYTES, LIFETIME_MS, ROTATE_MS, BlindHellos
from didnode.core.handshake.machine import MAX_RETRIES
from tests.auth.world import NET, NOW, World, det_random

PEER = "ipv4:203.0.113.9"
H1 = b"h" * 32


def test_a_cookie_fits_one_hello_from_one_address_for_its_lifetime() -> None:
    jar = CookieJar(det_random("jar"))
    c = jar.make(PEER, H1, NOW)
    assert len(c) == COOKIE_BYTES
    assert jar.check(c, PEER, H1, NOW) and jar.check(c, PEER, H1, NOW + LIFETIME_MS)
    assert not jar.check(c, PEER, H1, NOW + LIFETIME_MS + 1), "expired"
    assert not jar.check(c, PEER, H1, NOW - 1), "made in the future of the clock"
    assert not jar.check(c, "ipv4:203.0.113.10", H1, NOW), "another address"
    assert not jar.check(c, PEER, b"g" * 32, NOW), "another hello"
    assert not CookieJar(det_random("other")).check(c, PEER, H1, NOW), "another responder's secret"
    for k in range(COOKIE_BYTES):
        bad = bytearray(c)
        bad[k] ^= 1
        assert not jar.check(bytes(bad), PEER, H1, NOW), k
    assert not jar.check(c[:-1], PEER, H1, NOW) and not jar.check(b"", PEER, H1, NOW)


def test_secrets_rotate_and_only_the_current_and_previous_are_kept() -> None:
    drawn: list[int] = []
    rand = det_random("rot")

    def counting(n: int) -> bytes:
        drawn.append(n)
        return rand(n)

    jar = CookieJar(counting)
    start = (NOW // ROTATE_MS) * ROTATE_MS
    late = jar.make(PEER, H1, start + ROTATE_MS - 1)  # the last moment of a period
    assert jar.check(late, PEER, H1, start + ROTATE_MS + 5), "checked with the secret that made it, across the rotation"
    jar.make(PEER, H1, start + ROTATE_MS + 5)
    jar.make(PEER, H1, start + 3 * ROTATE_MS)
    assert len(drawn) == 3 and len(jar._secrets) <= 2
    assert not jar.check(late, PEER, H1, start + ROTATE_MS + 6), "its secret is forgotten (and it expired anyway)"
    with pytest.raises(ValueError):
        CookieJar(rand, rotate_ms=1000, lifetime_ms=2000)


def _under_load(w: World, limits: HandshakeLimits, peers: tuple[str, ...] = (PEER,)) -> tuple[MemoryNonceStore, list[Responder]]:
    """A responder store holding ``cookie_threshold`` pending challenges, opened from ``peers`` in turn."""
    store = MemoryNonceStore(limits)
    a, b = w.identity(), w.identity()
    held = []
    for k in range(limits.cookie_threshold):
        i = Initiator(w.local(a), NET, Fresh.draw(det_random(f"load{k}i")), MemoryNonceStore())
        r = Responder(w.local(b), NET, Fresh.draw(det_random(f"load{k}r")), store, peer=peers[k % len(peers)])
        r.check_hello(i.hello(NOW), NOW)
        assert r.admit(CookieJar(det_random("x")), NOW) is None
        r.challenge(w.state(a.did), NOW)
        held.append(r)
    return store, held


def test_under_load_a_hello_without_a_cookie_gets_a_retry_and_leaves_nothing_behind() -> None:
    w = World()
    a, b = w.identity(), w.identity()
    limits = HandshakeLimits(cookie_threshold=3)
    store, _ = _under_load(w, limits)
    jar = CookieJar(det_random("jar"))
    i = Initiator(w.local(a), NET, Fresh.draw(det_random("i")), MemoryNonceStore())
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), store, peer=PEER)
    h = i.hello(NOW)
    r.check_hello(h, NOW)
    rows = len(store)
    retry = r.admit(jar, NOW)
    assert isinstance(retry, Retry) and len(store) == rows and store.pending_count() == 3
    with pytest.raises(errors.HandshakeOutOfOrder):
        r.challenge(w.state(a.did), NOW)  # nothing more happens on this call
    # The same hello again, with the cookie: same transcript hash, admitted on a new call.
    h2 = i.retry(retry, NOW + 5)
    assert h2 == dataclasses.replace(h, cookie=retry.cookie) and tr.hello_hash(h2) == tr.hello_hash(h)
    r2 = Responder(w.local(b), NET, Fresh.draw(det_random("r2")), store, peer=PEER)
    r2.check_hello(h2, NOW + 5)
    assert r2.admit(jar, NOW + 5) is None
    r2.challenge(w.state(a.did), NOW + 5)
    assert store.pending_count() == 4
    # The (hello, cookie) pair cannot open a second challenge: its nonce is used.
    r3 = Responder(w.local(b), NET, Fresh.draw(det_random("r3")), store, peer=PEER)
    r3.check_hello(h2, NOW + 6)
    assert r3.admit(jar, NOW + 6) is None
    with pytest.raises(errors.HandshakeReplay):
        r3.challenge(w.state(a.did), NOW + 6)


def test_a_cookie_from_another_address_or_for_another_hello_gets_a_new_retry() -> None:
    w = World()
    a, b = w.identity(), w.identity()
    store, _ = _under_load(w, HandshakeLimits(cookie_threshold=2), peers=(PEER, "ipv4:198.51.100.1"))
    jar = CookieJar(det_random("jar"))
    i = Initiator(w.local(a), NET, Fresh.draw(det_random("i")), MemoryNonceStore())
    h = i.hello(NOW)
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), store, peer=PEER)
    r.check_hello(h, NOW)
    retry = r.admit(jar, NOW)
    assert retry is not None
    elsewhere = Responder(w.local(b), NET, Fresh.draw(det_random("r2")), store, peer="ipv4:198.51.100.1")
    elsewhere.check_hello(i.retry(retry, NOW), NOW)
    assert isinstance(elsewhere.admit(jar, NOW), Retry)
    other = Initiator(w.local(a), NET, Fresh.draw(det_random("i2")), MemoryNonceStore())
    other.hello(NOW)
    r3 = Responder(w.local(b), NET, Fresh.draw(det_random("r3")), store, peer=PEER)
    r3.check_hello(other.retry(retry, NOW), NOW)  # another hello, someone else's cookie
    assert isinstance(r3.admit(jar, NOW), Retry)


def test_under_load_an_address_below_its_share_is_admitted_without_a_cookie() -> None:
    """Cookies are asked of the addresses that hold their share of the load, not of one that holds less."""
    w = World()
    a, b = w.identity(), w.identity()
    flood = tuple(f"ipv4:10.9.9.{k}" for k in range(4))
    store, _ = _under_load(w, HandshakeLimits(cookie_threshold=8), peers=flood)  # 2 each: 2 x 4 >= 8
    jar = CookieJar(det_random("jar"))
    for k, peer in enumerate((flood[0], flood[3])):
        r = Responder(w.local(b), NET, Fresh.draw(det_random(f"f{k}")), store, peer=peer)
        r.check_hello(Initiator(w.local(a), NET, Fresh.draw(det_random(f"fi{k}")), MemoryNonceStore()).hello(NOW), NOW)
        assert isinstance(r.admit(jar, NOW), Retry), peer
    # A newcomer holds none: admitted at once, and so is its second handshake (1 x 5 < 8), not its third.
    for k in range(3):
        r = Responder(w.local(b), NET, Fresh.draw(det_random(f"n{k}")), store, peer=PEER)
        r.check_hello(Initiator(w.local(a), NET, Fresh.draw(det_random(f"ni{k}")), MemoryNonceStore()).hello(NOW), NOW)
        retry = r.admit(jar, NOW)
        if k < 2:
            assert retry is None, k
            r.challenge(w.state(a.did), NOW)
        else:
            assert isinstance(retry, Retry) and store.pending_count(PEER) == 2  # 2 x 5 >= 8


def test_not_under_load_cookies_are_not_needed_and_ignored() -> None:
    w = World()
    a, b = w.identity(), w.identity()
    store = MemoryNonceStore()
    i = Initiator(w.local(a), NET, Fresh.draw(det_random("i")), MemoryNonceStore())
    h = dataclasses.replace(i.hello(NOW), cookie=b"\x00" * 24)  # a stale or garbage cookie
    r = Responder(w.local(b), NET, Fresh.draw(det_random("r")), store, peer=PEER)
    r.check_hello(h, NOW)
    assert r.admit(CookieJar(det_random("jar")), NOW) is None


def test_an_initiator_follows_at_most_two_retries() -> None:
    w = World()
    a = w.identity()
    i = Initiator(w.local(a), NET, Fresh.draw(det_random("i")), MemoryNonceStore())
    i.hello(NOW)
    for k in range(MAX_RETRIES):
        i.retry(Retry(bytes([k]) * 24), NOW)
    with pytest.raises(errors.TooManyPending):
        i.retry(Retry(b"z" * 24), NOW)
    j = Initiator(w.local(a), NET, Fresh.draw(det_random("j")), MemoryNonceStore())
    j.hello(NOW)
    with pytest.raises(errors.HandshakeMalformed):
        j.retry(Retry(b""), NOW)
    with pytest.raises(errors.HandshakeOutOfOrder):
        Initiator(w.local(a), NET, Fresh.draw(det_random("k")), MemoryNonceStore()).retry(Retry(b"c" * 24), NOW)


@pytest.mark.parametrize(
    "peer,host",
    [
        ("ipv4:127.0.0.1:5000", "ipv4:127.0.0.1"),
        ("ipv6:[2001:db8:0:1::7]:5000", "ipv6:2001:db8:0:1::/64"),
        ("ipv6:[2001:db8:0:1:ffff::9]:6000", "ipv6:2001:db8:0:1::/64"),
        ("ipv6:[::ffff:10.1.2.3]:77", "ipv4:10.1.2.3"),
        ("unix:", "unix:"),
    ],
)
def test_bounds_and_cookies_count_per_host_and_per_ipv6_64(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_blind_hellos_score_cookies_sent_and_not_brought_back_per_address() -> None:
    blind = BlindHellos(threshold=3, half_life_ms=1000, max_addresses=4)
    # An initiator brings each cookie back: its score stays about 0, it is never over the threshold.
    for k in range(20):
        assert not blind.sent(PEER, NOW + k)
        blind.returned(PEER, NOW + k)
    assert blind.score(PEER, NOW + 20) < 1
    # A blind flooder is over the threshold from its fourth unreturned cookie on.
    flooder = "ipv4:192.0.2.1"
    assert [blind.sent(flooder, NOW) for _ in range(5)] == [False, False, False, True, True]
    # The score halves every half-life: a flood that stopped is forgotten.
    assert blind.score(flooder, NOW + 1000) == pytest.approx(2.5)
    assert not blind.sent(flooder, NOW + 3000)
    # Bounded: at most max_addresses are tracked, the least recently seen give their place.
    for k in range(10):
        blind.sent(f"ipv4:198.51.100.{k}", NOW + 3000)
    assert len(blind) <= 4 and blind.score("ipv4:198.51.100.9", NOW + 3000) == 1
    with pytest.raises(ValueError):
        BlindHellos(threshold=0)
