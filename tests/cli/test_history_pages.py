"""``didctl did history``: --limit N after --after SEQ over the verified history (all of it read and
proven), and with --insecure-no-verify over only the node's pages needed."""

from __future__ import annotations

from typing import Any

import pytest

import cli.didctl_did
from didnode.client import Client, Receipt
from tests.cli.conftest import Didctl
from tests.factory import new_create
from tests.transport.test_history_pages import _chain


def test_history_pages_through_everything_and_limit_after_continue(ctl: Didctl, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unverified (--insecure-no-verify): only the pages needed are read."""
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

    ctl = _Insecure(ctl)
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


class _Insecure:
    """A :class:`Didctl` whose every command runs with --insecure-no-verify."""

    def __init__(self, ctl: Didctl) -> None:
        self.ctl = ctl

    def json(self, *args: str) -> Any:
        return self.ctl.json("--insecure-no-verify", *args)

    def invoke(self, *args: str) -> Any:
        return self.ctl.invoke("--insecure-no-verify", *args)


def test_verified_history_reads_every_page_then_limit_and_after_pick(ctl: Didctl, monkeypatch: pytest.MonkeyPatch) -> None:
    ident, create = new_create()
    with Client(ctl.node.address) as c:
        receipts = list(c.submit_batch([create, *_chain(ident, create, 6)]))
    assert all(isinstance(r, Receipt) for r in receipts)
    sizes: list[int | None] = []
    real = Client.history_page

    def counting(self: Client, did: str, after_seq: int | None = None, page_size: int = 256, prove_at_size: int | None = None):  # type: ignore[no-untyped-def]
        sizes.append(prove_at_size)
        return real(self, did, after_seq, page_size, prove_at_size)

    monkeypatch.setattr(Client, "history_page", counting)
    whole = ctl.json("did", "history", ident.did)
    assert [e["seq"] for e in whole["entries"]] == list(range(7)) and whole["nextAfter"] is None
    assert sizes and all(s is not None and s > receipts[-1].position for s in sizes)  # type: ignore[union-attr]
    first = ctl.json("did", "history", ident.did, "--limit", "3")
    assert [e["seq"] for e in first["entries"]] == [0, 1, 2] and first["nextAfter"] == 2
    more = ctl.json("did", "history", ident.did, "--after", "2", "--limit", "3")
    assert [e["seq"] for e in more["entries"]] == [3, 4, 5] and more["nextAfter"] == 5
    last = ctl.json("did", "history", ident.did, "--after", "5")
    assert [e["seq"] for e in last["entries"]] == [6] and last["nextAfter"] is None
    text = ctl.invoke("did", "history", ident.did, "--limit", "3").stdout.splitlines()
    assert text[-1] == f"more: didctl did history {ident.did} --after 2"
