"""didnode.provisioning.admission.check_run: the policy arithmetic of a provisioning run, without a node."""

from __future__ import annotations

import pytest

from didnode.core.governance.policy import CreateQuota, Policy, Usage
from didnode.errors import NotARegistrar, QuotaExceeded
from didnode.provisioning.admission import check_run

MFR = "did:dnode:QmManufacturer"
GOV = "did:dnode:QmGovernor"
HOUR_MS = 3_600_000


def policy(create: str, quota: CreateQuota | None = None, governors: tuple[str, ...] = (GOV,)) -> Policy:
    registrars = {MFR: quota} if quota is not None else {}
    return Policy("did:dnode:QmGov", 0, "00", governors, 1, create, registrars)


def test_open_networks_and_governors_need_no_check() -> None:
    assert check_run(None, MFR, 10**9, Usage(), 0).registrar == ""
    assert check_run(policy("open"), MFR, 10**9, Usage(), 0).registrar == ""
    assert check_run(policy("registrars", governors=(MFR,)), MFR, 10**9, Usage(), 0).registrar == ""


def test_who_may_create() -> None:
    with pytest.raises(NotARegistrar, match="is not a registrar"):
        check_run(policy("registrars"), MFR, 1, Usage(), 0)
    with pytest.raises(NotARegistrar, match="governor only"):
        check_run(policy("governors", CreateQuota()), MFR, 1, Usage(), 0)
    # A registrar on an open network still counts against its quota (as the ledger does).
    with pytest.raises(QuotaExceeded):
        check_run(policy("open", CreateQuota(total=1)), MFR, 2, Usage(), 0)


def test_total_quota() -> None:
    p = policy("registrars", CreateQuota(total=10))
    assert check_run(p, MFR, 4, Usage(0, 0, 0, 6, 0), 0).registrar == MFR
    with pytest.raises(QuotaExceeded, match="4 of its total quota of 10 left") as e:
        check_run(p, MFR, 5, Usage(0, 0, 0, 6, 0), 0, allow_spread=True)  # spreading cannot help a total
    assert e.value.details["quota"] == "total"


def test_window_quota_fits_spreads_or_refuses() -> None:
    p = policy("registrars", CreateQuota(window_s=3600, per_window=100))
    now = 5 * HOUR_MS + 600_000  # 10 min into window 5
    assert check_run(p, MFR, 100, Usage(4, 100, 0, 100, 0), now).windows == 1  # an old window's count does not bind
    assert check_run(p, MFR, 40, Usage(5, 60, 0, 60, 0), now).windows == 1
    with pytest.raises(QuotaExceeded, match="may make 100 per 1 h .* span 4 windows and take at least 2.8 h") as e:
        check_run(p, MFR, 241, Usage(5, 60, 0, 60, 0), now)  # 40 now, then 100 + 100 + 1
    assert e.value.reset_time_ms == 6 * HOUR_MS
    spread = check_run(p, MFR, 240, Usage(5, 60, 0, 60, 0), now, allow_spread=True)
    assert spread.windows == 3 and spread.seconds == 50 * 60 + 3600 and "--allow-spread" in spread.note
    full = check_run(p, MFR, 100, Usage(5, 100, 0, 100, 0), now, allow_spread=True)  # nothing left now: the next window
    assert full.windows == 1 and full.seconds == 50 * 60
