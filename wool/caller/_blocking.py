"""`wool.run(awaitable)`: from a thread that cannot `await`, run `awaitable` on an event loop
and block for its outcome.

Theory of operation. A plain `def` routine runs in a thread of its worker (see
`wool.worker._threads`). Code there cannot `await`, so it makes nested routine calls through
`wool.run`, which hands the awaitable to the worker's event loop as a task and blocks the
thread until that task ends. The thread finds its loop through a `Home` in its context,
installed by whatever started the thread; `home()` is the one place that looks it up, so any
other owner of a loop running in the background (sync code holding a pool) can install a
`Home` of its own and get the same `wool.run`.

The task runs in a copy of the thread's context: the call's options, deadline, mesh, slot and
`wool.ContextVar`s go with it, as they would into a task made with `asyncio.create_task`.

Cancellation crosses in both directions. When the call that owns the thread is cancelled, its
`Home` is cancelled: the nested tasks it is waiting for are cancelled (so their remote calls
are), the blocked `wool.run` raises `asyncio.CancelledError` at once, and so does every later
one. A `KeyboardInterrupt` that interrupts a `wool.run` in the main thread cancels its task.
While the thread waits, the `Home` may lend what the thread holds (its worker's thread slot),
so a routine blocked on a nested call never starves the call it waits for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")


class Home:
    """The event loop a blocking thread hands its awaitables to, and what it lends while it
    waits (`lend` and `reclaim` run on the loop)."""

    __slots__ = ("loop", "lend", "reclaim", "cancelled", "_pending", "_lock")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        lend: Callable[[], None] | None = None,
        reclaim: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.lend = lend
        self.reclaim = reclaim
        self.cancelled = False
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Cancel what the thread waits for now, and make its later `wool.run`s raise."""
        self.cancelled = True
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.cancel()

    def _track(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.add(future)
        if self.cancelled:  # cancelled between the check in `run` and now
            future.cancel()

    def _untrack(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)


home_var: ContextVar[Home | None] = ContextVar("wool_home", default=None)


def home() -> Home:
    """The loop this thread's blocking calls run on. `RuntimeError` if the thread runs an
    event loop itself (blocking it would stop the very loop that must run the awaitable), or
    has no `Home`."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("wool.run() blocks its thread, so it cannot be called from a running event loop: use `await` here")
    found = home_var.get()
    if found is None:
        raise RuntimeError(
            "wool.run() works inside a plain `def` routine running on a worker (there it runs a nested "
            "routine call on the worker's event loop) and in synchronous code inside `with wool.WorkerPool(...):`; "
            "in `async def` code use `await` instead"
        )
    return found


def loop_now() -> float | None:
    """The time on the running loop's clock, or on this thread's `Home` loop's (None: neither)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        found = home_var.get()
        return found.loop.time() if found is not None else None


async def _hosted(found: Home, awaitable: Awaitable[T]) -> T:
    if found.lend is not None:
        found.lend()
    try:
        return await awaitable
    finally:
        if found.reclaim is not None:
            found.reclaim()


def run(awaitable: Awaitable[T], /) -> T:
    """Run `awaitable` (a routine call, `asyncio.gather(...)`, any coroutine) on the worker's
    event loop and block this thread until it ends: its result, or the exception it raised.
    For nested calls in a plain `def` routine, which cannot `await`.

    Raises `asyncio.CancelledError` when the routine's own call is cancelled (the nested call
    is cancelled too), `RuntimeError` where there is no loop to hand it to (outside a plain
    `def` routine) or when called from a running event loop, and `TypeError` if `awaitable`
    is not awaitable."""
    if not inspect.isawaitable(awaitable):
        raise TypeError(f"wool.run() needs an awaitable (such as a routine call), not {awaitable!r}")
    try:
        found = home()
    except RuntimeError:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never awaited, on purpose: no "was never awaited" warning
        raise
    if found.cancelled:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise asyncio.CancelledError()
    future = asyncio.run_coroutine_threadsafe(_hosted(found, awaitable), found.loop)
    found._track(future)
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        raise asyncio.CancelledError() from None
    except BaseException:
        if not future.done():  # interrupted while waiting (KeyboardInterrupt): cancel the task
            future.cancel()
        raise
    finally:
        found._untrack(future)
