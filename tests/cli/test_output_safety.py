"""didctl and hostile data (issue #14): the method's service rules at --service, and text output that no
ledger value, node message or credential claim can turn into terminal control sequences.

Text output shows such characters as escapes (``\\x1b``, ``\\u202e``); ``--json`` carries them exactly,
as JSON escapes. Every test here failed before: ``--service`` took any endpoint with a ':' and no
whitespace, and the text renderers printed ledger and node strings raw.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.didctl_common import kv_lines, safe_text, table
from didnode import errors
from didnode.client import Client
from didnode.core import builder
from didnode.core.results import NodeInfo
from tests.cli.conftest import Didctl
from tests.factory import new_create

# Clear screen, set the window title, a right-to-left override, a carriage return.
HOSTILE = "a\x1b[2J\x1b]0;title\x07\u202eb\rc"
SHOWN = "a\\x1b[2J\\x1b]0;title\\x07\\u202eb\\x0dc"
RAW = ("\x1b", "\x07", "\u202e", "\r")


def assert_safe(text: str) -> None:
    """Nothing a terminal would act on: no C0 control but newline, no bidi override, no CR."""
    assert not any(c in text for c in RAW), repr(text)
    assert all(c == "\n" or c.isprintable() for c in text), repr(text)


def assert_exact_json(stdout: str) -> None:
    """--json carries the characters as JSON escapes (ensure_ascii), never raw."""
    assert_safe(stdout)
    assert "\\u001b[2J" in stdout and "\\u202e" in stdout and "\\r" in stdout


# --------------------------------------------------------------------------
# The escaping function and the renderers
# --------------------------------------------------------------------------


def test_safe_text_escapes_controls_bidi_and_invisible_characters() -> None:
    assert safe_text(HOSTILE) == SHOWN
    assert safe_text("x\u2066y\u2069\u200b\ufeff\u00a0\x85\x7f\U000e0041") == "x\\u2066y\\u2069\\u200b\\ufeff\\xa0\\x85\\x7f\\U000e0041"
    assert safe_text("two\nlines") == "two\\x0alines" and safe_text("two\nlines", newlines=True) == "two\nlines"
    assert safe_text("plain did:dnode:Qm… ✓ café 日本") == "plain did:dnode:Qm… ✓ café 日本"
    assert safe_text(42) == "42"


def test_table_and_kv_lines_keep_each_value_on_its_line() -> None:
    t = table(("ID", "REASON"), [("key-1", "x\nFAKE  row"), ("key-2", HOSTILE)])
    assert t.count("\n") == 2 and SHOWN in t and "x\\x0aFAKE  row" in t
    assert_safe(t)
    kv = kv_lines({"version": HOSTILE, "mode\r": "a\nb"})
    assert kv.count("\n") == 1 and SHOWN in kv and "mode\\x0d" in kv and "a\\x0ab" in kv


# --------------------------------------------------------------------------
# --service: the method's rules, one line, non-zero exit, nothing staged
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "hub=T=javascript:alert(1)",
        "hub=T=data:text/html;base64,PHNjcmlwdD4=",
        "hub=T=file:///etc/passwd",
        "hub=T=https://hub.example/\x1b[2J",
        "hub=T=https://hub.example/\u202egnp.exe",
        "hub=T=https://hub.example/\x1b]0;title\x07",
        "hub=T=https://user:pw@hub.example/",
        "hub=T\u202e=https://hub.example/",
        "hub=T\x1b[2J=https://hub.example/",
        "hub=T T=https://hub.example/",
    ],
)
def test_service_option_applies_the_methods_rules(ctl: Didctl, value: str) -> None:
    before = ctl.json("keystore", "list")["dids"]
    result = ctl.fail("did", "create", "--service", value, code=1, reason="INVALID_SERVICE")
    assert_safe(result.stderr)
    assert ctl.json("keystore", "list")["dids"] == before
    did = ctl.create()
    ctl.fail("did", "update", did, "--service", value, code=1, reason="INVALID_SERVICE")
    assert "service" not in ctl.json("did", "resolve", did)["didDocument"]


def test_service_option_accepts_iot_endpoints(ctl: Didctl) -> None:
    services = ["mqtt=MQTTBroker=mqtts://broker.example:8883", "rd=CoRE-RD=coaps://[2001:db8::1]:5684/rd", "hub=DIDCommMessaging=did:web:hub.example"]
    did = ctl.create(*[a for s in services for a in ("--service", s)])
    got = ctl.json("did", "resolve", did)["didDocument"]["service"]
    assert [s["serviceEndpoint"] for s in got] == [s.split("=", 2)[2] for s in services]


def test_the_node_rejects_a_bad_service_sent_past_didctl(ctl: Didctl) -> None:
    """The rule is the method's: a client that does not check gets INVALID_SERVICE from the node."""
    with Client(ctl.node.address) as client:
        for bad in ({"id": "hub", "type": "T", "serviceEndpoint": "javascript:alert(1)"}, {"id": "hub", "type": "T", "serviceEndpoint": "https://h.example/\u202e"}):
            ident, op = new_create(services=[bad])
            with pytest.raises(errors.InvalidService) as info:
                client.submit(op)
            assert info.value.details.get("field") == "serviceEndpoint"
            with pytest.raises(errors.UnknownDid):
                client.state(ident.did)
        # And builder.service refuses before signing.
        with pytest.raises(errors.InvalidService):
            builder.service("hub", "T", "vbscript:x")


# --------------------------------------------------------------------------
# Text output of ledger data, node data and credentials
# --------------------------------------------------------------------------


def test_ledger_strings_are_escaped_in_text_and_exact_in_json(ctl: Didctl) -> None:
    """A revocation reason is free text on the ledger: `did keys` and the receipt line show it escaped."""
    admin = ctl.create()
    did = ctl.create("--controller", admin)
    revoked = ctl.invoke("did", "revoke-key", did, "key-1", "--as", admin, "--reason", HOSTILE)
    assert_safe(revoked.stdout)
    assert SHOWN in revoked.stdout
    text = ctl.invoke("did", "keys", did).stdout
    assert_safe(text)
    assert SHOWN in text
    raw = ctl.invoke("--json", "did", "keys", did).stdout
    assert_exact_json(raw)
    assert [k["reason"] for k in json.loads(raw)["keys"] if k["id"] == "key-1"] == [HOSTILE]


def test_node_info_strings_are_escaped(ctl: Didctl, monkeypatch: pytest.MonkeyPatch) -> None:
    info = NodeInfo(
        network="local", node_did="did:dnode:QmRtcJn4DbrgYcB6W35gNQk5m8VaSCMZocTnpLYDBBTwdb", log_size=1, version=HOSTILE,
        did_count=1, last_time_ms=0, schema_version=3, mode="cluster", stream="s", writable=False, not_writable_reason=HOSTILE,
    )  # fmt: skip
    monkeypatch.setattr(Client, "node_info", lambda self: info)
    text = ctl.invoke("node", "info").stdout
    assert_safe(text)
    assert text.count(SHOWN) == 2
    raw = ctl.invoke("--json", "node", "info").stdout
    assert_exact_json(raw)
    data = json.loads(raw)
    assert data["version"] == HOSTILE and data["cluster"]["notWritableReason"] == HOSTILE


@pytest.mark.parametrize("reason", ["WRONG_SIGNER", "FROM_A_NEWER\x1b[2JNODE"])
def test_node_error_messages_are_escaped_on_the_error_line(ctl: Didctl, monkeypatch: pytest.MonkeyPatch, reason: str) -> None:
    """What the client raises from a node's status (error_for_reason): message and even an unknown reason."""
    message = f"rejected: {HOSTILE}"

    def fail(self: Client) -> NodeInfo:
        raise errors.error_for_reason(reason, message, {"kid": HOSTILE})

    monkeypatch.setattr(Client, "node_info", fail)
    result = ctl.invoke("node", "info", code=1)
    assert_safe(result.stderr)
    lines = result.stderr.splitlines()
    # One line: the CR was whitespace (folded into a space), the rest escaped.
    assert len(lines) == 1 and lines[0] == f"didctl: rejected: {SHOWN.replace(chr(92) + 'x0d', ' ')} [{safe_text(reason)}]"
    result = ctl.invoke("--json", "node", "info", code=1)
    assert_exact_json(result.stdout)
    assert json.loads(result.stdout)["error"] == {"reason": reason, "message": message, "details": {"kid": HOSTILE}}


def test_credential_claims_are_escaped_in_verify_text(ctl: Didctl, tmp_path: Path) -> None:
    issuer, subject = ctl.create(), ctl.create()
    claims = json.dumps({"note": HOSTILE})
    issued = ctl.json("vc", "issue", "--issuer", issuer, "--subject", subject, "--type", f"Evil{HOSTILE}", "--claims", claims)
    token = tmp_path / "evil.jwt"
    token.write_text(issued["token"] + "\n")
    text = ctl.invoke("vc", "verify", str(token)).stdout
    assert_safe(text)
    assert f"Evil{SHOWN}" in text and text.startswith("VALID")
    raw = ctl.invoke("--json", "vc", "verify", str(token)).stdout
    assert_exact_json(raw)
    data = json.loads(raw)
    assert f"Evil{HOSTILE}" in data["types"] and data["credentialSubject"]["note"] == HOSTILE


def test_provisioning_manifest_content_is_escaped_in_errors(ctl: Didctl, tmp_path: Path) -> None:
    owner = ctl.create()
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"did": f"did:dnode:{HOSTILE}"}) + "\n")
    result = ctl.invoke("provision", "transfer", "--manifest", str(manifest), "--to", owner, code=1)
    assert_safe(result.stderr)
    assert len(result.stderr.splitlines()) == 1 and result.stderr.rstrip().endswith("[MANIFEST_INVALID]")
    result = ctl.invoke("--json", "provision", "transfer", "--manifest", str(manifest), "--to", owner, code=1)
    assert HOSTILE in json.loads(result.stdout)["error"]["message"]
