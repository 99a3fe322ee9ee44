"""``didctl provision`` on a governed network (issue #18), against a real node (loopback, real LMDB).

The network's genesis (tests/governance_fixtures.py) has one governor and
creates ``open``; the test DIDs are created, then one change makes them
registrars (with their quotas) and the create policy ``registrars``. Checked:
a registrar's run goes as on an open network; a non-registrar's run and a
run its quota cannot fit are refused at once, before anything is written; a
registrar removed mid-run stops the run with NOT_A_REGISTRAR and a
consistent journal, the resume is refused until it is re-added, then
completes with every device exactly once; --allow-spread waits out a window.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

import cli.didctl_provision as provision_cli
from cli.didctl import EXIT_FAILED, main
from cli.didctl_provision import provision_group
from didnode.client import Client
from didnode.core.governance import build as gb
from didnode.core.governance.policy import CreateQuota
from didnode.errors import UnknownDid
from didnode.provisioning.admission import devices_done
from tests.cli.conftest import Didctl
from tests.governance_fixtures import GovernedNode, start_governed_node

if "provision" not in main.commands:
    main.add_command(provision_group)

BUNDLE_PASS = "line-7 bundle passphrase"


class Net:
    """The module's governed node, its didctl, and the DIDs of the tests by role."""

    def __init__(self, gov: GovernedNode, ctl: Didctl) -> None:
        self.gov = gov
        self.ctl = ctl
        self.dids: dict[str, str] = {}

    def govern(self, *changes: dict[str, Any]) -> None:
        op = self.gov.change(list(changes), self.gov.governors)
        with Client(self.gov.address) as c:
            c.submit(op)
        self.gov.accepted(op)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("governed")
    gov = start_governed_node(base / "node", n_governors=1, threshold=1, create="open")
    try:
        ctl = Didctl(gov.node, base / "keystore")
        ctl.invoke("keystore", "init")
        n = Net(gov, ctl)
        for role in ("mfr", "outsider", "small", "windowed", "removed", "spread"):
            n.dids[role] = ctl.create("--no-key-agreement")
        big = CreateQuota(window_s=3600, per_window=10_000, total=100_000)
        n.govern(
            gb.add_registrar(n.dids["mfr"], big),
            gb.add_registrar(n.dids["small"], CreateQuota(total=3)),
            gb.add_registrar(n.dids["windowed"], CreateQuota(window_s=3600, per_window=3)),
            gb.add_registrar(n.dids["removed"], big),
            gb.add_registrar(n.dids["spread"], CreateQuota(window_s=2, per_window=4)),
            gb.set_create_policy("registrars"),
        )
        yield n
    finally:
        gov.stop()


def provision_args(mfr: str, out: Path, count: int, *extra: str) -> list[str]:
    return [
        "provision", "--manufacturer", mfr, "--model", "G1", "--out", str(out), "--count", str(count),
        "--bundle-passphrase-env", "BPASS", *extra,
    ]  # fmt: skip


def manifest_dids(out: Path) -> list[str]:
    return [json.loads(line)["did"] for line in (out / "manifest.jsonl").read_text().splitlines()]


def existing(address: str, dids: list[str]) -> list[str]:
    with Client(address) as c:
        return [d for d in dids if _exists(c, d)]


def _exists(c: Client, did: str) -> bool:
    try:
        c.state(did)
        return True
    except UnknownDid:
        return False


def creates_counted(net: Net, did: str) -> int:
    with Client(net.gov.address) as c:
        info = c.governance(usage_of=[did])
    u = info.usage.get(("creates", did))
    return 0 if u is None else u.total_count


def test_registrar_runs_as_on_an_open_network(net: Net, tmp_path: Path) -> None:
    mfr = net.dids["mfr"]
    before = creates_counted(net, mfr)
    out = tmp_path / "run"
    result = net.ctl.json(*provision_args(mfr, out, 6, "--chunk-size", "4"), BPASS=BUNDLE_PASS)
    assert (result["devices"], result["created"], result["alreadyOnLedger"]) == (6, 6, 0)
    dids = manifest_dids(out)
    assert len(set(dids)) == 6 and existing(net.gov.address, dids) == dids
    assert creates_counted(net, mfr) == before + 6  # each device create counted against the registrar's quota


def _refused_at_once(net: Net, mfr: str, out: Path, count: int, reason: str) -> str:
    result = net.ctl.fail(*provision_args(mfr, out, count), code=EXIT_FAILED, reason=reason, BPASS=BUNDLE_PASS)
    assert not out.exists(), "nothing written: no output directory, no journal, no bundle"
    return str(result.stderr)


def test_not_a_registrar_is_refused_before_any_work(net: Net, tmp_path: Path) -> None:
    line = _refused_at_once(net, net.dids["outsider"], tmp_path / "run", 5, "NOT_A_REGISTRAR")
    assert "is not a registrar" in line and "nothing was provisioned" in line


def test_total_quota_too_small_is_refused_before_any_work(net: Net, tmp_path: Path) -> None:
    line = _refused_at_once(net, net.dids["small"], tmp_path / "run", 5, "QUOTA_EXCEEDED")
    assert "needs 5 creates" in line and "3 of its total quota of 3 left" in line


def test_window_quota_too_small_is_refused_with_its_reset_time(net: Net, tmp_path: Path) -> None:
    line = _refused_at_once(net, net.dids["windowed"], tmp_path / "run", 7, "QUOTA_EXCEEDED")
    # 3 per hour, 7 devices: this window's 3, then 2 more windows (3 + 1); the window's end is named.
    assert "span 3 windows" in line and "--allow-spread" in line and "which ends at" in line


def test_allow_spread_waits_for_the_next_window(net: Net, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # 4 per 2 s window, 6 devices: what fits now, then the rest once the window has ended.
    run = net.ctl.invoke("--json", *provision_args(net.dids["spread"], out, 6, "--chunk-size", "3", "--allow-spread"), BPASS=BUNDLE_PASS)
    assert json.loads(run.stdout)["devices"] == 6
    assert "waits for each window" in run.stderr or "waiting" in run.stderr
    dids = manifest_dids(out)
    assert len(set(dids)) == 6 and existing(net.gov.address, dids) == dids


def test_registrar_removed_mid_run(net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mfr = net.dids["removed"]
    out = tmp_path / "run"
    args = provision_args(mfr, out, 40, "--chunk-size", "4", "--window", "1")
    removed = threading.Event()

    class RemoveAfterFirstChunk(provision_cli.ProgressBar):
        """Progress of the run: once a chunk is done, the governors remove the registrar (the finisher waits)."""

        def __call__(self, done: int, total: int) -> None:
            if done >= 4 and not removed.is_set():
                removed.set()
                net.govern(gb.remove_registrar(mfr))

    monkeypatch.setattr(provision_cli, "ProgressBar", RemoveAfterFirstChunk)
    result = net.ctl.fail(*args, code=EXIT_FAILED, reason="NOT_A_REGISTRAR", BPASS=BUNDLE_PASS)
    assert removed.is_set()
    assert "the run stopped with" in result.stderr and "re-run the same command" in result.stderr
    monkeypatch.undo()

    # The journal and the manifest agree: every finished device is on the ledger once, none more is marked done.
    done = manifest_dids(out)
    assert 4 <= len(done) < 40 and len(set(done)) == len(done)
    assert existing(net.gov.address, done) == done
    assert devices_done(out / "provision.journal") == len(done)
    journal = (out / "provision.journal").read_bytes()

    # Resumed while still removed: refused at once, nothing changes.
    line = net.ctl.fail(*args, code=EXIT_FAILED, reason="NOT_A_REGISTRAR", BPASS=BUNDLE_PASS).stderr
    assert "is not a registrar" in line
    assert (out / "provision.journal").read_bytes() == journal and manifest_dids(out) == done

    # Re-added: the resume finishes the run, every device exactly once.
    net.govern(gb.add_registrar(mfr, CreateQuota(window_s=3600, per_window=10_000, total=100_000)))
    result = net.ctl.json(*args, BPASS=BUNDLE_PASS)
    assert result["devices"] == 40 and result["resumed"] is True
    dids = manifest_dids(out)
    assert len(dids) == 40 and len(set(dids)) == 40 and dids[: len(done)] == done
    assert existing(net.gov.address, dids) == dids
