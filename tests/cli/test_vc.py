"""``didctl vc`` against a real node: issue, verify, suspend, reinstate, revoke, status; errors and exit codes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from cli.didctl import main
from cli.didctl_vc import vc_group
from tests.cli.conftest import Didctl

# The vc group is registered on the main group by the didctl owner; until then the tests add it here.
if "vc" not in main.commands:
    main.add_command(vc_group)

CLAIMS = json.dumps(
    {"model": "X1", "serialNumber": "SN-0042", "hardwareVersion": "rev-b", "firmwareVersion": "1.4.2", "manufactureTime": "2025-01-31T12:00:00Z"}
)


@pytest.fixture(scope="module")
def parties(ctl: Didctl) -> tuple[str, str]:
    return ctl.create(), ctl.create()


def issue(ctl: Didctl, mfr: str, dev: str, *extra: str) -> dict:
    return ctl.json("vc", "issue", "--issuer", mfr, "--subject", dev, "--type", "DeviceAttestationCredential", "--claims", CLAIMS, *extra)


def test_issue_verify_and_the_status_lifecycle(ctl: Didctl, parties: tuple[str, str], tmp_path: Path) -> None:
    mfr, dev = parties
    issued = issue(ctl, mfr, dev, "--status", "--valid-until", "+30d")
    assert issued["issuer"] == mfr and issued["subject"] == dev and issued["kid"] == f"{mfr}#key-1-jwk"
    assert [e["statusPurpose"] for e in issued["credentialStatus"]] == ["revocation", "suspension"]
    index = issued["statusAllocation"]["index"]
    assert issued["credentialStatus"][0]["statusListCredential"] == f"http://127.0.0.1:8080/1.0/identifiers/{mfr}?resource=revocation-1"
    assert issued["credentialStatus"][0]["statusListIndex"] == str(index) and issued["validUntil"]
    token_file = tmp_path / "dev.jwt"
    token_file.write_text(issued["token"] + "\n")

    text = ctl.invoke("vc", "verify", str(token_file), "--subject", dev).stdout
    assert text.startswith("VALID") and "ok    signature" in text and "ok    status" in text
    report = ctl.json("vc", "verify", str(token_file), "--subject", dev)
    assert report["valid"] is True and [c["name"] for c in report["checks"]][-1] == "status"
    # stdin, the JSON that `issue --json` printed, and the node's own verification
    assert ctl.runner.invoke(main, ["vc", "verify", "-"], input=json.dumps(issued), env=ctl.env()).exit_code == 0
    assert ctl.json("vc", "verify", str(token_file), "--remote")["valid"] is True

    ctl.json("vc", "suspend", str(token_file))
    failed = ctl.fail("vc", "verify", str(token_file), code=1, reason="SUSPENDED")
    assert "FAIL  status" in failed.stdout
    assert ctl.json("vc", "status", str(token_file))["entries"][1]["set"] is True
    ctl.json("vc", "reinstate", str(token_file))
    ctl.invoke("vc", "verify", str(token_file))
    revoked = ctl.json("vc", "revoke", "--index", str(index), "--issuer", mfr)
    assert revoked["purpose"] == "revocation" and revoked["type"] == "publish"
    out = ctl.json("vc", "verify", str(token_file), code=1)
    assert out["valid"] is False and out["reason"] == "REVOKED"


def test_wrong_subject_and_tampering(ctl: Didctl, parties: tuple[str, str], tmp_path: Path) -> None:
    mfr, dev = parties
    token = issue(ctl, mfr, dev)["token"]
    f = tmp_path / "t.jwt"
    f.write_text(token)
    ctl.fail("vc", "verify", str(f), "--subject", mfr, code=1, reason="SUBJECT_MISMATCH")
    h, p, s = token.split(".")
    f.write_text(f"{h}.{p}.{s[:5]}{'B' if s[5] == 'A' else 'A'}{s[6:]}")
    result = ctl.fail("vc", "verify", str(f), code=1, reason="CREDENTIAL_BAD_SIGNATURE")
    assert "-     validity" in result.stdout  # skipped after a failed gate


def test_indices_are_random_and_the_base_url_is_the_issuers_choice(ctl: Didctl, parties: tuple[str, str], tmp_path: Path) -> None:
    mfr, dev = parties
    got = [issue(ctl, mfr, dev, "--status") for _ in range(3)]
    indices = [g["statusAllocation"]["index"] for g in got]
    assert len(set(indices)) == 3 and indices != list(range(indices[0], indices[0] + 3))  # not in issuance order
    chosen = issue(ctl, mfr, dev, "--status", "--status-base-url", "https://resolver.example.com/")
    url = chosen["credentialStatus"][1]["statusListCredential"]
    assert url == f"https://resolver.example.com/1.0/identifiers/{mfr}?resource=suspension-1"
    f = tmp_path / "chosen.jwt"
    f.write_text(chosen["token"])
    assert ctl.json("vc", "verify", str(f))["valid"] is True  # mapped to the ledger whatever the host
    env = ctl.json("vc", "issue", "--issuer", mfr, "--subject", dev, "--claims", CLAIMS, "--status", DIDCTL_STATUS_BASE_URL="https://env.example")
    assert env["credentialStatus"][0]["statusListCredential"].startswith("https://env.example/1.0/identifiers/")
    ctl.fail("vc", "issue", "--issuer", mfr, "--subject", dev, "--claims", CLAIMS, "--status", "--status-base-url", "ftp://x", code=1, reason="INVALID_ARGUMENT")


def test_errors_and_exit_codes(ctl: Didctl, parties: tuple[str, str], tmp_path: Path) -> None:
    mfr, dev = parties
    outsider = ctl.create()
    bad_claims = json.dumps({"model": "X1"})
    ctl.fail("vc", "issue", "--issuer", mfr, "--subject", dev, "--claims", bad_claims, code=1, reason="CLAIMS_INVALID")
    ctl.invoke("vc", "issue", "--issuer", mfr, "--subject", dev, "--claims", "{not json", code=2)
    ctl.fail("vc", "issue", "--issuer", "did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE", "--subject", dev, "--claims", CLAIMS, code=4, reason="KEY_NOT_IN_KEYSTORE")
    ctl.fail("vc", "issue", "--issuer", mfr, "--subject", "did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE", "--claims", CLAIMS, code=1, reason="UNKNOWN_DID")
    plain = tmp_path / "plain.jwt"
    plain.write_text(issue(ctl, mfr, outsider)["token"])
    ctl.fail("vc", "revoke", str(plain), code=1, reason="INVALID_ARGUMENT")  # issued without --status
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl.fail("--timeout", "2", "vc", "verify", str(plain), code=3, reason="NODE_UNAVAILABLE", DIDNODE_ADDR=f"127.0.0.1:{port}")
