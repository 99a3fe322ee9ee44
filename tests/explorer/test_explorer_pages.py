"""The explorer in a real browser against a real node: DID pages with their key timeline and the
verified badge, a rotated and a revoked key with their fates, forged proofs shown as NOT verified,
markup in ledger data shown as text, keyboard-only search, 360 px without horizontal scroll, the
log page with its inclusion check, and screenshots of each page.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or, in CI, fails) with the reason
    expect = None

from didnode.client import Client
from didnode.core import builder
from tests.explorer.conftest import AlteringProxy, flip_b64, screenshot, wait_verdict
from tests.factory import Identity, adopt_rotation, new_create, rotate_op
from tests.http.conftest import HttpNode, get, start_http_node

XSS = "<script>window.__explorer_pwned = 1</script><img src=x onerror=\"window.__explorer_pwned = 2\">"
REASON = "lost <script>window.__explorer_pwned = 3</script>"  # a revoke reason is free text on the ledger (<= 128)


@dataclass
class World:
    node: HttpNode
    maker: Identity
    device: Identity
    fleet: list[Identity]
    revoke_position: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A manufacturer (a service endpoint holding markup) controlling a small fleet; one device rotated,
    then a key revoked by the manufacturer, then recovered (a current key again), one deactivated."""
    node = start_http_node(tmp_path_factory.mktemp("explorer") / "node")
    try:
        with Client(node.address) as c:
            maker, op = new_create(services=[builder.service("mqtt", "MQTTBroker", "mqtts://broker.example:8883")])
            c.submit(op)
            device, op = new_create(controllers=[maker])
            c.submit(op)
            st = c.state(device.did)
            u, new_auth, new_next, key_id = rotate_op(device, st)
            c.submit(builder.sign(u, [(builder.next_kid(device.did), device.next_key)]))
            adopt_rotation(device, new_auth, new_next, key_id)
            st = c.state(device.did)
            rec = c.submit(builder.sign(builder.revoke("local", device.did, st.seq + 1, st.last, key_id, REASON), [(maker.kid, maker.key)]))
            st = c.state(device.did)
            from nacl.signing import SigningKey

            k3, n3 = SigningKey.generate(), SigningKey.generate()
            c.submit(builder.sign(builder.recover("local", device.did, st.seq + 1, st.last, [builder.NewKey("key-3", bytes(k3.verify_key))], bytes(n3.verify_key)), [(maker.kid, maker.key)]))
            fleet = []
            for _ in range(4):
                d, op = new_create(controllers=[maker])
                c.submit(op)
                fleet.append(d)
            st = c.state(fleet[0].did)
            c.submit(builder.sign(builder.deactivate("local", fleet[0].did, st.seq + 1, st.last, "retired"), [(maker.kid, maker.key)]))
        yield World(node, maker, device, fleet, rec.position)
    finally:
        node.node.stop()


def goto(page: Any, base: str, path: str) -> None:
    page.goto(base + path)
    page.wait_for_selector("main[aria-busy='false']")


def test_did_page_shows_the_key_timeline_and_the_verified_badge(page: Any, world: World) -> None:
    goto(page, world.node.base, f"/did/{world.device.did}")
    verdict, text = wait_verdict(page)
    assert verdict == "true", text
    assert text.lstrip("\u2714 ").startswith("Verified under checkpoint "), text
    assert "signed by 1 of 1 checkpoint keys" in text
    fates = page.eval_on_selector_all("ol.timeline > li", "els => els.map(e => [e.querySelector('.key-id').textContent, e.dataset.fate])")
    assert {k: f for k, f in fates if k.startswith("key-")} == {"key-1": "rotated", "key-2": "revoked", "key-3": "current"}, fates
    assert [k for k, _ in fates if k.startswith("key-")] == ["key-1", "key-2", "key-3"]  # in ledger order
    revoked = page.locator("li[data-fate='revoked']").inner_text()
    assert f"revoked at position {world.revoke_position}" in revoked and REASON in revoked  # markup shown as text
    assert page.evaluate("window.__explorer_pwned") is None
    assert "rotated at position" in page.locator("li[data-fate='rotated']").first.inner_text()
    assert world.maker.did in page.locator("#controllers").inner_text()
    assert "5 of 5 operations" in page.locator("#history").inner_text() or "operations" in page.locator("#history").inner_text()
    assert page.locator("#history tbody tr").count() == 4
    screenshot(page, "did-device")


def test_fleet_counts_and_search(page: Any, world: World) -> None:
    goto(page, world.node.base, f"/did/{world.maker.did}")
    assert wait_verdict(page)[0] == "true"
    section = page.locator("#controlled")
    assert "Controls 5 DIDs" in section.inner_text()
    assert page.locator("#fleet-list li").count() == 5
    page.select_option("#fleet-status", "deactivated")
    page.locator("#fleet-q").press("Enter")
    expect(page.locator("#fleet-list li")).to_have_count(1)
    assert world.fleet[0].did in page.locator("#fleet-list").inner_text()
    screenshot(page, "did-manufacturer")


def test_markup_in_a_service_endpoint_is_shown_as_text(page: Any, world: World) -> None:
    # The ledger refuses such an endpoint (services are URIs), so a node that lies serves it: the page
    # shows it as text, runs nothing, and says the services are not the proven record's.
    with AlteringProxy(world.node.base) as proxy:
        def rewrite(path: str, body: Any) -> Any:
            if path.count("/") == 4:  # /api/v1/did/{did} itself
                body["services"][0]["serviceEndpoint"] = XSS
                body["resolution"]["didDocument"]["service"][0]["serviceEndpoint"] = XSS
            return body

        proxy.rewrite = rewrite
        goto(page, proxy.base, f"/did/{world.maker.did}")
        verdict, text = wait_verdict(page)
        endpoints = page.eval_on_selector_all("#services .endpoint", "els => els.map(e => e.textContent)")
        assert XSS in endpoints
        assert page.evaluate("window.__explorer_pwned") is None
        assert page.locator("main script, main img").count() == 0
        assert "<script>" in (page.locator("#document pre").text_content() or "")
        assert verdict == "false" and "services" in text, text
        screenshot(page, "did-markup-as-text")


@pytest.mark.parametrize(
    ("name", "alter", "reason"),
    [
        ("state proof", lambda a: a["verification"].__setitem__("stateProof", flip_b64(a["verification"]["stateProof"])), "ROOT_MISMATCH"),
        ("state record", lambda a: a["verification"].__setitem__("stateRecord", flip_b64(a["verification"]["stateRecord"], 10)), "ROOT_MISMATCH"),
        ("key fate", lambda a: [k.__setitem__("fate", "current") for k in a["keys"]], "CLAIM_MISMATCH"),
        ("note", lambda a: a["verification"].__setitem__("note", a["verification"]["note"].replace("\n\n", "\nx\n\n", 1)), "MALFORMED"),
    ],
)
def test_a_forged_answer_shows_not_verified(page: Any, world: World, name: str, alter: Any, reason: str) -> None:
    with AlteringProxy(world.node.base) as proxy:
        def rewrite(path: str, body: Any) -> Any:
            if "/history" in path or "/controlled" in path or "/streams" in path:
                return body
            alter(body)
            return body

        proxy.rewrite = rewrite
        goto(page, proxy.base, f"/did/{world.device.did}")
        verdict, text = wait_verdict(page)
        screenshot(page, f"did-forged-{name.replace(' ', '-')}")
    assert verdict == "false", (name, text)
    assert text.lstrip("\u2718 ").startswith("NOT verified: "), text
    assert "Verified under" not in text
    assert page.locator("main .badge.ok").count() == 0
    assert page.locator("main .badge").get_attribute("data-reason") in {reason, "MALFORMED", "ROOT_MISMATCH", "CLAIM_MISMATCH"}, text


def test_keyboard_only_search(page: Any, world: World) -> None:
    goto(page, world.node.base, "/")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "q":
            break
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type(f"{world.device.did}#key-3")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/did/{world.device.did}*")
    page.wait_for_selector("main[aria-busy='false']")
    assert wait_verdict(page)[0] == "true"
    # A ledger position, typed into the same box after tabbing to it.
    page.focus("#q")
    page.keyboard.press("Control+A")
    page.keyboard.type(str(world.revoke_position))
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/position/{world.revoke_position}")
    page.wait_for_selector("main[aria-busy='false']")
    verdict, text = wait_verdict(page)
    assert verdict == "true", text
    assert "revoke" in page.locator("main").inner_text()
    screenshot(page, "position")
    # Focus is visible: the focused element has an outline.
    page.focus("#q")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"


def test_unknown_and_invalid_dids_say_so_in_plain_words(page: Any, world: World) -> None:
    goto(page, world.node.base, "/did/did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
    assert "not on this ledger" in page.locator("main .error").inner_text()
    goto(page, world.node.base, "/did/did:dnode:not-a-did")
    assert "not a valid DID" in page.locator("main .error").inner_text()


def test_a_past_version(page: Any, world: World) -> None:
    goto(page, world.node.base, f"/did/{world.device.did}?versionId=0")
    verdict, text = wait_verdict(page)
    assert verdict == "true", text
    assert "version 0" in page.locator(".status-line").inner_text()
    assert page.locator("li[data-fate='current']").count() >= 1 and page.locator("li[data-fate='revoked']").count() == 0


def test_log_page_checkpoints_charts_and_inclusion(page: Any, world: World) -> None:
    goto(page, world.node.base, "/log")
    verdict, text = wait_verdict(page)
    assert verdict == "true", text
    page.wait_for_selector("#checkpoints .cp-verdict:not([data-verified='pending'])")
    assert page.locator("#checkpoints .cp-verdict[data-verified='false']").count() == 0
    assert page.locator("#growth svg").count() == 1 or "not enough" in page.locator("#growth").inner_text()
    page.focus("#inclusion-pos")
    page.keyboard.type("1")
    page.keyboard.press("Enter")
    page.wait_for_selector("#inclusion .badge:not([data-verified='pending'])")
    assert page.locator("#inclusion .badge").get_attribute("data-verified") == "true"
    screenshot(page, "log")


def test_a_forged_inclusion_proof_shows_not_verified(page: Any, world: World) -> None:
    with AlteringProxy(world.node.base) as proxy:
        proxy.prefix = "/api/v1/log/entry/"

        def rewrite(path: str, body: Any) -> Any:
            body["inclusion"]["proof"] = flip_b64(body["inclusion"]["proof"])
            return body

        proxy.rewrite = rewrite
        goto(page, proxy.base, "/position/2")
        verdict, text = wait_verdict(page)
    assert verdict == "false" and text.lstrip("\u2718 ").startswith("NOT verified: "), text


@pytest.mark.parametrize("path", ["/did/{device}", "/did/{maker}", "/log", "/position/1", "/"])
def test_360_px_wide_has_no_horizontal_scroll(browser: Any, world: World, path: str) -> None:
    ctx = browser.new_context(viewport={"width": 360, "height": 740})
    try:
        pg = ctx.new_page()
        goto(pg, world.node.base, path.format(device=world.device.did, maker=world.maker.did))
        time.sleep(0.2)
        sw = pg.evaluate("document.documentElement.scrollWidth")
        assert sw <= 360, f"{path}: scrollWidth {sw}"
        name = path.strip("/").replace("/", "-").replace("{", "").replace("}", "") or "home"
        screenshot(pg, f"{name}-360px")
    finally:
        ctx.close()


def _policy_param(policy: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(policy).encode()).decode().rstrip("=")


def test_a_pinned_trust_policy_is_what_the_page_verifies_against(page: Any, world: World) -> None:
    from nacl.signing import SigningKey

    from didnode.core import note as note_codec
    from didnode.core.encoding import ED25519_PUB, multikey_encode

    served = get(world.node.base, "/api/v1/trust-policy").json()
    # The node's own policy, pinned by the address: verified.
    goto(page, world.node.base, f"/did/{world.device.did}?trust={_policy_param(served)}")
    verdict, text = wait_verdict(page)
    assert verdict == "true", text
    assert "pinned by the ?trust= parameter" in page.locator("details.trust").text_content()
    # A policy that trusts another key: the node's signature does not count.
    other = dict(served, checkpointKeys=[{"kid": served["checkpointKeys"][0]["kid"], "publicKeyMultibase": multikey_encode(bytes(SigningKey.generate().verify_key), ED25519_PUB)}])
    goto(page, world.node.base, f"/did/{world.device.did}?trust={_policy_param(other)}")
    verdict, text = wait_verdict(page)
    assert verdict == "false" and "no signature of a checkpoint key this trust policy lists" in text, text
    # A policy that requires a witness the node has not got: not verified, whatever the node says.
    witness = note_codec.verifier_key("witness.example/w1", bytes(SigningKey.generate().verify_key), note_codec.COSIGNATURE_V1)
    strict = dict(served, witnesses=[witness], witnessThreshold=1)
    goto(page, world.node.base, f"/did/{world.device.did}?trust={_policy_param(strict)}")
    verdict, text = wait_verdict(page)
    assert verdict == "false" and "cosignatures of 0 trusted witness(es); the trust policy needs 1" in text, text
    screenshot(page, "did-pinned-policy-needs-a-witness")
    # Pasted into the trust panel and kept in this browser: used by the next page too.
    page.locator("details.trust summary").click()
    page.fill("#trust-text", json.dumps(other))
    page.get_by_role("button", name="Pin this policy").click()
    page.wait_for_load_state()
    goto(page, world.node.base, "/log")
    verdict, text = wait_verdict(page)
    assert verdict == "false", text
    page.locator("details.trust summary").click()
    page.get_by_role("button", name="Use the node\u2019s policy").click()
    page.wait_for_load_state()
    goto(page, world.node.base, "/log")
    assert wait_verdict(page)[0] == "true"
