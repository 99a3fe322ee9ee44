"""``didctl audit --data DIR``: replay a node's whole log and check every stored byte.

Reads the node's LMDB store directly (read-only; no node is contacted). Run
it on the data directory of a stopped node or on a copy; ``--snapshot``
first takes a consistent copy (safe on a running node). Prints "ok" with the
counts and roots, or fails with one line naming the first bad position and
what is wrong there (reason ``AUDIT_FAILED``, exit code 1).

Register on the main group with ``main.add_command(audit)``.

The only didctl command that reads a node's store rather than asking a node:
it runs the node's own replay code (``didnode.ledger.audit``), which it imports
when it runs, so that every other command (and a device importing the client)
loads no server code (``tests/test_imports.py``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from typing import TYPE_CHECKING

import click

from cli.didctl_common import Ctl, json_option, pass_ctl

if TYPE_CHECKING:
    from didnode.ledger.audit import AuditReport


def _progress(done: int, total: int) -> None:
    """A one-line progress counter on a terminal's stderr."""
    click.echo(f"\rdidctl: replayed {done:,} of {total:,} entries", err=True, nl=done >= total)


def _report_json(r: "AuditReport") -> dict[str, object]:
    return {
        "ok": True,
        "network": r.network,
        "nodeDid": r.node_did,
        "entries": r.entries,
        "dids": r.dids,
        "checkpoints": r.checkpoints,
        "logRoot": r.log_root.hex(),
        "stateRoot": r.state_root.hex(),
        "seconds": round(r.seconds, 3),
        "entriesPerSecond": round(r.rate),
    }


def _report_text(r: "AuditReport") -> str:
    return (
        f"ok: {r.entries:,} entries, {r.dids:,} DIDs, {r.checkpoints} checkpoint(s) verified on network {r.network}\n"
        f"log root    {r.log_root.hex()}\n"
        f"state root  {r.state_root.hex()}\n"
        f"replayed in {r.seconds:.1f} s ({r.rate:,.0f} entries/s)"
    )


@click.command("audit")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="The node's data directory (its LMDB store is DATA/ledger).",
)
@click.option("--snapshot", "take_snapshot", is_flag=True, help="Audit a consistent copy (use on a running node).")
@click.option("--workers", type=click.IntRange(min=0), help="Worker processes (default: 2 for large logs, 0 for small).")
@json_option
@pass_ctl
def audit(ctl: Ctl, data_dir: str, take_snapshot: bool, workers: int | None) -> None:
    """Replay the whole log of a node's store from position 0 and check everything.

    Every signature, per-DID seq/prev chain, entry position and time, the
    op-hash and history indexes, every state record, every node of the log
    tree and of the state tree, and every stored checkpoint (signature and
    roots). The store is opened read-only; stop the node first, or use
    --snapshot.
    """
    from didnode.ledger.audit import audit as run_audit
    from didnode.store.readonly import snapshot

    copy_dir = tempfile.mkdtemp(prefix="didctl-audit-") if take_snapshot else None
    try:
        target = data_dir
        if copy_dir is not None:
            target = os.path.dirname(snapshot(data_dir, copy_dir))
        show = sys.stderr.isatty() and not ctl.json_output
        report = run_audit(target, workers=workers, progress=_progress if show else None)
    finally:
        if copy_dir is not None:
            shutil.rmtree(copy_dir, ignore_errors=True)
    ctl.emit(_report_json(report), _report_text(report))
