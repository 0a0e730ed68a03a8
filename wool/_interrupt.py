"""Ctrl-C while a pool is open: the first stops gracefully within the grace period, the second
stops now, and neither leaves anything behind.

Theory of operation. While a pool is open in the main thread, its `CtrlC` sits in front of the
SIGINT handler that was there before (asyncio.run's, which cancels the main task, or Python's,
which raises `KeyboardInterrupt`):

- a first Ctrl-C goes on to that handler, so the program unwinds as it always would. After
  `NOTICE` seconds, if the pool still has calls in flight or is closing, one line on stderr
  says what it waits for. Once the pool closes, it stops now if the grace period since that
  Ctrl-C is over, so a routine blocking its worker's loop (which sees no cancel) holds the
  exit back for no longer than that;
- a second Ctrl-C while the first is still being dealt with (calls in flight, or the pool
  closing) stops now: the pool fails its calls in flight, kills its workers and template, and
  removes their sockets and registry entries, while the program goes on unwinding from the
  first (asyncio.run then raises its usual `KeyboardInterrupt`). It is not passed on: a
  `KeyboardInterrupt` raised in the middle of the event loop would abandon the very clean-up
  under way, and print asyncio's complaints about it. Later ones are absorbed while stopping;
- a Ctrl-C when the pool is idle again (a notebook whose cell was interrupted keeps its pool)
  counts as a first one.

The handler only reads the pool's state and schedules work on the loop (signal handlers run
between two bytecodes of the main thread, wherever it is). A pool opened in another thread
installs nothing.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import FrameType
from typing import Any

NOTICE = 1.0  # seconds after a Ctrl-C before the pool says what it is waiting for

Handler = Callable[[int, FrameType | None], Any] | int | None


def waiting_for(grace: float, calls: Sequence[tuple[str, int, int]], stopping: int, closing: bool) -> str | None:
    """What a pool waits for after a Ctrl-C, in words: its calls in flight, as (worker id,
    pid, calls) per worker, else its `stopping` workers when `closing`; None when idle."""
    busy = [c for c in calls if c[2]]
    within = f"waiting up to {grace:g} s"
    if busy:
        count = sum(c[2] for c in busy)
        where = ", ".join(f"{worker[:12]} (pid {pid})" for worker, pid, _ in busy)
        return f"{within} for {count} running call{'s' * (count != 1)} on worker{'s' * (len(busy) != 1)} {where}"
    if not closing:
        return None
    if stopping:
        return f"{within} for {stopping} worker{'s' * (stopping != 1)} to stop"
    return "waiting for the pool to close"


class CtrlC:
    """Ctrl-C handling for one open pool (see the module docstring)."""

    def __init__(
        self,
        grace: float,
        describe: Callable[[], str | None],
        stop_now: Callable[[], Coroutine[Any, Any, None]],
        interrupted: Callable[[], None],
    ) -> None:
        """`describe()`: what the pool waits for, in words, or None when it is idle (no call
        in flight, not closing); `stop_now()`: kill what is left; `interrupted()`: told at
        each first Ctrl-C."""
        self._loop = asyncio.get_running_loop()
        self._grace = grace
        self._describe = describe
        self._stop_now = stop_now
        self._interrupted = interrupted
        self._previous: Handler = None
        self._installed = False
        self.stopping: asyncio.Task[None] | None = None
        self._deadline: float | None = None  # loop time the grace period of a first Ctrl-C ends
        self._closing = False
        self._timers: list[asyncio.TimerHandle] = []

    def install(self) -> CtrlC:
        if threading.current_thread() is not threading.main_thread():
            return self
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN:  # Ctrl-C is ignored here (a background job): so be it
            return self
        self._previous = previous
        signal.signal(signal.SIGINT, self._on_sigint)
        self._installed = True
        return self

    def uninstall(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._installed:
            self._installed = False
            if signal.getsignal(signal.SIGINT) == self._on_sigint:  # else another took over since
                signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping is not None and not self.stopping.done():
            return  # stopping now already
        if self._deadline is not None and self._describe() is not None:
            self._loop.call_soon_threadsafe(self.now)
            return
        self._deadline = self._loop.time() + self._grace
        self._loop.call_soon_threadsafe(self._first)
        self._pass_on(signum, frame)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL, or a handler installed from C: Python's own behaviour
            raise KeyboardInterrupt

    def _first(self) -> None:
        self._interrupted()
        self._timers.append(self._loop.call_later(NOTICE, self._notice))
        if self._closing:
            self.closing()

    def _notice(self) -> None:
        text = self._describe()
        if text is not None and self.stopping is None:
            print(f"wool: {text}; Ctrl-C again to stop now", file=sys.stderr, flush=True)

    def closing(self) -> None:
        """The pool is closing: after a Ctrl-C, stop now once its grace period is over."""
        self._closing = True
        if self._deadline is not None:
            self._timers.append(self._loop.call_at(self._deadline, self.now))

    def now(self) -> None:
        """Stop the pool now (once): its `stop_now`, as a task of the loop."""
        if self.stopping is None:
            self.stopping = self._loop.create_task(self._stop_now())
