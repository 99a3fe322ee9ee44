"""``didnode serve``'s witness options: ``--witness URL=VKEY`` (repeatable), ``--witness-timeout`` (docs/witness.md).

With at least one ``--witness``, the node asks those witnesses
(c2sp.org/tlog-witness) to cosign each checkpoint it signs, in the background
(:class:`didnode.ledger.cosigning.CosignCollector`), and serves the cosigned
note once collected. A witness that is down is logged and retried on the next
checkpoint; the node keeps serving with the cosignatures it has.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

import click

from didnode.errors import InvalidArgument
from didnode.witness.client import WitnessEndpoint

F = TypeVar("F", bound=Callable[..., Any])


def witness_options(f: F) -> F:
    """Parameters ``witnesses`` (tuple of ``URL=VKEY``) and ``witness_timeout``."""
    options = [
        click.option("--witness", "witnesses", multiple=True, envvar="DIDNODE_WITNESS", metavar="URL=VKEY", help="Ask this witness (c2sp.org/tlog-witness at URL, cosignature/v1 verifier key VKEY) to cosign each checkpoint; repeat for more. See docs/witness.md."),
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


def start_collector(node: Any, witnesses: Sequence[WitnessEndpoint], timeout_s: float) -> Any:
    """Start the cosignature collector in the running loop (None without witnesses)."""
    if not witnesses:
        return None
    from didnode.ledger.cosigning import CosignCollector
    from didnode.service.transparency import TransparencyService

    collector = CosignCollector(node, TransparencyService(node), witnesses, timeout_s=timeout_s)
    collector.start()
    return collector


__all__ = ["parse_witnesses", "start_collector", "witness_options"]
