"""The log's side of the witness protocol (didnode.witness.client) against real ``didnode witness`` processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from didnode.core import cosignature
from didnode.core import note as note_codec
from didnode.errors import InvalidArgument, WitnessRequestMalformed
from didnode.witness.client import WitnessClient, WitnessEndpoint
from didnode.witness.request import parse_cosignatures, parse_size_conflict
from tests.witness.conftest import TestLog, start_witness


def test_pure_parts() -> None:
    assert parse_size_conflict("text/x.tlog.size", b"12\n") == 12
    assert parse_size_conflict("text/x.tlog.size; charset=utf-8", b"0\n") == 0
    for ctype, body in (("text/plain", b"12\n"), ("text/x.tlog.size", b"12"), ("text/x.tlog.size", b"012\n"), ("text/x.tlog.size", b"x\n")):
        with pytest.raises(WitnessRequestMalformed):
            parse_size_conflict(ctype, body)
    for body in (b"", b"nonsense\n", b"\xe2\x80\x94 w AAAA", "\u2014 w !!!!\n".encode()):
        with pytest.raises(WitnessRequestMalformed):
            parse_cosignatures(body)
    with pytest.raises(InvalidArgument):
        WitnessEndpoint.parse("http://x")
    log = TestLog()
    with pytest.raises(InvalidArgument):  # a log key (0x01) is not a witness key
        WitnessEndpoint.parse(f"http://127.0.0.1:1={log.vkey}")


def test_two_witnesses_cosign_a_growing_log_and_a_dead_one_is_named(tmp_path: Path) -> None:
    log = TestLog()
    ws = [start_witness(tmp_path / f"w{i}", [f"{log.origin}={log.vkey}"], ["--name", f"witness.test/w{i}"]) for i in range(2)]
    dead = WitnessEndpoint.parse(f"http://127.0.0.1:9={ws[0].vkey}")  # discard port: connection refused
    try:
        eps = [WitnessEndpoint.parse(f"{w.url}={w.vkey}") for w in ws]

        async def run() -> None:
            async with WitnessClient(eps + [dead], lambda old, new: log.proof(old, new), timeout_s=2, attempts=2, backoff_s=0.01) as client:
                for n in (3, 5, 17):
                    log.grow(n)
                    res = await client.cosign(log.note(), len(log.leaves))
                    assert set(res.cosignatures) == {e.url for e in eps}
                    assert list(res.failures) == [dead.url]
                    note = note_codec.parse(res.note)
                    assert len(note.signatures) == 3
                    for e in eps:
                        sig = next(s for s in note.signatures if cosignature.is_from(s, e.name, e.public_key))
                        cosignature.verify_cosignature(note.text, sig, e.public_key, e.name)
                # a fresh client (a restarted node) learns the held size from the 409
                fresh = WitnessClient(eps, lambda old, new: log.proof(old, new), timeout_s=2)
                log.grow(2)
                res = await fresh.cosign(log.note(), len(log.leaves))
                assert set(res.cosignatures) == {e.url for e in eps} and not res.failures
                assert fresh.requests == 4  # one 409 and one 200 each
                await fresh.close()
                # a fork of the held size is refused (422), not retried
                forked = log.fork(len(log.leaves) - 1)
                forked.grow(1, b"other")
                res = await client.cosign(forked.note(), len(forked.leaves))
                assert not res.cosignatures and set(res.failures) == {e.url for e in eps} | {dead.url}
                assert "422" in res.failures[eps[0].url]

        asyncio.run(run())
    finally:
        for w in ws:
            w.stop()
