"""Worker processes of the audit, over plain pipes.

``python -m didnode.ledger.audit_worker STORE_PATH`` opens the store
read-only and answers jobs read from stdin, in order, on stdout. A frame is
``u32 big-endian length || pickle``; jobs are ``("scan", network, start,
end)``, ``("tree", size)`` and ``("smt",)``; answers are ``("ok", value)`` or ``("error",
reason, message)``. EOF on stdin ends the worker.

Plain subprocesses rather than ``multiprocessing``: no re-import of the
caller's ``__main__`` (spawn) and no fork of a process that may hold gRPC or
other threads (fork). Pickle is safe here because both ends are this code.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections import deque
from typing import IO, Any

from didnode.errors import DidnodeError, Internal, error_for_reason
from didnode.ledger.audit_scan import check_log_tree, check_state_tree, scan_range
from didnode.store.readonly import ReadOnlyStore

_LEN = struct.Struct(">I")


def write_frame(out: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LEN.pack(len(data)) + data)
    out.flush()


def read_frame(inp: IO[bytes]) -> Any:
    """The next object, or raise ``EOFError`` at the end of the stream."""
    head = inp.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError
    (n,) = _LEN.unpack(head)
    data = inp.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


def serve(path: str, inp: IO[bytes], out: IO[bytes]) -> None:
    """Answer jobs until EOF (the worker process body)."""
    store = ReadOnlyStore(path)
    try:
        while True:
            try:
                job = read_frame(inp)
            except EOFError:
                return
            try:
                if job[0] == "scan":
                    write_frame(out, ("ok", scan_range(store, job[1], job[2], job[3])))
                elif job[0] == "tree":
                    write_frame(out, ("ok", check_log_tree(store, job[1])))
                elif job[0] == "smt":
                    write_frame(out, ("ok", check_state_tree(store)))
                else:
                    write_frame(out, ("error", "INTERNAL", f"unknown audit job {job[0]!r}"))
            except DidnodeError as exc:
                write_frame(out, ("error", exc.reason, str(exc)))
    finally:
        store.close()


class Workers:
    """``count`` worker processes; jobs are answered in submission order per worker."""

    def __init__(self, path: str, count: int) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "didnode.ledger.audit_worker", path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            for _ in range(count)
        ]
        self.queued: list[deque[str]] = [deque() for _ in range(count)]

    def submit(self, worker: int, job: tuple[Any, ...]) -> None:
        proc = self.procs[worker]
        assert proc.stdin is not None
        try:
            write_frame(proc.stdin, job)
        except BrokenPipeError:
            raise self._died(worker) from None
        self.queued[worker].append(job[0])

    def result(self, worker: int) -> Any:
        """The answer to the oldest unanswered job of ``worker``; re-raises its error."""
        proc = self.procs[worker]
        assert proc.stdout is not None
        try:
            answer = read_frame(proc.stdout)
        except EOFError:
            raise self._died(worker) from None
        self.queued[worker].popleft()
        if answer[0] == "error":
            raise error_for_reason(answer[1], answer[2])
        return answer[1]

    def _died(self, worker: int) -> Internal:
        proc = self.procs[worker]
        proc.kill()
        proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip().splitlines() if proc.stderr else []
        return Internal(f"audit worker process exited ({proc.returncode}): {err[-1] if err else 'no message'}")

    def close(self) -> None:
        """Stop every worker (unanswered jobs are dropped)."""
        for proc, queued in zip(self.procs, self.queued):
            if queued:
                proc.kill()  # it may be blocked writing an answer nobody will read
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
