"""Two targets for the harness's own test (loaded only through DIDNODE_FUZZ_EXTRA): one parser that
fails typed, one with a planted bug that a fuzzer must find from its seed."""

from __future__ import annotations

from didnode.errors import MalformedMessage
from tests.fuzz.harness import target


@target("selftest_typed", seeds=lambda: [b"ok"], max_len=64)
def typed(data: bytes) -> None:
    if data != b"ok":
        raise MalformedMessage("not ok")


@target("selftest_planted_bug", seeds=lambda: [b"F"], max_len=64)
def planted(data: bytes) -> None:
    # One branch per byte: only coverage guidance gets through all four (this module is
    # instrumented like didnode when loaded through DIDNODE_FUZZ_EXTRA).
    if len(data) >= 4 and data[0] == 0x46:
        if data[1] == 0x55:
            if data[2] == 0x5A:
                if data[3] == 0x5A:
                    raise KeyError("planted")  # a parser bug: not a didnode error
    if not data:
        raise MalformedMessage("empty")
