"""New submissions make log entries a tlog-tiles entry bundle can carry (at most 65,535 bytes)."""

from __future__ import annotations

import hashlib

import pytest

from didnode import errors
from didnode.client import Client
from didnode.core import builder
from didnode.core import entry as entry_codec
from tests.conftest import RunningNode
from tests.factory import new_create


def _publish(ident, create, content: str):  # type: ignore[no-untyped-def]
    unsigned = builder.publish("local", ident.did, 1, hashlib.sha256(create.payload).hexdigest(), "big", "text/plain", content)
    return builder.sign(unsigned, [(ident.kid, ident.key)])


def test_an_entry_a_tile_bundle_cannot_carry_is_refused_and_one_that_fits_is_accepted(shared_node: RunningNode) -> None:
    ident, create = new_create()
    with Client(shared_node.address) as c:
        c.submit(create)
        # Two-byte characters: the payload stays under the publish limit (65,536), the entry does not
        # fit a u16 length (the create's payload grows the JSON around the content by a few hundred bytes).
        too_big = _publish(ident, create, "é" * 32_600)
        size = entry_codec.encoded_size(too_big.payload, too_big.proofs)
        assert len(too_big.payload) <= 65_536 and size > entry_codec.MAX_NEW_ENTRY_BYTES
        with pytest.raises(errors.TooLarge) as err:
            c.submit(too_big)
        assert err.value.details["field"] == "entry" and err.value.details["length"] == str(size)
        fits = _publish(ident, create, "é" * 32_000)
        assert entry_codec.encoded_size(fits.payload, fits.proofs) <= entry_codec.MAX_NEW_ENTRY_BYTES
        receipt = c.submit(fits)
        # The entry the log stored is exactly as long as computed before submission.
        entry = c.inclusion_proof(position=receipt.position).entry
        assert len(entry) == entry_codec.encoded_size(fits.payload, fits.proofs)
