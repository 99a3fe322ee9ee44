"""Every committed checkpoint vector verifies or fails exactly as its file says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from didnode.core import checkpoint as cp_codec
from didnode.core.transparency_verify import verify_checkpoint
from didnode.errors import InvalidProof
from tests.core.checkpoint import make_vectors

FILES = sorted(make_vectors.VECTOR_DIR.glob("*.json"))


def _run(vector: dict[str, Any]) -> None:
    signed = cp_codec.from_json(vector["checkpoint"])
    verify_checkpoint(signed, bytes.fromhex(vector["signer_public_key"]), vector["signer_did"])


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert vector["name"] == path.stem
    if vector["expect"] == "ok":
        _run(vector)
        signed = cp_codec.from_json(vector["checkpoint"])
        assert signed.checkpoint.signing_bytes().hex() == vector["signing_bytes"]
    else:
        with pytest.raises(InvalidProof) as caught:
            _run(vector)
        assert type(caught.value).__name__ == vector["expect"], str(caught.value)


def test_committed_vectors_match_generator() -> None:
    built = make_vectors.build()
    assert sorted(built) == [f.stem for f in FILES]
    for f in FILES:
        assert f.read_text() == make_vectors.render(built[f.stem]), f.name
