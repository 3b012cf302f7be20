"""Processes that must not outlive the process that started them.

When a process is killed outright (kill -9, the OOM killer), its children are not told: a
`dagster dev` would keep the UI's port, a run worker's simulation pool would keep its workers.
Linux can signal a child when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere this does
nothing.
"""

from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def end_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have this process receive `sig` when its parent dies (set in the child, after fork)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)
