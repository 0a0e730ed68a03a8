"""The spinning idle strategy: an event loop that polls its sockets instead of sleeping.

Theory of operation. By default a loop with nothing to do sleeps in the kernel (epoll) until a
socket's descriptor fires; waking it costs a thread switch, tens of microseconds on a busy
machine, once per message. With `idle="spin"`, each message a wool socket sends or receives
on the loop opens a window of `spin_us` microseconds during which the loop does not sleep: a
`Spinner` keeps one callback scheduled, which asks every socket active in the window whether a
message is ready (ZeroMQ's `EVENTS`, the same check a `NOBLOCK` receive makes) and drains
those that have one. A loop with a callback ready polls its descriptors without waiting, so
everything else on the loop (timers, other sockets, tasks) keeps running meanwhile. When the
window passes without activity the callback stops and the loop goes back to sleeping in the
kernel, where the sockets' descriptors still wake it. This is Aeron's busy-spin idle strategy
bounded in time (yielding the core between polls to any thread that is waiting for it, such
as ZeroMQ's I/O thread, without which nothing arrives), and it works alike on asyncio's loop and on uvloop, which never sleep while
a callback is ready.

A spinner belongs to one event loop and is shared by everything that enables it there (a pool
and the worker it runs in, two pools): spinning is a property of the loop, not of one socket.
It trades a core for latency: while the window is open, the loop's thread burns CPU.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Protocol

IDLE_STRATEGIES = ("sleep", "spin")
DEFAULT_SPIN_US = 500  # covers a round trip on loopback, and the gap between a caller's calls
MIN_SPIN_US, MAX_SPIN_US = 1, 1_000_000


class Pollable(Protocol):
    closed: bool

    def poll(self) -> None:
        """Deliver whatever is ready now, without blocking."""


def check_idle(idle: str, spin_us: int | None) -> tuple[str, int]:
    """(`idle`, the spin window in µs), or `TypeError`/`ValueError` naming what is wrong."""
    if not isinstance(idle, str):
        raise TypeError(f"idle must be one of {', '.join(map(repr, IDLE_STRATEGIES))}, not {type(idle).__name__}")
    if idle not in IDLE_STRATEGIES:
        raise ValueError(f"idle must be one of {', '.join(map(repr, IDLE_STRATEGIES))}, got {idle!r}")
    if spin_us is None:
        return idle, DEFAULT_SPIN_US if idle == "spin" else 0
    if idle != "spin":
        raise ValueError(f"spin_us={spin_us!r} applies only with idle='spin' (idle is {idle!r})")
    if isinstance(spin_us, bool) or not isinstance(spin_us, int):
        raise TypeError(f"spin_us must be an int (microseconds), not {type(spin_us).__name__}")
    if not MIN_SPIN_US <= spin_us <= MAX_SPIN_US:
        raise ValueError(f"spin_us must be between {MIN_SPIN_US} and {MAX_SPIN_US} microseconds, got {spin_us}")
    return idle, spin_us


class Spinner:
    """Keeps a loop polling the sockets that were active in the last `window` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, spin_us: int) -> None:
        self._loop = loop
        self.window = spin_us / 1e6
        self.users = 0
        self._watched: dict[Pollable, None] = {}  # an ordered set
        self._until = 0.0
        self._polling = False

    def kick(self, source: Pollable) -> None:
        """`source` just sent or received: keep polling it (and the loop awake) a while."""
        if not self.users:
            return
        self._until = time.perf_counter() + self.window
        self._watched[source] = None
        if not self._polling:
            self._polling = True
            self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        watched = self._watched
        for source in list(watched):
            if source.closed:
                del watched[source]
            else:
                source.poll()
        if self.users and watched and time.perf_counter() < self._until:
            # Give the core away if another thread is runnable (ZeroMQ's I/O thread, which must
            # run for the message we wait for to arrive): Aeron's back-off, one step of it.
            os.sched_yield()
            self._loop.call_soon(self._poll)
        else:
            self._polling = False
            watched.clear()


_spinners: dict[asyncio.AbstractEventLoop, Spinner] = {}


def enable(loop: asyncio.AbstractEventLoop, spin_us: int) -> Spinner:
    """Make `loop` spin (with the widest window asked for), until as many `disable` calls."""
    spinner = _spinners.get(loop)
    if spinner is None:
        spinner = _spinners[loop] = Spinner(loop, spin_us)
    spinner.window = max(spinner.window, spin_us / 1e6)
    spinner.users += 1
    return spinner


def disable(loop: asyncio.AbstractEventLoop) -> None:
    spinner = _spinners.get(loop)
    if spinner is not None:
        spinner.users -= 1
        if spinner.users <= 0:
            spinner.users = 0
            del _spinners[loop]


def spinner(loop: asyncio.AbstractEventLoop) -> Spinner | None:
    """The loop's spinner while spinning is enabled on it, else None."""
    return _spinners.get(loop)
