"""docs/authentication.md stays true: its policy examples parse (and agree), its reason table names every code."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from didnode import errors
from didnode.core.handshake import parse_policy
from didnode.core.handshake.nonces import HandshakeLimits

DOC = (Path(__file__).resolve().parents[2] / "docs" / "authentication.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)


def test_policy_examples_parse_and_are_the_same_policy() -> None:
    (json_text,) = blocks("json")
    (toml_text,) = blocks("toml")
    from_json = parse_policy(json.loads(json_text))
    assert from_json == parse_policy(tomllib.loads(toml_text))
    assert len(from_json.rules) == 3 and from_json.requests()


def test_reason_table_names_every_authentication_code() -> None:
    ours = {
        cls.reason
        for cls in errors.all_reasons().values()
        if issubclass(cls, errors.AuthenticationFailed)
    }
    for reason in ours:
        assert f"`{reason}`" in DOC, reason


def test_documented_limits_are_the_defaults() -> None:
    lim = HandshakeLimits()
    for value in (lim.timeout_ms, lim.max_skew_ms, lim.max_pending_per_peer, lim.max_pending_total, lim.cookie_threshold, lim.max_nonces):
        assert f"{value:,}" in DOC
    assert lim.retention_ms == 130_000 and "130 s" in DOC
    from didnode.auth.peers import ClientKeyStates
    from didnode.core.handshake import cookies

    assert cookies.LIFETIME_MS == 10_000 and cookies.ROTATE_MS == 120_000 and "valid 10 s, secrets rotated every 2 min" in DOC
    assert ClientKeyStates.RECHECK_AFTER_MS == 1000 and "at most 1 s old" in DOC
