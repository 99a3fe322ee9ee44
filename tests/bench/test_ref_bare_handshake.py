"""bench/ref_bare_handshake.py, the bare-protocol reference of bench/auth.py: its handshakes really complete
(both signatures and all three MACs check) against its server in its own process, in both carriages,
and a wrong key fails."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import ref_bare_handshake as bare  # noqa: E402
from serving import stop_process  # noqa: E402


@pytest.fixture(scope="module")
def server() -> object:
    proc, address = bare.start_bare_server(2)
    yield address
    stop_process(proc)


@pytest.mark.parametrize("carriage", ["stream", "headers"])
def test_bare_handshakes_complete(server: str, carriage: str) -> None:
    async def run() -> None:
        one, close = bare.bare_initiators(server, 2, carriage)
        try:
            for i in (0, 1, 0, 1):
                await asyncio.wait_for(one(i), 10)
        finally:
            await close()

    asyncio.run(run())


@pytest.mark.parametrize("carriage", ["stream", "headers"])
def test_an_initiator_with_another_key_than_the_responder_knows_fails(server: str, carriage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The transcripts differ (each binds both identity keys): the responder's signature does not verify."""
    monkeypatch.setattr(bare, "initiator_seed", lambda i: bytes(32))

    async def run() -> None:
        one, close = bare.bare_initiators(server, 1, carriage)
        try:
            await asyncio.wait_for(one(0), 10)
        finally:
            await close()

    with pytest.raises(bare.BadHandshake, match="does not verify"):
        asyncio.run(run())
