"""Every committed proof vector verifies or fails exactly as its file says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from didnode.core.merkle import proof_verify, sparse_verify
from didnode.core.merkle.encoding import parse_log_proof, parse_sparse_proof
from didnode.errors import InvalidProof
from tests.core.merkle import make_vectors

FILES = sorted(make_vectors.VECTOR_DIR.glob("*.json"))


def _run(vector: dict[str, Any]) -> None:
    i = vector["input"]
    h = bytes.fromhex
    check = vector["check"]
    if check == "inclusion":
        proof_verify.verify_inclusion(
            h(i["leaf_hash"]), i["index"], i["size"], parse_log_proof(h(i["proof"])), h(i["root"])
        )
    elif check == "consistency":
        proof_verify.verify_consistency(
            i["size1"], i["size2"], h(i["root1"]), h(i["root2"]), parse_log_proof(h(i["proof"]))
        )
    elif check == "sparse_present":
        sparse_verify.verify_present(h(i["root"]), h(i["key"]), h(i["value"]), parse_sparse_proof(h(i["proof"])))
    elif check == "sparse_absent":
        sparse_verify.verify_absent(h(i["root"]), h(i["key"]), parse_sparse_proof(h(i["proof"])))
    else:
        raise AssertionError(f"unknown check {check!r}")


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert vector["name"] == path.stem
    if vector["expect"] == "ok":
        _run(vector)
    else:
        with pytest.raises(InvalidProof) as caught:
            _run(vector)
        assert type(caught.value).__name__ == vector["expect"], str(caught.value)


def test_committed_vectors_match_generator() -> None:
    # The files are data for other implementations too; they must be exactly
    # what make_vectors.py produces (rerun it after changing either).
    built = make_vectors.build()
    assert sorted(built) == [f.stem for f in FILES]
    for f in FILES:
        assert f.read_text() == make_vectors.render(built[f.stem]), f.name


def test_every_check_has_valid_and_invalid_vectors() -> None:
    seen: dict[str, set[str]] = {}
    for f in FILES:
        v = json.loads(f.read_text())
        seen.setdefault(v["check"], set()).add("ok" if v["expect"] == "ok" else "bad")
    assert seen == {c: {"ok", "bad"} for c in ("inclusion", "consistency", "sparse_present", "sparse_absent")}
