"""Browser tests of the explorer: headless Chromium (Debian's ``chromium``) driven by Playwright's Python API.

Playwright's own browser download is not used: the tests point it at the system Chromium
(``executable_path``). Without a Chromium binary (or without the ``playwright`` package) the
tests skip with the reason, except in CI (``CI=true``), where that is a failure: ``.ci/run``
installs the browser first. One browser per test module, started once; a fresh context per test.

Screenshots of each page go to ``var/explorer-screenshots/``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "explorer-screenshots"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The browser binary: ``$DIDNODE_CHROMIUM``, else the first of :data:`CANDIDATES` on the PATH."""
    env = os.environ.get("DIDNODE_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}: .ci/run installs chromium (apt-get install -y chromium) and playwright (the dev extra)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the test module."""
    exe = chromium_path()
    if exe is None:
        _unavailable("no Chromium binary found (apt-get install -y chromium, or set DIDNODE_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        b = p.chromium.launch(executable_path=exe, headless=True, args=[*args, "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (own context: no pinned policy left over) that fails the test on a page error."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Content Security Policy" in m.text else None)
    pg.on("console", lambda m: print("console:", m.type, m.text) if m.type in ("error", "warning") else None)
    pg.on("response", lambda r: print("HTTP", r.status, r.url) if r.status >= 400 else None)
    pg.set_default_timeout(20_000)
    yield pg
    ctx.close()
    assert not errors, f"errors in the page: {errors}"


def screenshot(pg: Any, name: str) -> Path:
    """Write a full-page screenshot under var/explorer-screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    return path


def wait_verdict(pg: Any, selector: str = "main .badge") -> tuple[str, str]:
    """Wait until the badge is no longer pending; return (data-verified, its text)."""
    try:
        pg.wait_for_selector(f"{selector}:not([data-verified='pending'])")
    except Exception as exc:
        raise AssertionError(f"no verdict at {pg.url}: {exc}; the page says: {pg.locator('main').inner_text()[:2000]!r}") from None
    el = pg.locator(selector).first
    return el.get_attribute("data-verified") or "", el.inner_text()


class AlteringProxy:
    """An aiohttp proxy on 127.0.0.1 in front of a node's HTTP face that rewrites chosen JSON answers.

    The browser's attacker: it holds no key the page trusts. ``rewrite(path, body) -> body`` is
    applied to JSON answers of paths starting with ``prefix``; everything else passes unchanged
    (status, headers, bytes). Runs its own event loop on a thread; use as a context manager.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rewrite: Callable[[str, Any], Any] | None = None
        self.prefix = "/api/v1/did/"
        self.base = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> "AlteringProxy":
        self._thread.start()
        self.base = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> str:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession(auto_decompress=True)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._session.close()
        await self._runner.cleanup()

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        url = self.upstream + str(request.rel_url)  # path and query as sent (percent-encoded)
        from yarl import URL

        async with self._session.request(request.method, URL(url, encoded=True), headers={"Accept": request.headers.get("Accept", "*/*")}) as up:
            body = await up.read()
            headers = {k: v for k, v in up.headers.items() if k.lower() not in {"content-length", "transfer-encoding", "content-encoding", "connection"}}
            rw = self.rewrite
            if rw is not None and request.path.startswith(self.prefix) and up.status == 200 and "json" in up.headers.get("Content-Type", ""):
                body = json.dumps(rw(request.path, json.loads(body))).encode()
            return web.Response(status=up.status, body=body, headers=headers)


def flip_b64(value: str, index: int = -1) -> str:
    """Standard base64 of the same bytes with one byte altered (the last by default)."""
    raw = bytearray(base64.b64decode(value))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()
