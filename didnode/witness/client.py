"""Asking witnesses for cosignatures: the log's side of c2sp.org/tlog-witness (docs/witness.md).

:class:`WitnessClient.cosign` takes a checkpoint note signed by the log, posts
``add-checkpoint`` to every configured witness at once (aiohttp, one timeout
per request, bounded retries with exponential backoff on connection errors,
timeouts and 5xx), and returns the cosignatures that verified against each
witness's verifier key (:func:`didnode.core.cosignature.verify_cosignature`).
A witness that fails is named in :attr:`CosignResult.failures`; the others'
cosignatures are still returned.

The ``old`` size sent to a witness is the size it last cosigned for this
client (0 at first); a 409 answer tells the size it holds
(``text/x.tlog.size``) and the request is made again once from there, with a
consistency proof from that size built by ``proof`` (the log's own tree:
``proof(old, new)`` returns RFC 9162 PROOF(old, new)). A witness that holds a
larger tree than the checkpoint, or answers 400/403/404/422, is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Collection, Sequence

import aiohttp

from didnode.core import cosignature
from didnode.core import note as note_codec
from didnode.core.note import COSIGNATURE_V1, NoteSignature
from didnode.errors import BadCosignature, DidnodeError, InvalidArgument, MalformedNote
from didnode.witness.request import encode_add_checkpoint, parse_cosignatures, parse_size_conflict

log = logging.getLogger("didnode.witness.client")

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF_S = 0.2
MAX_CONFLICTS = 2  # 409s followed per request: the held size, then (a race) once more

ProofSource = Callable[[int, int], Sequence[bytes] | Awaitable[Sequence[bytes]]]


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness to ask: its base URL (``add-checkpoint`` is under it) and its cosignature/v1 verifier key."""

    url: str
    name: str
    public_key: bytes
    vkey: str

    @classmethod
    def parse(cls, value: str) -> "WitnessEndpoint":
        """``URL=VKEY`` (``didnode serve --witness``); the vkey has no ``=`` (33 bytes of base64), so the last one splits.

        Raises :class:`InvalidArgument`."""
        url, sep, vkey = value.rpartition("=")
        if not sep or not url or not vkey:
            raise InvalidArgument(f"--witness takes URL=VKEY, not {value[:80]!r}")
        if not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"--witness URL {url[:80]!r} is not http:// or https://")
        try:
            name, sig_type, public_key = note_codec.parse_verifier_key(vkey)
        except MalformedNote as exc:
            raise InvalidArgument(f"--witness {url[:80]}: {exc}") from None
        if sig_type != COSIGNATURE_V1:
            raise InvalidArgument(f"--witness {url[:80]}: key {name!r} has type {sig_type:#04x}; a witness key is cosignature/v1 (0x04)")
        return cls(url.rstrip("/"), name, public_key, vkey)


@dataclass
class CosignResult:
    """What one round produced: the note with the verified cosignatures added, and who failed and why."""

    note: bytes
    cosignatures: dict[str, NoteSignature] = field(default_factory=dict)  # by witness URL
    failures: dict[str, str] = field(default_factory=dict)  # by witness URL
    latencies_s: dict[str, float] = field(default_factory=dict)  # by witness URL, successful ones


class _Permanent(Exception):
    """A refusal not worth retrying (the message says why)."""


class WitnessClient:
    """Collects cosignatures of one log's checkpoints from ``witnesses`` (module docstring)."""

    def __init__(
        self,
        witnesses: Sequence[WitnessEndpoint],
        proof: ProofSource,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if attempts < 1:
            raise InvalidArgument("attempts must be at least 1")
        self.witnesses = tuple(witnesses)
        self.proof = proof
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._session = session
        self._own_session = session is None
        self.held: dict[str, int] = {}  # the size each witness last cosigned for us
        self.requests = 0
        self.failures_total = 0

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> "WitnessClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def cosign(self, note: bytes, tree_size: int, only: Collection[str] | None = None) -> CosignResult:
        """Ask every witness (or those whose URL is in ``only``) to cosign ``note`` (of ``tree_size`` leaves), in
        parallel; never raises for a witness's failure.

        Raises :class:`MalformedNote` if ``note`` itself is malformed."""
        parsed = note_codec.parse(note)
        result = CosignResult(note)
        asked = [w for w in self.witnesses if only is None or w.url in only]
        outcomes = await asyncio.gather(*(self._one(w, note, parsed.text, tree_size) for w in asked), return_exceptions=True)
        for w, outcome in zip(asked, outcomes):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                self.failures_total += 1
                result.failures[w.url] = str(outcome) or type(outcome).__name__
                log.warning("witness %s (%s) did not cosign the checkpoint of size %d: %s", w.name, w.url, tree_size, result.failures[w.url])
                continue
            sig, latency = outcome
            result.cosignatures[w.url] = sig
            result.latencies_s[w.url] = latency
        if result.cosignatures:
            result.note = parsed.with_signatures(*result.cosignatures.values()).encode()
        return result

    async def _proof(self, old: int, new: int) -> list[bytes]:
        if old in (0, new):
            return []
        got = self.proof(old, new)
        if asyncio.iscoroutine(got) or isinstance(got, asyncio.Future):
            got = await got
        return list(got)  # type: ignore[arg-type]

    async def _one(self, w: WitnessEndpoint, note: bytes, text: bytes, size: int) -> tuple[NoteSignature, float]:
        start = time.perf_counter()
        old = min(self.held.get(w.url, 0), size)
        conflicts = 0
        attempt = 0
        last = "no attempt"
        while attempt < self.attempts:
            body = encode_add_checkpoint(old, await self._proof(old, size), note)
            try:
                status, ctype, data = await self._post(w, body)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                attempt += 1
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_s * (2 ** (attempt - 1)))
                continue
            if status == 200:
                sig = self._verified(w, text, data)
                self.held[w.url] = size
                return sig, time.perf_counter() - start
            if status == 409:
                try:
                    held = parse_size_conflict(ctype, data)
                except DidnodeError as exc:
                    raise _Permanent(f"409 without a size: {exc}") from None
                if held > size:
                    self.held[w.url] = held
                    raise _Permanent(f"the witness holds a checkpoint of {held} entries, larger than this one ({size}): a rollback or another log under this origin")
                conflicts += 1
                if conflicts > MAX_CONFLICTS or held == old:
                    raise _Permanent(f"409 again from size {old} (holds {held})")
                old = held
                continue
            if status >= 500 or status == 429:
                last = f"HTTP {status}"
                attempt += 1
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_s * (2 ** (attempt - 1)))
                continue
            raise _Permanent(f"HTTP {status}: {data[:200].decode('utf-8', 'replace').strip()}")
        raise _Permanent(f"gave up after {self.attempts} attempts: {last}")

    async def _post(self, w: WitnessEndpoint, body: bytes) -> tuple[int, str, bytes]:
        session = await self._get_session()
        self.requests += 1
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with session.post(w.url + "/add-checkpoint", data=body, headers={"Content-Type": "text/plain"}, timeout=timeout) as r:
            data = await r.content.read(64 * 1024)
            return r.status, r.headers.get("Content-Type", ""), data

    @staticmethod
    def _verified(w: WitnessEndpoint, text: bytes, data: bytes) -> NoteSignature:
        """The one cosignature of ``w`` in a 200 answer that verifies; :class:`_Permanent` otherwise."""
        try:
            sigs = parse_cosignatures(data)
        except DidnodeError as exc:
            raise _Permanent(str(exc)) from None
        for sig in sigs:
            if cosignature.is_from(sig, w.name, w.public_key):
                try:
                    cosignature.verify_cosignature(text, sig, w.public_key, w.name)
                except BadCosignature as exc:
                    raise _Permanent(f"its cosignature does not verify under {w.vkey[:80]}: {exc}") from None
                return sig
        raise _Permanent(f"its answer carries no cosignature by {w.name!r} (key {w.vkey[:80]})")


__all__ = ["CosignResult", "WitnessClient", "WitnessEndpoint"]
