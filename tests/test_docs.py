"""docs/ stays true to the code where it can be checked mechanically."""

from __future__ import annotations

from pathlib import Path

from tools.gen_errors_doc import render

ROOT = Path(__file__).resolve().parent.parent


def test_errors_doc_lists_every_reason_with_its_status() -> None:
    assert (ROOT / "docs" / "errors.md").read_text() == render(), "run: .venv/bin/python tools/gen_errors_doc.py"


def test_did_method_doc_names_every_limit() -> None:
    from didnode.core import operations

    text = (ROOT / "docs" / "did-method.md").read_text()
    for value in (operations.MAX_PAYLOAD_BYTES, operations.MAX_PROOFS, operations.MAX_KEYS, operations.MAX_SERVICES):
        assert f"{value:,}" in text or str(value) in text
