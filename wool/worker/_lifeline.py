"""A pool's processes die with it, however it ends.

A spawned worker stops by itself when its stdin (the pool's end of a pipe) closes, and the
template when its control socket does; but a worker whose loop is blocked by a routine
(`time.sleep(30)` in an `async def`) reads neither, and a pool killed outright (SIGKILL) runs
no cleanup. So each of them also asks the kernel to kill it when its parent dies
(`PR_SET_PDEATHSIG` through `prctl`, Linux). The setting belongs to the parent *thread* and is
cleared by `fork`, so the template sets it after starting and each worker it forks sets its
own; a parent that died before the setting took effect is caught by comparing the parent pid
with the one expected. Where `prctl` is missing, a daemon thread (workers only: the template
never starts threads, it forks) polls the parent pid instead.

What they leave behind when killed, socket files and registry entries, is removed by the next
pool or worker starting in the runtime directory (`prune_registry`, `prune_sockets`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PARENT_ENV = "WOOL_PARENT_PID"  # the pid a spawned process expects as its parent
POLL_INTERVAL = 0.5  # the fallback's check of the parent pid, where prctl is missing


def _set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel for `sig` when the parent dies; False where that is impossible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_INTERVAL)
    _die()


def die_with_parent(parent: int | None, *, may_thread: bool) -> None:
    """Be killed when process `parent` (None: this process's parent now) dies, and at once if
    it has already. `may_thread`: fall back to a watching thread where `prctl` is missing."""
    if parent is None:
        parent = os.getppid()
    armed = _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # it died before the signal was armed: nobody will send it
        _die()
    if not armed and may_thread:
        threading.Thread(target=_watch, args=(parent,), name="wool-lifeline", daemon=True).start()


def expected_parent() -> int | None:
    """The parent pid this process was told to expect (by `PARENT_ENV`), if any."""
    try:
        return int(os.environ[PARENT_ENV])
    except (KeyError, ValueError):
        return None
