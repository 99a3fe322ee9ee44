"""``didctl did history`` reads the node's history pages: all of them, or --limit N after --after SEQ."""

from __future__ import annotations

import pytest

import cli.didctl_did
from didnode.client import Client, Receipt
from tests.cli.conftest import Didctl
from tests.factory import new_create
from tests.transport.test_history_pages import _chain


def test_history_pages_through_everything_and_limit_after_continue(ctl: Didctl, monkeypatch: pytest.MonkeyPatch) -> None:
    ident, create = new_create()
    with Client(ctl.node.address) as c:
        receipts = list(c.submit_batch([create, *_chain(ident, create, 6)]))
    assert all(isinstance(r, Receipt) for r in receipts)
    pages: list[tuple[int | None, int]] = []
    real = Client.history_page

    def counting(self: Client, did: str, after_seq: int | None = None, page_size: int = 256):  # type: ignore[no-untyped-def]
        pages.append((after_seq, page_size))
        return real(self, did, after_seq, page_size)

    monkeypatch.setattr(cli.didctl_did, "HISTORY_PAGE", 2)
    monkeypatch.setattr(Client, "history_page", counting)

    whole = ctl.json("did", "history", ident.did)
    assert [e["seq"] for e in whole["entries"]] == list(range(7)) and whole["nextAfter"] is None
    assert [e["position"] for e in whole["entries"]] == [r.position for r in receipts]  # type: ignore[union-attr]
    assert pages == [(None, 2), (1, 2), (3, 2), (5, 2)]

    first = ctl.json("did", "history", ident.did, "--limit", "3")
    assert [e["seq"] for e in first["entries"]] == [0, 1, 2] and first["nextAfter"] == 2
    more = ctl.json("did", "history", ident.did, "--after", str(first["nextAfter"]), "--limit", "3")
    assert [e["seq"] for e in more["entries"]] == [3, 4, 5] and more["nextAfter"] == 5
    last = ctl.json("did", "history", ident.did, "--after", "5")
    assert [e["seq"] for e in last["entries"]] == [6] and last["nextAfter"] is None

    text = ctl.invoke("did", "history", ident.did, "--limit", "3").stdout.splitlines()
    assert len(text) == 1 + 3 + 1 and text[-1] == f"more: didctl did history {ident.did} --after 2"
    assert not ctl.invoke("did", "history", ident.did, "--after", "5").stdout.splitlines()[-1].startswith("more:")
