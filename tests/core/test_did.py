"""did:dnode identifier syntax: exactly one spelling per DID."""

from __future__ import annotations

import pytest

from didnode import errors
from didnode.core.did import did_from_create_payload, split_did_url, validate_did

GOOD = did_from_create_payload(b'{"example":1}')


def test_derived_dids_validate() -> None:
    assert validate_did(GOOD) == GOOD
    assert len(GOOD) == len("did:dnode:") + 46 and GOOD.startswith("did:dnode:Qm")


@pytest.mark.parametrize(
    "did, fragment",
    [
        (GOOD.replace("did:dnode", "did:web"), "unsupported DID method"),
        (GOOD.replace("did:", "DID:"), "lowercase"),
        (GOOD.replace("dnode", "DNODE"), "lowercase"),
        (GOOD[:-1], "characters"),
        (GOOD + "a", "characters"),
        (GOOD[:-1] + "0", "alphabet"),
        (GOOD[:-1] + "l", "alphabet"),
        (GOOD.replace(":Qm", ":%51m"), "percent"),
        ("did:dnode:" + "1" * 46, "multihash"),
        ("did:dnode:a:b", "':'"),
        ("dnode:" + GOOD[10:], "not a DID"),
        ("", "not a DID"),
    ],
    ids=["method", "scheme-case", "method-case", "short", "long", "zero", "ell", "percent", "not-multihash", "colon", "no-scheme", "empty"],
)
def test_malformed_dids_are_rejected_with_the_reason(did: str, fragment: str) -> None:
    with pytest.raises(errors.InvalidDid) as exc:
        validate_did(did)
    assert fragment in str(exc.value)


def test_did_url_fragment_rules() -> None:
    assert split_did_url(GOOD + "#key-1") == (GOOD, "key-1")
    for bad in (GOOD, GOOD + "#", GOOD + "#key 1", GOOD + "#" + "k" * 33):
        with pytest.raises(errors.InvalidDid):
            split_did_url(bad)


def test_non_string_is_rejected() -> None:
    with pytest.raises(errors.InvalidDid):
        validate_did(42)
