"""How fast a big DID page renders in the test browser: a manufacturer with 1,000 operations in its
history and a fleet of 10,000 devices. Measured and printed, not asserted (the machine is shared).

The ledger is built quickly: every operation is made and signed here, the manufacturer's chain of
updates computed offline (``prev`` is the SHA-256 of the previous payload), and all of it streamed
with ``submit_batch``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Iterator

import pytest

from didnode.client import Client
from didnode.core import builder
from didnode.errors import DidnodeError
from tests.explorer.conftest import screenshot, wait_verdict
from tests.factory import Identity, new_create
from tests.http.conftest import HttpNode, start_http_node

HISTORY = 1_000
FLEET = 10_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpNode, Identity]]:
    node = start_http_node(tmp_path_factory.mktemp("explorer-perf") / "node")
    try:
        t0 = time.perf_counter()
        maker, create = new_create()
        ops = [create]
        last = hashlib.sha256(create.payload).hexdigest()
        for seq in range(1, HISTORY):
            svc = [builder.service("api", "LinkedDomains", f"https://maker.example/v{seq}")]
            op = builder.sign(builder.update("local", maker.did, seq, last, svc, None), [(maker.kid, maker.key)])
            last = hashlib.sha256(op.payload).hexdigest()
            ops.append(op)
        ops += [new_create(controllers=[maker], with_ka=False)[1] for _ in range(FLEET)]
        built = time.perf_counter()
        with Client(node.address) as c:
            outcomes = list(c.submit_batch(ops, chunk_size=512))
        errors = [o for o in outcomes if isinstance(o, DidnodeError)]
        assert not errors, errors[:3]
        print(f"\nledger: {len(ops)} operations made and signed in {built - t0:.1f} s, submitted in {time.perf_counter() - built:.1f} s")
        yield node, maker
    finally:
        node.node.stop()


def test_a_big_did_page_renders_quickly(page: Any, big: tuple[HttpNode, Identity]) -> None:
    node, maker = big
    timings = []
    for _ in range(3):  # the first load also warms the node's caches and the browser's module cache
        page.goto(f"{node.base}/did/{maker.did}")
        page.wait_for_selector("main[aria-busy='false']")
        verdict, text = wait_verdict(page)
        assert verdict == "true", text
        ready = page.evaluate("performance.getEntriesByName('explorer-ready')[0].startTime")
        verified = page.evaluate("performance.getEntriesByName('explorer-verified')[0].startTime")
        timings.append((ready, verified))
    assert f"Controls {FLEET} DIDs" in page.locator("#controlled").inner_text()
    assert f"of {HISTORY} operations" in page.locator("#history").inner_text()
    print(f"\nDID page with {HISTORY} history entries and a fleet of {FLEET}, ms from navigation start (target < 1000 ms): "
          f"rendered (document, keys, first pages of history and fleet, counts) {', '.join(f'{r:.0f}' for r, _ in timings)}; "
          f"state verified (note signature, state proof, record) {', '.join(f'{v:.0f}' for _, v in timings)}")
    screenshot(page, "did-big-fleet")
