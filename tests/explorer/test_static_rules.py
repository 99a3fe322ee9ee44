"""The explorer's static files follow its safety rules (docs/explorer.md "Safety rules"), checked on the
source: no HTML from strings, no inline script or style, nothing loaded from elsewhere, ES modules only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "didnode" / "http" / "explorer" / "static"
JS = sorted(STATIC.rglob("*.js"))
HTML = sorted(STATIC.rglob("*.html"))


def _code(path: Path) -> str:
    """The file without its comments (so that the rules may be stated in JSDoc)."""
    text = path.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"(?m)^\s*//.*$", "", text)


@pytest.mark.parametrize("path", JS, ids=[str(p.relative_to(STATIC)) for p in JS])
def test_no_markup_from_strings_no_eval_no_globals(path: Path) -> None:
    code = _code(path)
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'", ".style.", "window.", "javascript:"):
        assert banned not in code, f"{path.name} uses {banned}"
    assert re.search(r"^(import|export) ", code, re.M), f"{path.name} is not an ES module"
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", code), f"{path.name} names another origin"


@pytest.mark.parametrize("path", HTML, ids=[p.name for p in HTML])
def test_pages_have_no_inline_script_or_style_and_load_only_their_own_files(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "inline script"
    assert "<style" not in text and " style=" not in text and not re.search(r"\son[a-z]+=", text), "inline style or handler"
    for url in re.findall(r'(?:src|href)="([^"]+)"', text):
        assert url.startswith(("/", "#", "data:,")), f"{path.name} loads {url}"
    for url in re.findall(r'<script[^>]*src="([^"]+)"', text):
        assert url.startswith("/static/") and url.endswith(".js")


def test_every_module_is_documented() -> None:
    for path in JS:
        assert "@module" in path.read_text(), f"{path.name} has no module JSDoc"
