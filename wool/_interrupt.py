"""Ctrl-C while a pool is open: the first stops gracefully within the grace period, the second
stops now, and neither leaves anything behind.

Theory of operation. While a pool is open in the main thread, its `CtrlC` sits in front of the
SIGINT handler that was there before (asyncio.run's, which cancels the main task, or Python's,
which raises `KeyboardInterrupt`):

- the first Ctrl-C goes on to that handler, so the program unwinds as it always would, and
  starts a clock: after `NOTICE` seconds, if the pool is still open, one line on stderr says
  what it is waiting for; after the pool's grace period it stops now by itself, so the first
  Ctrl-C is bounded even when a routine blocks its worker's loop;
- the second stops now: the pool fails its calls in flight, kills its workers and template,
  and removes their sockets and registry entries, while the program goes on unwinding from the
  first (asyncio.run then raises its usual `KeyboardInterrupt`). It is not passed on: a
  `KeyboardInterrupt` raised in the middle of the event loop would abandon the very clean-up
  under way, and print asyncio's complaints about it;
- later ones are absorbed while stopping, and passed on once the pool has stopped.

The handler only schedules work on the loop (signal handlers run between two bytecodes of the
main thread, wherever it is). A pool opened in another thread installs nothing.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

NOTICE = 1.0  # seconds after a Ctrl-C before the pool says what it is waiting for

Handler = Callable[[int, FrameType | None], Any] | int | None


class CtrlC:
    """Ctrl-C handling for one open pool (see the module docstring)."""

    def __init__(
        self,
        grace: float,
        describe: Callable[[], str | None],
        stop_now: Callable[[], Coroutine[Any, Any, None]],
        interrupted: Callable[[], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._grace = grace
        self._describe = describe
        self._stop_now = stop_now
        self._interrupted = interrupted
        self._previous: Handler = None
        self._installed = False
        self.count = 0
        self.stopping: asyncio.Task[None] | None = None
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
        self.count += 1
        if self.count == 1:
            self._loop.call_soon_threadsafe(self._first)
            self._pass_on(signum, frame)
        elif self.count == 2 or (self.stopping is not None and not self.stopping.done()):
            self._loop.call_soon_threadsafe(self.now)
        else:
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
        self._timers.append(self._loop.call_later(self._grace, self.now))

    def _notice(self) -> None:
        text = self._describe()
        if text is not None and self.stopping is None:
            print(f"wool: {text}; Ctrl-C again to stop now", file=sys.stderr, flush=True)

    def now(self) -> None:
        """Stop the pool now (once): its `stop_now`, as a task of the loop."""
        if self.stopping is None:
            self.stopping = self._loop.create_task(self._stop_now())
