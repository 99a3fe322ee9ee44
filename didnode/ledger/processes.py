"""Helpers for the node's worker processes (prepare, verify)."""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """In a worker process: exit as soon as ``parent_pid`` is no longer this process's parent.

    A pool worker waits on a queue whose writing end it holds itself, so it
    would outlive a node killed with -9 (keeping LMDB files open, idle for
    ever). A daemon thread polls the parent pid (reparenting shows the
    parent's death on every POSIX system, unlike Linux's PR_SET_PDEATHSIG,
    which fires when the spawning *thread* exits).
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
