"""Signature verification off the main interpreter: a worker process verifies batches.

Why a process: libsodium releases the GIL, but every verify call then has to
take the GIL back, and on a busy 2-core machine each such hand-off to or from
the writer thread costs tens of microseconds, more than the parse it
overlaps. Sending a whole batch of (public key, message, signature) triples
to one worker process costs one pickle per batch and keeps the GIL of the
node for parsing and applying. ``InlineVerifier`` does the same in-thread
(tests, tools, small deployments).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol, Sequence

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from didnode.ledger.processes import exit_with_parent

Triple = tuple[bytes, bytes, bytes]


def verify_triples(triples: Sequence[Triple]) -> list[bool]:
    """Verify each (public key, message, signature); True where it verifies.

    Pure and picklable (runs in the worker process). Malformed lengths count as failures.
    """
    out = []
    for pk, msg, sig in triples:
        if len(sig) != 64 or len(pk) != 32:
            out.append(False)
            continue
        try:
            crypto_sign_open(sig + msg, pk)
            out.append(True)
        except BadSignatureError:
            out.append(False)
    return out


class Verifier(Protocol):
    def verify(self, triples: Sequence[Triple]) -> list[bool]: ...

    def close(self) -> None: ...


class InlineVerifier:
    """Verifies in the calling thread."""

    def verify(self, triples: Sequence[Triple]) -> list[bool]:
        return verify_triples(triples)

    def close(self) -> None:
        pass


class ProcessVerifier:
    """Verifies in ``workers`` spawned processes (spawn, not fork: the node runs gRPC threads)."""

    def __init__(self, workers: int = 1) -> None:
        self._pool = ProcessPoolExecutor(
            max(1, workers), mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent, initargs=(os.getpid(),)
        )
        self._pool.submit(verify_triples, []).result()  # start the worker now, not on the first request

    def verify(self, triples: Sequence[Triple]) -> list[bool]:
        if len(triples) < 8:
            # A round trip to the worker costs more than a few verifies.
            return verify_triples(triples)
        return self._pool.submit(verify_triples, list(triples)).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
