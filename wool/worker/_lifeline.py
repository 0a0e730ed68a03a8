"""A pool's processes die with it, however it ends.

A spawned worker stops by itself when its stdin (the pool's end of a pipe) closes, and the
template when its control socket does: that covers a pool that exits, even one killed
outright. What it does not cover is a worker whose loop a routine blocks (`time.sleep(30)` in
an `async def`), which reads nothing, and a template that is never scheduled again. So:

- the template asks the kernel to kill it when its parent, the pool, dies
  (`PR_SET_PDEATHSIG` through `prctl`, Linux; the setting is checked against the parent pid
  expected, in case the pool died before it took effect). Its workers do not go with it: they
  are not its to take;
- each worker runs a daemon thread watching the pool's process (a pidfd; polling where there
  is none). When the pool is gone it gives the worker the grace period to stop as it would
  anyway (its stdin has closed), then kills it. A thread rather than the parent-death signal,
  which would follow the template, and would kill even a worker able to stop cleanly.

What killed processes leave behind (socket files, registry entries) is removed by the next
pool or worker starting in the runtime directory (`prune_registry`, `prune_sockets`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PARENT_ENV = "WOOL_POOL_PID"  # the pid of the pool's process, told to the processes it spawns
POLL_INTERVAL = 0.5  # where there is no pidfd: how often the watch checks the pool's pid
MARGIN = 2.0  # seconds past the grace period before a worker whose pool is gone is killed


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent: int | None) -> bool:
    """Be killed when process `parent` (this process's parent) dies, and at once if it has
    already. False where the kernel cannot do it (not Linux): the caller falls back."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            armed = int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
        except (OSError, AttributeError):
            armed = False
    if parent is not None and os.getppid() != parent:  # it died before: nobody will signal
        _die()
    return armed


def _wait_gone(pid: int) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except OSError:
                pass
            time.sleep(POLL_INTERVAL)
    try:
        poller = select.poll()  # not select(): a descriptor may be numbered past FD_SETSIZE
        poller.register(pidfd, select.POLLIN)  # readable once the process has exited
        while not poller.poll():
            pass
    finally:
        os.close(pidfd)


def watch_pool(pool: int | None, grace: float) -> None:
    """In a worker: once process `pool` has exited, allow `grace` (and a margin) for the
    worker's own clean stop, then kill it."""
    if pool is None:
        return

    def watch() -> None:
        with contextlib.suppress(Exception):
            _wait_gone(pool)
        time.sleep(grace + MARGIN)
        _die()

    threading.Thread(target=watch, name="wool-lifeline", daemon=True).start()


def pool_pid() -> int | None:
    """The pool's pid this process was told (by `PARENT_ENV`), if any."""
    try:
        return int(os.environ[PARENT_ENV])
    except (KeyError, ValueError):
        return None
