"""The one wall clock of didnode's edges (the core never reads a clock: times are passed in)."""

from __future__ import annotations

import time


def wall_ms() -> int:
    """The local wall clock in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
