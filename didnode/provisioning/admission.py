"""Will the network admit a provisioning run's creates? Checked before any work (issue #18).

On a governed network (docs/governance.md) a create is admitted by the
network's policy: on a ``registrars`` network only when a listed registrar
signs it (the manufacturer signs every device create as its controller, so
the manufacturer must be a registrar), on a ``governors`` network only when a
governor signs it; a registrar's creates count against its quota, per window
of ordering time and in total. The ledger enforces all of it on every create;
this module only lets ``didctl provision`` refuse a run at once, before it
writes anything, when the policy says the run cannot go through.

What "cannot go through" means (:func:`check_run`):

* the manufacturer may not create at all (not a registrar, not a governor):
  :class:`NotARegistrar`;
* the total quota left is smaller than the devices still to create: the run
  can never finish without the governors raising the quota:
  :class:`QuotaExceeded` (``quota=total``);
* the devices to create do not fit in what is left of the current window: the
  run would stop at the window's quota and need more windows. Unless the
  operator allows the run to spread over windows (``allow_spread``: it then
  creates what fits, waits for the window to end and goes on, which may take
  long), :class:`QuotaExceeded` (``quota=window``) with the window's end and
  how many windows and how long the run would take.

The policy comes verified from the node (a state proof under a trusted
checkpoint); the usage counts are the node's advice (no proof covers them),
so this check can be wrong only in the node's favour of being stricter or
looser: the ledger's own check on each create is what counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from didnode.core.governance.policy import GOVERNORS, OPEN, Policy, Usage, window_end_ms, window_index
from didnode.errors import NotARegistrar, QuotaExceeded


@dataclass(frozen=True, slots=True)
class RunAdmission:
    """What the policy says about a run: admitted, sponsored by ``registrar`` ('' when no quota is charged),
    spanning ``windows`` windows of the registrar's quota (1: it fits in the current one); ``note`` says so."""

    registrar: str = ""
    windows: int = 1
    seconds: float = 0.0
    note: str = ""


def check_run(
    policy: Policy | None, manufacturer: str, needed: int, usage: Usage, now_ms: int, *, allow_spread: bool = False
) -> RunAdmission:
    """May ``manufacturer`` create ``needed`` device DIDs (each signed by it as controller) under ``policy``?

    Preconditions: ``policy`` is the network's verified governance record (None
    on a network without governance); ``usage`` is what the log counted of the
    manufacturer's creates as registrar (the node's advice); ``now_ms`` is the
    ordering time the run starts at (at least the log's last time). Mirrors
    :func:`didnode.core.governance.rules.admit_create` for a create whose other
    signer is the manufacturer alone. Raises :class:`NotARegistrar` or
    :class:`QuotaExceeded` (module docstring); returns the admission otherwise.
    """
    if policy is None or needed <= 0:
        return RunAdmission()
    governor = manufacturer in policy.governors
    if policy.create == GOVERNORS and not governor:
        raise NotARegistrar(
            f"network governance {policy.did} admits creates signed by a governor only, and manufacturer {manufacturer} "
            f"is not a governor; nothing was provisioned", did=manufacturer,
        )
    if manufacturer not in policy.registrars:
        if governor or policy.create == OPEN:
            return RunAdmission()
        raise NotARegistrar(
            f"manufacturer {manufacturer} is not a registrar of this network (governance {policy.did}, create policy "
            f"{policy.create}): the node would refuse every device create; ask the governors to add it "
            f"(addRegistrar); nothing was provisioned", did=manufacturer,
        )
    quota = policy.registrars[manufacturer]
    if quota.total is not None:
        left = max(0, quota.total - usage.total_count)
        if needed > left:
            raise QuotaExceeded(
                f"the run needs {needed:,} creates, but registrar {manufacturer} has {left:,} of its total quota of "
                f"{quota.total:,} left; the governors can raise it (setRegistrarQuota); nothing was provisioned",
                did=manufacturer, quota="total", limit=quota.total, needed=needed, left=left,
            )
    if quota.per_window is None or quota.window_s is None:
        return RunAdmission(manufacturer)
    index = window_index(now_ms, quota.window_s)
    left = max(0, quota.per_window - usage.in_window(index).count)
    if needed <= left:
        return RunAdmission(manufacturer)
    reset = window_end_ms(index, quota.window_s)
    more = -(-(needed - left) // quota.per_window)  # whole windows after the current one
    windows = more + (1 if left else 0)
    seconds = (reset - now_ms) / 1000 + (more - 1) * quota.window_s
    span = (
        f"the run needs {needed:,} creates; registrar {manufacturer} may make {quota.per_window:,} per {_duration(quota.window_s, exact=True)} "
        f"and has {left:,} left in this window, which ends at {_utc(reset)}: the run would span {windows} windows "
        f"and take at least {_duration(seconds)}"
    )
    if not allow_spread:
        raise QuotaExceeded(
            f"{span}; pass --allow-spread to create what fits and wait for each window, or ask the governors to raise "
            f"the quota (setRegistrarQuota); nothing was provisioned",
            did=manufacturer, quota="window", limit=quota.per_window, reset_time=reset, needed=needed, left=left, windows=windows,
        )
    return RunAdmission(manufacturer, windows, seconds, f"{span} (--allow-spread: it waits for each window)")


def devices_done(journal: Path) -> int:
    """How many devices the run journaled at ``journal`` has finished (0 when there is no journal).

    Read without the journal's lock and without changing it (a check before the
    run): complete ``done`` records only; anything unreadable counts nothing, so
    the check asks for at least what the run will need.
    """
    try:
        text = journal.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    done = 0
    for line in text.split("\n")[:-1]:  # the last piece is empty or a torn record
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("t") == "done" and isinstance(record.get("positions"), list):
            done += len(record["positions"])
    return done


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float, exact: bool = False) -> str:
    """A duration for people; ``exact``: in the largest unit that divides it (a quota's window)."""
    s = max(0, int(seconds + 0.5))
    for unit, name in ((86400, "day"), (3600, "h"), (60, "min")) if exact else ():
        if s and s % unit == 0:
            n = s // unit
            return f"{n} {name}{'s' if name == 'day' and n > 1 else ''}"
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"
