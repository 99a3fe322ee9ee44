"""``didnode serve``'s witness options: ``--witness URL=VKEY`` (repeatable), ``--witness-timeout``, ``--witness-for ORIGIN=VKEY`` (docs/witness.md).

With at least one ``--witness``, the node asks those witnesses
(c2sp.org/tlog-witness) to cosign each checkpoint it signs, in the background
(:class:`didnode.ledger.cosigning.CosignCollector`), and serves the cosigned
note once collected. A witness that is down is logged and retried on the next
checkpoint; the node keeps serving with the cosignatures it has.

With at least one ``--witness-for ORIGIN=VKEY`` (and ``--http``), the node is
a witness too: its HTTP face serves ``POST /add-checkpoint`` for those logs
(:func:`build_node_witness`), cosigning with ``DATA/witness.key`` (named
``<origin>/witness`` on first start), state in ``DATA/witness/``, and checks
checkpoints of its own ledger against its log (:mod:`didnode.witness.replay`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import click

from didnode.errors import InvalidArgument
from didnode.witness.client import WitnessEndpoint

F = TypeVar("F", bound=Callable[..., Any])


def witness_options(f: F) -> F:
    """Parameters ``witnesses`` (tuple of ``URL=VKEY``) and ``witness_timeout``."""
    options = [
        click.option("--witness", "witnesses", multiple=True, envvar="DIDNODE_WITNESS", metavar="URL=VKEY", help="Ask this witness (c2sp.org/tlog-witness at URL, cosignature/v1 verifier key VKEY) to cosign each checkpoint; repeat for more. See docs/witness.md."),
        click.option("--witness-for", "witness_for", multiple=True, envvar="DIDNODE_WITNESS_FOR", metavar="ORIGIN=VKEY", help="Be a witness (POST /add-checkpoint on --http) for this log: its origin and a signed-note verifier key of its checkpoints; repeat. See docs/witness.md."),
        click.option("--witness-timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 120), metavar="SECONDS", help="Timeout of each add-checkpoint request to a witness."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def parse_witnesses(values: Sequence[str]) -> tuple[WitnessEndpoint, ...]:
    """The ``--witness`` values as endpoints; a usage error names a bad one."""
    out = []
    for value in values:
        try:
            out.append(WitnessEndpoint.parse(value))
        except InvalidArgument as err:
            raise click.UsageError(str(err)) from None
    if len({w.url for w in out}) != len(out):
        raise click.UsageError("--witness: a URL is given twice")
    return tuple(out)


def parse_witness_for(values: Sequence[str]) -> dict[str, list[Any]]:
    """The ``--witness-for`` values as {origin: [LogKey, ...]}; a usage error names a bad one."""
    from didnode.witness.service import parse_log_option

    logs: dict[str, list[Any]] = {}
    for value in values:
        try:
            origin, key = parse_log_option(value)
        except InvalidArgument as err:
            raise click.UsageError(str(err).replace("--log", "--witness-for")) from None
        logs.setdefault(origin, []).append(key)
    return logs


WITNESS_KEY_FILE = "witness.key"
WITNESS_DIR = "witness"


def witness_key_name(origin: str) -> str:
    """The key name a node's witness key gets on first start: ``<origin>/witness``."""
    return f"{origin}/witness"


def build_node_witness(node: Any, logs: dict[str, list[Any]]) -> Any:
    """The node's :class:`~didnode.witness.service.Witness` (None without ``--witness-for``): key
    ``DATA/witness.key`` (created on first start), state ``DATA/witness/``, replaying the node's ledger."""
    if not logs:
        return None
    from didnode.witness.keyfile import load_or_create
    from didnode.witness.replay import LedgerReplayCheck
    from didnode.witness.service import Witness
    from didnode.witness.state import WitnessStore

    data = Path(node.config.data_dir)
    key_path = data / WITNESS_KEY_FILE
    name, key, _ = load_or_create(key_path, None if key_path.exists() else witness_key_name(node.origin))
    store = WitnessStore(data / WITNESS_DIR)
    return Witness(store, name, key, logs, replay=LedgerReplayCheck(node))


def start_collector(node: Any, witnesses: Sequence[WitnessEndpoint], timeout_s: float) -> Any:
    """Start the cosignature collector in the running loop (None without witnesses)."""
    if not witnesses:
        return None
    from didnode.ledger.cosigning import CosignCollector
    from didnode.service.transparency import TransparencyService

    collector = CosignCollector(node, TransparencyService(node), witnesses, timeout_s=timeout_s)
    collector.start()
    return collector


__all__ = ["WITNESS_DIR", "WITNESS_KEY_FILE", "build_node_witness", "parse_witness_for", "parse_witnesses", "start_collector", "witness_key_name", "witness_options"]
