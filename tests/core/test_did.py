"""did:dnode identifier syntax: exactly one spelling per DID."""

from __future__ import annotations

import pytest

from didnode import errors
from didnode.core.did import did_from_create_payload, key_id_of, split_did_url, validate_did

GOOD = did_from_create_payload(b'{"example":1}')
OTHER = did_from_create_payload(b'{"example":2}')


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


# --------------------------------------------------------------------------
# key_id_of: the key id a user-copied reference names
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, key_id",
    [
        ("key-1", "key-1"),
        ("#key-1", "key-1"),
        (GOOD + "#key-1", "key-1"),
        ("ka-2", "ka-2"),
        ("next", "next"),
        (GOOD + "#next", "next"),
        ("k" * 32, "k" * 32),
    ],
    ids=["bare", "fragment", "did-url", "key-agreement", "next", "next-url", "longest"],
)
def test_key_id_of_accepts_each_form(ref: str, key_id: str) -> None:
    assert key_id_of(GOOD, ref) == key_id


@pytest.mark.parametrize("ref", ["key-1-jwk", "#key-1-jwk", GOOD + "#key-1-jwk"], ids=["bare", "fragment", "did-url"])
def test_key_id_of_maps_the_jwk_method_to_its_key(ref: str) -> None:
    assert key_id_of(GOOD, ref) == "key-1"
    # The JsonWebKey method of a key with the longest id is longer than a key id, and still names it.
    assert key_id_of(GOOD, "#" + "k" * 32 + "-jwk") == "k" * 32


def test_key_id_of_refuses_another_dids_url_naming_both() -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        key_id_of(GOOD, OTHER + "#key-1")
    assert GOOD in str(exc.value) and OTHER in str(exc.value)
    assert exc.value.details == {"did": GOOD, "other": OTHER}
    with pytest.raises(errors.InvalidArgument):
        key_id_of(GOOD, OTHER + "#key-1-jwk")


@pytest.mark.parametrize(
    "ref",
    [
        "#",
        GOOD + "#",
        "key 1",
        "#key.1",
        "k" * 33,
        "#key-1#x",
        "#%6Bey-1",
        "-jwk",
        "key-1-jwk-jwk",
        "next-jwk",
        " key-1",
    ],
    ids=["hash-only", "url-empty-fragment", "space", "dot", "too-long", "two-fragments", "percent", "jwk-alone", "jwk-twice", "next-jwk", "untrimmed"],
)
def test_key_id_of_refuses_a_malformed_fragment(ref: str) -> None:
    with pytest.raises(errors.InvalidDid) as exc:
        key_id_of(GOOD, ref)
    assert "1-32 characters" in str(exc.value)


def test_key_id_of_refuses_empty() -> None:
    with pytest.raises(errors.InvalidDid, match="no key id"):
        key_id_of(GOOD, "")


@pytest.mark.parametrize(
    "ref",
    [GOOD + "/keys#key-1", GOOD + "?versionId=1#key-1", GOOD + "?service=hub", OTHER + "/p#key-1"],
    ids=["path", "query", "query-no-fragment", "other-did-path"],
)
def test_key_id_of_refuses_a_did_url_with_path_or_query(ref: str) -> None:
    with pytest.raises(errors.InvalidDid, match="path or query"):
        key_id_of(GOOD, ref)


def test_key_id_of_refuses_a_did_without_fragment_and_bad_did_parts() -> None:
    with pytest.raises(errors.InvalidDid, match="names no key"):
        key_id_of(GOOD, GOOD)
    with pytest.raises(errors.InvalidDid, match="lowercase"):
        key_id_of(GOOD, GOOD.replace("did:", "DID:") + "#key-1")
    with pytest.raises(errors.InvalidDid, match="unsupported DID method"):
        key_id_of(GOOD, "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK#key-1")
    with pytest.raises(errors.InvalidDid, match="not a DID"):
        key_id_of(GOOD, "dev#key-1")
    # The subject itself must be a valid DID.
    with pytest.raises(errors.InvalidDid):
        key_id_of("did:dnode:abc", "key-1")
    with pytest.raises(errors.InvalidDid):
        key_id_of(GOOD, 1)  # type: ignore[arg-type]
