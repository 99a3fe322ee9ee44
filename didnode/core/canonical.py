"""RFC 8785 (JCS) canonical JSON for the did:dnode schema.

Why not a general JCS implementation on the hot path: for the JSON values the
method admits (objects with ASCII member names, arrays, strings, booleans,
null and integers in [-(2^53-1), 2^53-1], never floats) Python's
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` emits
exactly the RFC 8785 bytes:

* member names are ASCII, so code-point order equals the UTF-16 code-unit
  order JCS sorts by;
* strings are escaped the same way (``\\" \\\\ \\b \\f \\n \\r \\t``, other
  controls as lowercase ``\\u00xx``, everything else literal, UTF-8);
* safe integers print identically in ECMAScript and Python.

So :func:`encode` produces canonical bytes and :func:`decode_canonical` checks
them with one parse and one re-encode. The schema (``operations``) rejects
floats, unsafe integers and non-ASCII member names so that the equivalence
always holds; tests cross-check against the independent ``rfc8785`` package.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Callable

from didnode.errors import DidnodeError, DuplicateJsonKey, MalformedOperation, NonCanonicalEncoding

MAX_SAFE_INT = 2**53 - 1

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode(value: Any) -> bytes:
    """Canonical bytes of ``value``.

    Precondition: ``value`` is made of dict (str keys), list, str, bool,
    None and safe int only; :func:`check_value` enforces it where the input
    is untrusted.
    """
    return _encoder.encode(value).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise MalformedOperation(f"JSON constant {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateJsonKey(f"JSON member name {k!r} appears more than once", member=k)
        out[k] = v
    return out


def _reject_float(text: str) -> Any:
    raise MalformedOperation(f"number {text} is not an integer; the schema admits integers only")


# Floats and NaN/Infinity are refused while parsing (the C scanner calls these
# hooks only for such tokens), so Python's "1.0" can never pass as canonical.
_decoder = json.JSONDecoder(parse_float=_reject_float, parse_constant=_reject_constant)
_strict_decoder = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_float=_reject_float, parse_constant=_reject_constant
)


# --------------------------------------------------------------------------
# Untrusted JSON: every failure is the caller's typed error
# --------------------------------------------------------------------------
#
# ``json.loads`` fails in more ways than JSONDecodeError: bad UTF-8
# (UnicodeDecodeError), nesting beyond the interpreter's recursion limit
# (RecursionError) and a decimal integer literal of more digits than
# ``sys.get_int_max_str_digits()`` (a plain ValueError raised by int() inside
# the C scanner, CVE-2020-10735's mitigation). Every parser of bytes that
# came from outside goes through :func:`loads`, which turns each of them into
# ``error(message)``: the caller's own :class:`~didnode.errors.DidnodeError`.

ErrorFactory = Callable[[str], DidnodeError]
_plain_decoder = json.JSONDecoder()


def int_digits_limit() -> int:
    """The interpreter's limit on decimal digits in an int literal (0: unlimited)."""
    return sys.get_int_max_str_digits()


def why_not_json(exc: BaseException) -> str:
    """Why a JSON parser failed with ``exc``, as a predicate: ``f"{what} {why_not_json(exc)}"`` reads as a sentence."""
    if isinstance(exc, UnicodeDecodeError):
        return f"is not valid UTF-8 at byte {exc.start}"
    if isinstance(exc, json.JSONDecodeError):
        return f"is not valid JSON: {exc.msg} at offset {exc.pos}"
    if isinstance(exc, RecursionError):
        return "is not valid JSON: nested too deeply"
    text = str(exc)
    if isinstance(exc, ValueError) and "integer string conversion" in text:
        m = _DIGITS_RE.search(text)
        size = f"{m.group(1)} digits" if m else "too many digits"
        return f"holds an integer of {size}; the limit is {int_digits_limit()} digits"
    return f"is not valid JSON ({type(exc).__name__})"


_DIGITS_RE = re.compile(r"value has (\d+) digits")


def unique_members_decoder(error: ErrorFactory) -> json.JSONDecoder:
    """A decoder for :func:`loads` that refuses an object naming a member twice with
    ``error("member '<name>' appears twice")`` (never reading it as its last value), for files
    whose format has its own error class (trust policies, receipts)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise error(f"member {k[:40]!r} appears twice")
            out[k] = v
        return out

    return json.JSONDecoder(object_pairs_hook=hook)


def loads(data: bytes | bytearray | memoryview | str, error: ErrorFactory, what: str, decoder: json.JSONDecoder = _plain_decoder) -> Any:
    """Parse untrusted JSON text (UTF-8 bytes, or str); raise ``error(f"{what} ...")`` on any failure.

    ``decoder`` may carry hooks (duplicate members, floats, constants); a
    :class:`~didnode.errors.DidnodeError` a hook raises propagates as it is.
    Never raises anything else for any input (the fuzz targets in
    ``tests/fuzz`` hold every caller to that).
    """
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        return decoder.decode(text)
    except DidnodeError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error(f"{what} {why_not_json(exc)}") from None


def decode_strict(data: bytes) -> Any:
    """Parse JSON, rejecting duplicate member names, floats, NaN/Infinity and bad UTF-8.

    Slower than :func:`decode_canonical`; used for untrusted input that is
    not required to be canonical and to explain why a canonical check failed.
    """
    return loads(data, MalformedOperation, "operation", _strict_decoder)


def decode_canonical(data: bytes) -> Any:
    """Parse ``data`` and require it to be the canonical encoding of its value.

    Raises :class:`NonCanonicalEncoding` (or a more precise
    :class:`DuplicateJsonKey` / :class:`MalformedOperation`) otherwise.
    """
    try:
        value = _decoder.decode(data.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, too deep, an integer of too many digits
        # Re-parse strictly only to produce the precise error message.
        decode_strict(data)
        raise MalformedOperation("operation is not valid JSON") from None
    try:
        again = encode(value)
    except ValueError:
        # NaN / Infinity (json.loads admits them) or a lone surrogate escape,
        # which has no UTF-8 form: neither can be canonical.
        decode_strict(data)
        raise MalformedOperation("operation holds a lone UTF-16 surrogate or a non-finite number") from None
    if again != data:
        # A duplicate key or float is a more useful answer than "not canonical".
        decode_strict(data)
        raise NonCanonicalEncoding(
            "operation bytes are not RFC 8785 canonical JSON (sorted keys, no whitespace, minimal escapes)"
        )
    return value


def check_value(value: Any, path: str = "$") -> None:
    """Require ``value`` to lie in the canonical-safe subset (see module docstring).

    Precondition: none; raises :class:`MalformedOperation` naming the JSON path.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return
        raise MalformedOperation(f"integer at {path} is outside the safe range ±(2^53-1)")
    if isinstance(value, float):
        raise MalformedOperation(f"number at {path} is not an integer; the schema admits integers only")
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_value(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str) or not k.isascii():
                raise MalformedOperation(f"member name {k!r} at {path} must be ASCII")
            check_value(item, f"{path}.{k}")
        return
    raise MalformedOperation(f"value at {path} has unsupported type {type(value).__name__}")
