"""Canonical JSON: our fast path equals RFC 8785 (checked against the independent rfc8785 package)."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from didnode import errors
from didnode.core import canonical

ascii_keys = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
safe_ints = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
leaves = st.none() | st.booleans() | safe_ints | st.text(max_size=20).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ascii_keys, inner, max_size=4), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(values)
def test_encode_equals_rfc8785(value: object) -> None:
    assert canonical.encode(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(ascii_keys, values, max_size=5))
def test_canonical_bytes_round_trip(value: dict) -> None:
    data = rfc8785.dumps(value)
    assert canonical.decode_canonical(data) == value


@pytest.mark.parametrize(
    "data, error",
    [
        (b'{"b":1,"a":2}', errors.NonCanonicalEncoding),  # unsorted members
        (b'{"a": 1}', errors.NonCanonicalEncoding),  # whitespace
        (b'{"a":"\\u0041"}', errors.NonCanonicalEncoding),  # needless escape
        (b'{"a":1,"a":1}', errors.DuplicateJsonKey),
        (b'{"a":1.0}', errors.MalformedOperation),  # floats are outside the schema
        (b'{"a":1e3}', errors.MalformedOperation),
        (b'{"a":NaN}', errors.MalformedOperation),
        (b'{"a":"\\ud800"}', errors.MalformedOperation),  # lone surrogate
        (b'{"a":', errors.MalformedOperation),  # truncated
        (b"\xff\xfe", errors.MalformedOperation),  # not UTF-8
    ],
    ids=["unsorted", "whitespace", "escape", "duplicate", "float", "exponent", "nan", "surrogate", "truncated", "not-utf8"],
)
def test_non_canonical_input_is_rejected(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        canonical.decode_canonical(data)


def test_unsafe_integers_and_non_ascii_member_names_are_outside_the_schema() -> None:
    with pytest.raises(errors.MalformedOperation):
        canonical.check_value({"n": 2**53})
    with pytest.raises(errors.MalformedOperation):
        canonical.check_value({"é": 1})
    with pytest.raises(errors.MalformedOperation):
        canonical.check_value({"x": [1.5]})


def test_non_ascii_strings_stay_literal() -> None:
    value = {"s": "gerät \u2028 ✓ \x01"}
    assert canonical.encode(value) == rfc8785.dumps(value)
    assert canonical.decode_canonical(canonical.encode(value)) == json.loads(canonical.encode(value))
