"""Service entries (issue #14): ids, types and endpoints by the method's rules (docs/did-method.md, "Services").

Every endpoint or type below that is rejected was accepted before the rules
existed (an endpoint needed only a ':' and no whitespace, a type only to be
non-empty), including control characters, bidi overrides and javascript: URIs.
"""

from __future__ import annotations

import json

import pytest

from didnode import errors
from didnode.core import builder, canonical, service_rules
from didnode.core.operations import parse
from tests.factory import NET, MemLedger, new_create

GOOD_ENDPOINTS = [
    "https://hub.example/didcomm",
    "https://hub.example",
    "https://hub.example:8443/a/b?x=1&y=%20z#frag",
    "http://192.168.1.10:8080/",
    "mqtts://broker.example:8883",
    "mqtt://broker",
    "coaps://[2001:db8::1]:5684/rd",
    "coap://[::1]/.well-known/core",
    "coap+tcp://gw.example/x",
    "coaps+ws://gw.example/ws",
    "wss://relay.example/ws",
    "ws://10.0.0.2:80",
    "https://[v1.fe80::a+en1]/",
    "did:web:example.com",
    "did:dnode:QmRtcJn4DbrgYcB6W35gNQk5m8VaSCMZocTnpLYDBBTwdb#key-1",
    "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
    "urn:ietf:rfc:3986",
    "https://xn--mnchen-3ya.example/",  # IDNs as their A-label
    "https://h.example/caf%C3%A9",  # non-ASCII percent-encoded as UTF-8
]

BAD_ENDPOINTS = [
    # control characters: CSI clear screen, OSC set title, CR, NUL, DEL, C1 CSI, line separator
    ("https://x.example/\x1b[2J", "control"),
    ("https://x.example/\x1b]0;title\x07", "control"),
    ("https://x.example/\rgood", "control"),
    ("https://x.example/\x00", "control"),
    ("https://x.example/\x7f", "control"),
    ("https://x.example/\x9b2J", "control"),
    ("https://x.example/\u2028", "control"),
    # bidi overrides and isolates, zero-width and other invisible characters
    ("https://x.example/\u202egnp.exe", "control"),
    ("https://x.example/\u2066a\u2069", "control"),
    ("https://x\u200b.example/", "control"),
    ("https://x.example/\ufeff", "control"),
    ("https://x.example/\u00ad", "control"),
    ("https://x.example/\U000e0041", "control"),
    # percent-encoded, they decode to the same
    ("https://x.example/%1b%5b2J", "percent-encodes"),
    ("https://x.example/%E2%80%AE", "percent-encodes"),
    ("https://x.example/%c2%9b", "percent-encodes"),
    ("https://x.example/%7F", "percent-encodes"),
    # schemes outside the policy
    ("javascript:alert(1)", "scheme"),
    ("JavaScript:alert(1)", "scheme"),
    ("vbscript:msgbox", "scheme"),
    ("data:text/html,<script>alert(1)</script>", "not a URI"),
    ("data:text/html;base64,PHNjcmlwdD4=", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("ftp://x.example/", "scheme"),
    ("HTTPS://x.example/", "lowercase"),
    # not RFC 3986
    ("no scheme", "no scheme"),
    ("//x.example/path", "no scheme"),
    ("https://x.example/a b", "not a URI"),
    ("https://x.example/caf\u00e9", "not a URI"),
    ("https://x.example/<tag>", "not a URI"),
    ('https://x.example/"q"', "not a URI"),
    ("https://x.example/a\\b", "not a URI"),
    ("https://x.example/%zz", "not a URI"),
    ("https://x.example/%4", "not a URI"),
    ("1https://x.example/", "not a URI"),
    ("https://x.example/#a#b", "not a URI"),
    ("https://[2001:db8::1/", "not a URI"),
    # structure the scheme needs
    ("https:x.example", "https://"),
    ("https:/x.example", "https://"),
    ("https://", "no host"),
    ("https://:443/", "no host"),
    ("https://user:pw@x.example/", "userinfo"),
    ("https://good.example@evil.example/", "userinfo"),
    ("https://x.example:0/", "port"),
    ("https://x.example:65536/", "port"),
    ("https://x.example:/", "port"),
    ("coaps://[2001:db8::g]/", "not a URI"),
    ("coaps://[1:2:3]/", "IPv6"),
    ("did:x", "not a DID"),
    ("did:Web:example.com", "not a DID"),
    ("did:web:", "not a DID"),
    ("urn:x:y", "not a URN"),
    ("urn:uuid", "not a URN"),
    ("urn:uuid:", "not a URN"),
]


def _create_with(service: dict[str, str]) -> tuple[bytes, object]:
    """A create carrying ``service`` (built without builder.service, which would refuse it)."""
    _, op = new_create(services=[service])
    return op.payload, op.proofs


@pytest.mark.parametrize("endpoint", GOOD_ENDPOINTS)
def test_good_endpoints_are_accepted(endpoint: str) -> None:
    payload, proofs = _create_with({"id": "s", "type": "T", "serviceEndpoint": endpoint})
    assert parse(payload, proofs, NET).services[0].endpoint == endpoint  # type: ignore[arg-type]


@pytest.mark.parametrize("endpoint, why", BAD_ENDPOINTS, ids=[repr(e)[:48] for e, _ in BAD_ENDPOINTS])
def test_bad_endpoints_are_rejected_with_invalid_service(endpoint: str, why: str) -> None:
    payload, proofs = _create_with({"id": "s", "type": "T", "serviceEndpoint": endpoint})
    with pytest.raises(errors.InvalidService) as info:
        parse(payload, proofs, NET)  # type: ignore[arg-type]
    err = info.value
    assert err.reason == "INVALID_SERVICE" and isinstance(err, errors.MalformedOperation)
    assert why in err.message and err.details == {"service": "s", "field": "serviceEndpoint"}
    # The message repeats the value escaped: no control or format character travels in it.
    assert not service_rules.UNSAFE_CHAR_RE.search(err.message) and err.message.isprintable()


@pytest.mark.parametrize("stype", ["T", "MQTTBroker", "DIDCommMessaging", "LinkedDomains", "did-communication", "Device.v2_x", "3GPP", "T" * 64])
def test_good_types_are_accepted(stype: str) -> None:
    payload, proofs = _create_with({"id": "s", "type": stype, "serviceEndpoint": "https://x.example"})
    assert parse(payload, proofs, NET).services[0].type == stype  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "stype",
    ["", "T\x1b[2J", "T\x1b]0;title\x07", "\u202eT", "T\u2066", "T\r", "T\u200d", "T T", "T\t", "-T", ".T", "_T", "T/x", "T:x", "T#x", "Typ\u00e9", "<b>"],
)
def test_bad_types_are_rejected_with_invalid_service(stype: str) -> None:
    payload, proofs = _create_with({"id": "s", "type": stype, "serviceEndpoint": "https://x.example"})
    with pytest.raises(errors.InvalidService) as info:
        parse(payload, proofs, NET)  # type: ignore[arg-type]
    assert info.value.details == {"service": "s", "field": "type"} and info.value.message.isprintable()


def test_over_long_type_and_endpoint_stay_too_large() -> None:
    for service in ({"id": "s", "type": "T" * 65, "serviceEndpoint": "https://x"}, {"id": "s", "type": "T", "serviceEndpoint": "https://x/" + "a" * 503}):
        payload, proofs = _create_with(service)
        with pytest.raises(errors.TooLarge):
            parse(payload, proofs, NET)  # type: ignore[arg-type]
    payload, proofs = _create_with({"id": "s", "type": "T", "serviceEndpoint": "https://x/" + "a" * 502})
    assert len(parse(payload, proofs, NET).services[0].endpoint) == 512  # type: ignore[arg-type]


@pytest.mark.parametrize("sid", ["s\x1b", "s\u202e", "s s", "next", "s-jwk", "", "s" * 33, "s#t", "s/t"])
def test_bad_ids_are_rejected_with_invalid_service(sid: str) -> None:
    """The fragment rule held before (as MALFORMED_OPERATION); it now has the precise reason."""
    payload, proofs = _create_with({"id": sid, "type": "T", "serviceEndpoint": "https://x.example"})
    with pytest.raises(errors.InvalidService) as info:
        parse(payload, proofs, NET)  # type: ignore[arg-type]
    assert info.value.details["field"] == "id" and info.value.message.isprintable()


def test_non_string_members_are_invalid_service() -> None:
    for service in ({"id": 1, "type": "T", "serviceEndpoint": "https://x"}, {"id": "s", "type": 1, "serviceEndpoint": "https://x"}, {"id": "s", "type": "T", "serviceEndpoint": None}):
        _, op = new_create()
        body = json.loads(op.payload)
        body["services"] = [service]
        with pytest.raises(errors.InvalidService):
            parse(canonical.encode(body), op.proofs, NET)


def test_the_ledger_rejects_an_update_with_a_bad_service_and_keeps_the_state() -> None:
    """Applied at the method's validation: an update carrying such a service is refused, nothing changes."""
    ledger = MemLedger()
    ident, op = new_create(services=[builder.service("mqtt", "MQTTBroker", "mqtts://broker.example:8883")])
    state = ledger.submit(op)
    for bad in ({"id": "hub", "type": "T", "serviceEndpoint": "javascript:alert(1)"}, {"id": "hub", "type": "T\u202e", "serviceEndpoint": "https://h.example"}):
        upd = builder.update(NET, ident.did, 1, state.last, [bad], None)
        with pytest.raises(errors.InvalidService):
            ledger.submit(builder.sign(upd, [(ident.kid, ident.key)]))
    assert ledger.states[ident.did].services == state.services


def test_builder_refuses_what_the_ledger_would() -> None:
    """A client finds out before signing: builder.service applies the same rules."""
    assert builder.service("hub", "DIDCommMessaging", "https://hub.example/d") == {"id": "hub", "type": "DIDCommMessaging", "serviceEndpoint": "https://hub.example/d"}
    with pytest.raises(errors.InvalidService):
        builder.service("hub", "DIDCommMessaging", "javascript:alert(1)")
    with pytest.raises(errors.InvalidService):
        builder.service("hub", "DIDComm\x1b[2J", "https://hub.example/d")
    with pytest.raises(errors.TooLarge):
        builder.service("hub", "T", "https://hub.example/" + "a" * 600)


def test_the_rules_do_not_depend_on_pythons_unicode_database() -> None:
    """Consensus: the unsafe set is explicit ranges, and it holds every C0, DEL, C1 and bidi control."""
    unsafe = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)]
    assert all(service_rules.UNSAFE_CHAR_RE.fullmatch(c) for c in unsafe)
    assert not any(service_rules.UNSAFE_CHAR_RE.search(c) for c in "AZaz09-._~:/?#[]@!$&'()*+,;=% é✓")
