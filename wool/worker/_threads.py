"""Plain `def` routines on a worker: each call runs in a thread, a bounded number at once.

Theory of operation. A plain function would block the worker's event loop, and with it
heartbeats, cancels and every other call, so its call's task hands it to a thread and awaits
the outcome. A `Gate` on the loop bounds how many such functions run at once (`threads`, by
default one: CPU-bound Python gains nothing from more threads in one process); calls past it
wait on the loop, in arrival order, without a thread. A function blocked in `wool.run` on a
nested call lends its place, as a call lends its slot (see `_admission`), and takes it back on
return at once, so a chain of plain `def` routines calling each other on one worker never
waits for itself.

The thread runs in a copy of the call's context with a `Home` (see `wool.caller._blocking`),
so options, deadline, `wool.ContextVar`s and `wool.state()` are what the call sees; the
variables the function set are copied back into the call's context when it returns, as if it
had run in the task itself.

A thread cannot be interrupted. A call cancelled before its function started never starts it;
one cancelled while it runs is answered `CancelledError` at once, its nested `wool.run`s are
cancelled, and the function runs to its end in the background, holding its place until then,
with its outcome discarded. Threads are daemons, kept for reuse: a worker that stops does not
wait for a function that is still running.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from ..caller import Home, home_var

DEFAULT_THREADS = 1


def check_threads(threads: object, what: str = "threads") -> int:
    """`threads` if it is a whole number of threads (at least 1); else `TypeError` or `ValueError`."""
    if not isinstance(threads, int) or isinstance(threads, bool):
        raise TypeError(f"{what} must be an int, not {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"{what} must be at least 1, got {threads}")
    return threads


class Gate:
    """At most `limit` places taken at once; the rest wait in order. Loop thread only."""

    __slots__ = ("limit", "taken", "_waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def enter(self) -> None:
        if self.taken < self.limit and not self._waiters:
            self.taken += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # `leave` took the place for us before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()
            else:
                self._waiters.remove(waiter)
            raise

    def leave(self) -> None:
        self.taken -= 1
        while self._waiters and self.taken < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.taken += 1
                waiter.set_result(None)

    def reclaim(self) -> None:
        """Take a lent place back at once, past the limit if need be (the caller must finish)."""
        self.taken += 1


class _Threads:
    """Daemon threads kept for reuse: a job goes to an idle one, or to a new one."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._serve, name="wool-routine", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._jobs.get()()
            with self._lock:
                self._idle += 1


class ThreadRunner:
    """Runs a worker's plain `def` routines, at most `limit` at once."""

    def __init__(self, limit: int = DEFAULT_THREADS) -> None:
        self.gate = Gate(check_threads(limit))
        self._threads = _Threads()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
        """An `async def` running `fn` here: what the worker calls in place of `fn`."""

        async def threaded(*args: Any, **kwargs: Any) -> Any:
            return await self.run(fn, args, kwargs)

        return threaded

    async def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        gate = self.gate
        await gate.enter()
        context = contextvars.copy_context()
        home = Home(loop, gate.leave, gate.reclaim)
        context.run(home_var.set, home)
        outcome: asyncio.Future[Any] = loop.create_future()

        def deliver(ok: bool, value: Any) -> None:
            gate.leave()
            if outcome.done():  # cancelled meanwhile: discarded
                return
            if ok:
                outcome.set_result(value)
            else:
                outcome.set_exception(value)

        def job() -> None:
            ok, value = False, None  # type: bool, Any
            if home.cancelled:
                value = asyncio.CancelledError()
            else:
                try:
                    value, ok = context.run(fn, *args, **kwargs), True
                except BaseException as e:
                    value = e
            try:
                loop.call_soon_threadsafe(deliver, ok, value)
            except RuntimeError:  # the loop is closed: the worker has stopped
                pass

        try:
            self._threads.submit(job)
        except BaseException:
            gate.leave()
            raise
        try:
            result = await outcome
        except BaseException:
            if outcome.cancelled():  # this call was cancelled; the function may still run
                home.cancel()
                raise
            _copy_back(context)  # the function raised: its context is still now
            raise
        _copy_back(context)
        return result


def _copy_back(context: contextvars.Context) -> None:
    """Set in the current context every variable whose value `context` changed."""
    for var, value in context.items():
        if var is home_var:
            continue
        if var.get(_MISSING) is not value:
            var.set(value)


_MISSING: Any = object()
