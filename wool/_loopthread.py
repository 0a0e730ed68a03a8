"""An event loop on a thread of its own, and blocking hand-offs to a loop from other threads:
what lets synchronous code (a script, a notebook cell, an executor's caller) drive routines.

Theory of operation. `LoopThread` runs one event loop forever on a daemon thread until
`stop()`. A `Handoff` starts a coroutine as a task on a loop from any thread (through
`call_soon_threadsafe`, in a `contextvars.Context` the caller prepared) and reports its outcome
to a callback on the loop's thread; it can be cancelled from any thread, and the task then
unwinds on its loop (a routine's remote side sees `CancelledError`). `run_blocking` waits for
one: a `KeyboardInterrupt` in the waiting thread (Ctrl-C) cancels the task, waits a bounded
time for it to unwind, and is raised again; a second one stops the wait at once.

The loop of a `LoopThread` also accepts `call_soon` from other threads (as `call_soon_threadsafe`
does): `asyncio.gather(...)` written in synchronous code while the loop is that thread's
current loop schedules its tasks from the calling thread, and they must still wake the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# How long a Ctrl-C'd blocking call waits for the cancelled task to unwind (its remote
# `finally` blocks to run) before the KeyboardInterrupt is raised anyway.
UNWIND_BOUND = 10.0


class _ThreadAwareLoop(asyncio.SelectorEventLoop):
    """A selector loop whose `call_soon` from another thread wakes it, as
    `call_soon_threadsafe` would (see the module docstring)."""

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        owner = self._thread_id  # type: ignore[attr-defined]
        if owner is not None and owner != threading.get_ident():
            return self.call_soon_threadsafe(callback, *args, context=context)
        return super().call_soon(callback, *args, context=context)


class LoopThread:
    """An event loop running on a daemon thread of its own, from `__init__` until `stop()`."""

    def __init__(self, name: str) -> None:
        self.loop: asyncio.AbstractEventLoop = _ThreadAwareLoop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), name=name, daemon=True)
        self._thread.start()
        started.wait()

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                # Whatever still runs (a blocking call from another thread, say) is cancelled
                # and unwinds, so that no thread waits for a task that was dropped.
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.run_until_complete(self.loop.shutdown_default_executor())  # its threads end too
            finally:
                asyncio.set_event_loop(None)
                self.loop.close()

    def stop(self) -> None:
        """Stop the loop (tasks still running are cancelled and unwind first) and wait for the
        thread to end."""
        if self._thread.is_alive():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:  # closed already
                pass
            self._thread.join()


class Handoff:
    """One coroutine started as a task on `loop` from another thread; `on_done(task)` runs on
    the loop's thread when it ends. `cancel()` may be called from any thread, before or after
    the task started."""

    __slots__ = ("loop", "task", "_cancelled")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context,
        on_done: Callable[[asyncio.Task[Any]], object],
    ) -> None:
        self.loop = loop
        self.task: asyncio.Task[Any] | None = None
        self._cancelled = False

        def start() -> None:
            task = self.task = loop.create_task(coro, context=context)
            task.add_done_callback(on_done)
            if self._cancelled:
                task.cancel()

        try:
            loop.call_soon_threadsafe(start, context=context)
        except RuntimeError:
            coro.close()
            raise RuntimeError("the pool's event loop is closed: the pool is not open") from None

    def cancel(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._cancel)
        except RuntimeError:  # the loop is closed: nothing runs any more
            pass

    def _cancel(self) -> None:
        self._cancelled = True
        if self.task is not None:
            self.task.cancel()


class _Outcome:
    """A task's outcome, handed to the thread waiting for it: a plain lock released once
    (cheaper than a `concurrent.futures.Future` and its condition, on every blocking call)."""

    __slots__ = ("ready", "task")

    def __init__(self) -> None:
        self.ready = threading.Lock()
        self.ready.acquire()
        self.task: asyncio.Task[Any] | None = None

    def settle(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.ready.release()


def run_blocking(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context, cancel_on_interrupt: bool = True
) -> T:
    """Run `coro` on `loop` (running on another thread) and wait for its result or exception.
    Ctrl-C while waiting cancels it (see the module docstring); with `cancel_on_interrupt`
    false (closing a pool), it is left to finish, and only a second Ctrl-C stops the wait."""
    outcome = _Outcome()
    handoff = Handoff(loop, coro, context, outcome.settle)
    try:
        outcome.ready.acquire()
    except KeyboardInterrupt:
        if cancel_on_interrupt:
            handoff.cancel()
        outcome.ready.acquire(timeout=UNWIND_BOUND)
        raise
    task = outcome.task
    assert task is not None
    return task.result()  # type: ignore[no-any-return]


def as_coroutine(awaitable: Awaitable[T], loop: asyncio.AbstractEventLoop) -> Coroutine[Any, Any, T]:
    """`awaitable` as a coroutine to run on `loop`; `TypeError` for anything else, and
    `RuntimeError` for a future of another loop (`asyncio.gather(...)` made while another
    loop was the thread's current one)."""
    if inspect.iscoroutine(awaitable):
        return awaitable
    if asyncio.isfuture(awaitable) and awaitable.get_loop() is not loop:
        awaitable.cancel()
        raise RuntimeError(
            f"{awaitable!r} belongs to another event loop than the pool's: pass pool.run() coroutines, "
            "or make it inside a coroutine that pool.run() runs"
        )
    if not inspect.isawaitable(awaitable):
        raise TypeError(f"pool.run needs an awaitable (a routine call, a coroutine, asyncio.gather(...)), not {awaitable!r}")
    return _awaited(awaitable)


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def discard(awaitable: object) -> None:
    """Close a coroutine that will never run, so that Python does not warn it was never awaited."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()


class BlockingIterator(Iterator[T]):
    """A plain iterator over an async iterator that lives on another thread's loop: each
    `next()` blocks on `run(anext(...))`. `close()` closes the async iterator, which ends what it was
    running; dropping it leaves that to the source (`wool.Map` cancels its calls when dropped)."""

    def __init__(self, source: AsyncIterator[T], run: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self._source: AsyncIterator[T] | None = source
        self._run = run

    def __iter__(self) -> BlockingIterator[T]:
        return self

    def __next__(self) -> T:
        if self._source is None:
            raise StopIteration
        try:
            item: T = self._run(_next(self._source))
        except StopAsyncIteration:
            self._source = None
            raise StopIteration from None
        except BaseException:
            self._source = None  # the source closed itself (wool.Map does, on any error)
            raise
        return item

    def close(self) -> None:
        source, self._source = self._source, None
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            self._run(aclose())

    def __enter__(self) -> BlockingIterator[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _next(source: AsyncIterator[T]) -> T:
    return await anext(source)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None (where `asyncio.get_running_loop`
    would raise)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
