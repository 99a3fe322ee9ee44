"""The explorer's DID page of a device with a data stream (issue #19): the stream and, when the device
equivocated, the evidence this node kept, shown as text."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from didnode.client import Client
from didnode.core.data.heads import ZERO_HASH
from didnode.errors import Equivocation
from tests.core.data.receipt_world import Device, anchor, create
from tests.explorer.conftest import screenshot, wait_verdict
from tests.http.conftest import HttpNode, start_http_node


@pytest.fixture(scope="module")
def device_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpNode, Device, int]]:
    node = start_http_node(tmp_path_factory.mktemp("explorer-data") / "node")
    try:
        with Client(node.address) as c:
            gateway = create(c, "local")
            device = Device(create(c, "local"), "local")
            at = anchor(c, gateway, [device.segment(4).signed], "local")
            anchor(c, gateway, [device.segment(3).signed], "local")
            device.next_seq, device.last = 0, ZERO_HASH  # a second head over 0..3: equivocation
            with pytest.raises(Equivocation):
                anchor(c, gateway, [device.segment(4).signed], "local")
        yield node, device, at
    finally:
        node.node.stop()


def test_a_device_page_shows_its_stream_and_the_equivocation_evidence(page: Any, device_node: tuple[HttpNode, Device, int]) -> None:
    node, device, at = device_node
    page.goto(f"{node.base}/did/{device.did}")
    page.wait_for_selector("main[aria-busy='false']")
    assert wait_verdict(page)[0] == "true"
    page.wait_for_selector("#streams")
    text = page.locator("#streams").inner_text()
    assert "temp" in text and "Equivocation evidence" in text
    rows = page.locator("#streams table").nth(0).locator("tbody tr")
    assert rows.count() == 1 and "7" in rows.first.inner_text()  # next sequence number 7
    evidence = page.locator("#streams table").nth(1).locator("tbody tr")
    assert evidence.count() == 1 and str(at) in evidence.first.inner_text()
    screenshot(page, "did-device-stream-evidence")
