"""``didctl data``: device data integrity (issue #19, docs/data.md).

This module holds the ``data`` group and the receipt commands
(``didctl data receipt``, ``didctl data verify``); the device side
(``record``, ``gateway``, ``anchor``) lives in :mod:`cli.didctl_data_device`,
which adds its commands to :data:`data_group`.
"""

from __future__ import annotations

import click


@click.group("data")
def data_group() -> None:
    """Device data: readings signed at the source, anchored in batches, receipts verifiable offline."""
