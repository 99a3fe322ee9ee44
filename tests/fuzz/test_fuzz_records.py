"""Fuzz targets: state records (``DidState.from_record``) and log entries (``core.entry.decode``).

Both are binary and canonical: the decoder accepts exactly what the encoder writes, so
a decoded value must encode to the very bytes it came from. State records also reach a
client inside state proofs and GetKeyState replies; they must decode to a state whose
JSON view and keys can be built (or fail typed).
"""

from __future__ import annotations

from didnode.core import entry as entry_codec
from didnode.core.keystate import DidState
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, JSON_TOKENS, world


@target("state_record", seeds=lambda: list(world().records), tokens=(*JSON_TOKENS, *DID_TOKENS, '"id":', '"hash":', '"pos":', '"seq":', '"mediaType":', '"serviceEndpoint":', '"type":', "compromised"), max_len=8192)
def fuzz_state_record(data: bytes) -> None:
    state = DidState.from_record(data)
    assert state.to_record() == data, "a decoded state record must re-encode to the same bytes"
    state.to_json()
    for k in state.keys:
        k.raw  # noqa: B018 -- decodes the key's Multikey (InvalidKey when it is not one)


@target("log_entry", seeds=lambda: list(world().entries), tokens=(*DID_TOKENS, '{"', b"\x01\x00\x00\x00\x00\x00\x00\x00"), max_len=8192)
def fuzz_log_entry(data: bytes) -> None:
    e = entry_codec.decode(data)
    assert e.encode() == data, "a decoded log entry must re-encode to the same bytes"


test_fuzz = harness.fuzz_tests(__name__)
