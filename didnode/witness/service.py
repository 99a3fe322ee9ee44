"""The witness role of c2sp.org/tlog-witness: ``add-checkpoint`` over a :class:`~didnode.witness.state.WitnessStore`.

:meth:`Witness.add_checkpoint` takes a request body and returns the
cosignature line(s), or raises the typed error the HTTP edge turns into the
specified status (docs/witness.md). Order of checks:

1. the body's shape (:func:`~didnode.witness.request.parse_add_checkpoint`)
   and the note and checkpoint body (:mod:`didnode.core.note`,
   :mod:`didnode.core.tlog_checkpoint`): 400;
2. the origin is configured: 404 (:class:`~didnode.errors.UnknownLogOrigin`);
3. the log's signature: at least one signature by a configured key of the
   origin, and every signature that claims such a key (name and key ID)
   verifies; signatures of other keys are ignored: else 403
   (:class:`~didnode.errors.BadCheckpointSignature`);
4. for a node that replays the log (``replay``, :mod:`didnode.witness.replay`):
   a checkpoint of its own ledger must have its log root (and state root,
   where known) at that size: 422 (:class:`~didnode.errors.ReplayMismatch`),
   or 503 (:class:`~didnode.errors.WitnessNotCaughtUp`) while its log is shorter;
5. consistency with the latest cosigned checkpoint (:func:`didnode.witness.core.judge`):
   400, 409, 422.

Steps 4 and 5 to the durable write of the new state happen under one lock per
origin, so two requests can never both pass the check against the same
held checkpoint. A refused, validly signed checkpoint that contradicts the
held one is recorded as evidence (both notes) before the answer.

The cosigned note kept as state holds the log signatures that verified and
the witness's cosignature; signatures of unknown keys are dropped.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from nacl.signing import SigningKey

from didnode.core import note as note_codec
from didnode.core.cosignature import cosign
from didnode.core.note import COSIGNATURE_V1, ED25519, Note, NoteSignature
from didnode.core.tlog_checkpoint import TlogCheckpoint, parse_body
from didnode.errors import BadCheckpointSignature, InvalidArgument, MalformedNote, ReplayMismatch, UnknownLogOrigin, WitnessRequestMalformed
from didnode.witness.core import NOTHING_HELD, judge
from didnode.witness.replay import ReplayCheck
from didnode.witness.request import AddCheckpoint, parse_add_checkpoint
from didnode.witness.state import Latest, WitnessStore

log = logging.getLogger("didnode.witness")

REPLAY = "replay"  # evidence kind: a checkpoint of the node's own ledger with other roots than its log


@dataclass(frozen=True)
class LogKey:
    """One verifier key the witness accepts for a log: key name and Ed25519 public key."""

    name: str
    public_key: bytes

    @classmethod
    def from_vkey(cls, vkey: str) -> "LogKey":
        """Parse a signed-note verifier key (``name+hash+base64``); only Ed25519 (type 0x01) log keys."""
        name, sig_type, public_key = note_codec.parse_verifier_key(vkey)
        if sig_type != ED25519:
            raise InvalidArgument(f"log verifier key {name!r} has signature type {sig_type:#04x}; a witness accepts Ed25519 (0x01) log keys")
        return cls(name, public_key)


def parse_log_option(value: str) -> tuple[str, LogKey]:
    """``ORIGIN=VKEY`` (the ``--log`` option) as (origin, key); raises :class:`InvalidArgument`."""
    origin, sep, vkey = value.partition("=")
    if not sep or not origin or not vkey:
        raise InvalidArgument(f"--log takes ORIGIN=VKEY, not {value[:80]!r}")
    try:
        return origin, LogKey.from_vkey(vkey)
    except MalformedNote as err:
        raise InvalidArgument(f"--log {origin}: {err}") from None


def _utc_now_s() -> int:
    return int(_dt.datetime.now(tz=_dt.timezone.utc).timestamp())


class Witness:
    """A witness: its cosigning key and name, the logs it witnesses, its durable state."""

    def __init__(
        self,
        store: WitnessStore,
        name: str,
        key: SigningKey,
        logs: Mapping[str, Iterable[LogKey]],
        clock_s: Callable[[], int] = _utc_now_s,
        replay: ReplayCheck | None = None,
    ) -> None:
        """``replay``: set on a didnode node, which also checks checkpoints of its own ledger against its log (step 4)."""
        self.store = store
        self.replay = replay
        self.name = name
        self.key = key
        self.logs: dict[str, tuple[LogKey, ...]] = {origin: tuple(keys) for origin, keys in logs.items()}
        self.clock_s = clock_s
        self._locks: dict[str, asyncio.Lock] = {origin: asyncio.Lock() for origin in self.logs}
        note_codec.verifier_key(name, bytes(key.verify_key), COSIGNATURE_V1)  # the name is a valid key name

    @property
    def vkey(self) -> str:
        """The witness's verifier key (cosignature/v1), for the logs' and clients' configuration."""
        return note_codec.verifier_key(self.name, bytes(self.key.verify_key), COSIGNATURE_V1)

    def parse(self, body: bytes) -> tuple[AddCheckpoint, Note, TlogCheckpoint]:
        """Steps 1 and 2: the request, its note and checkpoint; the origin must be configured."""
        request = parse_add_checkpoint(body)
        try:
            note = note_codec.parse(request.note)
            checkpoint = parse_body(note.text)
        except MalformedNote as err:
            raise WitnessRequestMalformed(f"the checkpoint is not a signed checkpoint note: {err}", field="checkpoint") from None
        if checkpoint.origin not in self.logs:
            raise UnknownLogOrigin(f"this witness does not witness the log {checkpoint.origin[:80]!r}", origin=checkpoint.origin[:255])
        return request, note, checkpoint

    def verified_signatures(self, origin: str, note: Note) -> tuple[NoteSignature, ...]:
        """Step 3: the note's signatures by the origin's configured keys, all verified; at least one."""
        good: list[NoteSignature] = []
        for sig in note.signatures:
            for key in self.logs[origin]:
                if not note_codec.matches(sig, key.name, ED25519, key.public_key):
                    continue
                if not note_codec.verify_ed25519(note.text, sig, key.public_key):
                    raise BadCheckpointSignature(f"the signature of {key.name!r} on the checkpoint of {origin!r} does not verify", signer=key.name)
                good.append(sig)
        if not good:
            raise BadCheckpointSignature(f"the checkpoint of {origin!r} carries no signature by a key this witness trusts for it", origin=origin[:255])
        return tuple(good)

    async def add_checkpoint(self, body: bytes) -> bytes:
        """Cosign the checkpoint of an ``add-checkpoint`` request; return the cosignature line(s).

        Raises the errors listed in the module docstring; the state file is
        durable before this returns.
        """
        request, note, checkpoint = self.parse(body)
        origin = checkpoint.origin
        log_sigs = self.verified_signatures(origin, note)
        async with self._locks[origin]:
            latest = await asyncio.to_thread(self.store.load, origin)
            held = latest.held if latest is not None else NOTHING_HELD
            if self.replay is not None:
                try:
                    await self.replay.check(checkpoint)
                except ReplayMismatch:
                    await self._evidence(origin, REPLAY, latest, request, checkpoint.tree_size)
                    raise
            verdict = judge(held, request.old_size, request.proof, checkpoint.tree_size, checkpoint.root_hash)
            if verdict.evidence is not None and latest is not None:
                await self._evidence(origin, verdict.evidence, latest, request, checkpoint.tree_size)
            if verdict.error is not None:
                raise verdict.error
            cosignature = cosign(note.text, self.name, self.key, self.clock_s())
            kept = Note(note.text, (*log_sigs, cosignature)).encode()
            await asyncio.to_thread(self.store.save, origin, kept)
        return cosignature.line()

    async def _evidence(self, origin: str, kind: str, latest: Latest | None, request: AddCheckpoint, size: int) -> None:
        """Record a refused checkpoint with the held one (an empty held note when none)."""
        held = latest if latest is not None else Latest(NOTHING_HELD, b"")
        path = await asyncio.to_thread(
            self.store.record_evidence,
            origin, kind, held, request.note, request.old_size, request.proof, size, _dt.datetime.now(tz=_dt.timezone.utc).isoformat(),
        )
        log.warning("%s: refused a %s checkpoint of size %d (holding %d); evidence in %s", origin, kind, size, held.held.size, path)

    def checkpoint_for(self, origin_hex: str) -> bytes | None:
        """The latest cosigned note for the origin whose SHA-256 hex is ``origin_hex`` (monitor retrieval)."""
        return self.store.load_by_hash(origin_hex)


__all__ = ["LogKey", "Witness", "parse_log_option"]
